"""Every step by name: the plans (:data:`kubehop.domain.model.STEPS`, the baselines) are lists
of these names, and the journal records them.
"""

from __future__ import annotations

from kubehop.engine.steps.base import Step
from kubehop.engine.steps.baselines import DeleteSource, Repoint
from kubehop.engine.steps.copy import Copy, Ready, Start
from kubehop.engine.steps.data import Cutover, PreCopy
from kubehop.engine.steps.route import Dns, Route, Verify
from kubehop.engine.steps.switch import Cleanup, Drain, Switch

STEP_TYPES: dict[str, Step] = {s.name: s for s in (
    Copy(), PreCopy(), Start(), Ready(), Route(), Dns(), Verify(), Cutover(), Switch(), Drain(),
    Cleanup(), Repoint(), DeleteSource())}

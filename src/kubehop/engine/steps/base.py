"""What every step is: ``do`` and ``undo`` over one migration, and the checkpoints between
its side effects that both must survive a stop at.
"""

from __future__ import annotations

from typing import ClassVar

from kubehop.engine.context import Migration


class Step:
    """One step of a plan. ``points`` names, in order, the checkpoints ``do`` passes right after
    its side effects (plus "begin" before any): the places a crash or failure can leave it half
    done, each of which ``undo`` and a re-run of ``do`` must handle."""

    name: ClassVar[str]
    points: ClassVar[tuple[str, ...]] = ()
    forward_only: ClassVar[bool] = False
    has_undo: ClassVar[bool] = False
    data_only: ClassVar[bool] = False
    """Its undo changes something only for a workload with volumes (the journal's readers,
    which have no :class:`Migration`, list it as undone only then)."""

    def do(self, m: Migration) -> None:
        raise NotImplementedError

    def undo(self, m: Migration) -> None:
        """Nothing to undo by default (the step only waited or checked)."""

    def undoes(self, m: Migration) -> bool:
        """Whether its undo changes anything in this migration (the report lists it)."""
        return self.has_undo and (bool(m.state.volumes) or not self.data_only)

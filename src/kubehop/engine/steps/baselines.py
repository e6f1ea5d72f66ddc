"""The baselines' own steps (:data:`kubehop.domain.model.BASELINES`): the paper's strategy and
the naive one, measured against kubehop's by the benchmark. Never part of kubehop's plan.
"""

from __future__ import annotations

from kubehop.engine.context import Migration
from kubehop.engine.steps.base import Step
from kubehop.engine.steps.switch import Switch, to_externalname


class Repoint(Step):
    """Baselines only: the paper's switch, literally: the Service becomes an ExternalName for
    the private-zone name, with nothing holding the old ClusterIP for cached answers."""

    name = "repoint"
    points = ("externalname",)
    has_undo = True

    def do(self, m: Migration) -> None:
        to_externalname(m, drain=False)

    def undo(self, m: Migration) -> None:
        Switch().undo(m)


class DeleteSource(Step):
    """Baselines only: the source workload goes (the paper's last step; backup/restore's first)."""

    name = "delete-source"
    points = ("workload-deleted",)
    forward_only = True

    def do(self, m: Migration) -> None:
        st = m.state
        m.src.delete(st.workload_kind, st.workload["metadata"]["name"], m.req.namespace)
        m.checkpoint("workload-deleted")

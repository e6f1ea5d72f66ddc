"""What the data steps ask of a data engine, whatever moves the bytes.

The steps in :mod:`kubehop.engine.steps.data` decide *when* (pre-copy while the source serves,
the final pass inside the freeze, the check before the switch); an engine knows *how*. Keeping
the interface this small is what lets a new engine (a PostgreSQL streaming-replication one is
planned) be a new module registered in :mod:`kubehop.engine.data.registry`, not a branch in
every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from kubehop.adapters.kube import KubeCluster
from kubehop.errors import KubehopError


class DataError(KubehopError):
    """The data could not be moved or did not arrive intact."""


@dataclass(frozen=True)
class Pass:
    """One copy pass (for the file engine, one rsync run): what it sent and how long it took."""

    bytes: int
    files: int
    seconds: float
    final: bool

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "files": self.files, "seconds": round(self.seconds, 3),
                "final": self.final}


@dataclass(frozen=True)
class Verification:
    """Both sides compared inside the freeze: what differs (empty: the copy is exact) and how
    much data the source holds (the report's ``files`` and ``bytes``). An engine may list only
    the first differences; ``more`` counts those it left out."""

    problems: list[str]
    files: int
    bytes: int
    more: int = 0


@dataclass(frozen=True)
class DataSetup:
    """Everything an engine may need to know about one migration's data; an engine reads the
    fields it needs. Every object an engine makes has a name derived from ``migration_id``, so
    :meth:`DataEngine.remove` is idempotent and needs no record."""

    src: KubeCluster
    dst: KubeCluster
    migration_id: str
    source_namespace: str
    target_namespace: str
    image: str
    claims: list[str] = field(default_factory=list)
    target_address: str = ""
    """host:port of the target's transfer entry point, as the source reaches it."""
    entrypoint: str = ""
    """The target's Traefik entry point for volume data."""


class DataEngine(Protocol):
    """The operations the data steps call, in the order they call them: ``start``, then
    ``first_pass`` and ``run_pass`` (while the source serves), ``prepare_verify``; inside the
    freeze a final ``run_pass`` and ``verify``; ``remove`` right after a verification that
    passed, and from undo, cleanup or a resumed run, whatever state a crash left;
    ``wait_removed`` before any pod is thawed."""

    name: str
    """The engine's name in :mod:`kubehop.engine.data.registry`; the migration's report keeps it
    under data ``engine`` (the benchmark's "mode")."""

    def start(self, *, timeout: float) -> None:
        """Set up whatever moves the data, afresh (a resumed run replaces what an earlier one
        left), and return once it is ready to copy."""
        ...

    def first_pass(self) -> tuple[Pass, list[str]]:
        """The first pass, retried while the path to the target settles; the pass and why each
        earlier attempt failed."""
        ...

    def run_pass(self, *, final: bool) -> Pass:
        """One more pass; ``final`` is the one inside the freeze."""
        ...

    def prepare_verify(self) -> None:
        """Called at the end of the pre-copy: whatever ``verify`` can do ahead of the freeze,
        so the freeze only pays for what changed since."""
        ...

    def verify(self) -> Verification:
        """Compare both sides (called once writes have stopped and the final pass is done)."""
        ...

    def remove(self) -> None:
        """Everything the engine made, gone; idempotent."""
        ...

    def wait_removed(self, *, timeout: float) -> None:
        """Return once what :meth:`remove` deleted is gone: no process of the engine can touch
        either side's data any more (called before any thaw)."""
        ...

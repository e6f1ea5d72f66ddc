"""What a migration run reports: its phases' timings, what it changed, what it undid, the data
it moved. Apart from the executor so that the error type the steps raise can carry one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kubehop.domain.model import PlannedChange


@dataclass
class PhaseTiming:
    name: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Report:
    id: str
    service: str
    namespace: str
    source: str
    target: str
    target_namespace: str
    strategy: str
    status: str
    phases: list[PhaseTiming] = field(default_factory=list)
    error: str | None = None
    undone: list[str] = field(default_factory=list)
    changes: list[PlannedChange] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    """Volume data moved: passes (bytes, files, seconds), precopy, freeze and verify seconds."""

    @property
    def total_seconds(self) -> float:
        return (self.phases[-1].end - self.phases[0].start) if self.phases else 0.0

    @property
    def switch_seconds(self) -> float | None:
        """From the start until clients were sent to the target."""
        for p in self.phases:
            if p.name == "switch":
                return p.end - self.phases[0].start
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total_seconds"] = round(self.total_seconds, 3)
        data["switch_seconds"] = (None if self.switch_seconds is None
                                  else round(self.switch_seconds, 3))
        for p, d in zip(self.phases, data["phases"], strict=True):
            d["seconds"] = round(p.seconds, 3)
        return data

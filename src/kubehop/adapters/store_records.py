"""What the store hands back: plain dataclasses, so no caller ever holds a SQLAlchemy row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class StepRow:
    seq: int
    name: str
    state: str
    started: float
    ended: float | None
    detail: str


@dataclass
class MigrationRow:
    id: str
    request: dict[str, Any]
    status: str
    created: float
    updated: float
    error: str | None
    context: dict[str, Any]
    steps: list[StepRow]


@dataclass(frozen=True)
class ClusterRecord:
    name: str
    tier: str
    cpu_capacity: float
    cpu_allocatable: float
    mem_capacity: float
    mem_allocatable: float
    load_balancer: str
    seen: float


@dataclass(frozen=True)
class LinkSample:
    src: str
    dst: str
    rtt_ms: float
    at: float


@dataclass(frozen=True)
class ServiceRecord:
    namespace: str
    name: str
    cluster: str
    spec: dict[str, Any]
    seen: float


@dataclass(frozen=True)
class PlacementRecord:
    namespace: str
    name: str
    cluster: str
    since: float
    migration_id: str | None


@dataclass(frozen=True)
class EvaluationRecord:
    at: float
    rule: str
    subject: str
    value: float | None
    state: str
    detail: str


@dataclass(frozen=True)
class DecisionRecord:
    id: int
    at: float
    namespace: str
    service: str
    action: str
    source: str
    target: str | None
    explanation: str
    table: dict[str, Any]
    migration_id: str | None

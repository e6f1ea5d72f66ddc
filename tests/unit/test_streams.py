"""Prefetch: a stream read by a thread of its own, a bounded distance ahead of its reader."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from kubehop.engine.data.streams import BATCH, Prefetch


class Source:
    """Counts what was taken from it and whether it was closed; fails at ``fail_at``."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at
        self.taken = 0
        self.closed = threading.Event()

    def items(self) -> Iterator[int | None]:
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise OSError("connection reset")
                self.taken += 1
                yield None if i == 3 else i  # None is an item like any other
        finally:
            self.closed.set()


def wait_until_stable(source: Source) -> int:
    last = -1
    while source.taken != last:
        last = source.taken
        time.sleep(0.2)
    return last


def test_every_item_arrives_in_order_and_the_source_is_closed() -> None:
    source = Source(2000)
    with Prefetch(source.items(), ahead=512) as items:
        got = list(items)
    assert got == [None if i == 3 else i for i in range(2000)]
    assert source.closed.wait(5)


def test_it_reads_ahead_a_bounded_distance_only() -> None:
    source = Source(100_000)
    items = Prefetch(source.items(), ahead=1024)
    assert next(items) == 0
    taken = wait_until_stable(source)
    assert 1024 <= taken <= 1024 + 3 * BATCH  # queue full, one batch held, one being made
    items.close()
    assert source.closed.wait(5) and source.taken < 100_000


def test_a_failure_of_the_source_reaches_the_reader_after_what_came_before() -> None:
    source = Source(1000, fail_at=700)
    got: list[int | None] = []
    with Prefetch(source.items()) as items, pytest.raises(OSError, match="connection reset"):
        got.extend(items)
    assert len(got) == 700

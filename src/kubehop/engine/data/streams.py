"""Reading a long stream in a thread of its own, a bounded distance ahead of its reader.

The file engine compares two movers' manifests, each streamed through an API server: read in
step by one thread, the slower mover would hold the faster one back at every entry. Each is
read here by its own thread into a small queue, so both movers work at once and kubehop holds
at most ``ahead`` entries of each.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

BATCH = 256
"""Items handed over at a time: a queue operation per item would cost more than the item."""


class _End:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Prefetch(Generic[T]):
    """An iterator over ``source``, which a thread of its own reads up to ``ahead`` items in
    advance. An exception of ``source`` is raised to the reader when it gets there. Close it
    (or use it as a context manager) to stop the thread before the end; the source is then
    closed in its thread, at the latest when it next yields."""

    def __init__(self, source: Iterator[T], *, ahead: int = 4096, name: str = "prefetch") -> None:
        self._queue: queue.Queue[list[T] | _End] = queue.Queue(maxsize=max(1, ahead // BATCH))
        self._stop = threading.Event()
        self._batch: list[T] = []
        self._pos = 0
        self._done = False
        self._thread = threading.Thread(target=self._pump, args=(source,), name=name,
                                        daemon=True)
        self._thread.start()

    def _pump(self, source: Iterator[T]) -> None:
        batch: list[T] = []
        try:
            for item in source:
                batch.append(item)
                if len(batch) >= BATCH:
                    if not self._put(batch):
                        return
                    batch = []
            self._put(batch)
            self._put(_End())
        except Exception as exc:  # the reader's to handle, where it reads
            self._put(batch)
            self._put(_End(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def _put(self, item: list[T] | _End) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        while self._pos >= len(self._batch):
            if self._done:
                raise StopIteration
            got = self._queue.get()
            if isinstance(got, _End):
                self._done = True
                if got.error is not None:
                    raise got.error
                raise StopIteration
            self._batch, self._pos = got, 0
        self._pos += 1
        return self._batch[self._pos - 1]

    def close(self, *, wait: float = 5.0) -> None:
        self._stop.set()
        self._done = True
        self._thread.join(timeout=wait)

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

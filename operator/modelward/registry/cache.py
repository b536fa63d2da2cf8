"""What registry look-ups remember, and how concurrent look-ups share work.

Content addressed by digest never changes, so it is cached until evicted (LRU, bounded in
bytes); a tag can move at any time, so tag -> digest is remembered for a short TTL only. Two
reviews of the same image while its look-up is in flight share that one look-up.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class ContentCache(Generic[K, T]):
    """Immutable values by key, least recently used evicted first, bounded by total weight.

    ``weigh`` gives each value's cost in bytes; a value heavier than the whole budget is not
    kept (so one huge manifest cannot flush everything else).
    """

    def __init__(self, *, max_bytes: int, weigh: Callable[[T], int]) -> None:
        self._max = max_bytes
        self._weigh = weigh
        self._items: OrderedDict[K, tuple[T, int]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> T | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item[0]

    def put(self, key: K, value: T) -> None:
        weight = self._weigh(value)
        if weight > self._max:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._items[key] = (value, weight)
        self._bytes += weight
        while self._bytes > self._max:
            _, (_, evicted) = self._items.popitem(last=False)
            self._bytes -= evicted

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


class TagCache:
    """(registry, repository, tag) -> digest for ``ttl`` seconds: tags move, digests do not."""

    def __init__(
        self,
        *,
        ttl: float,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._items: OrderedDict[tuple[str, str, str], tuple[str, float]] = OrderedDict()

    def get(self, registry: str, repository: str, tag: str) -> str | None:
        key = (registry, repository, tag)
        item = self._items.get(key)
        if item is None:
            return None
        digest, expires = item
        if self._clock() >= expires:
            del self._items[key]
            return None
        return digest

    def put(self, registry: str, repository: str, tag: str, digest: str) -> None:
        key = (registry, repository, tag)
        self._items.pop(key, None)
        self._items[key] = (digest, self._clock() + self._ttl)
        while len(self._items) > self._max:
            self._items.popitem(last=False)


class SingleFlight(Generic[K, T]):
    """One running task per key; callers that arrive meanwhile await the same task.

    The task is shielded: a caller that gives up (its deadline passed) does not cancel the
    work others wait for, and its result still reaches the caches for the next review.
    """

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[T]] = {}
        self.shared = 0

    async def run(self, key: K, start: Callable[[], Awaitable[T]]) -> T:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(start())
            self._running[key] = task
            task.add_done_callback(functools.partial(self._done, key))
        else:
            self.shared += 1
        return await asyncio.shield(task)

    def _done(self, key: K, task: asyncio.Task[T]) -> None:
        self._running.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have given up already

    def __len__(self) -> int:
        return len(self._running)

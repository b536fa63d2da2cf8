"""Leader election on a Lease, judged on the local clock, released on shutdown.

A fake Lease API (conditional writes on a resourceVersion, like the API server) and a fake
monotonic clock: no test sleeps, and the remote ``renewTime`` is set to absurd values to show
that it is never compared with this machine's clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace

import pytest

from modelward.controller import leadership as leadership_module
from modelward.controller.leadership import Leadership, LeaseRecord

WALL = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


class FakeLeases:
    """One Lease: reads, creates and replaces conditional on the resourceVersion."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0
        self.down = False

    def read(self) -> tuple[LeaseRecord, str] | None:
        if self.down:
            raise ConnectionError("API server unreachable")
        return None if self.record is None else (self.record, str(self.version))

    def create(self, record: LeaseRecord) -> bool:
        if self.down:
            raise ConnectionError("API server unreachable")
        if self.record is not None:
            return False
        self.record, self.version = record, self.version + 1
        return True

    def replace(self, record: LeaseRecord, version: str) -> bool:
        if self.down:
            raise ConnectionError("API server unreachable")
        if version != str(self.version):
            return False
        self.record, self.version = record, self.version + 1
        return True

    def write_as(self, holder: str, renew_time: str) -> None:
        """Another replica renews (with whatever its clock says)."""
        assert self.record is not None
        self.record = replace(self.record, holder=holder, renew_time=renew_time)
        self.version += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _replica(
    leases: FakeLeases, clock: Clock, identity: str, elected: list[str] | None = None
) -> Leadership:
    return Leadership(
        api=leases,
        identity=identity,
        lease_seconds=30,
        renew_seconds=10,
        retry_seconds=2,
        renew_deadline=20,
        clock=clock,
        now=lambda: WALL + dt.timedelta(seconds=clock.now),
        on_elected=(lambda: elected.append(identity)) if elected is not None else (lambda: None),
    )


async def test_the_first_replica_creates_the_lease_and_leads() -> None:
    leases, clock, elected = FakeLeases(), Clock(), []
    a = _replica(leases, clock, "a", elected)
    assert await a.acquire_once() and a.is_leader and a.handover is None
    assert leases.record is not None and leases.record.holder == "a"
    assert await a.acquire_once()  # renewing does not elect again
    assert elected == ["a"]


async def test_a_held_lease_is_not_taken_however_old_its_remote_renew_time() -> None:
    """The holder's clock may be hours behind: only local observation counts."""
    leases, clock = FakeLeases(), Clock()
    a, b = _replica(leases, clock, "a"), _replica(leases, clock, "b")
    await a.acquire_once()
    leases.write_as("a", "2000-01-01T00:00:00.000000Z")  # a skewed clock on a's node
    assert not await b.acquire_once()
    clock.now += 29
    assert not await b.acquire_once()
    assert leases.record is not None and leases.record.holder == "a"


async def test_a_lease_renewed_by_a_clock_far_ahead_still_expires_on_time() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = _replica(leases, clock, "a"), _replica(leases, clock, "b")
    await a.acquire_once()
    leases.write_as("a", "2999-01-01T00:00:00.000000Z")  # a's clock is centuries ahead
    assert not await b.acquire_once()
    clock.now += 31  # a then stopped renewing (killed)
    assert await b.acquire_once() and b.is_leader


async def test_each_renewal_restarts_the_followers_wait() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = _replica(leases, clock, "a"), _replica(leases, clock, "b")
    await a.acquire_once()
    assert not await b.acquire_once()
    for _ in range(5):  # a renews every 10 s; b polls; 50 s pass, more than the lease
        clock.now += 10
        assert await a.acquire_once()
        assert not await b.acquire_once()


async def test_a_crashed_leader_is_replaced_after_the_lease_duration() -> None:
    leases, clock, elected = FakeLeases(), Clock(), []
    a, b = _replica(leases, clock, "a", elected), _replica(leases, clock, "b", elected)
    await a.acquire_once()
    clock.now += 5
    await a.acquire_once()
    last_renewal = leases.record.renew_time if leases.record else ""
    assert not await b.acquire_once()  # b first sees the lease now
    clock.now += 29
    assert not await b.acquire_once()
    clock.now += 2
    assert await b.acquire_once()
    assert elected == ["a", "b"]
    assert leases.record is not None and leases.record.holder == "b"
    assert leases.record.transitions == 1
    assert b.handover == leadership_module.parse_time(last_renewal)


async def test_release_hands_the_lease_over_at_the_next_poll() -> None:
    """Issue 10 #5: a graceful stop leaves no gap of a lease duration."""
    leases, clock, elected = FakeLeases(), Clock(), []
    a, b = _replica(leases, clock, "a", elected), _replica(leases, clock, "b", elected)
    await a.acquire_once()
    assert not await b.acquire_once()
    clock.now += 3
    assert a.release() and not a.is_leader
    assert leases.record is not None and leases.record.holder == ""
    clock.now += 2  # b's next poll, far within the lease duration
    assert await b.acquire_once()
    assert elected == ["a", "b"] and b.handover == WALL + dt.timedelta(seconds=1003)


async def test_release_never_gives_up_someone_elses_lease() -> None:
    leases, clock = FakeLeases(), Clock()
    a = _replica(leases, clock, "a")
    assert not a.release()  # not the leader
    await a.acquire_once()
    leases.write_as("b", "x")  # b took it (a has not noticed yet)
    assert not a.release()
    assert leases.record is not None and leases.record.holder == "b"


async def test_an_unreachable_api_keeps_the_leader_until_the_renew_deadline() -> None:
    """Stepping down before the lease expires for others: never two leaders."""
    leases, clock = FakeLeases(), Clock()
    a, b = _replica(leases, clock, "a"), _replica(leases, clock, "b")
    await a.acquire_once()
    await b.acquire_once()
    leases.down = True
    clock.now += 10
    assert await a.acquire_once()  # one failed renewal: still leading
    clock.now += 10
    assert not await a.acquire_once()  # 20 s without renewal: stepped down
    leases.down = False
    clock.now += 9  # 29 s after b last saw a change: b must still wait
    assert not await b.acquire_once()
    clock.now += 2
    assert await b.acquire_once()


async def test_losing_a_race_steps_down_at_once() -> None:
    leases, clock = FakeLeases(), Clock()
    a = _replica(leases, clock, "a")
    await a.acquire_once()
    leases.write_as("b", "y")
    clock.now += 10
    assert not await a.acquire_once() and not a.is_leader


async def test_two_replicas_racing_for_a_free_lease_elect_one() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = _replica(leases, clock, "a"), _replica(leases, clock, "b")
    original = leases.read
    raced = []

    def read_then_let_b_in() -> tuple[LeaseRecord, str] | None:
        result = original()
        if not raced:
            raced.append(True)
            assert b.try_acquire()  # b creates it between a's read and a's create
        return result

    leases.read = read_then_let_b_in  # type: ignore[method-assign]
    assert not a.try_acquire()
    assert leases.record is not None and leases.record.holder == "b"
    # The same race on an existing, free Lease: a's replace carries a stale resourceVersion.
    leases.write_as("", "released")
    raced.clear()
    assert not a.try_acquire()
    assert leases.record is not None and leases.record.holder == "b"


def test_the_renew_deadline_must_fall_before_the_lease_expires() -> None:
    with pytest.raises(ValueError, match="renew_deadline < lease_seconds"):
        Leadership(api=FakeLeases(), identity="a", lease_seconds=15, renew_deadline=20)


async def test_the_loop_renews_slowly_and_polls_quickly() -> None:
    leases, clock = FakeLeases(), Clock()
    leases.record = LeaseRecord("other", 30, "t", "t", 0)
    b = _replica(leases, clock, "b")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds
        if len(waits) == 3:
            leases.write_as("", "t")  # the other replica released it
        if len(waits) == 6:
            raise asyncio.CancelledError

    b.sleep = sleep
    with pytest.raises(asyncio.CancelledError):
        await b.run()
    assert waits == [2, 2, 2, 10, 10, 10]

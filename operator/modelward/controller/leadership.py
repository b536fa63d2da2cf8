"""Which replica does the cluster-wide background work (a coordination.k8s.io Lease).

Every replica watches and serves admission (kopf standalone), but the audit and the recording
of verifier results must happen once per cluster, or Events, metrics and DeployedModel counts
would be multiplied by the number of replicas. The holder of the Lease does them; the others
take over when it stops renewing. Admission never waits for this.

Expiry is judged as client-go's leader election judges it, on the *local* clock: a replica
remembers when it last saw the Lease record change and considers the holder gone only when
``leaseDurationSeconds`` have passed on its own monotonic clock since then. The ``renewTime``
written by another machine is never compared with this one's wall clock, so clock skew between
nodes can neither make two leaders nor leave none. A leader that cannot renew steps down after
``renew_deadline`` (shorter than the lease), before anyone else may take over.

A replica that stops gracefully releases the Lease (empty holder, 1 s duration, as client-go's
``ReleaseOnCancel``), so another replica takes over at its next poll instead of waiting out
the lease; the new leader then catches up on whatever arrived in between (``on_elected``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelward.controller.kube import TIMEOUT, KubeApi

log = logging.getLogger("modelward.leadership")


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease spec fields leader election uses, times as the API server's strings."""

    holder: str
    duration_seconds: int
    acquire_time: str
    renew_time: str
    transitions: int = 0

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> LeaseRecord:
        duration = spec.get("leaseDurationSeconds")
        transitions = spec.get("leaseTransitions")
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration_seconds=duration if type(duration) is int and duration > 0 else 1,
            acquire_time=str(spec.get("acquireTime") or ""),
            renew_time=str(spec.get("renewTime") or ""),
            transitions=transitions if type(transitions) is int and transitions >= 0 else 0,
        )

    def to_spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration_seconds,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        }


class LeaseApi(Protocol):
    """The three calls leader election makes; ``version`` is the resourceVersion."""

    def read(self) -> tuple[LeaseRecord, str] | None: ...

    def create(self, record: LeaseRecord) -> bool:
        """False if the Lease exists already (another replica created it first)."""
        ...

    def replace(self, record: LeaseRecord, version: str) -> bool:
        """False on a conflict (the Lease changed since ``version`` was read)."""
        ...


class KubeLeaseApi:
    """:class:`LeaseApi` on a real coordination.k8s.io/v1 Lease."""

    def __init__(self, *, kube: KubeApi, namespace: str, name: str) -> None:
        self.api = client.CoordinationV1Api(kube.api)
        self.namespace = namespace
        self.name = name

    def read(self) -> tuple[LeaseRecord, str] | None:
        try:
            response: Any = self.api.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        lease = json.loads(response.data)
        version = str((lease.get("metadata") or {}).get("resourceVersion") or "")
        return LeaseRecord.from_spec(lease.get("spec") or {}), version

    def _body(self, record: LeaseRecord, version: str | None) -> Any:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if version is not None:
            metadata["resourceVersion"] = version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": record.to_spec(),
        }

    def create(self, record: LeaseRecord) -> bool:
        try:
            self.api.create_namespaced_lease(
                self.namespace, self._body(record, None), _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def replace(self, record: LeaseRecord, version: str) -> bool:
        try:
            self.api.replace_namespaced_lease(
                self.name, self.namespace, self._body(record, version), _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _format(moment: dt.datetime) -> str:
    """MicroTime, as the API server writes it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class Leadership:
    """Leader election on one Lease; ``is_leader`` says whether this replica holds it now."""

    def __init__(
        self,
        *,
        api: LeaseApi,
        identity: str,
        lease_seconds: int = 30,
        renew_seconds: float = 10.0,
        retry_seconds: float = 2.0,
        renew_deadline: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = _utc_now,
        on_elected: Callable[[], None] = lambda: None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < renew_seconds < renew_deadline < lease_seconds:
            raise ValueError(
                "leader election needs renew_seconds < renew_deadline < lease_seconds, so "
                "that a leader that cannot renew steps down before another may take over"
            )
        self.api = api
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.retry_seconds = retry_seconds
        self.renew_deadline = renew_deadline
        self.clock = clock
        self.now = now
        self.on_elected = on_elected
        self.sleep = sleep
        self.is_leader = False
        #: When this replica last became the leader (wall clock, for logs and Events).
        self.since: dt.datetime | None = None
        #: The previous holder's last renewal when this replica took over: results that
        #: finished before it were that leader's to record. None if this replica created it.
        self.handover: dt.datetime | None = None
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None

    def _observe(self, record: LeaseRecord) -> None:
        """Remember when the record last changed, on the local clock (client-go's rule)."""
        if record != self._observed:
            self._observed = record
            self._observed_at = self.clock()

    def held_by_another(self, record: LeaseRecord) -> bool:
        """Someone else holds the Lease and has renewed it within its duration, as observed
        locally: the only case in which this replica must not take it."""
        if not record.holder or record.holder == self.identity:
            return False
        return self.clock() < self._observed_at + record.duration_seconds

    def try_acquire(self) -> bool:
        """One round: create, renew or take over the Lease. True if this replica holds it.

        Raises whatever the API raises (the caller decides what an outage means)."""
        stamp = _format(self.now())
        current = self.api.read()
        if current is None:
            record = LeaseRecord(self.identity, self.lease_seconds, stamp, stamp, 0)
            if not self.api.create(record):
                return False
            self._observe(record)
            self._taking_over(None)
            return True
        record, version = current
        self._observe(record)
        if self.held_by_another(record):
            return False
        ours = record.holder == self.identity
        renewed = LeaseRecord(
            holder=self.identity,
            duration_seconds=self.lease_seconds,
            acquire_time=record.acquire_time if ours else stamp,
            renew_time=stamp,
            transitions=record.transitions + (0 if ours else 1),
        )
        if not self.api.replace(renewed, version):
            return False
        if not self.is_leader:
            self._taking_over(record)
        self._observe(renewed)
        return True

    def _taking_over(self, previous: LeaseRecord | None) -> None:
        self.handover = parse_time(previous.renew_time) if previous is not None else None

    async def acquire_once(self) -> bool:
        """One round of election; calls ``on_elected`` when this replica becomes the leader."""
        try:
            held = await asyncio.to_thread(self.try_acquire)
            failed = False
        except Exception as exc:
            log.warning("cannot renew the leader Lease (%s): %s", self.identity, exc)
            held, failed = False, True
        self._settle(held=held, failed=failed)
        return self.is_leader

    def _settle(self, *, held: bool, failed: bool) -> None:
        if held:
            self._renewed_at = self.clock()
            if not self.is_leader:
                self.is_leader = True
                self.since = self.now()
                log.info(
                    "this replica (%s) now runs the audit and records verifications", self.identity
                )
                self.on_elected()
            return
        if not self.is_leader:
            return
        # Another replica holds the Lease (or won a race for it): step down at once. The API
        # is unreachable: keep leading until the renew deadline, which passes before the
        # lease can expire for anyone else.
        renewed_at = self._renewed_at if self._renewed_at is not None else float("-inf")
        if failed and self.clock() < renewed_at + self.renew_deadline:
            return
        self.is_leader = False
        log.info("this replica (%s) is no longer the leader", self.identity)

    def release(self) -> bool:
        """Give the Lease up (graceful shutdown): empty holder, so others take it at once.

        Only the holder's own record is released (conditional on its resourceVersion)."""
        was_leader, self.is_leader = self.is_leader, False
        if not was_leader:
            return False
        current = self.api.read()
        if current is None or current[0].holder != self.identity:
            return False
        record, version = current
        stamp = _format(self.now())
        released = LeaseRecord(
            holder="",
            duration_seconds=1,
            acquire_time=stamp,
            renew_time=stamp,
            transitions=record.transitions,
        )
        if self.api.replace(released, version):
            log.info("released the leader Lease (%s)", self.identity)
            return True
        return False

    async def release_on_shutdown(self, *, timeout: float = 5.0) -> None:
        try:
            await asyncio.wait_for(asyncio.to_thread(self.release), timeout)
        except Exception as exc:
            log.warning("could not release the leader Lease (%s): %s", self.identity, exc)

    async def run(self) -> None:
        """Renew every ``renew_seconds`` while leading; poll every ``retry_seconds`` otherwise."""
        while True:
            await self.sleep(self.renew_seconds if self.is_leader else self.retry_seconds)
            await self.acquire_once()

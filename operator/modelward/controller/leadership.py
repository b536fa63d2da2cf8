"""Which replica does the cluster-wide background work (a coordination.k8s.io Lease).

Every replica watches and serves admission (kopf standalone), but the audit and the recording
of verifier results must happen once per cluster, or Events, metrics and DeployedModel counts
would be multiplied by the number of replicas. The holder of the Lease does them; the others
take over when it stops renewing. Admission never waits for this.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelward.controller.kube import TIMEOUT, KubeApi

log = logging.getLogger("modelward.leadership")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _format(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str) and value:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


class Leadership:
    def __init__(
        self,
        *,
        kube: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int = 30,
        renew_seconds: float = 10.0,
    ) -> None:
        self.api = client.CoordinationV1Api(kube.api)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.is_leader = False
        #: When this replica last became the leader (results older than that are not ours).
        self.since: dt.datetime | None = None

    def _spec(self, acquired: dt.datetime | None) -> dict[str, Any]:
        now = _format(_now())
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": _format(acquired) if acquired else now,
            "renewTime": now,
        }

    def try_acquire(self) -> bool:
        """One round: create, renew or take over the Lease. True if this replica holds it."""
        try:
            lease = self.api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            body: Any = {
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None),
            }
            try:
                self.api.create_namespaced_lease(self.namespace, body, _request_timeout=TIMEOUT)
                return True
            except ApiException as create_exc:
                if create_exc.status == 409:
                    return False
                raise
        spec = lease.spec
        holder = spec.holder_identity if spec else None
        renewed = _parse(spec.renew_time) if spec else None
        duration = (spec.lease_duration_seconds if spec else None) or self.lease_seconds
        expired = renewed is None or renewed + dt.timedelta(seconds=duration) < _now()
        if holder != self.identity and not expired:
            return False
        acquired = _parse(spec.acquire_time) if spec and holder == self.identity else None
        version = lease.metadata.resource_version if lease.metadata else None
        replacement: Any = {
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": version,
            },
            "spec": self._spec(acquired),
        }
        try:
            self.api.replace_namespaced_lease(
                self.name, self.namespace, replacement, _request_timeout=TIMEOUT
            )
            return True
        except ApiException as exc:
            if exc.status == 409:  # someone else renewed or took it first
                return False
            raise

    async def acquire_once(self) -> bool:
        try:
            leader = await asyncio.to_thread(self.try_acquire)
        except Exception as exc:
            log.warning("cannot renew the leader Lease %s/%s: %s", self.namespace, self.name, exc)
            leader = False
        if leader and not self.is_leader:
            self.since = _now()
            log.info(
                "this replica (%s) now runs the audit and records verifications", self.identity
            )
        elif self.is_leader and not leader:
            log.info("this replica (%s) is no longer the leader", self.identity)
        self.is_leader = leader
        return leader

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.renew_seconds)
            await self.acquire_once()

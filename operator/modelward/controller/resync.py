"""Full re-lists of the watched kinds, so the state cannot keep what the cluster deleted.

kopf re-lists a kind when its watch breaks with "410 Gone" (the API server restarted, or the
watch fell too far behind), but it hands the listed objects to ``on.event`` one by one with no
"list ended" signal, and it never reports the objects that disappeared in between. So the
state would keep a deleted default-deny NetworkPolicy, and MW-ISO-014 would keep passing,
until the process restarted.

``StateResync`` lists each watched kind itself, page by page, and replaces the state's content
for that kind in one step (``ClusterState.replace``, which keeps anything a newer watch event
wrote). It runs:

- at start-up, before ``/readyz`` turns green (the first full picture);
- whenever kopf re-lists a kind (a watch event with no type), shortly after, so a watch
  disruption is repaired as soon as the watch is back;
- every ``interval`` seconds for every kind (``--state-resync-interval``, 60 s by default): a
  kind with no objects left produces no re-list events at all, and this bounds how long any
  missed deletion can last.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from modelward.controller.observe import policy_key, resync_kind
from modelward.engine.policy import KeySource, StaticKeySource
from modelward.state import ClusterState, PolicyKey

log = logging.getLogger("modelward.resync")

#: The kinds the state is built from, in the order they are listed.
KINDS = (
    "ClusterModelPolicy",
    "ModelPolicy",
    "Namespace",
    "NetworkPolicy",
    "Service",
    "ModelPolicyException",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "StorageClass",
    "PersistentVolumeClaim",
)
#: Wait this long after kopf's first re-list event, so one resync covers the whole re-list.
DEBOUNCE_SECONDS = 1.0


class KindLister(Protocol):
    """Lists every object of a kind and the list's resourceVersion (``KubeApi`` does)."""

    def list_kind(self, kind: str) -> tuple[list[dict[str, Any]], str | None]: ...


class KeyFetcher(Protocol):
    """Reads the keys a cluster policy references from modelward's namespace (``KeyReader``)."""

    def fetch(self, obj: Mapping[str, Any]) -> StaticKeySource: ...

    def remember(self, key: PolicyKey, obj: Mapping[str, Any], keys: StaticKeySource) -> None: ...


PolicySync = Callable[[PolicyKey, Mapping[str, Any] | None], Awaitable[None]]


class StateResync:
    def __init__(
        self,
        *,
        state: ClusterState,
        lister: KindLister,
        sync_policy: PolicySync,
        interval: float,
        kinds: tuple[str, ...] = KINDS,
        keys: KeyFetcher | None = None,
    ) -> None:
        self.state = state
        self.keys = keys
        self.lister = lister
        self.sync_policy = sync_policy
        self.interval = interval
        self.kinds = kinds
        self._requested: set[str] = set()
        self._wake = asyncio.Event()

    async def resync(self, kinds: Iterable[str] | None = None) -> dict[str, int]:
        """List ``kinds`` (all by default) and replace the state's content for each.

        Returns the number of entries removed per kind (deletions the watches missed). Raises
        what the API raised; the caller decides whether to retry.
        """
        removed: dict[str, int] = {}
        for kind in kinds or self.kinds:
            objects, version = await asyncio.to_thread(self.lister.list_kind, kind)
            material = await self._key_material(kind, objects)
            result, written = resync_kind(
                self.state, kind, objects, list_version=version, keys=material
            )
            removed[kind] = len(result.removed)
            if result.removed:
                log.info(
                    "resync: %d %s deleted while a watch missed it: %s",
                    len(result.removed),
                    kind,
                    ", ".join(map(str, result.removed[:10])),
                )
            for key, obj in written:
                await self.sync_policy(key, obj.get("status"))
            policy_kind = kind in ("ClusterModelPolicy", "ModelPolicy")
            for gone in result.removed:
                # RBAC keys are (kind, namespace, name) too: only policies have a status.
                if policy_kind and isinstance(gone, tuple) and len(gone) == 3 and gone[0] == kind:
                    await self.sync_policy(gone, None)
        return removed

    async def _key_material(
        self, kind: str, objects: list[dict[str, Any]]
    ) -> dict[PolicyKey, KeySource]:
        """The keys each listed cluster policy references (read in a thread), remembered so a
        rotated key recompiles the policy (``KeyReader.run``)."""
        if kind != "ClusterModelPolicy" or self.keys is None:
            return {}
        fetcher = self.keys
        fetched = await asyncio.to_thread(
            lambda: [(policy_key(kind, obj), obj, fetcher.fetch(obj)) for obj in objects]
        )
        for key, obj, material in fetched:
            fetcher.remember(key, obj, material)
        return {key: material for key, _, material in fetched}

    def request(self, kind: str) -> None:
        """Ask for a resync of ``kind`` soon (kopf re-listed it); cheap, call it per event."""
        if kind in self.kinds and kind not in self._requested:
            self._requested.add(kind)
            self._wake.set()

    async def run(self) -> None:
        """Resync what was requested (debounced), and everything every ``interval`` seconds."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, due - loop.time()))
                await asyncio.sleep(DEBOUNCE_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()
            if loop.time() >= due:
                kinds, due = list(self.kinds), loop.time() + self.interval
            else:
                kinds = [k for k in self.kinds if k in self._requested]
            self._requested.clear()
            try:
                await self.resync(kinds)
            except Exception as exc:
                log.warning("resync of %s failed: %s (retrying soon)", ", ".join(kinds), exc)
                self._requested.update(kinds)
                due = min(due, loop.time() + min(self.interval, 5.0))

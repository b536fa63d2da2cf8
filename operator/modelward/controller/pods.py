"""The Pod watch for verifier results, without keeping anything per pod.

Only pods that declare a model (``modelward.io/model-volume``) can carry a verifier result.
kopf watched every pod and filtered on that annotation after receiving it, and kept a
``ResourceMemory`` and a worker for every pod it had seen, until the pod was deleted: memory
grew with the cluster's pods, not with the model pods. Annotations cannot be selected
server-side, so this watch still receives every pod, but it parses one list page or one watch
event at a time, keeps only the resourceVersion to resume from, and hands the model pods to
``VerificationRecorder.observe_pod`` on the event loop.

A watch that ends (server timeout, a dropped connection) resumes from the last version seen;
one the API server no longer can resume ("410 Gone") starts over with a paged list. A re-list
re-observes every model pod: ``observe_pod`` records each result once (the DeployedModel keeps
what was recorded), as it did on kopf's re-lists.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

from modelward.engine.rules.integrity import MODEL_VOLUME

log = logging.getLogger("modelward.pods")

PAGE_SIZE = 500
#: Seconds a watch request lasts before the API server ends it (and it is resumed).
WATCH_SECONDS = 300
#: Pause after an error before trying again.
RETRY_SECONDS = 2.0


class PodSource(Protocol):
    def list_pods_page(self, *, token: str | None, limit: int) -> dict[str, Any]: ...

    def watch_pods(
        self, *, resource_version: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]: ...


class Gone(Exception):
    """The watch cannot resume from that resourceVersion: list again."""


def is_model_pod(pod: Mapping[str, Any]) -> bool:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return isinstance(annotations, Mapping) and MODEL_VOLUME in annotations


class PodWatch:
    """List and watch every pod, one page or event at a time; hand model pods to ``observe``."""

    def __init__(
        self,
        *,
        source: PodSource,
        observe: Callable[[Mapping[str, Any]], Awaitable[Any]],
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.source = source
        self.observe = observe
        self.page_size = page_size
        self.listed = threading.Event()  # set once the first full list was handed over

    def _hand_over(self, pod: Mapping[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        """Record on the loop, one pod at a time (back-pressure: the watch waits for it)."""
        if is_model_pod(pod) and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._observe(pod), loop).result(timeout=120)

    async def _observe(self, pod: Mapping[str, Any]) -> None:
        try:
            await self.observe(pod)
        except Exception as exc:  # one pod's record must not stop the watch
            name = (pod.get("metadata") or {}).get("name")
            log.warning("cannot record the verifier result of pod %s: %s", name, exc)

    def list_all(self, loop: asyncio.AbstractEventLoop) -> str:
        """Every pod, page by page; the list's resourceVersion (to watch from)."""
        token: str | None = None
        version: str | None = None
        while True:
            page = self.source.list_pods_page(token=token, limit=self.page_size)
            metadata = page.get("metadata") or {}
            version = version or metadata.get("resourceVersion")
            for pod in page.get("items") or []:
                self._hand_over(pod, loop)
            token = metadata.get("continue")
            del page
            if not token:
                self.listed.set()
                return str(version or "")

    def follow(self, version: str, loop: asyncio.AbstractEventLoop) -> str:
        """One watch request from ``version``; the last version seen. Raises ``Gone``."""
        for event in self.source.watch_pods(
            resource_version=version, timeout_seconds=WATCH_SECONDS
        ):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(str(obj.get("message")))
                raise RuntimeError(f"pod watch error: {obj.get('message')}")
            version = (obj.get("metadata") or {}).get("resourceVersion") or version
            if kind in ("ADDED", "MODIFIED"):
                self._hand_over(obj, loop)
        return version

    def run_blocking(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        version: str | None = None
        while not stop.is_set():
            try:
                if version is None:
                    version = self.list_all(loop)
                version = self.follow(version, loop)
            except Gone as exc:
                log.info("pod watch expired (%s); listing again", exc)
                version = None
            except Exception as exc:
                if stop.is_set():
                    return
                log.warning("pod watch failed (%s); retrying in %.0fs", exc, RETRY_SECONDS)
                stop.wait(RETRY_SECONDS)

    async def run(self) -> None:
        """Run the watch in a daemon thread until cancelled (a watch request blocks for
        minutes; a pool thread would hold the interpreter's exit that long)."""
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def finish() -> None:
            if not ended.done():
                ended.set_result(None)

        def target() -> None:
            try:
                self.run_blocking(loop, stop)
            finally:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(finish)

        threading.Thread(target=target, name="pod-watch", daemon=True).start()
        try:
            await ended
        finally:
            stop.set()

"""The Pod watch: model pods handed over, nothing kept per pod, resumed or re-listed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from modelward.controller.pods import PodWatch
from modelward.engine.rules.integrity import MODEL_VOLUME


def pod(name: str, version: str, model: bool = True) -> dict[str, Any]:
    annotations = {MODEL_VOLUME: "models"} if model else {"other": "x"}
    return {"metadata": {"name": name, "resourceVersion": version, "annotations": annotations}}


class FakeSource:
    """Two list pages, then watch answers scripted per call; stops the watch when done."""

    def __init__(self, watches: list[list[dict[str, Any]]], stop: threading.Event) -> None:
        self.watches = watches
        self.stop = stop
        self.lists = 0
        self.watched_from: list[str] = []

    def list_pods_page(self, *, token: str | None, limit: int) -> dict[str, Any]:
        if token is None:
            self.lists += 1
            return {
                "metadata": {"resourceVersion": "10", "continue": "next"},
                "items": [pod("a", "5"), pod("plain", "6", model=False)],
            }
        return {"metadata": {"resourceVersion": "11"}, "items": [pod("b", "7")]}

    def watch_pods(
        self, *, resource_version: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        self.watched_from.append(resource_version)
        if not self.watches:
            self.stop.set()
            return
        yield from self.watches.pop(0)


async def test_model_pods_are_handed_over_and_a_gone_watch_lists_again() -> None:
    stop = threading.Event()
    source = FakeSource(
        [
            [
                {"type": "ADDED", "object": pod("c", "12")},
                {"type": "MODIFIED", "object": pod("plain", "13", model=False)},
                {"type": "DELETED", "object": pod("a", "14")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
            ],
            [{"type": "ERROR", "object": {"code": 410, "message": "too old"}}],
        ],
        stop,
    )
    seen: list[str] = []

    async def observe(obj: Mapping[str, Any]) -> None:
        seen.append(obj["metadata"]["name"])
        if obj["metadata"]["name"] == "b" and source.lists == 1:
            raise RuntimeError("one pod's failure does not stop the watch")

    watch = PodWatch(source=source, observe=observe)
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(watch.run_blocking, loop, stop)
    # Listed (a, b), watched (c; plain, deleted and bookmark not handed over), resumed from
    # the bookmark's version, gone, listed again (a, b), then resumed from the list.
    assert seen == ["a", "b", "c", "a", "b"]
    assert source.lists == 2
    assert source.watched_from == ["10", "15", "10"]
    assert watch.listed.is_set()

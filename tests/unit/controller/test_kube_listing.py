"""The start-up listing keeps only what facts are built from, one page at a time."""

from __future__ import annotations

from typing import Any

from modelward.controller.kube import LAST_APPLIED, KubeApi


class PagedKube(KubeApi):
    """KubeApi whose list calls answer from three pages of namespaces."""

    def __init__(self) -> None:  # no API client: only ``_json`` is used
        stub = type("Stub", (), {"__getattr__": lambda self, name: lambda **_: None})()
        self.core = self.custom = self.networking = self.rbac = self.storage = stub
        self.calls: list[dict[str, Any]] = []

    def _json(self, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        page = len(self.calls)
        items = [
            {
                "metadata": {
                    "name": f"ns-{page}-{i}",
                    "labels": {"team": "ml"},
                    "annotations": {LAST_APPLIED: "{...}" * 1000, "linkerd.io/inject": "enabled"},
                    "managedFields": [{"manager": "kubectl"}] * 10,
                }
            }
            for i in range(2)
        ]
        metadata = {"resourceVersion": f"{100 + page}"}
        if page < 3:
            metadata["continue"] = f"token-{page}"
        return {"metadata": metadata, "items": items}


def test_listed_objects_drop_managed_fields_and_the_last_applied_copy() -> None:
    kube = PagedKube()
    items, version = kube.list_kind("Namespace", page_size=2)
    assert version == "101"  # the first page's version: one consistent snapshot
    assert [c.get("_continue") for c in kube.calls] == [None, "token-1", "token-2"]
    assert len(items) == 6
    for item in items:
        assert item["metadata"]["labels"] == {"team": "ml"}
        assert item["metadata"]["annotations"] == {"linkerd.io/inject": "enabled"}
        assert "managedFields" not in item["metadata"]

"""Remedies to targeted JSONPatch operations.

Only the fields a remedy sets are touched (never a whole-object diff). A missing parent is
created with one ``add`` of the nested value; the pod spec is copied lazily, and only the parts
a remedy writes into, so that admitting a clean object costs no copy and patching a large one
costs little.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from modelward.engine.decision import Remedy
from modelward.engine.workloads import Workload, json_pointer

JsonPatch = list[dict[str, Any]]


def _nest(tokens: tuple[str | int, ...], value: Any) -> Any:
    for token in reversed(tokens):
        value = {str(token): value}
    return value


def _op(op: str, tokens: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """An operation with its own copy of ``value``: later remedies keep editing the working
    document, and must not reach back into operations already emitted."""
    return {"op": op, "path": json_pointer(tokens), "value": copy.deepcopy(value)}


def _own(owned: dict[int, Any], parent: Any, token: str | int, child: Any) -> Any:
    """``parent[token]`` as the working document's own copy, made the first time it is needed.

    ``owned`` maps the id of every copy to the copy, which keeps it alive (so ids stay unique).
    """
    if id(child) in owned:
        return child
    if isinstance(child, Mapping):
        mine: Any = dict(child)
    elif isinstance(child, list):
        mine = list(child)
    else:
        return child
    parent[token] = mine
    owned[id(mine)] = mine
    return mine


def remedies_to_json_patch(workload: Workload, remedies: Iterable[Remedy]) -> JsonPatch:
    """JSONPatch operations (relative to the whole object) applying ``remedies`` in order.

    Remedies that are already satisfied (or repeated by several policies) produce nothing.
    """
    remedies = list(remedies)
    if not remedies:
        return []
    # The working document shares the object's dicts and lists until a remedy writes into one:
    # only what lies on a remedy's path is copied, shallowly (a deep copy of a large pod spec
    # cost more than evaluating every rule on it).
    doc: dict[str, Any] = {"spec": workload.pod_spec}
    if workload.template_metadata is not None:
        doc["metadata"] = workload.template_metadata
    owned: dict[int, Any] = {id(doc): doc}
    prefix: tuple[str | int, ...] = workload.template_pointer
    ops: JsonPatch = []
    for remedy in remedies:
        tokens = (remedy.scope, *remedy.path)
        if remedy.remove:
            ops.extend(_remove_named(doc, owned, prefix, tokens, remedy.value))
            continue
        parent: Any = doc
        for depth, token in enumerate(tokens[:-1]):
            child = parent.get(token) if isinstance(parent, Mapping) else parent[token]
            if child is None:
                value = _nest(
                    tokens[depth + 1 :], [remedy.value] if remedy.append else remedy.value
                )
                parent[token] = value
                ops.append(_op("add", (*prefix, *tokens[: depth + 1]), value))
                break
            parent = _own(owned, parent, token, child)
        else:
            last = tokens[-1]
            existing = parent.get(last) if isinstance(parent, Mapping) else parent[last]
            if remedy.append:
                if existing is None:
                    parent[last] = [remedy.value]
                    ops.append(_op("add", (*prefix, *tokens), [remedy.value]))
                elif remedy.value not in existing:
                    _own(owned, parent, last, existing).append(remedy.value)
                    ops.append(_op("add", (*prefix, *tokens, "-"), remedy.value))
            elif existing != remedy.value:
                op = "add" if isinstance(parent, Mapping) and last not in parent else "replace"
                parent[last] = remedy.value
                ops.append(_op(op, (*prefix, *tokens), remedy.value))
    return ops


def _remove_named(
    doc: dict[str, Any],
    owned: dict[int, Any],
    prefix: tuple[str | int, ...],
    tokens: tuple[str | int, ...],
    name: str,
) -> JsonPatch:
    """``remove`` operations for the items named ``name`` of the list at ``tokens``, computed
    on the working document so that the indexes hold when the operations apply in order."""
    parent: Any = doc
    for token in tokens[:-1]:
        child = parent.get(token) if isinstance(parent, Mapping) else parent[token]
        if child is None:
            return []
        parent = _own(owned, parent, token, child)
    last = tokens[-1]
    items = parent.get(last) if isinstance(parent, Mapping) else parent[last]
    if not isinstance(items, list):
        return []
    matches = [
        i for i, item in enumerate(items) if isinstance(item, Mapping) and item.get("name") == name
    ]
    if not matches:
        return []
    items = _own(owned, parent, last, items)
    ops: JsonPatch = []
    for index in reversed(matches):  # the highest first: the lower indexes stay valid
        del items[index]
        ops.append({"op": "remove", "path": json_pointer((*prefix, *tokens, index))})
    return ops

"""Exact comparison of what modelward injected with what the API server stored.

The verifier init container and its keys volume must be exactly what a policy injects, both
for the webhook (a verifier with an added ``command`` or ``env`` is not the verifier, whatever
its image and arguments) and for the operator (which believes only that verifier's result).
The API server adds a few defaults to a stored object; those, with the values it may add, are
the only differences allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

#: Fields the API server adds to a stored container or volume, with the values it may add;
#: every other field the injected object does not set makes it a different one.
API_DEFAULTS: Final[Mapping[str, tuple[object, ...]]] = {
    "terminationMessagePath": ("/dev/termination-log",),
    "imagePullPolicy": ("Always", "IfNotPresent", "Never"),
    "apiVersion": ("v1",),  # fieldRef in the keys volume
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def differs(actual: Any, expected: Any, *, where: str) -> str | None:
    """Why ``actual`` is not exactly ``expected`` (API-server defaults aside), or None."""
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return f"{where} is not an object"
        for key, value in expected.items():
            if key not in actual:
                return f"{where}.{key} is missing"
            problem = differs(actual[key], value, where=f"{where}.{key}")
            if problem:
                return problem
        for key in sorted(set(actual) - set(expected), key=str):
            value = actual[key]
            if value is not None and value not in API_DEFAULTS.get(str(key), ()):
                return f"{where}.{key} is set to {_short(value)}; the injected verifier has none"
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return f"{where} is {_short(actual)}, not the {len(expected)} items injected"
        for index, (a, b) in enumerate(zip(actual, expected, strict=True)):
            problem = differs(a, b, where=f"{where}[{index}]")
            if problem:
                return problem
        return None
    if type(actual) is not type(expected) or actual != expected:
        return f"{where} is {_short(actual)}, the policy injects {_short(expected)}"
    return None

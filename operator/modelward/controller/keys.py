"""Trusted keys a ClusterModelPolicy references: read from modelward's own namespace only.

A cluster policy's signer given as a ConfigMap or Secret key must not be read from the pod's
namespace, where the pod's author could replace it. The operator reads it from its own
namespace (RBAC: ``get`` on configmaps and secrets there, nowhere else), hands it to
``parse_policy`` and the verifier receives it like an inline key. References are re-read
periodically, so that a rotated key reaches new pods without editing the policy.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from modelward.controller.kube import KubeApi
from modelward.engine.policy import KeyReference, StaticKeySource, key_references

log = logging.getLogger("modelward.keys")

PolicyKey = tuple[str, str | None, str]


class KeyReader:
    def __init__(self, *, kube: KubeApi, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        #: Cluster policies that reference keys, and the values they were compiled with.
        self.referencing: dict[PolicyKey, tuple[Mapping[str, Any], StaticKeySource]] = {}

    def _read(self, ref: KeyReference) -> str | None:
        """One referenced PEM (blocking: call from a thread); None if absent or unreadable."""
        try:
            if ref.kind == "ConfigMap":
                obj = self.kube.read_config_map(self.namespace, ref.name)
                value = ((obj or {}).get("data") or {}).get(ref.key)
                return str(value) if value is not None else None
            obj = self.kube.read_secret(self.namespace, ref.name)
            encoded = ((obj or {}).get("data") or {}).get(ref.key)
            return base64.b64decode(encoded).decode() if encoded is not None else None
        except (binascii.Error, UnicodeDecodeError):
            log.warning("%s is not a base64 text PEM", ref)
            return None
        except Exception as exc:
            log.warning("cannot read %s: %s", ref, exc)
            return None

    def fetch(self, obj: Mapping[str, Any]) -> StaticKeySource:
        """Every key ``obj`` references in modelward's namespace (blocking: call from a thread).

        References into any other namespace are never read: ``parse_policy`` refuses them.
        """
        values = {}
        for ref in key_references(obj):
            if ref.namespace != self.namespace:
                continue
            pem = self._read(ref)
            if pem is not None:
                values[(ref.kind, self.namespace, ref.name, ref.key)] = pem
        return StaticKeySource(self.namespace, values)

    def remember(self, key: PolicyKey, obj: Mapping[str, Any], keys: StaticKeySource) -> None:
        if key[0] == "ClusterModelPolicy" and key_references(obj):
            self.referencing[key] = (obj, keys)
        else:
            self.referencing.pop(key, None)

    async def run(
        self,
        reobserve: Callable[[PolicyKey, Mapping[str, Any], StaticKeySource], Awaitable[None]],
        *,
        interval: float = 60.0,
    ) -> None:
        """Re-read referenced keys periodically; recompile a policy whose keys changed."""
        while True:
            await asyncio.sleep(interval)
            for key, (obj, before) in list(self.referencing.items()):
                after = await asyncio.to_thread(self.fetch, obj)
                if after.values != before.values and self.referencing.get(key, (None,))[0] is obj:
                    self.referencing[key] = (obj, after)
                    await reobserve(key, obj, after)

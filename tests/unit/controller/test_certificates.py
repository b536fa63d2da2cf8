"""The CA rollover order: at every moment, every replica serves a certificate the caBundle trusts.

Two ``CertificateManager``s share an in-memory API (one Secret, one webhook configuration);
the clock is stepped by hand, so nothing here depends on wall-clock speed.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from kubernetes.client.exceptions import ApiException

from modelward.controller.certificates import (
    CertificateConfig,
    CertificateManager,
    plan_material,
)

NS, SECRET, HOOKS = "modelward-system", "modelward-tls", "modelward"
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)  # certificates are issued from now
SWITCH, RETIRE = dt.timedelta(seconds=30), dt.timedelta(seconds=60)


class FakeApi:
    """A Secret and a webhook configuration with resourceVersions, as the API server keeps them."""

    def __init__(self) -> None:
        self.secret: dict[str, Any] | None = None
        self.version = 0
        self.hooks = {
            kind: {
                "metadata": {"name": HOOKS, "resourceVersion": "1"},
                "webhooks": [{"name": "validate.modelward.io", "clientConfig": {}}],
            }
            for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
        }

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.secret)

    def _store(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.secret = copy.deepcopy(dict(body))
        self.secret["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.secret)

    def create_secret(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if self.secret is not None:
            raise ApiException(status=409)
        return self._store(body)

    def replace_secret(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        assert self.secret is not None
        if body["metadata"].get("resourceVersion") != self.secret["metadata"]["resourceVersion"]:
            raise ApiException(status=409)
        return self._store(body)

    def read_webhook_configuration(self, kind: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.hooks[kind])

    def patch_webhook_configuration(
        self, kind: str, name: str, patch: Sequence[Mapping[str, Any]]
    ) -> None:
        for op in patch:
            if op["op"] == "add":
                index = int(op["path"].split("/")[2])
                self.hooks[kind]["webhooks"][index]["clientConfig"]["caBundle"] = op["value"]

    def watch_secret(
        self, namespace: str, name: str, *, timeout_seconds: int
    ) -> Iterator[tuple[str, str | None]]:
        return iter(())

    def trusted(self) -> list[x509.Certificate]:
        """The CAs the API server trusts right now (the validating webhook's caBundle)."""
        bundle = self.hooks["ValidatingWebhookConfiguration"]["webhooks"][0]["clientConfig"]
        return x509.load_pem_x509_certificates(base64.b64decode(bundle["caBundle"]))


def _config(folder: Path) -> CertificateConfig:
    folder.mkdir(parents=True, exist_ok=True)
    return CertificateConfig(
        namespace=NS,
        secret_name=SECRET,
        service_name="modelward",
        webhook_configurations=(HOOKS,),
        cert_file=folder / "tls.crt",
        key_file=folder / "tls.key",
        switch_delay=SWITCH,
        retire_delay=RETIRE,
    )


def _served(manager: CertificateManager) -> x509.Certificate:
    return x509.load_pem_x509_certificate(manager.config.cert_file.read_bytes())


def _trusted_by(leaf: x509.Certificate, cas: list[x509.Certificate]) -> bool:
    for ca in cas:
        try:
            leaf.verify_directly_issued_by(ca)
        except Exception:
            continue
        return True
    return False


def test_deleting_the_secret_rolls_the_ca_over_without_an_untrusted_moment(
    tmp_path: Path,
) -> None:
    api = FakeApi()
    replicas = [CertificateManager(kube=api, config=_config(tmp_path / f"r{i}")) for i in range(2)]
    for replica in replicas:
        replica.check(T0)
    old_ca = api.trusted()
    assert len(old_ca) == 1

    api.secret = None  # someone deletes the Secret (to rotate a leaked CA key, say)
    timeline = [T0 + dt.timedelta(seconds=s) for s in range(1, 120, 3)]
    first = True
    for now in timeline:
        # Replica 0 follows the Secret at once; replica 1 is a step behind every time.
        for replica in replicas if first else reversed(replicas):
            replica.check(now)
            for other in replicas:
                served = _served(other)
                assert _trusted_by(served, api.trusted()), (
                    f"at +{(now - T0).seconds}s a replica serves {served.issuer.rfc4514_string()}"
                    " which the caBundle does not trust"
                )
        first = False

    new_ca = api.trusted()
    assert len(new_ca) == 1 and new_ca[0] != old_ca[0], "the previous CA must be retired"
    for replica in replicas:
        assert _trusted_by(_served(replica), new_ca)
    assert api.secret is not None and "next.crt" not in api.secret["data"]


def test_the_new_ca_is_trusted_before_it_is_served(tmp_path: Path) -> None:
    api = FakeApi()
    manager = CertificateManager(kube=api, config=_config(tmp_path))
    manager.check(T0)
    old_leaf = _served(manager)
    api.secret = None
    result = manager.check(T0 + dt.timedelta(seconds=1))
    assert result.secret_action == "created"
    assert len(api.trusted()) == 2  # new and old CA
    assert _served(manager) == old_leaf  # still the old certificate
    assert result.next_change == T0 + dt.timedelta(seconds=1) + SWITCH
    manager.check(T0 + dt.timedelta(seconds=1) + SWITCH)
    new_ca = api.trusted()[0]
    assert _trusted_by(_served(manager), [new_ca]) and not _trusted_by(old_leaf, [new_ca])
    assert len(api.trusted()) == 2  # the old CA stays until every replica switched
    manager.check(T0 + dt.timedelta(seconds=1) + SWITCH + RETIRE)
    assert len(api.trusted()) == 1


def test_a_fresh_install_serves_the_new_certificate_at_once(tmp_path: Path) -> None:
    material, reason = plan_material(None, _config(tmp_path), T0)
    assert reason == "the Secret does not exist"
    assert material.next is None and material.served(T0) == material.serving
    material.serving.certificate.verify_directly_issued_by(material.ca.certificate)


def test_a_carried_certificate_must_outlive_the_rollover(tmp_path: Path) -> None:
    """A previous certificate that expires before the old CA is retired is not carried."""
    config = _config(tmp_path)
    first, _ = plan_material(None, config, T0)
    material, _ = plan_material(None, config, T0, previous=first)
    assert material.next is not None and material.serving == first.serving
    material, _ = plan_material(None, config, T0 + dt.timedelta(days=366), previous=first)
    assert material.next is None  # the old certificate has expired: serve the new one now


class WatchedApi(FakeApi):
    """A FakeApi whose Secret watch reports one deletion, then nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.watches = 0

    def watch_secret(
        self, namespace: str, name: str, *, timeout_seconds: int
    ) -> Iterator[tuple[str, str | None]]:
        self.watches += 1
        if self.watches == 1:
            yield "DELETED", None


async def test_every_replica_follows_the_secret_through_its_watch(tmp_path: Path) -> None:
    """With a 6-hour check interval, a deleted Secret is handled as soon as the watch says so."""
    api = WatchedApi()
    manager = CertificateManager(kube=api, config=_config(tmp_path))
    first = manager.check()
    api.secret = None
    reloads: list[bool] = []
    manager.on_files_written = lambda: reloads.append(True)
    tasks = [
        asyncio.create_task(manager.run(interval=6 * 3600, first=first)),
        asyncio.create_task(manager.follow_secret()),
    ]
    try:
        for _ in range(500):  # bounded: the wake-up itself takes milliseconds
            if api.secret is not None:
                break
            await asyncio.sleep(0.02)
    finally:
        for task in tasks:
            task.cancel()
    assert api.secret is not None, "the deletion was not followed before the periodic check"
    assert len(api.trusted()) == 2  # the rollover started: old and new CA trusted

"""The webhook's serving certificate, created and rotated by the operator itself.

The Helm chart's default (``certificates.mode: operator``): no cert-manager, no manual step, no
Helm hook. Each replica, before it serves HTTPS, whenever the Secret changes (it watches it)
and every few hours:

1. makes sure a Secret in its namespace holds a self-signed CA (10 years) and a serving
   certificate it signed (1 year) for the Service's DNS names, issuing a new serving
   certificate from the same CA when the current one expires within 30 days, does not match
   its key or lacks a name;
2. writes the CA bundle into the ``caBundle`` of every webhook of the named webhook
   configurations, when it differs;
3. writes the serving certificate and key to the files it serves from, and reloads the live
   SSL context at once (new handshakes use the new certificate).

A new CA (the old one runs out, or the Secret was deleted) is rolled over in an order under
which the API server trusts every certificate any replica serves, at every moment:

- *add*: the new CA goes into the bundle beside the old one, and the Secret carries the old
  serving certificate (still served) and the new one (``next.crt``) with two instants: when to
  switch and when to retire the old CA;
- *switch* (``--certificate-switch-delay`` later, once every API server has loaded the new
  bundle): every replica serves ``next.crt`` (each follows the Secret through its watch and a
  timer, not the 6-hour check);
- *retire* (``--certificate-retire-delay`` after the switch, once every replica switched): the
  first replica to get there rewrites the Secret with the new CA alone, and the caBundle last.

When the Secret is deleted, the replica that re-creates it carries over the CA bundle and
serving certificate it last saw, so that the rollover above applies; with nothing to carry
(a fresh install) it serves the new certificate at once.

Two replicas may race at every step; each write is conditional (create fails with 409 when the
Secret exists, update and patch carry the resourceVersion they read), and the loser re-reads
and adopts what the winner wrote, so both end up serving the same certificate.

The Kubernetes calls go through ``CertificateApi`` (``KubeApi`` implements it); the decisions
are pure functions of the Secret's content, what the replica saw last, and the clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes.client.exceptions import ApiException

from modelward.certs import KeyPair, create_ca, issue_certificate
from modelward.settings import Settings

log = logging.getLogger("modelward.certificates")

#: Keys of the Secret. ``ca.crt`` is a bundle: the current CA first, then older CAs that are
#: still valid (kept after a CA renewal so that certificates they signed stay trusted).
CA_CERT_KEY = "ca.crt"
CA_KEY_KEY = "ca.key"
CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"
#: During a CA rollover: the serving certificate from the new CA, served from SWITCH_AT on.
NEXT_CERT_KEY = "next.crt"
NEXT_KEY_KEY = "next.key"
SWITCH_AT = "modelward.io/serving-certificate-switch-at"
RETIRE_AT = "modelward.io/previous-ca-retire-at"
EXPIRES = "modelward.io/serving-certificate-expires"
MANAGED_BY = "modelward"
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
#: Attempts at settling a write lost to another replica before giving up until the next check.
MAX_ATTEMPTS = 5
#: Retry delay after a failed check, or while a webhook configuration does not exist yet.
RETRY_SECONDS = 30.0


class CertificateError(Exception):
    """The certificate could not be settled (after retries); the message says why."""


class CertificateApi(Protocol):
    """The Kubernetes calls certificate management needs (``KubeApi`` implements them).

    Reads return the object as JSON, or None when it does not exist; writes raise
    ``ApiException`` (409 when another writer got there first, 422 when a patch's test failed).
    """

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create_secret(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    def replace_secret(
        self, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    def read_webhook_configuration(self, kind: str, name: str) -> dict[str, Any] | None: ...

    def patch_webhook_configuration(
        self, kind: str, name: str, patch: Sequence[Mapping[str, Any]]
    ) -> None: ...

    def watch_secret(
        self, namespace: str, name: str, *, timeout_seconds: int
    ) -> Iterator[tuple[str, str | None]]:
        """(event type, resourceVersion) of the named Secret, until the server ends the watch."""
        ...


@dataclass(frozen=True, kw_only=True)
class CertificateConfig:
    """What to manage: built from ``Settings`` at start-up."""

    namespace: str
    secret_name: str
    service_name: str
    webhook_configurations: tuple[str, ...]
    cert_file: Path
    key_file: Path
    #: Names the serving certificate carries besides the Service's (DNS names or IPs).
    extra_sans: tuple[str, ...] = ()
    renew_before: dt.timedelta = dt.timedelta(days=30)
    ca_valid_days: int = 3650
    leaf_valid_days: int = 365
    #: A CA rollover's two waits (see the module doc).
    switch_delay: dt.timedelta = dt.timedelta(seconds=30)
    retire_delay: dt.timedelta = dt.timedelta(seconds=60)

    @classmethod
    def from_settings(cls, settings: Settings) -> CertificateConfig:
        return cls(
            namespace=settings.namespace,
            secret_name=settings.certificate_secret,
            service_name=settings.service_name,
            webhook_configurations=settings.webhook_configurations,
            cert_file=settings.tls_cert_file,
            key_file=settings.tls_key_file,
            extra_sans=settings.certificate_sans,
            switch_delay=dt.timedelta(seconds=settings.certificate_switch_delay),
            retire_delay=dt.timedelta(seconds=settings.certificate_retire_delay),
        )

    @property
    def dns_names(self) -> tuple[str, ...]:
        """The names the API server may dial: ``<svc>``, ``<svc>.<ns>``, ``.svc``, FQDN."""
        svc, ns = self.service_name, self.namespace
        names = (svc, f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local")
        return names + tuple(n for n in self.extra_sans if not _is_ip(n))

    @property
    def ip_addresses(self) -> tuple[str, ...]:
        return tuple(n for n in self.extra_sans if _is_ip(n))


@dataclass(frozen=True)
class ServingMaterial:
    """The CA (with its key), the CA bundle to trust and the serving certificate(s).

    Outside a rollover ``serving`` is served. During one, ``serving`` (the previous CA's) is
    served until ``switch_at`` and ``next`` (the new CA's) from then on; the bundle trusts both
    CAs until ``retire_at``.
    """

    ca: KeyPair
    ca_bundle: bytes
    serving: KeyPair
    next: KeyPair | None = None
    switch_at: dt.datetime | None = None
    retire_at: dt.datetime | None = None

    def served(self, now: dt.datetime) -> KeyPair:
        """The certificate to serve at ``now``."""
        if self.next is not None and self.switch_at is not None and now >= self.switch_at:
            return self.next
        return self.serving

    def next_change(self, now: dt.datetime) -> dt.datetime | None:
        """The next instant at which what is served or trusted changes (a timer's deadline)."""
        future = [t for t in (self.switch_at, self.retire_at) if t is not None and t > now]
        return min(future) if future else None

    def secret_data(self) -> dict[str, str]:
        raw = {
            CA_CERT_KEY: self.ca_bundle,
            CA_KEY_KEY: self.ca.key_pem,
            CERT_KEY: self.serving.cert_pem,
            KEY_KEY: self.serving.key_pem,
        }
        if self.next is not None:
            raw[NEXT_CERT_KEY] = self.next.cert_pem
            raw[NEXT_KEY_KEY] = self.next.key_pem
        return {key: base64.b64encode(value).decode("ascii") for key, value in raw.items()}

    def annotations(self) -> dict[str, str | None]:
        """The Secret's annotations for this material (None: remove the annotation)."""
        expires = (self.next or self.serving).not_after
        return {
            EXPIRES: _stamp(expires),
            SWITCH_AT: _stamp(self.switch_at) if self.switch_at else None,
            RETIRE_AT: _stamp(self.retire_at) if self.retire_at else None,
        }


@dataclass
class CheckResult:
    """What one check did, for logs and for the decision to retry early."""

    secret_action: str = "unchanged"
    files_written: bool = False
    patched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    #: When the next check must run whatever happens (a rollover's switch or retirement).
    next_change: dt.datetime | None = None


# --- pure decisions --------------------------------------------------------------------------


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _public_bytes(key: Any) -> bytes:
    data: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def _load_pair(cert_pem: bytes, key_pem: bytes) -> KeyPair | None:
    """The pair, or None when either part is missing, unreadable or they do not belong together."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return None
    if _public_bytes(cert.public_key()) != _public_bytes(key.public_key()):
        return None
    return KeyPair(cert_pem, key_pem)


def _first_pem(bundle: bytes) -> bytes:
    marker = b"-----END CERTIFICATE-----"
    end = bundle.find(marker)
    return bundle[: end + len(marker)] + b"\n" if end >= 0 else b""


def _bundle(ca: KeyPair, previous: bytes, now: dt.datetime) -> bytes:
    """The current CA first, then every other still-valid CA of ``previous``."""
    current = ca.certificate
    parts = [ca.cert_pem.strip() + b"\n"]
    try:
        older = x509.load_pem_x509_certificates(previous) if previous.strip() else []
    except ValueError:
        older = []
    for cert in older:
        if cert == current or cert.not_valid_after_utc <= now:
            continue
        parts.append(cert.public_bytes(serialization.Encoding.PEM))
    return b"".join(parts)


def _decoded(secret: Mapping[str, Any] | None) -> dict[str, bytes]:
    data = (secret or {}).get("data") or {}
    decoded = {}
    for key, value in data.items():
        try:
            decoded[key] = base64.b64decode(value)
        except (ValueError, TypeError):
            decoded[key] = b""
    return decoded


def _leaf_problem(
    serving: KeyPair | None, ca: KeyPair, config: CertificateConfig, now: dt.datetime
) -> str | None:
    """Why the serving certificate must be re-issued, or None when it is good."""
    if serving is None:
        return "the serving certificate is missing, unreadable or does not match its key"
    cert = serving.certificate
    try:
        cert.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return "the serving certificate was not issued by the current CA"
    if cert.not_valid_after_utc - now <= config.renew_before:
        return f"the serving certificate expires on {cert.not_valid_after_utc:%Y-%m-%d}"
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "the serving certificate has no subject alternative names"
    dns = set(sans.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    missing = (set(config.dns_names) - dns) | (set(config.ip_addresses) - ips)
    if missing:
        return f"the serving certificate lacks the names {', '.join(sorted(missing))}"
    return None


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_stamp(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _issued_by_any(leaf: KeyPair, bundle: bytes, now: dt.datetime) -> bool:
    """Whether a still-valid CA of ``bundle`` signed ``leaf`` (so a client trusting it would)."""
    try:
        cas = x509.load_pem_x509_certificates(bundle) if bundle.strip() else []
    except ValueError:
        return False
    for ca in cas:
        if ca.not_valid_after_utc <= now:
            continue
        try:
            leaf.certificate.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _carried_leaf(
    leaf: KeyPair | None, bundle: bytes, config: CertificateConfig, until: dt.datetime
) -> KeyPair | None:
    """The previous serving certificate, if it can keep serving until ``until``."""
    if leaf is None or leaf.not_after <= until or not _issued_by_any(leaf, bundle, until):
        return None
    return leaf


def _rollover(
    stored: Mapping[str, bytes], annotations: Mapping[str, Any], ca: KeyPair
) -> tuple[KeyPair, dt.datetime, dt.datetime] | None:
    """The rollover the Secret describes (next certificate, switch, retire), if it is sound."""
    pending = _load_pair(stored.get(NEXT_CERT_KEY, b""), stored.get(NEXT_KEY_KEY, b""))
    switch_at = _parse_stamp(annotations.get(SWITCH_AT))
    retire_at = _parse_stamp(annotations.get(RETIRE_AT))
    if pending is None or switch_at is None or retire_at is None:
        return None
    try:
        pending.certificate.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return None
    return pending, switch_at, retire_at


def plan_material(
    secret: Mapping[str, Any] | None,
    config: CertificateConfig,
    now: dt.datetime,
    previous: ServingMaterial | None = None,
) -> tuple[ServingMaterial, str | None]:
    """The material the Secret should hold, and why it must be written (None: it is right).

    Keeps whatever is still good: the CA unless it is unreadable or would expire before a
    certificate issued now; the serving certificate unless ``_leaf_problem`` objects. A new CA
    starts a rollover (see the module doc) when a previous serving certificate can keep
    serving meanwhile: the Secret's, or, when the Secret is gone, ``previous`` (what this
    replica saw last).
    """
    stored = _decoded(secret)
    annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    bundle = stored.get(CA_CERT_KEY, b"")
    ca = _load_pair(_first_pem(bundle), stored.get(CA_KEY_KEY, b""))
    reasons = []
    horizon = dt.timedelta(days=config.leaf_valid_days) + config.renew_before
    if ca is not None and not isinstance(
        serialization.load_pem_private_key(ca.key_pem, password=None), ec.EllipticCurvePrivateKey
    ):
        ca = None  # issue_certificate signs with EC keys only (modelward.certs)
    serving = _load_pair(stored.get(CERT_KEY, b""), stored.get(KEY_KEY, b""))

    if ca is not None and ca.not_after - now > horizon:
        rollover = _rollover(stored, annotations, ca)
        if rollover is not None:
            pending, switch_at, retire_at = rollover
            if now < retire_at and serving is not None and _issued_by_any(serving, bundle, now):
                return ServingMaterial(ca, bundle, serving, pending, switch_at, retire_at), None
            # Every replica serves the new certificate by now: the previous CA leaves.
            return ServingMaterial(ca, ca.cert_pem.strip() + b"\n", pending), (
                "the CA rollover is complete: the previous CA leaves the bundle"
            )

    if ca is None:
        reasons.append("no usable CA" if secret is not None else "the Secret does not exist")
    elif ca.not_after - now <= horizon:
        reasons.append(f"the CA expires on {ca.not_after:%Y-%m-%d}")
    if reasons:
        new_ca = create_ca(common_name=f"{config.service_name}-ca", valid_days=config.ca_valid_days)
        new_leaf = _issue(new_ca, config)
        old_bundle, old_leaf = bundle, serving
        if secret is None and previous is not None:
            old_bundle, old_leaf = previous.ca_bundle, previous.served(now)
        switch_at = now + config.switch_delay
        retire_at = switch_at + config.retire_delay
        carried = _carried_leaf(old_leaf, old_bundle, config, retire_at)
        if carried is None:  # nothing trusted is being served: nothing to keep trusting
            return ServingMaterial(new_ca, new_ca.cert_pem.strip() + b"\n", new_leaf), reasons[0]
        material = ServingMaterial(
            new_ca, _bundle(new_ca, old_bundle, now), carried, new_leaf, switch_at, retire_at
        )
        return material, f"{reasons[0]}; a new CA is trusted now and served from {switch_at}"

    assert ca is not None
    new_bundle = _bundle(ca, bundle, now)
    problem = _leaf_problem(serving, ca, config, now)
    if problem is not None or serving is None:
        reasons.append(problem or "the serving certificate is missing")
        serving = _issue(ca, config)
    elif any(key in stored for key in (NEXT_CERT_KEY, NEXT_KEY_KEY)):
        reasons.append("a broken CA rollover was abandoned")
    if not reasons and new_bundle != bundle:
        reasons.append("the CA bundle holds an expired CA")
    return ServingMaterial(ca=ca, ca_bundle=new_bundle, serving=serving), (
        "; ".join(reasons) if reasons else None
    )


def _issue(ca: KeyPair, config: CertificateConfig) -> KeyPair:
    return issue_certificate(
        ca,
        common_name=config.dns_names[2],
        dns_names=config.dns_names,
        ip_addresses=config.ip_addresses,
        valid_days=config.leaf_valid_days,
    )


# --- the manager ---------------------------------------------------------------------------


class CertificateManager:
    """Keeps the Secret, the served files and the webhooks' caBundle in agreement."""

    def __init__(
        self,
        *,
        kube: CertificateApi,
        config: CertificateConfig,
        on_files_written: Callable[[], object] | None = None,
    ) -> None:
        self.kube = kube
        self.config = config
        #: Called on the event loop after new files were written: reload the live SSL context.
        self.on_files_written = on_files_written
        #: What this replica saw last: carried over if the Secret is deleted (see plan_material).
        self.last: ServingMaterial | None = None
        self._wake: asyncio.Event | None = None

    def _secret_body(
        self, material: ServingMaterial, current: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        if current is None:
            metadata: dict[str, Any] = {
                "name": self.config.secret_name,
                "namespace": self.config.namespace,
                "labels": {
                    "app.kubernetes.io/managed-by": MANAGED_BY,
                    "app.kubernetes.io/component": "webhook-certificate",
                },
            }
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/tls",
            }
        else:
            body = {k: v for k, v in current.items() if k not in ("data", "stringData")}
            metadata = {k: v for k, v in current["metadata"].items() if k != "managedFields"}
        annotations = dict(metadata.get("annotations") or {})
        for key, value in material.annotations().items():
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value
        metadata["annotations"] = annotations
        body["metadata"] = metadata
        body["data"] = material.secret_data()
        return body

    def ensure_secret(self, now: dt.datetime | None = None) -> tuple[ServingMaterial, str]:
        """The material in the Secret, created or renewed first if needed (race-safe).

        Returns the material and what was done ("created", "renewed: <why>", "unchanged",
        or "adopted" when another replica's write won).
        """
        ns, name = self.config.namespace, self.config.secret_name
        lost = False
        for _ in range(MAX_ATTEMPTS):
            current = self.kube.read_secret(ns, name)
            material, reason = plan_material(current, self.config, now or _now(), self.last)
            if reason is None:
                self.last = material
                return material, "adopted" if lost else "unchanged"
            body = self._secret_body(material, current)
            try:
                if current is None:
                    self.kube.create_secret(ns, body)
                    log.info("created the certificate Secret %s/%s: %s", ns, name, reason)
                    self.last = material
                    return material, "created"
                self.kube.replace_secret(ns, name, body)
                self.last = material
            except ApiException as exc:
                if exc.status == 409:  # another replica wrote first: use what it wrote
                    lost = True
                    continue
                raise
            log.info("renewed the certificate Secret %s/%s: %s", ns, name, reason)
            return material, f"renewed: {reason}"
        raise CertificateError(
            f"the Secret {ns}/{name} kept changing under {MAX_ATTEMPTS} attempts to settle it"
        )

    def write_files(self, material: ServingMaterial, now: dt.datetime | None = None) -> bool:
        """Write the certificate to serve now and its key where the HTTPS server reads them,
        if changed."""
        changed = False
        served = material.served(now or _now())
        # The key first: ReloadingTLS reloads when either changes, and a reload that sees a
        # new key with the old certificate fails and is retried, keeping the old context.
        for path, content, mode in (
            (self.config.key_file, served.key_pem, 0o600),
            (self.config.cert_file, served.cert_pem, 0o644),
        ):
            try:
                if path.read_bytes() == content:
                    continue
            except FileNotFoundError:
                pass
            _write_atomically(path, content, mode)
            changed = True
        if changed:
            log.info(
                "serving certificate written to %s (expires %s)",
                self.config.cert_file,
                served.not_after,
            )
        return changed

    def sync_ca_bundles(self, ca_bundle: bytes) -> tuple[list[str], list[str]]:
        """Patch the caBundle of every webhook of the named configurations where it differs.

        Returns (patched, missing) as "Kind/name". Each patch tests the resourceVersion it
        read, so a concurrent change (``helm upgrade``) makes it fail and it is redone on the
        fresh object.
        """
        wanted = base64.b64encode(ca_bundle).decode("ascii")
        patched: list[str] = []
        missing: list[str] = []
        for name in self.config.webhook_configurations:
            for kind in WEBHOOK_KINDS:
                for _ in range(MAX_ATTEMPTS):
                    current = self.kube.read_webhook_configuration(kind, name)
                    if current is None:
                        missing.append(f"{kind}/{name}")
                        break
                    ops = _ca_bundle_patch(current, wanted)
                    if not ops:
                        break
                    try:
                        self.kube.patch_webhook_configuration(kind, name, ops)
                    except ApiException as exc:
                        if exc.status in (409, 422):
                            continue
                        raise
                    patched.append(f"{kind}/{name}")
                    log.info("wrote the CA bundle into %s/%s", kind, name)
                    break
                else:
                    raise CertificateError(
                        f"{kind}/{name} kept changing under {MAX_ATTEMPTS} attempts to patch it"
                    )
        return patched, missing

    def check(self, now: dt.datetime | None = None) -> CheckResult:
        """One full pass: the Secret, the caBundles, the files. Blocking (run it in a thread).

        The caBundle before the files: a certificate from a new CA is never served before the
        API server was told to trust that CA (if the patch fails, the old one keeps serving).
        """
        now = now or _now()
        material, action = self.ensure_secret(now)
        result = CheckResult(secret_action=action, next_change=material.next_change(now))
        result.patched, result.missing = self.sync_ca_bundles(material.ca_bundle)
        result.files_written = self.write_files(material, now)
        if result.missing:
            log.warning(
                "webhook configurations not found (yet): %s; their caBundle will be written "
                "at the next check",
                ", ".join(result.missing),
            )
        return result

    async def _check(self) -> CheckResult:
        result = await asyncio.to_thread(self.check)
        if result.files_written and self.on_files_written is not None:
            self.on_files_written()
        return result

    async def ensure_at_start(self) -> CheckResult:
        """Settle the certificate before HTTPS starts, retrying until the API server allows it."""
        delay = 1.0
        while True:
            try:
                return await self._check()
            except Exception as exc:
                log.warning(
                    "cannot set up the serving certificate yet (%s); retrying in %.0fs",
                    _describe(exc),
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_SECONDS)

    def wake(self) -> None:
        """Check now (the Secret changed); safe to call from the loop only."""
        if self._wake is not None:
            self._wake.set()

    async def run(self, *, interval: float, first: CheckResult | None = None) -> None:
        """Re-check whenever the Secret changes (``follow_secret``), at a rollover's switch and
        retirement, and every ``interval`` seconds (sooner after a failure or while a webhook
        configuration is missing), so renewal and caBundle repair need no manual step."""
        self._wake = asyncio.Event()
        result = first
        retry = 1.0
        while True:
            delay = interval
            if result is None or result.missing:
                delay, retry = min(interval, retry), min(retry * 2, RETRY_SECONDS)
            else:
                retry = 1.0
            if result is not None and result.next_change is not None:
                until = (result.next_change - _now()).total_seconds()
                delay = min(delay, max(0.0, until) + 0.05)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()
            try:
                result = await self._check()
            except Exception as exc:
                log.error("certificate check failed: %s (retrying soon)", _describe(exc))
                result = None

    async def follow_secret(self) -> None:
        """Wake ``run`` whenever the Secret changes, so every replica follows a rollover (or a
        deleted Secret) within a second instead of at its next periodic check.

        The watch runs in a daemon thread (the Kubernetes client blocks), which ends with the
        process; events reach the loop through ``call_soon_threadsafe``.
        """
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=self._watch_forever, args=(loop,), name="certificate-secret-watch", daemon=True
        ).start()
        await loop.create_future()  # runs until cancelled; the thread ends with the process

    def _watch_forever(self, loop: asyncio.AbstractEventLoop) -> None:
        seen: str | None = None
        delay = 1.0
        pause = threading.Event()  # never set: an interruptible sleep
        while not loop.is_closed():
            started = time.monotonic()
            try:
                for event, version in self.kube.watch_secret(
                    self.config.namespace, self.config.secret_name, timeout_seconds=300
                ):
                    delay = 1.0
                    if version != seen or event == "DELETED":
                        seen = version
                        loop.call_soon_threadsafe(self.wake)
                if time.monotonic() - started < 1.0:  # ended at once: do not spin
                    pause.wait(1.0)
            except RuntimeError:  # the loop closed: the process is stopping
                return
            except Exception as exc:
                log.warning(
                    "watching the certificate Secret failed: %s (retrying in %.0fs)",
                    _describe(exc),
                    delay,
                )
                pause.wait(delay)
                delay = min(delay * 2, RETRY_SECONDS)


def _ca_bundle_patch(configuration: Mapping[str, Any], wanted: str) -> list[dict[str, Any]]:
    """JSON Patch operations setting ``caBundle`` on every webhook that lacks ``wanted``."""
    ops: list[dict[str, Any]] = []
    for index, webhook in enumerate(configuration.get("webhooks") or []):
        if (webhook.get("clientConfig") or {}).get("caBundle") == wanted:
            continue
        ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook["name"]})
        ops.append(
            {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": wanted}
        )
    if ops:
        version = configuration["metadata"]["resourceVersion"]
        ops.insert(0, {"op": "test", "path": "/metadata/resourceVersion", "value": version})
    return ops


def _write_atomically(path: Path, content: bytes, mode: int) -> None:
    """Replace ``path`` in one step, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(content)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _describe(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)

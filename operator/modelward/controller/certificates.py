"""The webhook's serving certificate, created and rotated by the operator itself.

The Helm chart's default (``certificates.mode: operator``): no cert-manager, no manual step, no
Helm hook. Each replica, before it serves HTTPS and then every few hours:

1. makes sure a Secret in its namespace holds a self-signed CA (10 years) and a serving
   certificate it signed (1 year) for the Service's DNS names, issuing a new serving
   certificate from the same CA when the current one expires within 30 days, does not match
   its key or lacks a name (a new CA only when the CA itself runs out, with the previous CA
   kept in the bundle until it expires so that certificates it signed stay trusted);
2. writes the serving certificate and key to the files it serves from (``ReloadingTLS`` picks
   up changes);
3. writes the CA bundle into the ``caBundle`` of every webhook of the named webhook
   configurations, when it differs.

Two replicas may race at every step; each write is conditional (create fails with 409 when the
Secret exists, update and patch carry the resourceVersion they read), and the loser re-reads
and adopts what the winner wrote, so both end up serving the same certificate.

The Kubernetes calls go through ``CertificateApi`` (``KubeApi`` implements it); the decisions
are pure functions of the Secret's content and the clock.
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
from collections.abc import Mapping, Sequence
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
    """The CA (with its key), the CA bundle to trust and the serving certificate."""

    ca: KeyPair
    ca_bundle: bytes
    serving: KeyPair

    def secret_data(self) -> dict[str, str]:
        raw = {
            CA_CERT_KEY: self.ca_bundle,
            CA_KEY_KEY: self.ca.key_pem,
            CERT_KEY: self.serving.cert_pem,
            KEY_KEY: self.serving.key_pem,
        }
        return {key: base64.b64encode(value).decode("ascii") for key, value in raw.items()}


@dataclass
class CheckResult:
    """What one check did, for logs and for the decision to retry early."""

    secret_action: str = "unchanged"
    files_written: bool = False
    patched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


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


def plan_material(
    secret: Mapping[str, Any] | None, config: CertificateConfig, now: dt.datetime
) -> tuple[ServingMaterial, str | None]:
    """The material the Secret should hold, and why it must be written (None: it is right).

    Keeps whatever is still good: the CA unless it is unreadable or would expire before a
    certificate issued now; the serving certificate unless ``_leaf_problem`` objects.
    """
    stored = _decoded(secret)
    bundle = stored.get(CA_CERT_KEY, b"")
    ca = _load_pair(_first_pem(bundle), stored.get(CA_KEY_KEY, b""))
    reasons = []
    horizon = dt.timedelta(days=config.leaf_valid_days) + config.renew_before
    if ca is not None and not isinstance(
        serialization.load_pem_private_key(ca.key_pem, password=None), ec.EllipticCurvePrivateKey
    ):
        ca = None  # issue_certificate signs with EC keys only (modelward.certs)
    if ca is None:
        reasons.append("no usable CA" if secret is not None else "the Secret does not exist")
        ca = create_ca(common_name=f"{config.service_name}-ca", valid_days=config.ca_valid_days)
    elif ca.not_after - now <= horizon:
        reasons.append(f"the CA expires on {ca.not_after:%Y-%m-%d}")
        ca = create_ca(common_name=f"{config.service_name}-ca", valid_days=config.ca_valid_days)
    new_bundle = _bundle(ca, bundle, now)
    serving = _load_pair(stored.get(CERT_KEY, b""), stored.get(KEY_KEY, b""))
    problem = _leaf_problem(serving, ca, config, now)
    if problem is not None or serving is None:
        if not reasons:
            reasons.append(problem or "the serving certificate is missing")
        serving = issue_certificate(
            ca,
            common_name=config.dns_names[2],
            dns_names=config.dns_names,
            ip_addresses=config.ip_addresses,
            valid_days=config.leaf_valid_days,
        )
    if not reasons and new_bundle != bundle:
        reasons.append("the CA bundle holds an expired CA")
    return ServingMaterial(ca=ca, ca_bundle=new_bundle, serving=serving), (
        "; ".join(reasons) if reasons else None
    )


# --- the manager ---------------------------------------------------------------------------


class CertificateManager:
    """Keeps the Secret, the served files and the webhooks' caBundle in agreement."""

    def __init__(self, *, kube: CertificateApi, config: CertificateConfig) -> None:
        self.kube = kube
        self.config = config

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
        annotations["modelward.io/serving-certificate-expires"] = (
            material.serving.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
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
            material, reason = plan_material(current, self.config, now or _now())
            if reason is None:
                return material, "adopted" if lost else "unchanged"
            body = self._secret_body(material, current)
            try:
                if current is None:
                    self.kube.create_secret(ns, body)
                    log.info("created the certificate Secret %s/%s", ns, name)
                    return material, "created"
                self.kube.replace_secret(ns, name, body)
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

    def write_files(self, material: ServingMaterial) -> bool:
        """Write the serving certificate and key where the HTTPS server reads them, if changed."""
        changed = False
        # The key first: ReloadingTLS reloads when either changes, and a reload that sees a
        # new key with the old certificate fails and is retried, keeping the old context.
        for path, content, mode in (
            (self.config.key_file, material.serving.key_pem, 0o600),
            (self.config.cert_file, material.serving.cert_pem, 0o644),
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
                material.serving.not_after,
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
        """One full pass: the Secret, the files, the caBundles. Blocking (run it in a thread)."""
        material, action = self.ensure_secret(now)
        result = CheckResult(secret_action=action)
        result.files_written = self.write_files(material)
        result.patched, result.missing = self.sync_ca_bundles(material.ca_bundle)
        if result.missing:
            log.warning(
                "webhook configurations not found (yet): %s; their caBundle will be written "
                "at the next check",
                ", ".join(result.missing),
            )
        return result

    async def ensure_at_start(self) -> CheckResult:
        """Settle the certificate before HTTPS starts, retrying until the API server allows it."""
        delay = 1.0
        while True:
            try:
                return await asyncio.to_thread(self.check)
            except Exception as exc:
                log.warning(
                    "cannot set up the serving certificate yet (%s); retrying in %.0fs",
                    _describe(exc),
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_SECONDS)

    async def run(self, *, interval: float, first: CheckResult | None = None) -> None:
        """Re-check every ``interval`` seconds (sooner after a failure or a missing
        configuration), so renewal and caBundle repair need no manual step."""
        retry_soon = first is not None and bool(first.missing)
        while True:
            await asyncio.sleep(min(interval, RETRY_SECONDS) if retry_soon else interval)
            try:
                result = await asyncio.to_thread(self.check)
                retry_soon = bool(result.missing)
            except Exception as exc:
                log.error("certificate check failed: %s (retrying soon)", _describe(exc))
                retry_soon = True


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

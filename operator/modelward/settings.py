"""One validated settings object, built once at start-up from flags and environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modelward.errors import ConfigurationError

#: TLS versions the webhook port may require as its minimum (--tls-min-version).
TLS_VERSIONS = ("1.2", "1.3")


@dataclass(frozen=True, kw_only=True)
class Settings:
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8443
    tls_cert_file: Path = Path("/etc/modelward/tls/tls.crt")
    tls_key_file: Path = Path("/etc/modelward/tls/tls.key")
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8080
    namespace: str = "modelward-system"
    #: Each review's whole budget (body read and evaluation); past it the review is denied.
    #: Keep it well below the webhook's timeoutSeconds (the chart sets 5).
    deadline_seconds: float = 2.5
    #: Threads that evaluate reviews, and reviews that may wait for one; beyond both a review
    #: is denied at once (overloaded) instead of queueing.
    review_workers: int = 4
    review_queue: int = 16
    #: Per-review bounds (admission/intake.py): AdmissionReview bytes per object, containers.
    max_object_bytes: int = 3 * 1024 * 1024
    max_containers: int = 100
    #: Open connections to the webhook port (TLS handshakes included); more are closed at once.
    max_connections: int = 256
    #: A connection must deliver a complete request header within this long of opening or of
    #: its previous response (idle keep-alive included), and finish its TLS handshake within
    #: ``tls_handshake_timeout``.
    idle_timeout: float = 5.0
    tls_handshake_timeout: float = 5.0
    #: With a CA here, the webhook port requires a client certificate it signed (the API
    #: server's, from its AdmissionConfiguration); without, anyone who reaches the port can send
    #: reviews (the chart's NetworkPolicy narrows who can).
    client_ca_file: Path | None = None
    #: Lowest TLS version the webhook port accepts ("1.2" or "1.3"): 1.3 where every API
    #: server of the cluster speaks it and a compliance baseline asks for it.
    tls_min_version: str = "1.2"
    events: bool = True
    #: Events per second across the process, and the burst allowed above it.
    event_rate: float = 10.0
    event_burst: int = 50
    pod_name: str = os.environ.get("POD_NAME", "modelward")
    #: Seconds between background audits of existing pods; 0 turns the audit off.
    audit_interval: float = 300.0
    #: The Lease (in ``namespace``) that picks the replica doing cluster-wide background work.
    leader_lease: str = "modelward-leader"
    log_level: str = "INFO"
    log_format: str = "text"
    #: Operator-managed serving certificate (the Helm chart's certificates.mode=operator):
    #: a self-signed CA and serving certificate in ``certificate_secret``, written to the
    #: tls files, their CA written into the named webhook configurations' caBundle.
    manage_certificates: bool = False
    certificate_secret: str = "modelward-tls"
    service_name: str = "modelward"
    webhook_configurations: tuple[str, ...] = ()
    #: Configuration pair whose fail-open webhooks are narrowed to what policies select
    #: (controller/scope.py); None leaves every webhook as registered.
    scope_webhook_configuration: str | None = None
    #: False: keep (restore) the chart's scope in that configuration instead of narrowing it.
    scope_to_policies: bool = True
    certificate_sans: tuple[str, ...] = ()
    certificate_check_interval: float = 6 * 3600.0
    #: A new CA goes into the caBundle this long before any replica serves a certificate it
    #: signed (time for every API server to load the new bundle) ...
    certificate_switch_delay: float = 30.0
    #: ... and the previous CA leaves the caBundle this long after that switch (time for
    #: every replica to load the new serving certificate).
    certificate_retire_delay: float = 60.0
    #: Seconds between full re-lists of the watched kinds (deletions a broken watch missed).
    state_resync_interval: float = 60.0
    #: The longest a ModelPolicyException applies, from its creation (the chart's
    #: exceptions.maxLifetimeDays); the CRD caps it at 365 days whatever this says.
    exception_max_lifetime: float = 90 * 86400.0
    #: Registry look-ups (docs/images.md): the whole look-up of a review, below --deadline.
    registry_lookup_deadline: float = 1.5
    registry_platform: str = "linux/amd64"
    registry_ca_bundles: tuple[Path, ...] = ()
    #: A dockerconfigjson with the operator's own registry credentials (used last).
    registry_config: Path | None = None
    #: Read the pod's and its ServiceAccount's imagePullSecrets (needs RBAC get on Secrets).
    registry_pull_secrets: bool = False

    def validate(self) -> Settings:
        """Fail at start-up with a message naming the setting, never later on a request."""
        for name in ("webhook_port", "metrics_port"):
            port = getattr(self, name)
            if not 0 < port < 65536:
                raise ConfigurationError(
                    f"{name} {port} is not a TCP port", fix="use a port between 1 and 65535"
                )
        if self.webhook_port == self.metrics_port and self.webhook_host == self.metrics_host:
            raise ConfigurationError(
                "the webhook and metrics ports are the same", fix="give --metrics-port another port"
            )
        for name in ("tls_cert_file", "tls_key_file"):
            path: Path = getattr(self, name)
            if self.manage_certificates:
                if not (path.parent.is_dir() and os.access(path.parent, os.W_OK)):
                    raise ConfigurationError(
                        f"{name.replace('_', '-')} {path}: its folder is not writable",
                        fix="--manage-certificates writes the serving certificate there: mount "
                        "a writable emptyDir (the Helm chart does)",
                    )
            elif not path.is_file():
                raise ConfigurationError(
                    f"{name.replace('_', '-')} {path} does not exist",
                    fix="mount the webhook's serving certificate (the Helm chart does) or pass "
                    "--tls-cert-file/--tls-key-file",
                )
        if self.manage_certificates and not (
            self.certificate_secret and self.certificate_check_interval > 0
        ):
            raise ConfigurationError(
                "--manage-certificates needs a Secret name and a positive check interval",
                fix="pass --certificate-secret NAME and --certificate-check-interval SECONDS",
            )
        if self.certificate_switch_delay < 0 or self.certificate_retire_delay < 0:
            raise ConfigurationError(
                "certificate switch and retire delays cannot be negative",
                fix="pass --certificate-switch-delay/--certificate-retire-delay SECONDS >= 0",
            )
        if not 1 <= self.state_resync_interval <= 86400:
            raise ConfigurationError(
                f"state resync interval {self.state_resync_interval}s is out of range",
                fix="use --state-resync-interval between 1 and 86400 seconds (60 by default)",
            )
        if not 0.1 <= self.deadline_seconds <= 29:
            raise ConfigurationError(
                f"deadline {self.deadline_seconds}s is out of range",
                fix="use 0.1-29 seconds, below the webhook timeoutSeconds",
            )
        if not 0.05 <= self.registry_lookup_deadline < self.deadline_seconds:
            raise ConfigurationError(
                f"registry look-up deadline {self.registry_lookup_deadline}s is not below the "
                f"review deadline {self.deadline_seconds}s",
                fix="use --registry-lookup-deadline below --deadline (leave time to evaluate)",
            )
        if self.registry_platform.count("/") not in (1, 2):
            raise ConfigurationError(
                f"registry platform {self.registry_platform!r} is not os/arch[/variant]",
                fix="use e.g. --registry-platform linux/amd64",
            )
        for name, low, high in (
            ("review_workers", 1, 64),
            ("review_queue", 0, 10_000),
            ("max_connections", 1, 100_000),
            ("max_containers", 1, 10_000),
            ("max_object_bytes", 64 * 1024, 8 * 1024 * 1024),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigurationError(
                    f"{name.replace('_', '-')} {value} is out of range",
                    fix=f"use {low}-{high}",
                )
        for name in ("idle_timeout", "tls_handshake_timeout"):
            if not 0.1 <= getattr(self, name) <= 300:
                raise ConfigurationError(
                    f"{name.replace('_', '-')} {getattr(self, name)}s is out of range",
                    fix="use 0.1-300 seconds (a few seconds: connections that send nothing "
                    "are closed after it)",
                )
        if self.tls_min_version not in TLS_VERSIONS:
            raise ConfigurationError(
                f"tls-min-version {self.tls_min_version!r} is not supported",
                fix=f"use one of {', '.join(TLS_VERSIONS)}",
            )
        if self.client_ca_file is not None and not self.client_ca_file.is_file():
            raise ConfigurationError(
                f"client-ca-file {self.client_ca_file} does not exist",
                fix="mount the CA that signed the API server's webhook client certificate, or "
                "drop --client-ca-file",
            )
        if self.audit_interval and self.audit_interval < 10:
            raise ConfigurationError(
                f"audit interval {self.audit_interval}s is too short",
                fix="use 0 (off) or at least 10 seconds",
            )
        if not 60 <= self.exception_max_lifetime <= 365 * 86400:
            raise ConfigurationError(
                f"exception max lifetime {self.exception_max_lifetime}s is out of range",
                fix="use --exception-max-lifetime between 60 seconds and 365 days (31536000)",
            )
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigurationError(
                f"log level {self.log_level!r} is unknown", fix="use DEBUG, INFO, WARNING or ERROR"
            )
        return self

"""The ``modelward`` command: run the operator, check manifests, verify and scan models."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from modelward import __version__
from modelward.console import discard_output, emit
from modelward.errors import ModelwardError

EXIT_UNUSABLE = 2

EPILOG = """\
examples:
  modelward run --tls-cert-file tls.crt --tls-key-file tls.key
  modelward check -f deploy/ --policy policies/ --output json
  modelward crds --write

exit codes (every command):
  0  success: nothing denied, verified, clean
  1  something denied, rejected or unsafe (the findings are printed)
  2  unusable input: a file, signature, key, kubeconfig or cluster that cannot be read or
     judged (one line on stderr names it and the fix), or an internal error
  130 interrupted (Ctrl-C)
A closed output pipe (`modelward check ... | head`) is not an error: the exit code is still
the verdict.
docs: README.md, docs/policies.md, docs/rules.md
"""


#: Optional format checkers ``import jsonschema`` loads when they are installed (a test or
#: CI environment often has them: ``jsonschema[format]``). modelward validates policies
#: without a format checker, so the long-running process never calls them; rfc3987_syntax
#: alone builds a lark grammar at import (seconds of start-up, megabytes held for good).
UNUSED_FORMAT_CHECKERS = (
    "rfc3987_syntax",
    "rfc3987",
    "webcolors",
    "uri_template",
    "isoduration",
    "fqdn",
    "rfc3339_validator",
    "rfc3986_validator",
)


def skip_unused_format_checkers() -> None:
    """Make ``import jsonschema`` skip the format checkers modelward never uses.

    jsonschema imports each optional checker under ``suppress(ImportError)``; a ``None`` in
    ``sys.modules`` makes that import fail at once. Called by ``run`` only, before anything
    imports jsonschema; modules already imported are left alone.
    """
    for name in UNUSED_FORMAT_CHECKERS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def _run(args: argparse.Namespace) -> int:
    skip_unused_format_checkers()
    from modelward.observability.logging import configure_logging
    from modelward.run import serve
    from modelward.settings import Settings

    settings = Settings(
        webhook_host=args.webhook_host,
        webhook_port=args.webhook_port,
        tls_cert_file=Path(args.tls_cert_file),
        tls_key_file=Path(args.tls_key_file),
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        namespace=args.namespace,
        deadline_seconds=args.deadline,
        events=not args.no_events,
        audit_interval=args.audit_interval,
        leader_lease=args.leader_lease,
        log_level=args.log_level,
        log_format=args.log_format,
        manage_certificates=args.manage_certificates,
        certificate_secret=args.certificate_secret,
        service_name=args.service_name,
        webhook_configurations=tuple(args.webhook_configuration),
        scope_webhook_configuration=args.scope_webhook_configuration,
        scope_to_policies=args.scope_to_policies,
        certificate_sans=tuple(args.certificate_san),
        certificate_check_interval=args.certificate_check_interval,
        review_workers=args.review_workers,
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
        max_object_bytes=args.max_object_bytes,
        max_containers=args.max_containers,
        client_ca_file=Path(args.client_ca_file) if args.client_ca_file else None,
        certificate_switch_delay=args.certificate_switch_delay,
        certificate_retire_delay=args.certificate_retire_delay,
        state_resync_interval=args.state_resync_interval,
    ).validate()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    asyncio.run(serve(settings))
    return 0


def _check(args: argparse.Namespace) -> int:
    from modelward.check import check, load_policies, render_json, render_text

    policies = load_policies(args.policy)
    results, judged = check(args.filename, policies)
    emit(render_json(results, judged) if args.output == "json" else render_text(results, judged))
    return 1 if any(r.action == "deny" for r in results) else 0


def _inventory(args: argparse.Namespace) -> int:
    from modelward.inventory import (
        fetch_deployed_models,
        render_cyclonedx,
        render_json,
        render_text,
    )

    items = fetch_deployed_models(args.namespace)
    render = {"json": render_json, "cyclonedx": render_cyclonedx, "text": render_text}
    emit(render[args.output](items))
    return 0


def _crds(args: argparse.Namespace) -> int:
    from modelward.api.manifests import render_crd_files, write_crds

    if args.write:
        for path in write_crds(Path(args.repo_root)):
            emit(f"wrote {path}")
    else:
        emit("---\n".join(render_crd_files().values()).rstrip("\n"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelward",
        description="Admission controller and operator protecting AI model-serving workloads "
        "(AIUC-1 B008).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"modelward {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run the operator and the admission webhooks",
        description="Watch policies, namespaces, NetworkPolicies and Services (kopf), serve "
        "/validate and /mutate over HTTPS and /healthz, /readyz, /metrics over HTTP. Uses the "
        "in-cluster service account, or KUBECONFIG outside a cluster.",
    )
    run.add_argument(
        "--webhook-host", default="0.0.0.0", help="address of the HTTPS webhook server"
    )
    run.add_argument(
        "--webhook-port", type=int, default=8443, help="port of the HTTPS webhook server"
    )
    run.add_argument(
        "--tls-cert-file",
        default="/etc/modelward/tls/tls.crt",
        help="serving certificate (PEM); reloaded when the file changes",
    )
    run.add_argument(
        "--tls-key-file",
        default="/etc/modelward/tls/tls.key",
        help="serving certificate's private key (PEM)",
    )
    run.add_argument(
        "--metrics-host", default="0.0.0.0", help="address of the health/metrics server"
    )
    run.add_argument(
        "--metrics-port", type=int, default=8080, help="port of the health/metrics server"
    )
    run.add_argument("--namespace", default="modelward-system", help="modelward's own namespace")
    run.add_argument(
        "--deadline",
        type=float,
        default=2.5,
        help="budget per review in seconds, body read and evaluation; past it the review is "
        "denied (keep it below the webhook timeoutSeconds)",
    )
    run.add_argument(
        "--review-workers",
        type=int,
        default=4,
        help="threads evaluating reviews; 16 more reviews may wait for one, further ones are "
        "denied at once as overloaded",
    )
    run.add_argument(
        "--max-connections",
        type=int,
        default=256,
        help="open connections to the webhook port; more are closed at once",
    )
    run.add_argument(
        "--idle-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="close a webhook connection that has not sent a complete request header within "
        "this long of opening or of its last response (also the TLS handshake deadline)",
    )
    run.add_argument(
        "--max-object-bytes",
        type=int,
        default=3 * 1024 * 1024,
        help="AdmissionReview bytes per object judged; larger objects are denied",
    )
    run.add_argument(
        "--max-containers",
        type=int,
        default=100,
        help="containers (init and ephemeral included) per object judged; more are denied",
    )
    run.add_argument(
        "--client-ca-file",
        default=None,
        metavar="PEM",
        help="require a client certificate signed by this CA on the webhook port (the API "
        "server's, configured in its AdmissionConfiguration); see docs/security.md",
    )
    run.add_argument("--no-events", action="store_true", help="do not post Kubernetes Events")
    run.add_argument(
        "--leader-lease",
        default="modelward-leader",
        metavar="NAME",
        help="Lease in --namespace electing the replica that runs the audit and "
        "records verifier results (admission is served by every replica)",
    )
    run.add_argument(
        "--audit-interval",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="seconds between background audits of existing pods (PolicyReports); "
        "0 turns the audit off",
    )
    run.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    run.add_argument(
        "--manage-certificates",
        action="store_true",
        help="create and rotate the serving certificate (self-signed CA) in a Secret, write it "
        "to --tls-cert-file/--tls-key-file and keep the webhook configurations' caBundle in sync",
    )
    run.add_argument(
        "--certificate-secret",
        default="modelward-tls",
        help="Secret in --namespace holding the managed CA and serving certificate",
    )
    run.add_argument(
        "--service-name",
        default="modelward",
        help="Service the API server calls; its DNS names go into the serving certificate",
    )
    run.add_argument(
        "--webhook-configuration",
        action="append",
        default=[],
        metavar="NAME",
        help="validating and mutating webhook configuration whose caBundle is kept in sync "
        "(repeatable)",
    )
    run.add_argument(
        "--scope-webhook-configuration",
        default=None,
        metavar="NAME",
        help="narrow the fail-open webhooks of this configuration pair to the namespaces "
        "policies select, so other namespaces are never sent to modelward",
    )
    run.add_argument(
        "--no-scope-to-policies",
        dest="scope_to_policies",
        action="store_false",
        help="restore and keep the chart's scope in --scope-webhook-configuration instead of "
        "narrowing it (break-glass)",
    )
    run.add_argument(
        "--certificate-san",
        action="append",
        default=[],
        metavar="NAME",
        help="extra DNS name or IP address for the serving certificate (repeatable)",
    )
    run.add_argument(
        "--certificate-check-interval",
        type=float,
        default=21600.0,
        metavar="SECONDS",
        help="seconds between checks of the certificate's expiry and the caBundle",
    )
    run.add_argument(
        "--certificate-switch-delay",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="after a new CA is added to the caBundle, wait this long before serving a "
        "certificate it signed (every API server must load the bundle first)",
    )
    run.add_argument(
        "--certificate-retire-delay",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="after the switch to the new CA's certificate, wait this long before removing "
        "the previous CA from the caBundle (every replica must switch first)",
    )
    run.add_argument(
        "--state-resync-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds between full re-lists of policies, namespaces, NetworkPolicies and "
        "Services, which remove what a broken watch did not report as deleted",
    )
    run.set_defaults(handler=_run)

    chk = sub.add_parser(
        "check",
        help="evaluate manifests offline against policies (for CI)",
        description="Evaluate Kubernetes manifests with exactly the admission engine. Namespaces, "
        "NetworkPolicies and Services found in the manifests stand in for the cluster. Exit 0 "
        "when nothing is denied, 1 when something is, 2 for unusable input.",
        epilog="example: modelward check -f k8s/ --policy manifests/examples/policies/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chk.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        help="manifest file or folder (repeatable)",
    )
    chk.add_argument(
        "--policy", action="append", required=True, help="policy file or folder (repeatable)"
    )
    chk.add_argument("--output", "-o", choices=("text", "json"), default="text")
    chk.set_defaults(handler=_check)

    inventory = sub.add_parser(
        "inventory",
        help="export the inventory of deployed model hashes",
        description="List the DeployedModel records the operator wrote from verifier results "
        "(uses KUBECONFIG or the in-cluster service account).",
        epilog="example: modelward inventory --output cyclonedx > ml-bom.json\n\n"
        "exit codes: 0 listed, 2 no usable kubeconfig or the API server cannot be read "
        "(one line names which)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inventory.add_argument("--namespace", "-n", default=None, help="one namespace (default: all)")
    inventory.add_argument("--output", "-o", choices=("text", "json", "cyclonedx"), default="text")
    inventory.set_defaults(handler=_inventory)

    crds = sub.add_parser("crds", help="print the CRDs, or write manifests/crds and the chart's")
    crds.add_argument("--write", action="store_true", help="write the generated files")
    crds.add_argument("--repo-root", default=".", help="repository root for --write")
    crds.set_defaults(handler=_crds)

    from modelward.integrity.commands import register_commands

    register_commands(sub)
    return parser


def _error(command: str, message: str) -> int:
    emit(f"modelward {command}: error: {' '.join(message.split())}", stream=sys.stderr)
    return EXIT_UNUSABLE


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (see ``EPILOG``): never a traceback, except
    from ``run``, whose crash a supervisor should see in full."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except ModelwardError as exc:
        return _error(args.command, str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # a write that bypassed emit(); the reader left
        discard_output(sys.stdout)
        return EXIT_UNUSABLE
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _error(args.command, f"{where}{exc.strerror or exc}")
    except (MemoryError, RecursionError) as exc:
        return _error(args.command, f"input too large or too deeply nested ({type(exc).__name__})")
    except Exception as exc:
        if args.command == "run":
            raise
        return _error(
            args.command,
            f"internal error ({type(exc).__name__}: {str(exc)[:200]}); please report it with "
            "the command line that caused it",
        )
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        discard_output(sys.stdout)
    return code

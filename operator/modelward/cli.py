"""The ``modelward`` command: run the operator, check manifests, verify and scan models."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from modelward import __version__
from modelward.cliargs import (
    EXIT_UNUSABLE,
    STDIN,
    STRUCTURED,
    CommandParser,
    add_cluster_arguments,
    add_output_argument,
    render_structured,
)
from modelward.console import discard_output, emit
from modelward.errors import ManifestError, ModelwardError

EPILOG = """\
examples:
  modelward check -f deploy/ --policy policies/ -o sarif > modelward.sarif
  modelward scan model/ -o json
  modelward inventory --context prod -o yaml
  source <(modelward completion bash)

exit codes (every command):
  0  success: nothing denied, verified, clean
  1  something denied, rejected or unsafe (the findings are printed)
  2  usage or environment: a bad flag, or a file, signature, key, kubeconfig or cluster that
     cannot be read or judged (one line on stderr names it and the fix), or an internal error
  130 interrupted (Ctrl-C)
A closed output pipe (`modelward check ... | head`) is not an error: the exit code is still
the verdict.
As kubectl: -o json|yaml on every command (run logs with --log-format), - as a file argument
reads standard input, --kubeconfig/--context/-n where a cluster is read.
docs: docs/cli.md, docs/policies.md, docs/rules.md
"""


RUN_EPILOG = """\
examples:
  # in a pod (the chart's Deployment): the defaults, certificates managed by modelward
  modelward run --manage-certificates --webhook-configuration modelward

  # on a workstation against a test cluster, with your own serving certificate
  KUBECONFIG=~/.kube/test modelward run --tls-cert-file tls.crt --tls-key-file tls.key \\
      --namespace modelward-system --log-format json

exit codes: 0 stopped (SIGTERM), 2 invalid settings (one line names the setting and the fix);
a crash while serving is shown in full for the supervisor
"""

CHECK_EPILOG = """\
examples:
  modelward check -f k8s/ --policy manifests/examples/policies/
  helm template charts/app | modelward check -f - --policy policies/ -n serving
  modelward check -f k8s/ --policy policies/ -o sarif > modelward.sarif
  modelward check -f k8s/ --policy policies/ -o junit > modelward-junit.xml
  kustomize build overlays/prod | modelward check -f - --policy policies/ -o policyreport

exit codes: 0 nothing denied, 1 something denied (the findings are printed in the chosen
format), 2 unusable input (one line on stderr names the file and the fix)
"""

INVENTORY_EPILOG = """\
examples:
  modelward inventory                                  # every namespace, a table
  modelward inventory -n serving -o yaml
  modelward inventory --kubeconfig prod.kubeconfig --context prod -o cyclonedx > ml-bom.json

exit codes: 0 listed, 2 no usable kubeconfig or the API server cannot be read
(one line names which, never a traceback)
"""

CRDS_EPILOG = """\
examples:
  modelward crds | kubectl apply --server-side -f -
  modelward crds -o json | jq '.items[].metadata.name'
  modelward crds --write --repo-root .                 # after editing api/schema.py

exit codes: 0 printed or written, 2 a file cannot be written (one line names it)
"""

COMPLETION_EPILOG = """\
examples:
  source <(modelward completion bash)                  # this shell; or add it to ~/.bashrc
  modelward completion bash > /etc/bash_completion.d/modelward
  modelward completion zsh > "${fpath[1]}/_modelward"  # then: autoload -U compinit; compinit
  modelward completion fish > ~/.config/fish/completions/modelward.fish

exit codes: 0 printed, 2 unknown shell
"""


def add_registry_arguments(
    parser: argparse.ArgumentParser, *, deadline: float | None = None
) -> None:
    """Options for registry look-ups, shared by ``run`` and ``check`` (docs/images.md);
    ``deadline`` None: 60% of ``--deadline`` (``run``)."""
    parser.add_argument(
        "--registry-lookup-deadline",
        type=float,
        default=deadline,
        metavar="SECONDS",
        help="time for all registry look-ups of one review, below --deadline (default for run: "
        "60%% of --deadline); past it the image is judged by onLookupFailure",
    )
    parser.add_argument(
        "--registry-platform",
        default="linux/amd64",
        help="os/arch[/variant] chosen from multi-platform images",
    )
    parser.add_argument(
        "--registry-ca-bundle",
        action="append",
        default=[],
        metavar="PEM",
        help="extra CA bundle trusted for registries (repeatable)",
    )
    parser.add_argument(
        "--registry-config",
        default=None,
        metavar="DOCKERCONFIGJSON",
        help="registry credentials (docker config.json format), used after pull secrets",
    )


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
    import os

    skip_unused_format_checkers()
    from modelward.observability.logging import configure_logging
    from modelward.run import serve
    from modelward.settings import Settings

    if args.kubeconfig:
        if not os.path.isfile(args.kubeconfig):
            raise ManifestError(
                f"kubeconfig {args.kubeconfig}: no such file",
                fix="pass the path of an existing kubeconfig to --kubeconfig",
            )
        os.environ["KUBECONFIG"] = args.kubeconfig  # read by kopf's login and the client

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
        tls_min_version=args.tls_min_version,
        certificate_switch_delay=args.certificate_switch_delay,
        certificate_retire_delay=args.certificate_retire_delay,
        state_resync_interval=args.state_resync_interval,
        exception_max_lifetime=args.exception_max_lifetime,
        registry_lookup_deadline=(
            args.registry_lookup_deadline
            if args.registry_lookup_deadline is not None
            else round(args.deadline * 0.6, 3)
        ),
        registry_platform=args.registry_platform,
        registry_ca_bundles=tuple(Path(p) for p in args.registry_ca_bundle),
        registry_config=Path(args.registry_config) if args.registry_config else None,
        registry_pull_secrets=args.registry_pull_secrets,
    ).validate()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    asyncio.run(serve(settings))
    return 0


def _check(args: argparse.Namespace) -> int:
    from modelward.check import check_objects, load_policies, render_text, report_document
    from modelward.engine.exceptions import ExceptionError, parse_time

    manifests = [*args.filename, *args.files]
    if not manifests:
        raise ManifestError("no manifests given", fix="pass -f FILE|DIR|- (or FILE arguments)")
    if [*manifests, *args.policy].count(STDIN) > 1:
        raise ManifestError(
            "standard input (-) is named more than once",
            fix="pipe either the manifests or the policies, and pass the other as files",
        )
    try:
        now = parse_time(args.now, "--now") if args.now else None
    except ExceptionError as exc:
        raise ManifestError(str(exc), fix="pass --now as 2026-01-31T00:00:00Z") from exc
    policies = load_policies(args.policy, namespace=args.namespace)
    lookups = None
    if args.registry_lookups:
        from modelward.check_images import CheckLookups, LookupOptions

        lookups = CheckLookups(
            LookupOptions(
                deadline=args.registry_lookup_deadline,
                platform=args.registry_platform,
                ca_bundles=tuple(args.registry_ca_bundle),
                registry_config=Path(args.registry_config) if args.registry_config else None,
            )
        )
    outcome = check_objects(
        manifests,
        policies,
        namespace=args.namespace,
        now=now,
        exception_paths=[p for p in args.policy if p != STDIN],
        lookups=lookups,
    )
    results, judged = list(outcome.results), len(outcome.judged)
    if args.output == "text":
        lines = lookups.render_text() if lookups is not None else []
        emit("\n".join([*lines, render_text(results, judged)]))
    elif args.output in STRUCTURED:
        document = report_document(results, judged)
        if lookups is not None:
            document["images"] = lookups.as_json()
        emit(render_structured(document, args.output))
    else:
        from modelward.check_reports import render

        emit(render(outcome, args.output))
    return 1 if outcome.denied else 0


def _inventory(args: argparse.Namespace) -> int:
    from modelward.inventory import (
        fetch_deployed_models,
        inventory_document,
        render_cyclonedx,
        render_text,
    )

    items = fetch_deployed_models(args.namespace, kubeconfig=args.kubeconfig, context=args.context)
    if args.output == "cyclonedx":
        emit(render_cyclonedx(items))
    elif args.output in STRUCTURED:
        emit(render_structured(inventory_document(items), args.output))
    else:
        emit(render_text(items))
    return 0


ACCESS_REVIEW_EPILOG = """\
examples:
  modelward access-review -n serving
  modelward access-review -o csv > access.csv
  modelward access-review -f rbac/ -f policies/ -o json

exit codes:
  0  no subject holds a sensitive permission that no job function allows
  1  violations listed
  2  no usable kubeconfig, an unreachable or refusing cluster, or unreadable manifests
"""


def _access_review(args: argparse.Namespace) -> int:
    from modelward.access import run_access_review

    text, code = run_access_review(
        namespace=args.namespace,
        output=args.output,
        files=args.filename or (),
        kubeconfig=args.kubeconfig,
        context=args.context,
    )
    emit(text)
    return code


def _crds(args: argparse.Namespace) -> int:
    from modelward.api.manifests import render_crd_files, write_crds

    if args.write:
        written = [str(path) for path in write_crds(Path(args.repo_root))]
        if args.output == "yaml":
            emit("\n".join(f"wrote {path}" for path in written))
        else:
            emit(render_structured({"written": written}, args.output))
    elif args.output == "yaml":
        emit("---\n".join(render_crd_files().values()).rstrip("\n"))
    else:
        from modelward.safeyaml import load_all

        crds = [doc for text in render_crd_files().values() for doc in load_all(text) if doc]
        emit(render_structured({"apiVersion": "v1", "kind": "List", "items": crds}, "json"))
    return 0


def _completion(args: argparse.Namespace) -> int:
    from modelward.completion import render_completion

    emit(render_completion(build_parser(), shell=args.shell).rstrip("\n"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="modelward",
        description="Admission controller and operator protecting AI model-serving workloads "
        "(AIUC-1 B008).",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"modelward {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run the operator and the admission webhooks",
        description="Watch policies, namespaces, NetworkPolicies and Services (kopf), serve "
        "/validate and /mutate over HTTPS and /healthz, /readyz, /metrics over HTTP. Uses the "
        "in-cluster service account, or KUBECONFIG outside a cluster. Its output is its log "
        "(--log-format text|json).",
        epilog=RUN_EPILOG,
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
        "--kubeconfig",
        default=None,
        metavar="PATH",
        help="kubeconfig outside a cluster, its current context (default: $KUBECONFIG, then "
        "~/.kube/config); in a pod the service account is used",
    )
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
    add_registry_arguments(run)
    run.add_argument(
        "--registry-pull-secrets",
        action="store_true",
        help="read the pod's and its ServiceAccount's imagePullSecrets for registry look-ups "
        "(needs RBAC get on Secrets; the chart's registryLookups.pullSecrets)",
    )
    run.add_argument(
        "--tls-min-version",
        default="1.2",
        metavar="VERSION",
        help="lowest TLS version the webhook port accepts: 1.2 or 1.3 (default: %(default)s)",
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
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text for people, json (one object a line) for log pipelines",
    )
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
    run.add_argument(
        "--exception-max-lifetime",
        type=float,
        default=90 * 86400.0,
        metavar="SECONDS",
        help="the longest a ModelPolicyException may apply, from its creation (90 days by "
        "default, at most 365 days); longer ones are refused and cut at this age",
    )
    run.set_defaults(handler=_run)

    chk = sub.add_parser(
        "check",
        help="evaluate manifests offline against policies (for CI)",
        description="Evaluate Kubernetes manifests with exactly the admission engine. Namespaces, "
        "NetworkPolicies and Services found in the manifests stand in for the cluster. Exit 0 "
        "when nothing is denied, 1 when something is, 2 for unusable input.",
        epilog=CHECK_EPILOG,
    )
    chk.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="manifest files or folders, as -f (what a pre-commit hook passes)",
    )
    chk.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        help="manifest file or folder, - for standard input (repeatable)",
    )
    chk.add_argument(
        "--policy",
        action="append",
        required=True,
        help="policy file or folder, - for standard input (repeatable)",
    )
    chk.add_argument(
        "-n",
        "--namespace",
        default=None,
        metavar="NAME",
        help="namespace of namespaced objects that name none, as kubectl apply -n (an object "
        "naming another one is refused); default: 'default'",
    )
    add_output_argument(
        chk,
        choices=("text", *STRUCTURED, "policyreport", "sarif", "junit"),
        help="policyreport (wgpolicyk8s.io/v1alpha2 YAML), sarif (2.1.0) and junit (XML) are "
        "CI reports, see docs/cli.md",
    )
    chk.add_argument(
        "--now",
        default=None,
        metavar="TIME",
        help="judge ModelPolicyExceptions at this RFC 3339 time (default: now), for "
        "reproducible CI runs",
    )
    chk.add_argument(
        "--registry-lookups",
        action="store_true",
        help="look images up in their registries for the rules that need it (MW-IMG-001 "
        "pinning, 004-010); off by default, so CI needs no registry unless asked",
    )
    add_registry_arguments(chk, deadline=30.0)
    chk.set_defaults(handler=_check)

    inventory = sub.add_parser(
        "inventory",
        help="export the inventory of deployed model hashes",
        description="List the DeployedModel records the operator wrote from verifier results, "
        "reading the cluster as kubectl does (--kubeconfig, $KUBECONFIG, ~/.kube/config, or "
        "the in-cluster service account).",
        epilog=INVENTORY_EPILOG,
    )
    add_cluster_arguments(inventory, namespace_help="one namespace (default: all namespaces)")
    add_output_argument(
        inventory,
        choices=("text", *STRUCTURED, "cyclonedx"),
        help="cyclonedx is a CycloneDX 1.6 ML-BOM (JSON)",
    )
    inventory.set_defaults(handler=_inventory)

    crds = sub.add_parser(
        "crds",
        help="print the CRDs, or write manifests/crds and the chart's",
        description="Render modelward's CustomResourceDefinitions from their single source "
        "(modelward.api.schema): print them, or --write the generated files into a checkout.",
        epilog=CRDS_EPILOG,
    )
    crds.add_argument("--write", action="store_true", help="write the generated files")
    crds.add_argument("--repo-root", default=".", help="repository root for --write")
    add_output_argument(
        crds,
        choices=("yaml", "json"),
        default="yaml",
        help="yaml: the CRD documents (with --write: the files written, one a line); json: a v1 "
        "List of them (with --write: {written: [...]})",
    )
    crds.set_defaults(handler=_crds)

    review = sub.add_parser(
        "access-review",
        help="who can exec into, read the Secrets of, or rewrite model workloads",
        description="For each namespace a policy's access section protects: which subjects "
        "hold each sensitive permission, through which binding and role, and which no job "
        "function allows. Read from the cluster (as kubectl) or, with -f, from manifest files.",
        epilog=ACCESS_REVIEW_EPILOG,
    )
    add_cluster_arguments(review, namespace_help="one namespace (default: all protected ones)")
    add_output_argument(
        review,
        choices=("table", *STRUCTURED, "csv"),
        default="table",
        help="csv has one row per subject, permission and binding",
    )
    review.add_argument(
        "-f",
        "--filename",
        action="append",
        metavar="PATH",
        help="review these manifests instead of the cluster (repeatable)",
    )
    review.set_defaults(handler=_access_review)

    completion = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print a script that completes modelward's commands, options, their "
        "choices and file arguments in SHELL, as `kubectl completion` does.",
        epilog=COMPLETION_EPILOG,
    )
    completion.add_argument(
        "shell", choices=("bash", "zsh", "fish"), metavar="SHELL", help="bash, zsh or fish"
    )
    completion.set_defaults(handler=_completion)

    from modelward.evidence.commands import register_commands as register_evidence
    from modelward.integrity.commands import register_commands

    register_commands(sub)
    register_evidence(sub)
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

"""``modelward evidence``: the command line of the evidence pack."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from typing import Any

from modelward import safeyaml
from modelward.console import emit
from modelward.errors import ConfigurationError

DURATION = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

EPILOG = """\
examples:
  modelward evidence > b008.md
  modelward evidence -o html --since 90d --prometheus-url http://prometheus:9090 > b008.html
  modelward evidence -o json > b008.json && modelward evidence --check b008.json

What it reads (all read-only): ClusterModelPolicies, ModelPolicies, ModelPolicyExceptions,
DeployedModels, modelward's PolicyReports, RBAC objects (access review), kube-apiserver pods in
kube-system (authentication flags) and a SelfSubjectReview. It writes nothing.

exit codes: 0 pack written (or --check: digest matches), 1 --check: digest does not match,
2 no usable kubeconfig, an API server that cannot be read, or a bad argument
"""


def parse_duration(text: str) -> dt.timedelta:
    match = DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise ConfigurationError(
            f"--since {text!r} is not a duration",
            fix="write a positive number and one unit: 90m, 12h, 30d",
        )
    return dt.timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


def _auth_config(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        text = f.read(safeyaml.MAX_YAML_BYTES + 1)
    try:
        doc = safeyaml.load(text)
    except Exception as exc:
        raise ConfigurationError(
            f"--authentication-config {path}: not a readable YAML document ({exc})",
            fix="give the AuthenticationConfiguration file the kube-apiserver reads "
            "(--authentication-config)",
        ) from exc
    if not isinstance(doc, dict) or doc.get("kind") != "AuthenticationConfiguration":
        raise ConfigurationError(
            f"--authentication-config {path}: not an AuthenticationConfiguration",
            fix="give the file of apiVersion apiserver.config.k8s.io/v1 "
            "kind AuthenticationConfiguration",
        )
    return doc


def _check(path: str) -> int:
    from modelward.evidence.model import check_digest

    with open(path, encoding="utf-8") as f:
        try:
            pack = json.load(f)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{path}: not JSON ({exc.msg} at line {exc.lineno})",
                fix="check the JSON rendering (modelward evidence -o json)",
            ) from exc
    problem = check_digest(pack) if isinstance(pack, dict) else "not a JSON object"
    if problem is not None:
        emit(f"{path}: {problem}")
        return 1
    emit(f"{path}: sha256 {pack['sha256']} matches the content")
    return 0


def _evidence(args: argparse.Namespace) -> int:
    if args.check:
        return _check(args.check)
    from modelward.cliargs import render_structured
    from modelward.controller.kubeconfig import api_errors, load_api_client
    from modelward.evidence.collect import collect
    from modelward.evidence.kube import KubeReader
    from modelward.evidence.prometheus import counts
    from modelward.evidence.render import RENDERERS

    since = parse_duration(args.since)
    auth_config = _auth_config(args.authentication_config)
    cluster = load_api_client(kubeconfig=args.kubeconfig, context=args.context)
    reader = KubeReader(cluster.api)
    url = args.prometheus_url

    def prometheus(end: dt.datetime, period: dt.timedelta) -> Any:
        return counts(url, end, period)

    def access_review() -> Any:
        from modelward.access import review_api
        from modelward.evidence.access import access_section

        return access_section(review_api(cluster))

    with api_errors(cluster, resource="the objects the pack reads (docs/governance.md)"):
        pack = collect(
            reader,
            now=dt.datetime.now(dt.UTC),
            since=since,
            access_review=access_review,
            prometheus=prometheus if url else None,
            auth_config=auth_config,
        )
    if args.output == "yaml":
        emit(render_structured(pack, "yaml"))
    else:
        emit(RENDERERS[args.output](pack))
    return 0


def register_commands(sub: Any) -> None:
    from modelward.cliargs import add_cluster_arguments, add_output_argument

    parser = sub.add_parser(
        "evidence",
        help="render a B008 evidence pack from the cluster (Markdown, HTML, JSON)",
        description="Render, from the live cluster, the AIUC-1 B008 evidence pack: the policies "
        "that enforce each B008 activity and their modes, current violations, exceptions, the "
        "model inventory with hashes and signers, the access review, admission counters and "
        "how users authenticate. The pack carries the SHA-256 of its content and its period.",
        epilog=EPILOG,
    )
    add_output_argument(
        parser,
        choices=("markdown", "html", "json", "yaml"),
        default="markdown",
        help="html is one self-contained file, readable offline; json is the pack itself "
        "(schema: docs/examples/evidence-pack.schema.json); yaml the same as YAML",
    )
    parser.add_argument(
        "--since",
        default="30d",
        help="period the pack covers, ending now (units s, m, h, d)",
    )
    parser.add_argument(
        "--prometheus-url",
        default=None,
        help="a Prometheus that scrapes modelward: adds admission counters over the period",
    )
    parser.add_argument(
        "--authentication-config",
        default=None,
        metavar="FILE",
        help="the kube-apiserver's AuthenticationConfiguration, to show whether MFA is required",
    )
    add_cluster_arguments(parser, namespace_help=None)
    parser.add_argument(
        "--check",
        default=None,
        metavar="FILE",
        help="check the sha256 of a JSON pack against its content instead of rendering one",
    )
    parser.set_defaults(handler=_evidence)

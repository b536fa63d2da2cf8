"""Render a pack as Markdown, self-contained HTML (no external assets, no scripts) or JSON.

Both documents are built from one list of sections (``sections``: a title, an id, an optional
paragraph and a table), so a section cannot exist in one format and be missing in the other.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from modelward.evidence.model import Pack

STATUS_WORDS = {
    "enforced": "Enforced",
    "audit-only": "Audit only (reported, not blocked)",
    "not-covered": "Not covered by any ready policy",
}


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    text: str = ""
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    empty: str = "none"
    notes: tuple[str, ...] = field(default=())


def _scope(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def sections(pack: Pack) -> list[Section]:
    period = pack["period"]
    summary_rows = [
        (
            "Control",
            f"{pack['control']['framework']} {pack['control']['id']} — {pack['control']['title']}",
        ),
        ("Cluster", f"{pack['cluster']['server']} (Kubernetes {pack['cluster']['version']})"),
        ("Generated", pack["generatedAt"]),
        ("Period", f"{period['start']} to {period['end']}"),
        ("modelward", pack["modelward"]["version"]),
        *((a["title"], STATUS_WORDS[a["status"]]) for a in pack["activities"]),
        ("Current violations", str(pack["violationsTotal"])),
        ("Active exceptions", str(sum(e["state"] == "active" for e in pack["exceptions"]))),
        ("Deployed models recorded", str(len(pack["models"]))),
        ("MFA", pack["authentication"]["mfa"]),
        ("Open attestations", str(len(pack["attestations"]))),
    ]
    out = [
        Section(
            "summary",
            "Summary",
            "State sections are a snapshot at the generation time; admission counters cover "
            "the period when a Prometheus URL was given.",
            ("Item", "Value"),
            tuple(summary_rows),
        ),
    ]
    for activity in pack["activities"]:
        out.append(
            Section(
                f"activity-{activity['id']}",
                f"B008 activity: {activity['title']}",
                f"{activity['asks']} Status: {STATUS_WORDS[activity['status']]}.",
                ("Policy", "Section", "Mode", "Ready"),
                tuple(
                    (
                        f"{u['kind']} {_scope(u['namespace'], u['name'])}",
                        u["section"],
                        u["mode"],
                        "yes" if u["ready"] else "no",
                    )
                    for u in activity["policies"]
                ),
                empty="no policy enforces this activity",
            )
        )
    out.append(
        Section(
            "policies",
            "Policies and their modes",
            "",
            ("Policy", "Selects", "Mode", "Sections", "Ready"),
            tuple(
                (
                    f"{p['kind']} {_scope(p['namespace'], p['name'])}",
                    p["selects"],
                    p["mode"],
                    ", ".join(f"{s}: {m}" for s, m in sorted(p["sections"].items())) or "-",
                    "yes" if p["ready"] else f"no — {p['reason']}",
                )
                for p in pack["policies"]
            ),
            empty="no modelward policy exists in this cluster",
        )
    )
    listed = len(pack["violations"])
    out.append(
        Section(
            "violations",
            "Current violations (background audit)",
            f"{pack['violationsTotal']} result(s) in modelward's PolicyReports"
            + (f"; the first {listed} are listed" if listed < pack["violationsTotal"] else "")
            + ". 'skip' rows are waived by an exception.",
            ("Namespace", "Resource", "Policy", "Rule", "Result", "Message"),
            tuple(
                (v["namespace"], v["resource"], v["policy"], v["rule"], v["result"], v["message"])
                for v in pack["violations"]
            ),
            empty="no violation",
        )
    )
    out.append(
        Section(
            "exceptions",
            "Exceptions",
            "",
            (
                "Exception",
                "State",
                "Policy",
                "Rules",
                "Workloads",
                "Justification",
                "Approved by",
                "Ticket",
                "Expires",
            ),
            tuple(
                (
                    _scope(e["namespace"], e["name"]),
                    e["state"],
                    e["policy"],
                    ", ".join(e["rules"]),
                    e["workloads"],
                    e["justification"],
                    e["approvedBy"],
                    e["ticket"],
                    e["expiresAt"],
                )
                for e in pack["exceptions"]
            ),
            empty="no exception",
        )
    )
    out.append(
        Section(
            "models",
            "Model inventory",
            "Digests are OpenSSF Model Signing subject digests of the verified bytes.",
            ("Model", "Digest", "Signer", "Last result", "First seen", "Last seen", "Workloads"),
            tuple(
                (
                    _scope(m["namespace"], m["name"]),
                    m["digest"],
                    m["signer"],
                    m["lastResult"],
                    m["firstSeen"],
                    m["lastSeen"],
                    ", ".join(m["workloads"]),
                )
                for m in pack["models"]
            ),
            empty="no deployed model recorded",
        )
    )
    access = pack["accessReview"]
    out.append(
        Section(
            "access-review",
            "Access review",
            (
                f"{access['violations']} binding(s) grant a sensitive permission to a subject "
                "the policies do not allow."
                if access["available"]
                else f"Not available: {access['reason']}"
            ),
            ("Namespace", "Subject", "Permission", "Through", "Allowed by policy"),
            tuple(
                (
                    r["namespace"],
                    r["subject"],
                    r["permission"],
                    r["via"],
                    "yes" if r["allowed"] else "NO",
                )
                for r in access["rows"]
            ),
            empty="no subject holds a sensitive permission in a protected namespace",
        )
    )
    admissions = pack["admissions"]
    prom = admissions["prometheus"]
    prom_rows: list[tuple[str, ...]] = []
    prom_text = "No Prometheus URL was given: counters over the period are not included."
    if prom is not None:
        prom_text = (
            prom["error"]
            or f"From {prom['url']}, increase over {prom['range']} ending at the period's end."
        )
        for counter in ("requests", "violations"):
            series = prom["requests"] if counter == "requests" else prom["violations"]
            prom_rows.extend(
                (
                    counter,
                    ", ".join(f"{k}={v}" for k, v in sorted(s["labels"].items())),
                    f"{s['count']:g}",
                )
                for s in series
            )
    out.append(
        Section(
            "admissions",
            "Admission decisions",
            "Per policy, as counted by the replicas since they started (policy status); "
            "'current' is the background audit's count of pods breaking the policy now.",
            ("Policy", "Denied", "Patched", "Warned", "Current"),
            tuple(
                (
                    c["policy"],
                    str(c["denied"]),
                    str(c["patched"]),
                    str(c["warned"]),
                    str(c["current"]),
                )
                for c in admissions["policyStatus"]
            ),
            empty="no policy",
        )
    )
    out.append(
        Section(
            "admissions-period",
            "Admission decisions over the period",
            prom_text,
            ("Counter", "Labels", "Count"),
            tuple(prom_rows),
            empty="no series",
        )
    )
    auth = pack["authentication"]
    out.append(
        Section(
            "authentication",
            "Authentication and MFA",
            f"MFA: {auth['mfa']}. {auth['evidence']}",
            ("Source", "Detail"),
            tuple((m["source"], m["detail"]) for m in auth["methods"]),
            empty="nothing the API server exposes",
        )
    )
    out.append(
        Section(
            "attestations",
            "Attestations to sign off",
            "What the cluster cannot show; an accountable person signs each item.",
            ("Item", "Why it needs an attestation", "Signed by", "Date"),
            tuple(
                (a["item"], a["reason"], a["signedBy"] or "________", a["date"] or "________")
                for a in pack["attestations"]
            ),
            empty="none: everything above is shown by the cluster",
        )
    )
    out.append(
        Section(
            "integrity",
            "Integrity of this pack",
            f"SHA-256 of the pack's content: {pack['sha256']}. Check it with "
            "`modelward evidence --check pack.json` on the JSON rendering.",
        )
    )
    return out


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or " "


def markdown(pack: Pack) -> str:
    lines = [f"# B008 evidence pack — {pack['cluster']['server']}", ""]
    for s in sections(pack):
        lines += [f"## {s.title}", ""]
        if s.text:
            lines += [s.text, ""]
        if s.header:
            if not s.rows:
                lines += [f"_{s.empty}_", ""]
                continue
            lines.append("| " + " | ".join(_md_cell(h) for h in s.header) + " |")
            lines.append("|" + "---|" * len(s.header))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in s.rows]
            lines.append("")
    return "\n".join(lines)


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:80em;color:#1b1f24}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccd}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #ccd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#eef1f5}td{word-break:break-word}.empty{color:#667;font-style:italic}
code{font-family:ui-monospace,monospace}
@media print{body{margin:0}h2{break-after:avoid}}
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(pack: Pack) -> str:
    title = f"B008 evidence pack — {pack['cluster']['server']}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for s in sections(pack):
        parts.append(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>')
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        if s.header:
            parts.append(
                _table(s.header, s.rows)
                if s.rows
                else f'<p class="empty">{html.escape(s.empty)}</p>'
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def json_doc(pack: Pack) -> str:
    return json.dumps(pack, indent=2, sort_keys=True, ensure_ascii=False)


RENDERERS = {"markdown": markdown, "html": html_page, "json": json_doc}

"""The access review as the evidence pack shows it (computed by ``modelward.access``)."""

from __future__ import annotations

from modelward.access import AccessReview, subject_label
from modelward.evidence.model import AccessRow, AccessSection


def access_section(review: AccessReview) -> AccessSection:
    """The review's rows, one per subject, permission and binding, violations first;
    ``allowed`` is False for a row that breaks a policy's access section (built-in
    control-plane identities count as allowed, and say so)."""
    rows = [
        AccessRow(
            namespace=row.namespace,
            subject=subject_label(row),
            permission=f"{row.permission} ({', '.join(row.verbs)})"
            + (f" on {', '.join(row.resource_names)}" if row.resource_names else ""),
            via=f"{row.binding} -> {row.role}"
            + (
                " (built-in)"
                if row.built_in
                else f" (job function {row.job_function})"
                if row.job_function
                else ""
            ),
            allowed=not row.violates,
        )
        for row in review.rows
    ]
    # What an auditor looks for first: violations, then what job functions allow, then the
    # control plane's own identities.
    rows.sort(key=lambda r: (r["allowed"], r["via"].endswith("(built-in)")))
    if not review.policies:
        return AccessSection(
            available=False,
            reason="no policy has an access section (docs/governance.md, Access by job function)",
            rows=rows,
            violations=0,
        )
    return AccessSection(available=True, reason="", rows=rows, violations=len(review.violations))

"""The access review as the evidence pack shows it (computed by ``modelward.access``)."""

from __future__ import annotations

from typing import Any

from modelward.evidence.model import AccessSection


def access_section(api: Any) -> AccessSection:
    raise NotImplementedError  # wired to the access review at merge

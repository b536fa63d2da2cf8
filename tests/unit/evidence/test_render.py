"""Markdown, HTML and JSON renderings of one pack: same sections, escaped, self-contained."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from modelward.cli import main
from modelward.evidence.collect import collect
from modelward.evidence.model import json_schema
from modelward.evidence.render import html_page, json_doc, markdown, sections
from tests.unit.evidence.fixtures import NOW, populated

REPO_ROOT = Path(__file__).resolve().parents[3]
PACK = collect(populated(), now=NOW, since=dt.timedelta(days=30))


def test_every_section_is_in_both_documents() -> None:
    page, text = html_page(PACK), markdown(PACK)
    for section in sections(PACK):
        assert f'<section id="{section.id}">' in page
        assert f"## {section.title}" in text
    assert PACK["sha256"] in page and PACK["sha256"] in text


def test_html_is_self_contained_and_escapes_cluster_text() -> None:
    hostile = json.loads(json.dumps(PACK))
    hostile["violations"][0]["message"] = '<script src="https://evil.example/x.js"></script>'
    page = html_page(hostile)
    assert "<script" not in page
    assert "&lt;script" in page
    # no external asset: no src= or href= attribute anywhere, no @import or url() in the CSS
    assert not re.search(r"<[^>]*\b(src|href)\s*=", page)
    assert "@import" not in page and "url(" not in page


def test_markdown_tables_escape_pipes_and_newlines() -> None:
    text = markdown(PACK)
    assert "runs as root \\| really" in text
    row = next(line for line in text.splitlines() if "MW-ISO-001" in line and "llm-0" in line)
    assert row.count(" | ") == 5


def test_json_is_the_pack_and_the_committed_schema_is_current() -> None:
    assert json.loads(json_doc(PACK)) == PACK
    committed = REPO_ROOT / "docs" / "examples" / "evidence-pack.schema.json"
    assert json.loads(committed.read_text()) == json_schema(), (
        "regenerate: python -c 'import json; from modelward.evidence.model import json_schema;"
        " print(json.dumps(json_schema(), indent=2))' > docs/examples/evidence-pack.schema.json"
    )


def test_check_accepts_an_intact_pack_and_refuses_a_changed_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pack.json"
    path.write_text(json_doc(PACK))
    assert main(["evidence", "--check", str(path)]) == 0
    assert "matches" in capsys.readouterr().out
    changed = json.loads(path.read_text())
    changed["exceptions"][0]["approvedBy"] = "someone-else@example.com"
    path.write_text(json.dumps(changed))
    assert main(["evidence", "--check", str(path)]) == 1
    assert "mismatch" in capsys.readouterr().out
    path.write_text("{not json")
    assert main(["evidence", "--check", str(path)]) == 2
    assert "not JSON" in capsys.readouterr().err


@pytest.mark.parametrize("since", ["0d", "7 days", "-1h", "1w"])
def test_a_bad_period_is_a_usage_error_naming_the_fix(
    since: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evidence", f"--since={since}", "--kubeconfig", "/nonexistent"]) == 2
    assert "90m, 12h, 30d" in capsys.readouterr().err


def test_an_unreachable_cluster_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    assert main(["evidence", "--kubeconfig", str(kubeconfig)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the API server" in err

"""MW-IMG-001 pinning and MW-IMG-004..010: rules that read registry facts gathered before."""

from __future__ import annotations

from typing import Any

import pytest

from modelward.engine import evaluate_workload, workload_from_object
from modelward.engine.decision import Mode
from modelward.engine.facts import ImageFacts, ImageLookups
from modelward.engine.patches import remedies_to_json_patch
from tests.unit.engine.builders import DIGEST, apply_json_patch, compliant_pod, facts, policy

NOW = 1_800_000_000.0
DAY = 86400.0
TAGGED = "registry.example.com/serving/server:1.0"
PINNED = f"registry.example.com/serving/server@{DIGEST}"
RESOLVED = "sha256:" + "cd" * 32

EVERY_RULE = {
    "requireNonRootUser": True,
    "maxSizeMiB": 100,
    "maxLayers": 5,
    "allowedBaseImages": ["gcr.io/distroless/*"],
    "forbiddenContents": {"shells": True, "packageManagers": True},
    "maxAgeDays": 30,
}


def good(reference: str, **changes: Any) -> ImageFacts:
    values: dict[str, Any] = {
        "digest": DIGEST,
        "manifest_digest": DIGEST,
        "user": "65532:65532",
        "created": NOW - 3 * DAY,
        "compressed_size": 20 << 20,
        "layer_count": 3,
        "base_name": "gcr.io/distroless/static:nonroot",
        "forbidden_paths": (),
    }
    values.update(changes)
    return ImageFacts(reference, **values)


def judge(image: str, found: ImageFacts | None, images: dict[str, Any], mode: str = "Enforce"):
    pod = compliant_pod()
    pod["spec"]["containers"][0]["image"] = image
    lookups = ImageLookups({image: found} if found else {}, NOW)
    return evaluate_workload(
        workload_from_object(pod),
        facts(),
        (policy({"images": images}, mode=mode),),
        images=lookups,
    )


def ids(decision: Any) -> list[str]:
    return sorted(f.violation.rule_id for f in decision.findings)


def test_a_minimal_fresh_non_root_image_passes_every_rule() -> None:
    assert ids(judge(PINNED, good(PINNED), EVERY_RULE)) == []


@pytest.mark.parametrize(
    ("changes", "rule", "words"),
    [
        ({"user": ""}, "MW-IMG-004", "root (no USER set)"),
        ({"user": "root"}, "MW-IMG-004", "runs as root"),
        ({"user": "0:1000"}, "MW-IMG-004", "runs as 0:1000"),
        ({"user": "000"}, "MW-IMG-004", "runs as 000"),
        ({"compressed_size": (100 << 20) + 1}, "MW-IMG-005", "over the 100 MiB"),
        ({"layer_count": 6}, "MW-IMG-006", "6 layers"),
        ({"base_name": "docker.io/library/ubuntu:24.04"}, "MW-IMG-007", "built on docker.io"),
        ({"base_name": None}, "MW-IMG-007", "does not declare its base"),
        ({"forbidden_paths": ("bin/sh", "usr/bin/apt")}, "MW-IMG-008", "/bin/sh, /usr/bin/apt"),
        ({"created": NOW - 31 * DAY}, "MW-IMG-009", "built 31 days ago"),
        ({"created": None}, "MW-IMG-009", "does not say when"),
        ({"forbidden_paths": None, "contents_error": "too big"}, "MW-IMG-010", "too big"),
    ],
)
def test_each_rule_names_the_image_the_problem_and_the_fix(
    changes: dict[str, Any], rule: str, words: str
) -> None:
    decision = judge(PINNED, good(PINNED, **changes), EVERY_RULE)
    assert ids(decision) == [rule]
    violation = decision.findings[0].violation
    assert PINNED in violation.message and words in violation.message
    assert violation.fix and violation.container == 'container "server"'
    assert decision.denials


def test_a_failed_look_up_denies_by_default_and_warns_when_told() -> None:
    failed = ImageFacts(PINNED, error="registry unreachable")
    denied = judge(PINNED, failed, EVERY_RULE)
    assert ids(denied) == ["MW-IMG-010"] and denied.denials
    assert "registry unreachable" in denied.findings[0].violation.message
    warned = judge(PINNED, failed, {**EVERY_RULE, "onLookupFailure": "Warn"})
    assert ids(warned) == ["MW-IMG-010"] and not warned.denials and warned.warnings
    assert warned.findings[0].mode is Mode.AUDIT
    # An image missing from the look-ups is not taken as compliant either.
    assert ids(judge(PINNED, None, EVERY_RULE)) == ["MW-IMG-010"]


def test_rules_needing_look_ups_are_silent_without_them_and_off_when_unset() -> None:
    pod = compliant_pod()
    pod["spec"]["containers"][0]["image"] = PINNED
    without = evaluate_workload(
        workload_from_object(pod), facts(), (policy({"images": EVERY_RULE}),)
    )
    assert ids(without) == []
    bad = good(PINNED, user="root", layer_count=99, forbidden_paths=("bin/sh",))
    assert ids(judge(PINNED, bad, {"requireDigest": True})) == []


def test_patch_mode_pins_the_resolved_digest_and_the_result_passes() -> None:
    found = good(TAGGED, digest=RESOLVED)
    decision = judge(TAGGED, found, {"requireDigest": True}, mode="Patch")
    assert ids(decision) == ["MW-IMG-001"] and decision.fixes and not decision.denials
    assert f"{TAGGED}@{RESOLVED}" in decision.findings[0].violation.fix
    pod = compliant_pod()
    pod["spec"]["containers"][0]["image"] = TAGGED
    ops = remedies_to_json_patch(
        workload_from_object(pod), (r for f in decision.fixes for r in f.violation.remedies)
    )
    patched = apply_json_patch(pod, ops)
    assert patched["spec"]["containers"][0]["image"] == f"{TAGGED}@{RESOLVED}"
    again = evaluate_workload(
        workload_from_object(patched),
        facts(),
        (policy({"images": {"requireDigest": True}}, mode="Patch"),),
        images=ImageLookups({}, NOW),
    )
    assert "MW-IMG-001" not in ids(again)


def test_patch_mode_without_a_resolved_digest_denies() -> None:
    failed = ImageFacts(TAGGED, error="no such tag")
    decision = judge(TAGGED, failed, {"requireDigest": True}, mode="Patch")
    assert "MW-IMG-001" in ids(decision)
    assert any(f.violation.rule_id == "MW-IMG-001" for f in decision.denials)


def test_image_volumes_are_judged_and_pinned_at_their_own_path() -> None:
    pod = compliant_pod()
    pod["spec"]["volumes"] = [{"name": "model", "image": {"reference": TAGGED}}]
    container = pod["spec"]["containers"][0]["image"]
    lookups = ImageLookups(
        {TAGGED: good(TAGGED, digest=RESOLVED, user="root"), container: good(container)}, NOW
    )
    decision = evaluate_workload(
        workload_from_object(pod),
        facts(),
        (policy({"images": {"requireNonRootUser": True}}, mode="Patch"),),
        images=lookups,
    )
    assert ids(decision) == ["MW-IMG-001", "MW-IMG-004"]
    pin = next(f for f in decision.findings if f.violation.rule_id == "MW-IMG-001")
    assert pin.violation.remedies[0].path == ("volumes", 0, "image", "reference")


def test_pinning_alone_looks_up_only_tags_and_a_failure_adds_no_finding() -> None:
    """Patch mode with requireDigest only: a pinned image needs no registry, and a tag whose
    look-up failed is denied by MW-IMG-001 (no fix), as before look-ups existed."""
    from modelward.registry.lookups import requests_for

    pin_only = policy({"images": {"requireDigest": True}}, mode="Patch")
    assert [r.reference for r in requests_for([PINNED, TAGGED], [pin_only])] == [TAGGED]
    assert requests_for([PINNED], [policy({"images": {}})]) == ()
    reads = policy({"images": {"requireNonRootUser": True}})
    assert [r.reference for r in requests_for([PINNED, TAGGED], [reads])] == [PINNED, TAGGED]

    pinned_unknown = judge(PINNED, None, {"requireDigest": True}, mode="Patch")
    assert ids(pinned_unknown) == []
    failed = judge(TAGGED, ImageFacts(TAGGED, error="down"), {"requireDigest": True}, "Patch")
    assert ids(failed) == ["MW-IMG-001"] and failed.denials

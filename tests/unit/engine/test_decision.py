"""Decisions: what blocks, what patches, what warns; UPDATEs judged on what they add."""

from __future__ import annotations

from modelward.engine.decision import Decision, Finding, Mode, PolicyRef, Remedy, Violation

REF = PolicyRef("ClusterModelPolicy", "p")
FIXABLE = Violation("MW-ISO-013", "token", "fix", remedies=(Remedy(("a",), 1),))
UNFIXABLE = Violation("MW-ISO-006", "privileged", "fix", container="c")


def test_modes() -> None:
    d = Decision(
        (
            Finding(FIXABLE, REF, Mode.PATCH),
            Finding(UNFIXABLE, REF, Mode.PATCH),
            Finding(UNFIXABLE, REF, Mode.AUDIT),
        )
    )
    assert [f.violation for f in d.fixes] == [FIXABLE]
    assert [f.violation for f in d.denials] == [UNFIXABLE]
    assert len(d.warnings) == 1 and not d.allowed
    assert Decision((Finding(FIXABLE, REF, Mode.ENFORCE),)).denials


def test_only_new() -> None:
    old = Decision((Finding(UNFIXABLE, REF, Mode.ENFORCE),))
    new = Decision((Finding(UNFIXABLE, REF, Mode.ENFORCE), Finding(FIXABLE, REF, Mode.ENFORCE)))
    assert [f.violation for f in new.only_new(old).findings] == [FIXABLE]


def test_messages_name_rule_container_fix_and_policy() -> None:
    text = Finding(UNFIXABLE, REF, Mode.ENFORCE).describe()
    assert (
        "[MW-ISO-006]" in text
        and "c" in text
        and "Fix: fix" in text
        and "ClusterModelPolicy p" in text
    )


def test_a_patch_message_names_what_was_found_and_the_fix_applied() -> None:
    text = Finding(FIXABLE, REF, Mode.PATCH).patched()
    assert text == "[MW-ISO-013] token; patch: fix (policy p)"

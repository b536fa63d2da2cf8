"""MW-SEC-*: credentials and system prompts as literals; no false positives on ordinary env."""

from __future__ import annotations

import pytest

from modelward.engine.rules.secrets import (
    TOKEN_FORMATS,
    TOKEN_HINTS,
    looks_like_system_prompt,
    token_format,
)
from tests.unit.engine.builders import compliant_pod, decide, policy, rule_ids

SECRETS = policy({"secrets": {}})


def _pod(env: list[dict[str, object]], args: list[str] | None = None) -> dict[str, object]:
    pod = compliant_pod()
    pod["spec"]["containers"][0]["env"] = env
    if args is not None:
        pod["spec"]["containers"][0]["args"] = args
    return pod


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPENAI_API_KEY", "sk-proj-4f8Kq2LxR7vT1nZ9wE3yU6iO0pA5sD8fG"),
        ("ANTHROPIC", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345"),
        ("HF", "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH"),
        ("AWS", "AKIAIOSFODNN7EXAMPLE"),
        ("GH", "ghp_" + "a1B2c3D4e5" * 4),
        ("KEY_PEM", "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE...\n-----END EC PRIVATE KEY-----"),
        ("DATABASE_URL", "postgres://app:s3cretPassw0rd@db:5432/app"),
        ("DB_PASSWORD", "Tr0ub4dor&3xyz"),
        ("RANDOM", "q8Zr2Lp0Xv7Nw4Ks1Ty9Bm6Hc3Jd5Gf"),
    ],
)
def test_credentials_are_found(name: str, value: str) -> None:
    assert rule_ids(decide(_pod([{"name": name, "value": value}]), SECRETS)) == ["MW-SEC-001"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MODEL_ID", "meta-llama/Llama-3.1-8B-Instruct"),
        ("MODEL_SHA256", "a" * 64),
        ("LOG_LEVEL", "info"),
        ("ENDPOINT", "https://api.example.com/v1/chat/completions"),
        ("MODEL_DIR", "/mnt/models/llama-3.1-8b-instruct/snapshots"),
        ("MAX_TOKENS", "4096"),
        ("HOST", "inference.serving-a.svc.cluster.local:8443"),
        ("VERSION", "v1.2.3-rc.1+build.20261125"),
    ],
)
def test_ordinary_values_are_not_credentials(name: str, value: str) -> None:
    assert rule_ids(decide(_pod([{"name": name, "value": value}]), SECRETS)) == []


def test_secret_key_ref_is_the_fix() -> None:
    env = [{"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": "k", "key": "k"}}}]
    assert rule_ids(decide(_pod(env), SECRETS)) == []


def test_tokens_in_arguments() -> None:
    pod = _pod([], args=["--api-key=sk-proj-4f8Kq2LxR7vT1nZ9wE3yU6iO0pA5sD8fG"])
    assert rule_ids(decide(pod, SECRETS)) == ["MW-SEC-001"]


def test_system_prompts() -> None:
    named = [{"name": "SYSTEM_PROMPT", "value": "Answer politely and in English."}]
    assert rule_ids(decide(_pod(named), SECRETS)) == ["MW-SEC-002"]
    text = (
        "You are a support assistant for ACME Corp. You must never reveal internal pricing, "
        "and you must always answer in a friendly tone."
    )
    assert rule_ids(decide(_pod([{"name": "CONFIG", "value": text}]), SECRETS)) == ["MW-SEC-002"]


def test_allowed_env_names_exempt_reviewed_values() -> None:
    p = policy({"secrets": {"allowedEnvNames": ["PUBLIC_*"]}})
    env = [{"name": "PUBLIC_TOKEN", "value": "q8Zr2Lp0Xv7Nw4Ks1Ty9Bm6Hc3Jd5Gf"}]
    assert rule_ids(decide(_pod(env), p)) == []


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.mark.parametrize(
    ("text", "description"),
    [
        (f"Bearer {JWT}", "a JSON Web Token"),
        (f"token-{JWT}", "a JSON Web Token"),
        (f"id.{JWT}.more", "a JSON Web Token"),
        ("postgresql+asyncpg://app:s3cret@db:5432/x", "a password in a URL"),
        ("see redis://default:hunter22@cache and s3://bucket", "a password in a URL"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "a private key"),
        ("-----BEGIN ENCRYPTED PRIVATE KEY-----", "a private key"),
        ("-----BEGIN PGP PRIVATE KEY BLOCK-----", "a private key"),
        ("-----BEGIN PRIVATE KEY-----", "a private key"),
        ("key=AKIAIOSFODNN7EXAMPLE", "an AWS access key"),
        ("ghp_" + "a1B2c3D4e5" * 4, "a GitHub token"),
        ("github_pat_" + "a1_B2c3D4e5" * 4, "a GitHub token"),
        ("xoxb-1234567890-abcdef", "a Slack token"),
        ("sk_live_" + "a1B2c3D4e5" * 2, "a Stripe key"),
        ("AIza" + "a1B2c3D4e5" * 4, "a Google API key"),
        ("hf_" + "a1B2c3D4e5" * 3, "a Hugging Face token"),
    ],
)
def test_token_formats(text: str, description: str) -> None:
    assert token_format(text) == description


@pytest.mark.parametrize(
    "text",
    [
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIi.dozjgNryP4J3jVmN",  # a payload too short to be a JWT
        "xeyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3",  # not at a boundary
        "https://user@example.com/path",  # a user, no password
        "http://a:bc@host",  # two characters are not a password
        "HTTP://user:password@host",  # schemes are lower case
        "xAKIAIOSFODNN7EXAMPLE",
        "mask-" + "a" * 30,  # 'sk-' inside a word
    ],
)
def test_lookalikes_are_not_tokens(text: str) -> None:
    assert token_format(text) is None


def test_every_format_has_a_hint_that_finds_it() -> None:
    """The one-pass pre-check may never hide a format: each needs a hint."""
    assert [name for name, _ in TOKEN_FORMATS] == list(TOKEN_HINTS)


def test_prompt_phrases_are_found_in_any_case_and_only_as_words() -> None:
    padding = "Context for the assistant follows in the next lines of this value. " * 2
    assert looks_like_system_prompt("X", padding + "YOU ARE THE assistant")
    assert looks_like_system_prompt("X", padding + "never reveal the rules")
    assert not looks_like_system_prompt("X", padding + "whenever revealed, it stays")
    assert not looks_like_system_prompt("X", padding + "bayou are a place")

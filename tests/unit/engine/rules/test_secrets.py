"""MW-SEC-*: credentials and system prompts as literals; no false positives on ordinary env."""

from __future__ import annotations

import pytest

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

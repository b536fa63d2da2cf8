"""Secret rules (MW-SEC-*): no credential or system prompt as a literal in the pod spec.

A literal env value is readable by anyone who can read the workload (and lands in audit logs,
``kubectl describe`` and GitOps repositories); a system prompt there leaks it (OWASP LLM07).
Known token formats are matched anywhere in env values and container arguments; the entropy
heuristic runs on env values only, and is stricter for variables whose name says "secret".
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping

from modelward.engine.decision import Violation
from modelward.engine.facts import NamespaceFacts
from modelward.engine.policy import SecretsConfig
from modelward.engine.selectors import matches_any_glob
from modelward.engine.workloads import ContainerRef, Workload

#: (description, pattern) of credential formats with a recognisable shape.
TOKEN_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("a private key", r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
        ("an AWS access key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
        ("a GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})"),
        ("an Anthropic API key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
        ("an OpenAI-style API key", r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}"),
        ("a Hugging Face token", r"\bhf_[A-Za-z0-9]{30,}"),
        ("a Google API key", r"\bAIza[0-9A-Za-z_-]{35}"),
        ("a Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
        ("a Stripe key", r"\b[rs]k_live_[A-Za-z0-9]{20,}"),
        ("a JSON Web Token", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        ("a password in a URL", r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]{3,}@"),
    )
)
#: A fragment every match of a format contains, for a one-pass pre-check: most values match
#: no format, and one search of these is ~10x cheaper than trying the eleven patterns in turn.
#: A format missing here still works (its whole pattern joins the pre-check), only slower.
TOKEN_HINTS: dict[str, str] = {
    "a private key": "-----BEGIN ",
    "an AWS access key": "AKIA|ASIA",
    "a GitHub token": "gh[pousr]_|github_pat_",
    "an Anthropic API key": "sk-ant-",
    "an OpenAI-style API key": "sk-",
    "a Hugging Face token": "hf_",
    "a Google API key": "AIza",
    "a Slack token": "xox",
    "a Stripe key": "k_live_",
    "a JSON Web Token": "eyJ",
    "a password in a URL": "://",
}
MAYBE_TOKEN = re.compile(
    "|".join(TOKEN_HINTS.get(name, f"(?:{pattern.pattern})") for name, pattern in TOKEN_FORMATS)
)
SECRET_NAME = re.compile(
    r"(?:PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL|AUTH)", re.I
)
SYSTEM_PROMPT_NAME = re.compile(r"SYSTEM_?PROMPT|SYS_PROMPT|PROMPT_?TEMPLATE|INSTRUCTIONS", re.I)
PROMPT_TEXT = re.compile(
    r"\b(?:you are (?:a|an|the)\b|your (?:role|task|job) is|as an ai\b|do not reveal|"
    r"never reveal|you must (?:always|never)|system prompt)",
    re.I,
)
HEX_DIGEST = re.compile(
    r"^(?:sha(?:256|512)?:)?[0-9a-f]{40}$|^(?:sha(?:256|512)?:)?[0-9a-f]{64}$|"
    r"^(?:sha512:)?[0-9a-f]{128}$"
)
HARMLESS_SHAPES = re.compile(r"^(?:/|\./|https?://[^@]*$|[\w.-]+\.[a-z]{2,}(?::\d+)?$)")


def shannon_entropy(value: str) -> float:
    """Bits per character."""
    counts = Counter(value)
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


CHARACTER_CLASSES = tuple(re.compile(p) for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]"))


def _looks_random(name: str, value: str) -> bool:
    if " " in value or HEX_DIGEST.match(value) or HARMLESS_SHAPES.match(value):
        return False
    secret_name = SECRET_NAME.search(name) is not None
    if len(value) < (12 if secret_name else 24):
        return False  # before counting classes: most values are short
    classes = sum(p.search(value) is not None for p in CHARACTER_CLASSES)
    if secret_name:
        return classes >= 2 and shannon_entropy(value) >= 3.0
    return classes >= 3 and shannon_entropy(value) >= 4.2


def token_format(text: str) -> str | None:
    """The first known credential format found in ``text``, or None."""
    if MAYBE_TOKEN.search(text) is None:
        return None
    for description, pattern in TOKEN_FORMATS:
        if pattern.search(text):
            return description
    return None


def credential_kind(name: str, value: str) -> str | None:
    """What kind of credential ``value`` looks like, or None."""
    description = token_format(value)
    if description is not None:
        return description
    if _looks_random(name, value):
        return "a high-entropy secret"
    return None


def looks_like_system_prompt(name: str, value: str) -> bool:
    if SYSTEM_PROMPT_NAME.search(name) and len(value.strip()) >= 16:
        return True
    return len(value) >= 80 and PROMPT_TEXT.search(value) is not None


#: Values longer than this are judged afresh every time rather than remembered.
MAX_REMEMBERED_VALUE = 512


@functools.lru_cache(maxsize=4096)
def _remembered_verdict(name: str, value: str) -> tuple[bool, str | None]:
    return looks_like_system_prompt(name, value), credential_kind(name, value)


def env_verdict(name: str, value: str) -> tuple[bool, str | None]:
    """(looks like a system prompt, credential kind) of one literal env var.

    Remembered for short values (pure functions of the two strings, so the answer is the same):
    a Deployment, its ReplicaSet and every replica carry the same env, and several policies
    may check it, while each verdict costs a handful of regular-expression searches.
    """
    if len(value) > MAX_REMEMBERED_VALUE:
        return looks_like_system_prompt(name, value), credential_kind(name, value)
    return _remembered_verdict(name, value)


def _literal_env(c: ContainerRef) -> Iterator[tuple[str, str]]:
    for item in c.spec.get("env") or []:
        if type(item) is dict or isinstance(item, Mapping):  # dict first: the ABC check is slow
            value = item.get("value")
            if isinstance(value, str) and value:
                yield str(item.get("name", "")), value


def check_secrets(w: Workload, ns: NamespaceFacts, cfg: SecretsConfig) -> Iterator[Violation]:
    fix_env = "move the value into a Secret and reference it with env[].valueFrom.secretKeyRef"
    for c in w.containers():
        for name, value in _literal_env(c):
            if cfg.allowed_env_names and matches_any_glob(name, cfg.allowed_env_names):
                continue
            prompt, credential = env_verdict(name, value)
            if cfg.forbid_system_prompts and prompt:
                yield Violation(
                    "MW-SEC-002",
                    f"env {name} holds a system prompt as a literal value",
                    "store the prompt in a Secret (or a read-only mounted file) and "
                    "reference it with secretKeyRef",
                    container=c.describe,
                )
                continue
            kind = credential if cfg.forbid_credentials else None
            if kind:
                yield Violation(
                    "MW-SEC-001",
                    f"env {name} holds {kind} as a literal value",
                    fix_env,
                    container=c.describe,
                )
        if cfg.forbid_credentials:
            for field in ("command", "args"):
                for index, arg in enumerate(c.spec.get(field) or []):
                    if not isinstance(arg, str):
                        continue
                    description = token_format(arg)
                    if description is not None:
                        yield Violation(
                            "MW-SEC-001",
                            f"{field}[{index}] holds {description}",
                            "pass it through an env var with secretKeyRef, or a mounted file",
                            container=c.describe,
                        )

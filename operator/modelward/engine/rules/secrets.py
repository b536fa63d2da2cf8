"""Secret rules (MW-SEC-*): no credential or system prompt as a literal in the pod spec.

A literal env value is readable by anyone who can read the workload (and lands in audit logs,
``kubectl describe`` and GitOps repositories); a system prompt there leaks it (OWASP LLM07).
Known token formats are matched anywhere in env values and container arguments; the entropy
heuristic runs on env values only, and is stricter for variables whose name says "secret".

Every check here runs in time linear in the value, whatever the value is. The values are
written by the workload's author, who may want to stall admission (a 1 MiB env value is a
valid pod), and Python's ``re`` backtracks: a pattern with an unbounded quantifier that must
be followed by something it does not contain is retried from every start position, so
``[a-z][a-z0-9+.-]*://`` on ``"a" * n`` costs n²/2 steps. The patterns therefore keep to
three shapes, each with a bounded cost per start position:

- a fixed literal first (``sk-ant-``, ``-----BEGIN ``, ``://``), then only fixed-width
  look-behinds (the word boundary before the literal) and *bounded* quantifiers (``{20}``,
  ``{1,256}``): a match attempt reads at most a constant number of characters, and the search
  tries each position once (with ``re``'s fast literal scan, as no ``\b`` comes first). A
  trailing ``{n,}`` is written ``{n}``: the search only needs to know that a match exists;
- character classes that are disjoint from whatever must follow them, so a greedy run gives
  back no character that could make the match succeed, and a run cannot cross the literal
  that starts the next attempt (the userinfo of ``scheme://user:pass@`` stops at the next
  ``://``'s ``:`` and ``/``);
- a shape with unbounded parts that must be compared across separators (a JSON Web Token's
  three dot-separated segments) is not a regular expression at all: the value is split once
  into maximal runs of the token alphabet (``finditer`` over a class, which never
  backtracks) and the runs are compared by length and prefix.

Case-insensitive phrases are searched in one lower-cased copy (``re.I`` alternations cost
~5x more per character), and the entropy heuristic, which counts characters, looks only at
values up to ``MAX_RANDOM_SECRET``. ``tests/unit/engine/test_linear_time.py`` holds every
rule to linear growth on adversarial inputs.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Set

from modelward.engine.decision import Violation
from modelward.engine.facts import NamespaceFacts
from modelward.engine.policy import SecretsConfig
from modelward.engine.selectors import matches_any_glob
from modelward.engine.workloads import ContainerRef, Workload

#: Characters of a base64url segment (JSON Web Tokens, most API keys).
_B64URL = "A-Za-z0-9_-"
#: Maximal runs of base64url segments joined by dots (``a.b.c``); linear under ``finditer``:
#: the class excludes the dot, so neither the runs nor the repetition can backtrack.
_DOTTED_RUN = re.compile(rf"[{_B64URL}]+(?:\.[{_B64URL}]+)*")


def _is_jwt_header(segment: str) -> bool:
    """``eyJ`` (base64 of ``{"``) at a word boundary, with at least 8 more characters.

    Inside a base64url segment the only non-word character is ``-``; the first ``eyJ`` that
    follows one (or starts the segment) leaves the most characters after it.
    """
    if segment.startswith("eyJ"):
        start = 0
    else:
        dash = segment.find("-eyJ")
        if dash < 0:
            return False
        start = dash + 1
    return len(segment) - start >= 11


def contains_jwt(text: str) -> bool:
    """A JSON Web Token: ``eyJ…`` . ``eyJ…`` . signature, each part 11/11/8+ characters.

    One pass over the dotted runs of ``text``, then over each run's segments: every segment is
    looked at as the header of at most one candidate, so the cost is linear.
    """
    if "eyJ" not in text:
        return False
    for match in _DOTTED_RUN.finditer(text):
        segments = match.group().split(".")
        for header, payload, signature in zip(segments, segments[1:], segments[2:], strict=False):
            if (
                len(signature) >= 8
                and len(payload) >= 11
                and payload.startswith("eyJ")
                and _is_jwt_header(header)
            ):
                return True
    return False


def _searcher(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda text: compiled.search(text) is not None


#: (description, matcher) of credential formats with a recognisable shape, first match wins.
#: Each expression starts with its literal, so ``re`` finds candidates with its fast literal
#: scan (a leading ``\b`` would disable that and cost ~30 ns a byte per format); the word
#: boundary before the literal is a fixed-width look-behind placed after it:
#: ``AKIA(?<!\w.{4})`` is ``\bAKIA``.
TOKEN_FORMATS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    (
        "a private key",
        _searcher(r"-----BEGIN (?:[A-Z0-9]{1,16} ){0,2}PRIVATE KEY(?: BLOCK)?-----"),
    ),
    ("an AWS access key", _searcher(r"A(?:KIA|SIA)(?<!\w.{4})[0-9A-Z]{16}\b")),
    (
        "a GitHub token",
        _searcher(
            r"g(?:h[pousr]_(?<!\w.{4})[A-Za-z0-9]{36}|ithub_pat_(?<!\w.{11})[A-Za-z0-9_]{40})"
        ),
    ),
    ("an Anthropic API key", _searcher(rf"sk-ant-(?<!\w.{{7}})[{_B64URL}]{{20}}")),
    (
        "an OpenAI-style API key",
        _searcher(rf"sk-(?<!\w.{{3}})(?:proj-|svcacct-)?[{_B64URL}]{{20}}"),
    ),
    ("a Hugging Face token", _searcher(r"hf_(?<!\w.{3})[A-Za-z0-9]{30}")),
    ("a Google API key", _searcher(rf"AIza(?<!\w.{{4}})[{_B64URL}]{{35}}")),
    ("a Slack token", _searcher(r"xox[abposr]-(?<!\w.{5})[A-Za-z0-9-]{10}")),
    ("a Stripe key", _searcher(r"[rs]k_live_(?<!\w.{8})[A-Za-z0-9]{20}")),
    ("a JSON Web Token", contains_jwt),
    # Anchored on "://" with a scheme character before it (a look-behind, rather than a scheme
    # run retried from every start); the userinfo cannot run past the next "://".
    ("a password in a URL", _searcher(r"://(?<=[a-z0-9+.-]://)[^/\s:@]{1,256}:[^/\s@]{3,1024}@")),
)
#: A fragment every match of a format contains, for a one-pass pre-check: most values match
#: no format, and one search of these literals is ~10x cheaper than trying every format.
#: Every format must be listed (a test checks it): the matchers are not all expressions.
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
MAYBE_TOKEN = re.compile("|".join(TOKEN_HINTS[name] for name, _ in TOKEN_FORMATS))
#: Matched against the upper-cased name (a case-insensitive alternation costs ~5x more).
SECRET_NAME = re.compile(
    r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL|AUTH"
)
SYSTEM_PROMPT_NAME = re.compile(r"SYSTEM_?PROMPT|SYS_PROMPT|PROMPT_?TEMPLATE|INSTRUCTIONS")
#: Matched against the lower-cased value; each phrase starts with its first word, the word
#: boundary before it is a look-behind (see TOKEN_FORMATS for why not a leading ``\b``).
PROMPT_TEXT = re.compile(
    r"you(?<!\w.{3}) (?:are (?:a|an|the)\b|must (?:always|never))|"
    r"your(?<!\w.{4}) (?:role|task|job) is|as(?<!\w.{2}) an ai\b|do(?<!\w.{2}) not reveal|"
    r"never(?<!\w.{5}) reveal|system(?<!\w.{6}) prompt"
)
HEX_DIGEST = re.compile(
    r"^(?:sha(?:256|512)?:)?[0-9a-f]{40}$|^(?:sha(?:256|512)?:)?[0-9a-f]{64}$|"
    r"^(?:sha512:)?[0-9a-f]{128}$"
)
HARMLESS_SHAPES = re.compile(r"^(?:/|\./|https?://[^@]*$|[\w.-]+\.[a-z]{2,}(?::\d+)?$)")
#: The entropy heuristic looks at values up to this long: passwords and API keys are shorter,
#: longer secrets (keys, certificates, JWTs) have a format found above, and a long value is
#: data whose entropy says nothing (and counting it costs ~40 ns a character).
MAX_RANDOM_SECRET = 1024


#: n·log2(n) for every count a character can have in a value the heuristic looks at.
_N_LOG2_N = tuple(n * math.log2(n) if n else 0.0 for n in range(MAX_RANDOM_SECRET + 1))


def _entropy(counts: Counter[str], total: int) -> float:
    """Shannon entropy in bits per character: log2(total) - Σ n·log2(n) / total."""
    return math.log2(total) - math.fsum(map(_N_LOG2_N.__getitem__, counts.values())) / total


_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_ALNUM = _LOWER | _UPPER | _DIGITS


def _character_classes(present: Set[str]) -> int:
    """How many of lower case, upper case, digits and other characters occur."""
    return (
        (not present.isdisjoint(_LOWER))
        + (not present.isdisjoint(_UPPER))
        + (not present.isdisjoint(_DIGITS))
        + (not present <= _ALNUM)
    )


def _looks_random(name: str, value: str) -> bool:
    if len(value) > MAX_RANDOM_SECRET:
        return False
    if " " in value or HEX_DIGEST.match(value) or HARMLESS_SHAPES.match(value):
        return False
    secret_name = SECRET_NAME.search(name.upper()) is not None
    if len(value) < (12 if secret_name else 24):
        return False  # before counting classes: most values are short
    counts = Counter(value)
    classes = _character_classes(counts.keys())
    if secret_name:
        return classes >= 2 and _entropy(counts, len(value)) >= 3.0
    return classes >= 3 and _entropy(counts, len(value)) >= 4.2


def token_format(text: str) -> str | None:
    """The first known credential format found in ``text``, or None."""
    if MAYBE_TOKEN.search(text) is None:
        return None
    for description, found in TOKEN_FORMATS:
        if found(text):
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
    if SYSTEM_PROMPT_NAME.search(name.upper()) and len(value.strip()) >= 16:
        return True
    return len(value) >= 80 and PROMPT_TEXT.search(value.lower()) is not None


#: Values longer than this are remembered only briefly (a few at a time), not by the thousand.
MAX_REMEMBERED_VALUE = 512


def _verdict(name: str, value: str) -> tuple[bool, str | None]:
    return looks_like_system_prompt(name, value), credential_kind(name, value)


_remembered_verdict = functools.lru_cache(maxsize=4096)(_verdict)
#: Long values: every policy that checks secrets sees the same string object in one review,
#: so its verdict is computed once per review, while memory holds at most four of them.
_recent_long_verdict = functools.lru_cache(maxsize=4)(_verdict)


def forget_verdicts() -> None:
    """Empty both memories (tests that measure the cost of judging)."""
    _remembered_verdict.cache_clear()
    _recent_long_verdict.cache_clear()


def env_verdict(name: str, value: str) -> tuple[bool, str | None]:
    """(looks like a system prompt, credential kind) of one literal env var.

    Remembered (pure functions of the two strings, so the answer is the same): a Deployment,
    its ReplicaSet and every replica carry the same env, and several policies may check it,
    while each verdict costs a handful of regular-expression searches.
    """
    if len(value) > MAX_REMEMBERED_VALUE:
        return _recent_long_verdict(name, value)
    return _remembered_verdict(name, value)


def _judge_literal_env(c: ContainerRef) -> tuple[tuple[str, str, bool, str | None], ...]:
    """(name, value, looks like a system prompt, credential kind) of each literal env var."""
    judged = []
    for item in c.spec.get("env") or []:
        if type(item) is dict or isinstance(item, Mapping):  # dict first: the ABC check is slow
            value = item.get("value")
            if isinstance(value, str) and value:
                name = str(item.get("name", ""))
                judged.append((name, value, *env_verdict(name, value)))
    return tuple(judged)


def _literal_env(c: ContainerRef) -> tuple[tuple[str, str, bool, str | None], ...]:
    """Judged once per container of a review, whatever the number of policies that check it
    (kept on the container reference, which lives as long as the review's workload)."""
    cached = c.__dict__.get("_judged_env")
    if cached is None:
        cached = _judge_literal_env(c)
        c.__dict__["_judged_env"] = cached
    return cached


def check_secrets(w: Workload, ns: NamespaceFacts, cfg: SecretsConfig) -> Iterator[Violation]:
    fix_env = "move the value into a Secret and reference it with env[].valueFrom.secretKeyRef"
    for c in w.containers():
        for name, _value, prompt, credential in _literal_env(c):
            if cfg.allowed_env_names and matches_any_glob(name, cfg.allowed_env_names):
                continue
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

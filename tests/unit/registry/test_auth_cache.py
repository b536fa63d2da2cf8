"""Credentials from dockerconfigjson, and the caches' bounds and expiry."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from modelward.registry.auth import (
    Credentials,
    CredentialStore,
    DockerConfigError,
    parse_docker_config,
)
from modelward.registry.cache import ContentCache, SingleFlight, TagCache


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_dockerconfigjson_forms_are_read_and_docker_hub_names_unified() -> None:
    config = {
        "auths": {
            "https://index.docker.io/v1/": {"auth": b64("hubuser:hubpass")},
            "registry.example.com:5000": {"username": "u", "password": "p"},
            "https://ghcr.io/v2/": {"auth": b64("gh:tok:with:colons")},
            "nothing.example.com": {},
        }
    }
    found = parse_docker_config(json.dumps(config), source="test")
    assert found["docker.io"] == Credentials("hubuser", "hubpass")
    assert found["registry.example.com:5000"] == Credentials("u", "p")
    assert found["ghcr.io"] == Credentials("gh", "tok:with:colons")
    assert "nothing.example.com" not in found
    assert "hubpass" not in repr(found["docker.io"])  # never logged by accident


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"auths": {"r.io": {"auth": "%%%"}}}', "not base64"),
        (json.dumps({"auths": {"r.io": {"auth": b64("nocolon")}}}), "user:password"),
        ("x" * (2 << 20), "larger than 1 MiB"),
    ],
)
def test_unreadable_configs_name_the_source_and_the_fix(data: str, message: str) -> None:
    with pytest.raises(DockerConfigError, match=message) as caught:
        parse_docker_config(data, source="Secret ns/pull")
    assert "Secret ns/pull" in str(caught.value)


def test_the_first_source_with_the_registry_wins_like_the_kubelet() -> None:
    pod = {"r.io": Credentials("pod", "1")}
    account = {"r.io": Credentials("sa", "2"), "q.io": Credentials("sa", "3")}
    operator = {"z.io": Credentials("op", "4")}
    store = CredentialStore.chain(CredentialStore((pod, account)), CredentialStore((operator,)))
    assert store.for_registry("r.io") == Credentials("pod", "1")
    assert store.for_registry("Q.IO") == Credentials("sa", "3")
    assert store.for_registry("z.io") == Credentials("op", "4")
    assert store.for_registry("other.io") is None


def test_content_cache_evicts_least_recently_used_within_its_byte_bound() -> None:
    cache: ContentCache[str, bytes] = ContentCache(max_bytes=10, weigh=len)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    assert cache.get("a") == b"1234"  # a is now the most recent
    cache.put("c", b"1234")
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.size_bytes == 8
    cache.put("huge", b"x" * 11)  # heavier than the whole budget: not kept, nothing flushed
    assert cache.get("huge") is None and len(cache) == 2


def test_tags_expire_after_their_ttl() -> None:
    now = [100.0]
    tags = TagCache(ttl=30, clock=lambda: now[0])
    tags.put("r.io", "app", "v1", "sha256:" + "a" * 64)
    now[0] += 29.9
    assert tags.get("r.io", "app", "v1") == "sha256:" + "a" * 64
    now[0] += 0.2
    assert tags.get("r.io", "app", "v1") is None


async def test_single_flight_shares_one_task_and_survives_a_caller_giving_up() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    started = 0
    release = asyncio.Event()

    async def work() -> int:
        nonlocal started
        started += 1
        await release.wait()
        return 42

    impatient = asyncio.ensure_future(flights.run("k", work))
    patient = asyncio.ensure_future(flights.run("k", work))
    await asyncio.sleep(0)
    impatient.cancel()  # a review past its deadline
    await asyncio.sleep(0)
    release.set()
    assert await patient == 42
    assert started == 1 and flights.shared == 1 and len(flights) == 0

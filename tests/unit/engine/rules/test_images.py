"""MW-IMG-*: digests, registries, tags, for containers and image volumes."""

from __future__ import annotations

import pytest

from modelward.engine.rules.images import ImageReference
from tests.unit.engine.builders import DIGEST, compliant_pod, decide, policy, rule_ids

IMAGES = policy({"images": {"allowedRegistries": ["registry.example.com/serving/*", "ghcr.io"]}})


@pytest.mark.parametrize(
    ("reference", "registry", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", None, None),
        ("nginx:1.27", "docker.io", "library/nginx", "1.27", None),
        ("localhost:5000/m:v1", "localhost:5000", "m", "v1", None),
        ("127.0.0.1:5000/a/b@sha256:00", "127.0.0.1:5000", "a/b", None, "sha256:00"),
        ("ghcr.io/org/img:v2@sha256:11", "ghcr.io", "org/img", "v2", "sha256:11"),
    ],
)
def test_image_reference_parsing(
    reference: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    assert ImageReference.parse(reference) == ImageReference(registry, repository, tag, digest)


def _pod(image: str) -> dict[str, object]:
    pod = compliant_pod()
    pod["spec"]["containers"][0]["image"] = image
    return pod


def test_pinned_allowed_image_passes() -> None:
    assert rule_ids(decide(_pod(f"ghcr.io/org/img@{DIGEST}"), IMAGES)) == []


@pytest.mark.parametrize(
    ("image", "rules"),
    [
        ("registry.example.com/serving/server:1.0", ["MW-IMG-001"]),
        ("registry.example.com/serving/server", ["MW-IMG-001", "MW-IMG-003"]),
        ("registry.example.com/serving/server:latest", ["MW-IMG-001", "MW-IMG-003"]),
        (f"docker.io/library/nginx@{DIGEST}", ["MW-IMG-002"]),
        (f"registry.example.com/other/x@{DIGEST}", ["MW-IMG-002"]),
        ("registry.example.com/serving/server@sha256:short", ["MW-IMG-001"]),
    ],
)
def test_image_rules(image: str, rules: list[str]) -> None:
    assert rule_ids(decide(_pod(image), IMAGES)) == rules


def test_image_volumes_are_images_too() -> None:
    pod = compliant_pod()
    pod["spec"]["volumes"].append(
        {"name": "model", "image": {"reference": "registry.example.com/serving/model:v1"}}
    )
    found = decide(pod, IMAGES).findings
    assert [(f.violation.rule_id, f.violation.container) for f in found] == [
        ("MW-IMG-001", 'image volume "model"')
    ]

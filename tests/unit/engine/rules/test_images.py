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


@pytest.mark.parametrize(
    ("reference", "registry", "repository"),
    [
        ("index.docker.io/library/nginx:1", "docker.io", "library/nginx"),
        ("docker.io/nginx", "docker.io", "library/nginx"),
        ("Registry.Example.com/serving/x", "registry.example.com", "serving/x"),
        ("Myhost/app", "myhost", "app"),  # upper case: a host, never a repository
        ("team/app:v1", "docker.io", "team/app"),
        ("localhost/app", "localhost", "app"),
    ],
)
def test_references_normalise_like_the_runtime(
    reference: str, registry: str, repository: str
) -> None:
    ref = ImageReference.parse(reference)
    assert (ref.registry, ref.repository) == (registry, repository)


WILDCARD = policy(
    {
        "images": {
            "requireDigest": False,
            "allowedRegistries": ["*.example.com/*", "registry.example.com/models/**", "ghcr.io/"],
        }
    }
)


@pytest.mark.parametrize(
    "image",
    [
        "evil.com/x.example.com/foo:1",  # the host is evil.com; '*' may not cross '/'
        "evil.com/registry.example.com/models/x:1",
        "x.example.com.evil.com/foo:1",
        "x.example.com:5000/foo:1",  # another port is another registry
        "registry.example.com/team/nested/foo:1",  # '*' is one component
        "example.com/foo:1",  # '*.' needs a subdomain
        "nginx:1",  # docker.io/library/nginx
        "x.example.com/foo/../../evil:1",  # not a reference a runtime would pull
        "x.example.com/Foo:1",
        "x.example.com/foo:1:2",
    ],
)
def test_registry_globs_match_host_and_path_separately(image: str) -> None:
    assert rule_ids(decide(_pod(image), WILDCARD)) == ["MW-IMG-002"]


@pytest.mark.parametrize(
    "image",
    [
        "x.example.com/foo:1",
        "X.Example.com/foo:1",
        "a.b.example.com/foo@" + DIGEST,
        "registry.example.com/models/llama:1",
        "registry.example.com/models/meta/llama/3:1",  # '**' is any depth
        "registry.example.com/models:1",  # and none
        "ghcr.io/org/team/img:v1",  # a bare host allows every repository
    ],
)
def test_registry_globs_admit_what_they_name(image: str) -> None:
    assert rule_ids(decide(_pod(image), WILDCARD)) == []


def test_malformed_reference_is_named_as_such() -> None:
    (finding,) = decide(_pod("x.example.com/a/../b:1"), WILDCARD).findings
    assert "not a well-formed reference" in finding.violation.message

"""The registry client and look-ups against the real distribution registry (TLS, htpasswd),
and against small servers of our own that stall, lie, serve garbage or want bearer tokens."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web

from modelward.engine.policy import PACKAGE_MANAGER_NAMES, SHELL_NAMES, ForbiddenContents
from modelward.registry.auth import Credentials, CredentialStore
from modelward.registry.client import (
    OCI_MANIFEST,
    RegistryClient,
    RegistryError,
    RegistrySettings,
    Repository,
)
from modelward.registry.lookups import ImageInspector, ImageRequest, LookupSettings
from modelward_dev.images import ImageConfig, Layer, build_image
from modelward_dev.registry import Credentials as PushCredentials
from modelward_dev.registry import LocalRegistry

pytestmark = pytest.mark.slow

USER = PushCredentials("puller", "pull-s3cret")
CONTENTS = ForbiddenContents(SHELL_NAMES + PACKAGE_MANAGER_NAMES, ("etc/shadow",))


@pytest.fixture(scope="module")
def registry() -> Iterator[LocalRegistry]:
    with LocalRegistry(tls=True, users=(USER,)) as started:
        yield started


def shell_image() -> object:
    base = Layer()
    base.add_file("/bin/sh", b"#!", mode=0o755)
    base.add_file("/usr/bin/apt", b"", mode=0o755)
    top = Layer()
    top.add_file("/usr/bin/.wh.apt", b"")
    top.add_file("/app/server", b"bin" * 1000, mode=0o755)
    return build_image(
        "shell",
        [base, top],
        ImageConfig(user="root"),
        created=int(time.time()) - 86400,
        annotations={"org.opencontainers.image.base.name": "docker.io/library/debian:12"},
    )


def store() -> CredentialStore:
    return CredentialStore(({}, {"127.0.0.1": Credentials("x", "y")}))


async def test_facts_of_a_real_image_behind_tls_and_basic_auth(registry: LocalRegistry) -> None:
    image = shell_image()
    digest = image.push(registry.client(USER), "serving/shell", "v1")  # type: ignore[attr-defined]
    client = RegistryClient(settings=RegistrySettings(ca_bundles=(str(registry.ca_path),)))
    inspector = ImageInspector(client=client, settings=LookupSettings(deadline=10))
    credentials = CredentialStore(({registry.host: Credentials(USER.username, USER.password)},))
    reference = f"{registry.host}/serving/shell:v1"
    async with client:
        looked = await inspector.lookups(
            [ImageRequest(reference, CONTENTS)], credentials=credentials
        )
        facts = looked.get(reference)
        assert facts is not None and facts.error is None, facts
        assert facts.digest == digest and facts.manifest_digest == digest
        assert facts.user == "root" and facts.layer_count == 2
        assert facts.compressed_size == image.size  # type: ignore[attr-defined]
        assert facts.base_name == "docker.io/library/debian:12"
        assert facts.forbidden_paths == ("bin/sh",)  # apt was whited out above
        assert facts.created is not None and abs(looked.now - facts.created - 86400) < 120
        # Warm: the tag is remembered briefly, manifest, config and listings by digest.
        before = client.requests
        again = await inspector.lookups(
            [ImageRequest(reference, CONTENTS)], credentials=credentials
        )
        assert again.get(reference) == facts and client.requests - before <= 2
        # Without credentials the message says what to give the pod.
        anonymous = await inspector.facts(ImageRequest(reference), credentials=CredentialStore())
        assert anonymous.error is not None and "imagePullSecret" in anonymous.error


async def test_an_untrusted_certificate_is_refused_with_the_fix(registry: LocalRegistry) -> None:
    async with RegistryClient() as client:
        with pytest.raises(RegistryError, match=r"not trusted.*--registry-ca-bundle"):
            await client.manifest(Repository(registry.host, "serving/shell"), "v1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_registry_fails_fast_with_a_reason() -> None:
    port = free_port()
    insecure = frozenset({f"127.0.0.1:{port}"})
    async with RegistryClient() as client:
        inspector = ImageInspector(client=client, settings=LookupSettings(deadline=5))
        started = time.monotonic()
        facts = await inspector.facts(
            ImageRequest(f"127.0.0.1:{port}/a:v1", None, insecure), credentials=CredentialStore()
        )
        assert facts.error is not None and "cannot be reached" in facts.error
        assert time.monotonic() - started < 5


class FakeRegistry:
    """A registry of our own: modes 'stall', 'garbage', 'tamper', 'bearer'."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        config = json.dumps(
            {"config": {"User": "1000"}, "created": "2026-01-01T00:00:00Z"}
        ).encode()
        self.config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        self.blobs = {self.config_digest: config}
        self.manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": self.config_digest,
                    "size": len(config),
                },
                "layers": [],
            }
        ).encode()
        self.digest = "sha256:" + hashlib.sha256(self.manifest).hexdigest()
        self.tokens_issued = 0
        self.host = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "stall":
            await asyncio.sleep(30)
        if request.path == "/token":
            self.tokens_issued += 1
            assert request.query["scope"] == "repository:app:pull"
            return web.json_response({"token": "t0ken", "expires_in": 300})
        if self.mode == "bearer" and request.headers.get("Authorization") != "Bearer t0ken":
            return web.Response(
                status=401,
                headers={
                    "WWW-Authenticate": f'Bearer realm="http://{self.host}/token",service="fake"'
                },
            )
        if self.mode == "garbage":
            return web.Response(body=b"\x00<html>not a manifest", content_type=OCI_MANIFEST)
        if "/manifests/" in request.path:
            body = self.manifest + (b" " if self.mode == "tamper" else b"")
            return web.Response(
                body=body,
                headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": self.digest},
            )
        digest = request.path.rsplit("/", 1)[-1]
        return web.Response(body=self.blobs[digest])


@pytest.fixture
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeRegistry]:
    server = FakeRegistry(request.param)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server.host = f"127.0.0.1:{port}"
    yield server
    await runner.cleanup()


def request_for(fake: FakeRegistry, reference: str = "app:v1") -> ImageRequest:
    return ImageRequest(f"{fake.host}/{reference}", None, frozenset({fake.host}))


@pytest.mark.parametrize("fake", ["stall"], indirect=True)
async def test_a_stalling_registry_costs_one_deadline_not_a_hang(fake: FakeRegistry) -> None:
    async with RegistryClient() as client:
        inspector = ImageInspector(client=client, settings=LookupSettings(deadline=0.3))
        started = time.monotonic()
        looked = await inspector.lookups([request_for(fake)], credentials=CredentialStore())
        elapsed = time.monotonic() - started
        facts = looked.get(f"{fake.host}/app:v1")
        assert facts is not None and facts.error is not None and "0.3 s" in facts.error
        assert elapsed < 1.0


@pytest.mark.parametrize("fake", ["garbage"], indirect=True)
async def test_garbage_is_an_error_not_a_crash(fake: FakeRegistry) -> None:
    async with RegistryClient() as client:
        inspector = ImageInspector(client=client)
        facts = await inspector.facts(request_for(fake), credentials=CredentialStore())
        assert facts.error is not None and "not JSON" in facts.error


@pytest.mark.parametrize("fake", ["tamper"], indirect=True)
async def test_content_that_does_not_match_its_digest_is_not_believed(fake: FakeRegistry) -> None:
    async with RegistryClient() as client:
        inspector = ImageInspector(client=client)
        by_tag = await inspector.facts(request_for(fake), credentials=CredentialStore())
        assert by_tag.error is not None and "neither is believed" in by_tag.error
        by_digest = await inspector.facts(
            request_for(fake, f"app@{fake.digest}"), credentials=CredentialStore()
        )
        assert by_digest.error is not None and "does not match digest" in by_digest.error


@pytest.mark.parametrize("fake", ["bearer"], indirect=True)
async def test_bearer_challenge_is_answered_and_the_token_reused(fake: FakeRegistry) -> None:
    async with RegistryClient() as client:
        inspector = ImageInspector(client=client)
        facts = await inspector.facts(request_for(fake), credentials=CredentialStore())
        assert facts.error is None and facts.user == "1000" and facts.digest == fake.digest
        assert fake.tokens_issued == 1
        client.tags = type(client.tags)(ttl=0)  # force the tag to be asked again
        await client.resolve(Repository(fake.host, "app"), "v1", insecure=frozenset({fake.host}))
        assert fake.tokens_issued == 1


@pytest.mark.parametrize("fake", ["bearer"], indirect=True)
async def test_a_plain_http_token_realm_is_refused_unless_insecure(fake: FakeRegistry) -> None:
    async with RegistryClient() as client:
        with pytest.raises(RegistryError, match="not HTTPS"):
            # The registry itself is reachable only over plain HTTP here; pretend the realm was
            # reached from an HTTPS registry by not listing the host as insecure for the token.
            await client._answer(
                f'Bearer realm="http://{fake.host}/token"',
                Repository(fake.host, "app"),
                frozenset(),
            )


async def test_the_platform_manifest_is_chosen_and_referrers_fall_back_to_the_tag(
    registry: LocalRegistry,
) -> None:
    """A multi-platform index: linux/amd64 is judged, another platform is named in the error;
    the registry has no referrers API, so the ``sha256-<hex>`` tag index is read instead."""
    pusher = registry.client(USER)
    amd = build_image("amd", [Layer()], ImageConfig(user="1"))
    arm = build_image("arm", [Layer()], ImageConfig(user="2"))
    amd.push(pusher, "serving/multi", "amd")
    arm.push(pusher, "serving/multi", "arm")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": arm.digest,
                    "size": len(arm.manifest),
                    "platform": {"os": "linux", "architecture": "arm64"},
                },
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": amd.digest,
                    "size": len(amd.manifest),
                    "platform": {"os": "linux", "architecture": "amd64"},
                },
            ],
        }
    ).encode()
    index_digest = pusher.push_manifest(
        "serving/multi", "v1", index, "application/vnd.oci.image.index.v1+json"
    )
    artifact = {
        "mediaType": OCI_MANIFEST,
        "digest": arm.digest,
        "size": len(arm.manifest),
        "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
    }
    fallback = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [artifact],
        }
    ).encode()
    pusher.push_manifest(
        "serving/multi",
        "sha256-" + amd.digest.split(":")[1],
        fallback,
        "application/vnd.oci.image.index.v1+json",
    )
    credentials = Credentials(USER.username, USER.password)
    repo = Repository(registry.host, "serving/multi", credentials)
    ca = (str(registry.ca_path),)
    async with RegistryClient(settings=RegistrySettings(ca_bundles=ca)) as client:
        top, chosen = await client.platform_manifest(repo, "v1")
        assert top.digest == index_digest and chosen.digest == amd.digest
        found = await client.referrers(repo, amd.digest)
        assert [d.digest for d in found] == [arm.digest]
        typed = await client.referrers(repo, amd.digest, artifact_type="other/type")
        assert typed == ()
        assert await client.referrers(repo, arm.digest) == ()  # no fallback tag: none
        assert await client.tag_manifest(repo, "sha256-" + "0" * 64 + ".sig") is None
    settings = RegistrySettings(ca_bundles=ca, platform="linux/s390x")
    async with RegistryClient(settings=settings) as client:
        with pytest.raises(RegistryError, match=r"no linux/s390x manifest.*linux/arm64"):
            await client.platform_manifest(repo, "v1")

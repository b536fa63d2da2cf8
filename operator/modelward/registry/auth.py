"""Registry credentials from dockerconfigjson, the format of ``kubernetes.io/dockerconfigjson``
pull secrets and of ``~/.docker/config.json``.

The kubelet pulls with the pod's ``imagePullSecrets``, then its ServiceAccount's; the look-up
must see the image the kubelet would, so it uses the same secrets in the same order, then the
operator's own configuration (``--registry-config``). Credentials are never logged and never
leave the process except to the registry they are for.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Docker Hub's names, as clients have written them in config files over the years.
_DOCKER_HUB_KEYS = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/"}
)
#: A pull secret larger than this is not a credential file (Secrets are at most 1 MiB anyway).
MAX_CONFIG_BYTES = 1 << 20


class DockerConfigError(ValueError):
    """A dockerconfigjson that cannot be read; the message names the source and the fix."""


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or identity token) for one registry."""

    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


def registry_key(server: str) -> str:
    """The host[:port] a dockerconfigjson key stands for (keys may be URLs or host/path)."""
    if server in _DOCKER_HUB_KEYS:
        return "docker.io"
    host = server.split("://", 1)[-1].split("/", 1)[0].lower()
    return "docker.io" if host in _DOCKER_HUB_KEYS else host


def parse_docker_config(data: bytes | str, *, source: str) -> dict[str, Credentials]:
    """host -> credentials from one dockerconfigjson (``{"auths": {...}}``, or the legacy
    ``.dockercfg`` form without ``auths``)."""
    if len(data) > MAX_CONFIG_BYTES:
        raise DockerConfigError(f"{source}: larger than 1 MiB, so not a docker config; fix it")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise DockerConfigError(
            f"{source}: not JSON ({error}); write it as .dockerconfigjson "
            "(kubectl create secret docker-registry ...)"
        ) from None
    if not isinstance(document, Mapping):
        raise DockerConfigError(f"{source}: not a JSON object; expected {{'auths': {{...}}}}")
    auths = document.get("auths", document)
    if not isinstance(auths, Mapping):
        raise DockerConfigError(f"{source}: 'auths' is not an object")
    found: dict[str, Credentials] = {}
    for server, entry in auths.items():
        if not isinstance(entry, Mapping):
            continue
        credentials = _entry_credentials(entry, source=source, server=str(server))
        if credentials is not None:
            found.setdefault(registry_key(str(server)), credentials)
    return found


def _entry_credentials(entry: Mapping[str, Any], *, source: str, server: str) -> Credentials | None:
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username:
        return Credentials(username, password)
    encoded = entry.get("auth")
    if not isinstance(encoded, str) or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise DockerConfigError(
            f"{source}: the 'auth' of {server} is not base64 of user:password; re-create "
            "the secret with kubectl create secret docker-registry"
        ) from None
    user, colon, secret = decoded.partition(":")
    if not colon or not user:
        raise DockerConfigError(f"{source}: the 'auth' of {server} has no 'user:password'")
    return Credentials(user, secret)


@dataclass(frozen=True)
class CredentialStore:
    """Credentials in the kubelet's order: each source is a host -> credentials map, and the
    first source that has the host wins (the pod's secrets, then its ServiceAccount's, then
    the operator's configuration)."""

    sources: tuple[Mapping[str, Credentials], ...] = ()

    @classmethod
    def chain(
        cls, *stores: CredentialStore | Iterable[Mapping[str, Credentials]]
    ) -> CredentialStore:
        sources: list[Mapping[str, Credentials]] = []
        for store in stores:
            sources.extend(store.sources if isinstance(store, CredentialStore) else store)
        return cls(tuple(sources))

    def for_registry(self, registry: str) -> Credentials | None:
        key = registry_key(registry)
        for source in self.sources:
            if key in source:
                return source[key]
        return None

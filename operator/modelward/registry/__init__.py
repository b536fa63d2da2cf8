"""Reading images from OCI registries, so admission can judge what an image is.

``client`` speaks the OCI distribution spec v1.1 on aiohttp; ``auth`` finds credentials in
dockerconfigjson pull secrets; ``cache`` keeps content by digest and tags briefly;
``layers`` lists layer tars without keeping them; ``lookups`` gathers the ``ImageFacts`` the
engine's image rules read. The engine never imports this package: look-ups happen before
evaluation and arrive as facts.
"""

from __future__ import annotations

from modelward.registry.auth import Credentials, CredentialStore, DockerConfigError
from modelward.registry.cache import ContentCache, SingleFlight, TagCache
from modelward.registry.client import (
    Descriptor,
    Manifest,
    RegistryClient,
    RegistryError,
    RegistrySettings,
)

__all__ = [
    "ContentCache",
    "CredentialStore",
    "Credentials",
    "Descriptor",
    "DockerConfigError",
    "Manifest",
    "RegistryClient",
    "RegistryError",
    "RegistrySettings",
    "SingleFlight",
    "TagCache",
]

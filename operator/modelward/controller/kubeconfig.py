"""Cluster credentials for the CLI's cluster commands (``inventory``, and any later one),
read as kubectl reads them: ``--kubeconfig`` > ``$KUBECONFIG`` > ``~/.kube/config``, or the
in-cluster service account when none is named and the process runs in a pod; ``--context``
picks a context.

Every way this can fail (no file, a broken or hostile one, an unknown context, an API server
that cannot be reached or refuses) becomes one ``ConfigurationError`` naming the kubeconfig and
the fix, which the CLI prints as one line and exit 2: an unreachable cluster is never mistaken
for a denial (exit 1) and never a traceback.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

from modelward import safeyaml
from modelward.errors import ConfigurationError

KUBECONFIG_FIX = (
    "pass --kubeconfig/--context (or set KUBECONFIG) for a reachable cluster "
    "(check with `kubectl get deployedmodels -A`)"
)


@dataclass(frozen=True)
class ClusterClient:
    api: client.ApiClient
    #: Where the credentials came from, for error messages ("kubeconfig /x (context c)").
    where: str


def kubeconfig_paths(kubeconfig: str | None) -> list[str]:
    raw = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    return [os.path.expanduser(p) for p in raw.split(os.pathsep) if p]


def check_kubeconfig(path: str) -> None:
    """Read the kubeconfig with modelward's bounded YAML loader before the client library
    does (it would expand an alias bomb), so a broken one is a one-line error naming it."""
    try:
        with open(path, "rb") as f:
            text = f.read(safeyaml.MAX_YAML_BYTES + 1).decode("utf-8")
        document = safeyaml.load(text)
    except FileNotFoundError:
        return  # the client library reports a missing file among several paths
    except OSError as exc:
        raise ConfigurationError(
            f"kubeconfig {path}: cannot read: {exc.strerror}", fix=KUBECONFIG_FIX
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"kubeconfig {path}: not UTF-8 text", fix=KUBECONFIG_FIX) from exc
    except safeyaml.UnsafeYaml as exc:
        raise ConfigurationError(
            f"kubeconfig {path}: YAML refused: {safeyaml.describe(exc)}", fix=safeyaml.ALIAS_FIX
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(
            f"kubeconfig {path}: not valid YAML: {safeyaml.describe(exc)}", fix=KUBECONFIG_FIX
        ) from exc
    if document is not None and not isinstance(document, dict):
        raise ConfigurationError(f"kubeconfig {path}: not a kubeconfig map", fix=KUBECONFIG_FIX)


def load_api_client(*, kubeconfig: str | None = None, context: str | None = None) -> ClusterClient:
    """An API client for the named kubeconfig and context (a ``ConfigurationError`` when the
    credentials cannot be loaded). Its own ``Configuration``, never the library's global one."""
    configuration = client.Configuration()
    in_cluster = (
        kubeconfig is None
        and context is None
        and not os.environ.get("KUBECONFIG")
        and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    )
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            where = "the in-cluster service account"
        else:
            paths = kubeconfig_paths(kubeconfig)
            for path in paths:
                check_kubeconfig(path)
            if kubeconfig is not None and not any(os.path.exists(p) for p in paths):
                raise ConfigurationError(
                    f"kubeconfig {kubeconfig}: no such file",
                    fix="pass the path of an existing kubeconfig to --kubeconfig",
                )
            where = f"kubeconfig {os.pathsep.join(paths)}"
            if context:
                where += f" (context {context})"
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.pathsep.join(paths),
                context=context,
                client_configuration=configuration,
            )
    except ConfigException as exc:
        raise ConfigurationError(
            f"cannot load cluster credentials: {' '.join(str(exc).split())}", fix=KUBECONFIG_FIX
        ) from exc
    except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as exc:
        raise ConfigurationError(
            f"cannot load cluster credentials ({type(exc).__name__}: {exc})", fix=KUBECONFIG_FIX
        ) from exc
    return ClusterClient(client.ApiClient(configuration), where)


@contextlib.contextmanager
def api_errors(cluster: ClusterClient, *, resource: str) -> Iterator[None]:
    """Turn what the API server (or the way to it) answers into one ``ConfigurationError``
    naming the credentials used and the fix; ``resource`` ("deployedmodels.modelward.io")
    names what could not be listed."""
    where = cluster.where
    try:
        yield
    except ApiException as exc:
        fix = (
            "install modelward's CRDs (`modelward crds | kubectl apply -f -`)"
            if exc.status == 404
            else f"grant list on {resource}, or use another kubeconfig context"
            if exc.status in (401, 403)
            else KUBECONFIG_FIX
        )
        raise ConfigurationError(
            f"the API server ({where}) answered {exc.status} {exc.reason}", fix=fix
        ) from exc
    except (HTTPError, OSError) as exc:
        raise ConfigurationError(
            f"cannot reach the API server ({where}): {type(exc).__name__}", fix=KUBECONFIG_FIX
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"the API server ({where}) sent an unexpected answer ({type(exc).__name__})",
            fix=KUBECONFIG_FIX,
        ) from exc

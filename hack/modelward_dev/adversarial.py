"""Adversarial pods: shapes a hostile workload author would send to make admission slow.

Each case builds a pod of about ``size`` bytes around one adversarial string or list, starting
from a ``base`` pod (the caller's compliant or realistic pod, which is not modified): strings
that make a backtracking regular expression retry from every position (a format's literal,
repeated, with what must follow it missing), and long lists that would make a nested loop
quadratic. ``tests/unit/engine/test_linear_time.py`` asserts that the cost of every case grows
linearly with ``size``; ``bench/admission/adversarial_bench.py`` reports the worst one at 1 MiB.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

Pod = dict[str, Any]
Build = Callable[[Pod, int], Pod]

#: The annotation that makes a pod declare its model, so integrity rules run to the end.
MODEL_VOLUME = "modelward.io/model-volume"


def repeat(unit: str, size: int, prefix: str = "") -> str:
    """``prefix`` then ``unit`` as often as fits in ``size`` characters (at least once)."""
    return prefix + unit * max(1, (size - len(prefix)) // len(unit))


def _copy(base: Pod) -> Pod:
    pod = copy.deepcopy(base)
    pod["metadata"].setdefault("annotations", {})[MODEL_VOLUME] = "models"
    return pod


def _first(pod: Pod) -> dict[str, Any]:
    container: dict[str, Any] = pod["spec"]["containers"][0]
    return container


def env_value(unit: str, prefix: str = "") -> Build:
    def build(base: Pod, size: int) -> Pod:
        pod = _copy(base)
        _first(pod)["env"] = [{"name": "VALUE", "value": repeat(unit, size, prefix)}]
        return pod

    return build


def env_name(unit: str) -> Build:
    def build(base: Pod, size: int) -> Pod:
        pod = _copy(base)
        _first(pod)["env"] = [{"name": repeat(unit, size), "value": "x" * 40}]
        return pod

    return build


def argument(unit: str, prefix: str = "") -> Build:
    def build(base: Pod, size: int) -> Pod:
        pod = _copy(base)
        _first(pod)["args"] = ["--token", repeat(unit, size, prefix)]
        return pod

    return build


def image(unit: str, prefix: str = "", suffix: str = "") -> Build:
    """The same long reference as the first container's image and as an image volume."""

    def build(base: Pod, size: int) -> Pod:
        pod = _copy(base)
        reference = repeat(unit, size // 2, prefix) + suffix
        _first(pod)["image"] = reference
        volumes = [v for v in pod["spec"].get("volumes") or [] if v.get("name") != "models"]
        pod["spec"]["volumes"] = [*volumes, {"name": "models", "image": {"reference": reference}}]
        return pod

    return build


def many_containers(base: Pod, size: int) -> Pod:
    pod = _copy(base)
    first = _first(pod)
    template = {k: first[k] for k in ("image", "securityContext") if k in first}
    count = size // 400
    pod["spec"]["containers"] = [
        {
            **template,
            "name": f"c{i}-" + "n" * 48,
            "volumeMounts": [{"name": "models", "mountPath": f"/m{i}"}],
            "ports": [{"containerPort": 8000 + i % 1000}],
            "resources": {"limits": {"nvidia.com/gpu": "1"}},
        }
        for i in range(count)
    ]
    pod["spec"]["initContainers"] = [
        {"name": f"modelward-verify-{i}", "image": "x", "args": [f"--key={i}"]}
        for i in range(count)
    ]
    volumes = [v for v in pod["spec"].get("volumes") or [] if v.get("name") != "models"]
    pod["spec"]["volumes"] = [
        *volumes,
        {"name": "models", "persistentVolumeClaim": {"claimName": "m"}},
    ]
    return pod


def many_volumes(base: Pod, size: int) -> Pod:
    pod = _copy(base)
    count = size // 120
    pod["spec"]["volumes"] = [
        {
            "name": f"v{i}",
            "projected": {"sources": [{"serviceAccountToken": {"audience": f"a{i}", "path": "t"}}]},
        }
        for i in range(count)
    ]
    _first(pod)["volumeMounts"] = [{"name": f"v{i}", "mountPath": f"/v{i}"} for i in range(count)]
    return pod


def many_env(base: Pod, size: int) -> Pod:
    pod = _copy(base)
    _first(pod)["env"] = [
        {"name": f"DB_PASSWORD_{i}", "value": f"Tr0ub4dor&3x{i}yz"} for i in range(size // 50)
    ]
    return pod


def many_tolerations(base: Pod, size: int) -> Pod:
    pod = _copy(base)
    count = size // 180  # a toleration, a node label and an affinity term each
    pod["spec"]["tolerations"] = [
        {"key": f"k{i}", "operator": "Equal", "value": "v", "effect": "NoSchedule"}
        for i in range(count)
    ]
    pod["spec"]["nodeSelector"] = {f"label-{i}": "v" for i in range(count)}
    terms = [
        {"matchExpressions": [{"key": f"k{i}", "operator": "In", "values": ["v"]}]}
        for i in range(count)
    ]
    required = {"nodeSelectorTerms": terms}
    pod["spec"]["affinity"] = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}
    }
    _first(pod)["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    return pod


def metadata(value: Callable[[int], str]) -> Build:
    """Long values for every annotation and label a rule reads."""
    keys = (
        MODEL_VOLUME,
        "modelward.io/model-path",
        "modelward.io/model-signature",
        "sidecar.istio.io/inject",
        "linkerd.io/inject",
        "istio.io/dataplane-mode",
    )

    def build(base: Pod, size: int) -> Pod:
        pod = _copy(base)
        share = size // (2 * len(keys))
        pod["metadata"]["annotations"] = {k: value(share) for k in keys}
        pod["metadata"]["labels"] = {k: value(share) for k in keys}
        return pod

    return build


def many_annotations(base: Pod, size: int) -> Pod:
    pod = _copy(base)
    pod["metadata"]["annotations"].update(
        {f"keys.modelward.io/{i}.release": "x" * 20 for i in range(size // 60)}
    )
    return pod


def node_name(base: Pod, size: int) -> Pod:
    pod = _copy(base)
    pod["spec"]["nodeName"] = "n" * size
    return pod


CASES: dict[str, Build] = {
    # Credential formats: each one's literal, repeated, with what must follow it missing.
    "env a:": env_value("a:"),
    "env eyJ.": env_value(".", "eyJ"),
    "env eyJ-": env_value("eyJ-"),
    "env eyJ segments": env_value("eyJaaaaaaaa."),
    "env eyJ long header": env_value("a", "eyJ"),
    "env http://aaa": env_value("a", "http://"),
    "env a://": env_value("a://"),
    "env a://b:x:": env_value("x:", "a://b:"),
    "env @": env_value("@"),
    "env aaa": env_value("a"),
    "env sk-": env_value("sk-"),
    "env sk-ant-": env_value("sk-ant-"),
    "env BEGIN": env_value("-----BEGIN "),
    "env BEGIN AAA": env_value("A", "-----BEGIN "),
    "env AKIA": env_value("AKIA"),
    "env ghp_": env_value("ghp_"),
    "env github_pat_": env_value("github_pat_"),
    "env xoxb-": env_value("xoxb-"),
    "env hf_": env_value("hf_"),
    "env AIza": env_value("AIza"),
    "env rk_live_": env_value("rk_live_"),
    "env you are a": env_value("you are a "),
    "env mixed classes": env_value("aA0!"),
    "env url shape": env_value("a.", "https://"),
    "env host shape": env_value("a.aa"),
    "env long name": env_name("A_"),
    "env long secret name": env_name("PASSWORD"),
    "args http://aaa": argument("a", "http://"),
    "args eyJ-": argument("eyJ-"),
    # Image references: registry/path splitting, allowlist globs, digest shapes.
    "image a/": image("a/", "registry.example.com/"),
    "image x.example.com/": image("a.example.com/"),
    "image aaa": image("a"),
    "image a:": image("a:"),
    "image @": image("@"),
    "image long digest": image("0", "registry.example.com/serving/x@sha256:", "!"),
    "image a.a.": image("a.", "r.example.com/serving/x@", ":0"),
    "image long tag": image("a", "registry.example.com/serving/x:"),
    # Many items: nested loops over containers, mounts, volumes, tolerations, env, keys.
    "many containers": many_containers,
    "many volumes": many_volumes,
    "many env": many_env,
    "many tolerations": many_tolerations,
    "long annotations": metadata(lambda n: "a" * n),
    "long dotted annotations": metadata(lambda n: "a." * (n // 2)),
    "many annotations": many_annotations,
    "long node name": node_name,
}

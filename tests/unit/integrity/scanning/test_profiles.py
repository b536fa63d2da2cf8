"""Trusted-type profiles: real estimators saved by scikit-learn, XGBoost, LightGBM and joblib
themselves are clean with their profile (and unsafe without), every payload family stays
detected with all profiles on, and every trusted name is re-checked against the installed
library (the "checked one by one" of docs/integrity.md, made mechanical)."""

from __future__ import annotations

import importlib
import inspect
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import lightgbm
import numpy as np
import pytest
import sklearn
import xgboost
from sklearn.base import BaseEstimator
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils import all_estimators

from modelward.api.schema import SCAN_PROFILES
from modelward.integrity.commands import main
from modelward.integrity.result import parse_termination_message
from modelward.integrity.scanning import ScanPolicy, scan_bytes, scan_paths
from modelward.integrity.scanning.profiles import PROFILE_NAMES, PROFILES, REVIEWS, resolve

from ..conftest import make_key, make_model, requires_model_signing, sign_key_cli
from . import corpus as c
from .test_corpus import malicious

ALL = ScanPolicy(profiles=PROFILE_NAMES)
X, Y = make_classification(n_samples=60, n_features=5, random_state=0)


def _fitted() -> dict[str, tuple[str, Callable[[], Any]]]:
    return {
        "logistic": ("sklearn", lambda: LogisticRegression().fit(X, Y)),
        "random-forest": ("sklearn", lambda: RandomForestClassifier(n_estimators=3).fit(X, Y)),
        "hist-gb": ("sklearn", lambda: HistGradientBoostingClassifier(max_iter=3).fit(X, Y)),
        "knn": ("sklearn", lambda: KNeighborsClassifier().fit(X, Y)),
        "pipeline": (
            "sklearn",
            lambda: make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y),
        ),
        "xgb-classifier": ("xgboost", lambda: xgboost.XGBClassifier(n_estimators=3).fit(X, Y)),
        "xgb-booster": (
            "xgboost",
            lambda: xgboost.train({}, xgboost.DMatrix(X, label=Y), num_boost_round=2),
        ),
        "lgbm-classifier": (
            "lightgbm",
            lambda: lightgbm.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, Y),
        ),
        "lgbm-booster": (
            "lightgbm",
            lambda: lightgbm.train({"verbose": -1}, lightgbm.Dataset(X, label=Y), 2),
        ),
    }


MODELS = _fitted()


def _save(model: Any, path: Path, how: str) -> None:
    if how.startswith("pickle"):
        path.write_bytes(pickle.dumps(model, protocol=int(how[-1])))
    else:
        joblib.dump(model, path, compress=int(how[-1]))


@pytest.mark.parametrize("how", ["pickle-2", "pickle-5", "joblib-0", "joblib-3"])
@pytest.mark.parametrize("name", list(MODELS))
def test_real_models_are_clean_with_their_profile_only(name: str, how: str, tmp_path: Path) -> None:
    profile, fit = MODELS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = fit()
    path = tmp_path / f"{name}.{how}"
    _save(model, path, how)
    without = scan_paths([str(path)])
    assert without.verdict == "unsafe"
    assert {f.rule for f in without.findings} == {"unknown-global"}
    with_profile = scan_paths([str(path)], policy=ScanPolicy(profiles=(profile,)))
    assert with_profile.verdict == "clean", [f.message for f in with_profile.findings]


@pytest.mark.parametrize("sample", malicious(), ids=lambda s: f"{s.family}/{s.name}")
def test_every_payload_family_is_still_detected_with_every_profile_on(sample: c.Sample) -> None:
    assert scan_bytes(sample.data, name=sample.filename, policy=ALL).verdict == "unsafe"


def test_a_payload_inside_a_real_sklearn_pipeline_is_detected(tmp_path: Path) -> None:
    """A tenant hides a callable in a genuine pipeline: FunctionTransformer stores func."""

    pipe = make_pipeline(FunctionTransformer(func=np.log1p), LogisticRegression()).fit(np.abs(X), Y)
    data = pickle.dumps(pipe, protocol=4)
    # swap the stored function for os.system (same length prefix rewritten by pickle itself)
    evil = data.replace(b"\x8c\x05numpy\x94\x8c\x05log1p", b"\x8c\x02os\x94\x8c\x06system")
    assert evil != data
    report = scan_bytes(evil, policy=ALL)
    assert report.verdict == "unsafe"
    assert any(f.global_name == "os.system" for f in report.findings)


def _reduce_call(module: str, name: str, *args: str) -> bytes:
    return c.proto(4, c.call(module, name, *args))


def test_calling_a_trusted_class_or_a_stored_function_is_a_finding() -> None:
    # Booster(model_file=...) would read any file: libraries create it without calling it
    booster = _reduce_call("xgboost.core", "Booster", "/etc/shadow")
    report = scan_bytes(booster, policy=ALL)
    assert [f.rule for f in report.findings] == ["trusted-type-misuse"]
    assert "allowedGlobals" in report.findings[0].message
    stored = _reduce_call("sklearn.feature_selection._univariate_selection", "f_classif", "x")
    assert scan_bytes(stored, policy=ALL).findings[0].rule == "trusted-type-misuse"
    old = b"(S'x'\nilightgbm.basic\nBooster\n."  # INST calls the class too
    assert scan_bytes(old, policy=ALL).findings[0].rule == "trusted-type-misuse"
    # copyreg._reconstructor(cls, base, state) calls base.__init__: a trusted class as base
    via_base = (
        b"ccopyreg\n_reconstructor\n(csklearn.linear_model._logistic\nLogisticRegression\n"
        b"clightgbm.basic\nBooster\n(dtR."
    )
    assert scan_bytes(via_base, policy=ALL).findings[0].rule == "trusted-type-misuse"
    plain = b"ccopyreg\n_reconstructor\n(csklearn.pipeline\nPipeline\nc__builtin__\nobject\nNtR."
    assert scan_bytes(plain, policy=ALL).verdict == "clean"
    # a reviewed callable (a Cython type's __reduce__) may be called
    tree = _reduce_call("sklearn.tree._tree", "Tree", "x")
    assert scan_bytes(tree, policy=ALL).verdict == "clean"
    # allowedGlobals lifts the restriction for the names it lists
    lifted = ScanPolicy(profiles=PROFILE_NAMES, extra_allowed_globals=frozenset({"xgboost.*"}))
    assert scan_bytes(booster, policy=lifted).verdict == "clean"


def test_profile_names_match_the_crd_schema_and_unknown_ones_are_refused() -> None:
    assert tuple(SCAN_PROFILES) == PROFILE_NAMES
    with pytest.raises(ValueError, match="choose from sklearn, xgboost, lightgbm"):
        resolve(["pytorch"])


# --------------------------------------------------------------------------- vetting


def _resolve(full: str) -> Any:
    module, _, rest = full.rpartition(".")
    while module:
        try:
            obj: Any = importlib.import_module(module)
        except ImportError:
            module, _, head = module.rpartition(".")
            rest = f"{head}.{rest}"
            continue
        for part in rest.split("."):
            obj = getattr(obj, part)
        return obj
    raise AssertionError(f"{full} cannot be imported")


def _review(full: str) -> str | None:
    if full in REVIEWS:
        return REVIEWS[full]
    module = full.rpartition(".")[0]
    for key, text in REVIEWS.items():
        if key.endswith(".*") and full.startswith(key[:-1]):
            return text
        if "*" in key and key.split("*")[0] and full.startswith(key.split("*")[0]):
            return text
        if key == "numpy.<scalar types>" and module == "numpy":
            return text
    return None


ALLOWED_SETSTATE = {BaseEstimator.__setstate__}


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_every_trusted_name_is_what_the_review_says(profile: str) -> None:
    """class: object.__new__ and default pickling, __setstate__ only updates __dict__ (or is
    reviewed); callable: reviewed in writing; reference: a plain function."""
    problems = []
    for full, use in PROFILES[profile].uses.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = _resolve(full)
        review = _review(full)
        if use == "class":
            if not isinstance(obj, type):
                problems.append(f"{full}: not a class")
                continue
            setstate = getattr(obj, "__setstate__", None)
            plain = (
                obj.__new__ is object.__new__
                and obj.__setattr__ is object.__setattr__
                and (setstate is None or setstate in ALLOWED_SETSTATE)
            )
            if not plain and review is None:
                problems.append(f"{full}: own __new__/__setattr__/__setstate__ not reviewed")
        elif use == "callable":
            if review is None:
                problems.append(f"{full}: callable without a written review")
        elif not (inspect.isfunction(obj) or inspect.isbuiltin(obj) or callable(obj)):
            problems.append(f"{full}: reference is not a function")
        elif isinstance(obj, type):
            problems.append(f"{full}: a class listed as a reference")
    assert not problems, "\n".join(problems)


def test_the_sklearn_profile_covers_every_public_estimator() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        public = {
            f"{cls.__module__}.{cls.__qualname__}"
            for _, cls in all_estimators()
            if cls.__module__.startswith("sklearn.")
        }
    missing = public - set(PROFILES["sklearn"].uses)
    assert not missing, f"scikit-learn {sklearn.__version__} estimators not vetted: {missing}"


# --------------------------------------------------------------------------- CLI


def test_scan_profile_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(LogisticRegression().fit(X, Y), path)
    assert main(["scan", str(path)]) == 1
    assert "unknown-global sklearn.linear_model._logistic.LogisticRegression" in (
        capsys.readouterr().out
    )
    assert main(["scan", "--profile", "sklearn", str(path)]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["scan", "--profile", "pytorch", str(path)])
    assert exc.value.code == 2
    assert "invalid choice: 'pytorch'" in capsys.readouterr().err


@pytest.mark.slow
@requires_model_signing
def test_verify_pod_honours_the_profile_it_is_given(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    joblib.dump(LogisticRegression().fit(X, Y), model / "classifier.joblib")
    key = make_key(tmp_path, "k")
    sign_key_cli(model, key, model / "model.sig")
    log = tmp_path / "log"
    base = [
        "verify-pod",
        "--model-path",
        str(model),
        "--signature",
        str(model / "model.sig"),
        "--public-key",
        str(key.public),
        "--termination-log",
        str(log),
    ]
    assert main(base) == 1
    assert parse_termination_message(log.read_text()).scan == "unsafe"
    assert main([*base, "--profile=sklearn"]) == 0
    assert parse_termination_message(log.read_text()).scan == "clean"

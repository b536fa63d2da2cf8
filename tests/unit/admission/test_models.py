"""OCI models verified at admission are recorded in the DeployedModel inventory."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelward.admission.models import AdmittedModels, inventory_updates
from modelward.admission.review import ReviewRequest
from modelward.engine.facts import ImageFacts, ImageLookups, NamespaceFacts
from modelward.engine.image_trust import ImageTrust, ModelTrust, signer_id
from modelward.state import ClusterState
from tests.unit.engine.builders import compliant_pod, policy

DIGEST = "sha256:" + "cd" * 32
MODEL = f"registry.example.com/models/llm@{DIGEST}"
SUBJECT = "sha256:" + "ef" * 32


def _key() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


KEY = _key()


def _state(key: str = KEY) -> ClusterState:
    state = ClusterState()
    state.put_namespace(NamespaceFacts("serving-a"))
    compiled = policy({"images": {"models": {"trustedSigners": [{"name": "m", "publicKey": key}]}}})
    state.put_policy(
        ("ClusterModelPolicy", None, "p"),
        policy=compiled,
        error=None,
        generation=1,
        resource_version="1",
    )
    return state


def _request(*, dry_run: bool = False) -> ReviewRequest:
    pod = compliant_pod()
    pod["spec"]["volumes"].append({"name": "model", "image": {"reference": MODEL}})
    return ReviewRequest(
        uid="u",
        kind="Pod",
        operation="CREATE",
        namespace="serving-a",
        name="model",
        sub_resource="",
        obj=pod,
        old_obj=None,
        dry_run=dry_run,
    )


def _lookups(verified_by: frozenset[str]) -> ImageLookups:
    model = ModelTrust(
        verified_by=verified_by, signatures=1, model_digest=SUBJECT, signer="key:sha256:aa", files=3
    )
    facts = ImageFacts(MODEL, digest=DIGEST, trust=ImageTrust(DIGEST, model=model))
    return ImageLookups({MODEL: facts}, 1_800_000_000.0)


def test_a_model_verified_by_a_policy_signer_is_recorded_under_its_subject_digest() -> None:
    updates = inventory_updates(
        _request(), _lookups(frozenset({signer_id("publicKey", KEY)})), _state()
    )
    assert updates == [
        {
            "digest": SUBJECT,
            "signer": "key:sha256:aa",
            "files": 3,
            "scan": "skipped",
            "lastResult": "verified",
            "lastSeen": "2027-01-15T08:00:00Z",
            "policy": "ClusterModelPolicy p",
            "record": f"admission/Pod/model/{SUBJECT}",
            "workload": {"kind": "Pod", "name": "model"},
        }
    ]


def test_nothing_is_recorded_for_dry_runs_or_other_signers() -> None:
    verified = _lookups(frozenset({signer_id("publicKey", KEY)}))
    assert inventory_updates(_request(dry_run=True), verified, _state()) == []
    assert inventory_updates(_request(), verified, _state(_key())) == []


class _Inventory:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Mapping[str, Any]]] = []

    def upsert_deployed_model(self, namespace: str, update: Mapping[str, Any]) -> bool:
        self.calls.append((namespace, update))
        return True


def test_the_write_happens_after_the_answer_in_the_background() -> None:
    inventory = _Inventory()
    recorder = AdmittedModels(state=_state(), inventory=inventory)

    async def admit() -> None:
        recorder.admitted(_request(), _lookups(frozenset({signer_id("publicKey", KEY)})))
        assert inventory.calls == []  # not written before the review is answered
        await asyncio.gather(*recorder._tasks)

    asyncio.run(admit())
    assert [(ns, u["digest"]) for ns, u in inventory.calls] == [("serving-a", SUBJECT)]

"""The pure policy engine: workloads, policies, rules and decisions.

No kopf, aiohttp or kubernetes imports here (import-linter guards it): the admission server,
the controller and the offline ``modelward check`` CLI all call the same functions.
"""

from modelward.engine.decision import Decision, Finding, Mode, PolicyRef, Subject, Violation
from modelward.engine.evaluate import evaluate_exposure, evaluate_pod_update, evaluate_workload
from modelward.engine.exceptions import Exceptions, PolicyException, parse_exception
from modelward.engine.facts import ClusterFacts, NamespaceFacts, StaticFacts
from modelward.engine.policy import KeySource, Policy, StaticKeySource, parse_policy
from modelward.engine.rules.transport import is_exposure
from modelward.engine.workloads import UnsupportedKind, Workload, workload_from_object

__all__ = [
    "ClusterFacts",
    "Decision",
    "Exceptions",
    "Finding",
    "KeySource",
    "Mode",
    "NamespaceFacts",
    "Policy",
    "PolicyException",
    "PolicyRef",
    "StaticFacts",
    "StaticKeySource",
    "Subject",
    "UnsupportedKind",
    "Violation",
    "Workload",
    "evaluate_exposure",
    "evaluate_pod_update",
    "evaluate_workload",
    "is_exposure",
    "parse_exception",
    "parse_policy",
    "workload_from_object",
]

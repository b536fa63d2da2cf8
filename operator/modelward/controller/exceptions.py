"""What modelward says about each ModelPolicyException: its state, problems, and its expiry.

Admission and the audit judge expiry on their own, at every evaluation, against the clock; an
expired exception needs nobody to stop applying. This loop (on the leader) makes it visible:

- ``status.state`` (Active, Expired, Invalid), ``status.effectiveExpiresAt`` and a ``Ready``
  condition whose reason names what is wrong: ``UnknownPolicy`` (the policy it names does not
  exist), ``RulesNotInPolicy`` (rule IDs the policy does not enable: they waive nothing),
  ``Expired``, ``Invalid``;
- one Warning Event on the exception when it expires (``ExceptionExpired``) or names an unknown
  policy or rule (``ExceptionMisdirected``), and the ``modelward_policy_exceptions_expired``
  counter: each posted only when the status did not already say so, so a restart or a new
  leader does not repeat them;
- the ``modelward_policy_exceptions`` gauge by state.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from modelward.engine.exceptions import EXCEPTION_KIND, format_time
from modelward.engine.rules import enabled_rule_ids
from modelward.observability.metrics import Metrics
from modelward.state import ClusterState, ExceptionEntry, PolicyEntry, PolicyKey

log = logging.getLogger("modelward.exceptions")


class ExceptionStatusApi(Protocol):
    def patch_exception_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None: ...


class EventPoster(Protocol):
    def post(
        self,
        namespace: str,
        involved: Mapping[str, Any],
        reason: str,
        kind: str,
        message: str,
        *,
        action: str = ...,
    ) -> None: ...


def desired_exception_status(
    entry: ExceptionEntry,
    *,
    policies: Mapping[PolicyKey, PolicyEntry],
    now: dt.datetime,
    max_lifetime: dt.timedelta,
) -> dict[str, Any]:
    """The status an exception should carry now (pure; timestamps kept by the caller)."""
    exception = entry.exception
    if exception is None:
        state, reason, message = "Invalid", "Invalid", entry.error or "cannot be compiled"
        return _status(entry, state, reason, message, None)
    expiry = exception.expiry(max_lifetime)
    key: PolicyKey = (
        exception.policy_kind,
        exception.namespace if exception.policy_kind == "ModelPolicy" else None,
        exception.policy_name,
    )
    policy_entry = policies.get(key)
    if now >= expiry:
        state, reason = "Expired", "Expired"
        message = f"expired at {format_time(expiry)}: it waives nothing any more"
    elif policy_entry is None or policy_entry.policy is None:
        state, reason = "Active", "UnknownPolicy"
        where = f" in namespace {exception.namespace}" if key[1] else ""
        message = (
            f"{exception.policy_kind} {exception.policy_name}{where} does not exist (or has "
            "never compiled): this exception waives nothing until it does"
        )
    else:
        enabled = set(enabled_rule_ids(policy_entry.policy))
        missing = sorted(exception.rules - enabled)
        if missing:
            state, reason = "Active", "RulesNotInPolicy"
            message = (
                f"{exception.policy_kind} {exception.policy_name} does not enable "
                f"{', '.join(missing)}: those IDs waive nothing"
            )
        else:
            state, reason = "Active", "Active"
            message = f"waives {', '.join(sorted(exception.rules))} until {format_time(expiry)}"
    return _status(entry, state, reason, message, expiry)


def _status(
    entry: ExceptionEntry, state: str, reason: str, message: str, expiry: dt.datetime | None
) -> dict[str, Any]:
    ready = "True" if reason == "Active" else "False"
    previous: Mapping[str, Any] = next(
        (c for c in (entry.status or {}).get("conditions") or [] if c.get("type") == "Ready"),
        {},
    )
    now = format_time(dt.datetime.now(dt.UTC))
    changed = previous.get("status") != ready or previous.get("reason") != reason
    status: dict[str, Any] = {
        "observedGeneration": entry.generation,
        "state": state,
        "conditions": [
            {
                "type": "Ready",
                "status": ready,
                "reason": reason,
                "message": message[:1000],
                "observedGeneration": entry.generation,
                "lastTransitionTime": now if changed else previous.get("lastTransitionTime", now),
            }
        ],
    }
    if expiry is not None:
        status["effectiveExpiresAt"] = format_time(expiry)
    return status


def _reason(status: Mapping[str, Any] | None) -> str | None:
    for condition in (status or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("reason"))
    return None


def _comparable(status: Mapping[str, Any] | None) -> Any:
    status = status or {}
    conditions = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions") or []
    ]
    return (
        status.get("observedGeneration"),
        status.get("state"),
        status.get("effectiveExpiresAt"),
        conditions,
    )


class ExceptionMonitor:
    """Keeps exception status, Events and metrics current (leader only; see the module doc)."""

    def __init__(
        self,
        *,
        state: ClusterState,
        kube: ExceptionStatusApi | None,
        events: EventPoster,
        metrics: Metrics,
        max_lifetime: dt.timedelta,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.state = state
        self.kube = kube
        self.events = events
        self.metrics = metrics
        self.max_lifetime = max_lifetime
        self.clock = clock
        #: (namespace, name, generation, reason) already announced by this process, so a
        #: status write that has not come back through the watch yet is not announced twice.
        self._announced: set[tuple[str, str, int, str]] = set()

    async def check(self) -> Counter[str]:
        """Judge every exception once: write changed statuses, post the Events due."""
        now = self.clock()
        policies = self.state.policies
        states: Counter[str] = Counter()
        entries = self.state.exception_entries
        # Forget announcements about exceptions that are gone (bounded by what exists).
        self._announced = {a for a in self._announced if (a[0], a[1]) in entries}
        for (namespace, name), entry in sorted(entries.items()):
            desired = desired_exception_status(
                entry, policies=policies, now=now, max_lifetime=self.max_lifetime
            )
            states[desired["state"]] += 1
            reason = _reason(desired)
            if reason != _reason(entry.status) and reason in ANNOUNCED:
                announced = (namespace, name, entry.generation, str(reason))
                if announced not in self._announced:
                    self._announce(namespace, name, entry, desired)
                    self._announced.add(announced)
            if self.kube is not None and _comparable(entry.status) != _comparable(desired):
                try:
                    await asyncio.to_thread(
                        self.kube.patch_exception_status, namespace, name, desired
                    )
                except Exception as exc:
                    log.warning(
                        "could not write the status of exception %s/%s: %s", namespace, name, exc
                    )
        for label in ("Active", "Expired", "Invalid"):
            self.metrics.exceptions.labels(label).set(states.get(label, 0))
        return states

    def _announce(
        self, namespace: str, name: str, entry: ExceptionEntry, desired: Mapping[str, Any]
    ) -> None:
        reason = _reason(desired)
        message = desired["conditions"][0]["message"]
        involved = {
            "apiVersion": "modelward.io/v1alpha1",
            "kind": EXCEPTION_KIND,
            "namespace": namespace,
            "name": name,
            **({"uid": entry.exception.uid} if entry.exception and entry.exception.uid else {}),
        }
        if reason == "Expired":
            self.metrics.exceptions_expired.inc()
            self.events.post(
                namespace, involved, "ExceptionExpired", "Warning", message, action="Expire"
            )
        else:
            self.events.post(
                namespace,
                involved,
                "ExceptionMisdirected",
                "Warning",
                f"{reason}: {message}",
                action="Check",
            )

    async def run(self, *, is_leader: Callable[[], bool], interval: float = 1.0) -> None:
        """Every ``interval`` seconds on the leader: cheap (a pass over the exceptions in
        memory), and writes only what changed."""
        while True:
            try:
                if is_leader():
                    await self.check()
            except Exception as exc:
                log.warning("checking policy exceptions failed: %s", exc)
            await asyncio.sleep(interval)


#: Ready reasons announced with an Event when an exception reaches them.
ANNOUNCED = frozenset({"Expired", "UnknownPolicy", "RulesNotInPolicy", "Invalid"})

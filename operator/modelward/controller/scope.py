"""Keep the fail-open webhooks' namespaces in step with what the policies select.

The chart registers, per configuration, an enforced webhook (``failurePolicy: Fail``, the
namespaces carrying the enforced label) and a fail-open complement (``Ignore``, every other
namespace). Left as rendered, the complement makes the API server call modelward for every
pod created anywhere in the cluster. This module narrows only the complement: it adds to its
``matchConditions`` one condition of its own, named ``modelward.io/policy-scope``,

    !(request.namespace in ["<namespaces no policy selects>", ...])

so the API server skips the call for namespaces the operator *knows* no policy selects. Why
this shape:

- **A namespace the operator has not seen yet is called.** A new namespace, or one created
  while the operator is down, is not in the list, so it is reviewed until the operator knows it
  is unselected: the unknown fails toward review.
- **Skipping fewer names is always safe** (it only costs reviews): the list is capped
  (``MAX_EXCLUDED``), and anything that makes the operator unsure (state not loaded, a policy
  whose newest generation failed to compile) removes the condition altogether, restoring the
  chart's complement. The enforced webhooks are never touched: the chart's static topology is
  the floor, and failing closed where enforced is unchanged.
- **A condition of its own, not the selector.** ``matchConditions`` is a list keyed by name,
  so under server-side apply (``helm upgrade`` with Helm 4) the chart owns its conditions and
  the operator its own, with no conflict; a ``namespaceSelector`` is one atomic field, and an
  operator that rewrote it made every later ``helm upgrade`` fail on the conflict. The
  selector and the chart's or user's conditions are left as they are.

The mutating complement excludes, in addition, namespaces no Patch-mode section selects:
mutation only ever patches in Patch mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from modelward.engine import NamespaceFacts, Policy
from modelward.engine.decision import Mode
from modelward.engine.selectors import LabelSelector, SelectorError, matches_any_glob
from modelward.state import ClusterState, PolicyEntry

log = logging.getLogger("modelward.scope")

#: Name of the match condition the operator owns on each fail-open webhook.
SCOPE_CONDITION = "modelward.io/policy-scope"
#: Most match conditions a webhook may hold (the API server's limit).
MAX_CONDITIONS = 64
#: Webhooks the operator narrows: the chart's fail-open complements, and only those.
FAIL_OPEN_SUFFIX = "-failopen.modelward.io"
#: Most names excluded per webhook (keeps the configuration far below etcd's object size
#: limit); beyond it, the rest are reviewed as before.
MAX_EXCLUDED = 20_000
#: (webhook configuration kind, which complement) pairs.
CONFIGURATION_KINDS: tuple[tuple[str, str], ...] = (
    ("ValidatingWebhookConfiguration", "validate"),
    ("MutatingWebhookConfiguration", "mutate"),
)
#: Attempts to patch a configuration that keeps changing under us (``helm upgrade``).
MAX_ATTEMPTS = 5


def policy_patches(policy: Policy) -> bool:
    """Whether any section of ``policy`` acts in Patch mode (mutation is useful there only)."""
    sections = (policy.isolation, policy.images, policy.transport, policy.secrets)
    return policy.mode is Mode.PATCH or any(
        s is not None and s.mode is Mode.PATCH for s in (*sections, policy.integrity)
    )


@dataclass(frozen=True)
class Scope:
    """Namespaces each complement may skip; None means "skip none" (the chart's complement)."""

    validate: frozenset[str] | None
    mutate: frozenset[str] | None

    def for_webhook(self, which: str) -> frozenset[str] | None:
        return self.validate if which == "validate" else self.mutate


WIDE = Scope(validate=None, mutate=None)


def unselected_namespaces(
    entries: Mapping[Any, PolicyEntry], namespaces: Iterable[NamespaceFacts], *, ready: bool
) -> Scope:
    """The namespaces no policy may govern (validate) and no Patch-mode policy may (mutate).

    A policy may govern a namespace when some pod there could match it: ``match``'s namespace
    criteria hold and ``exclude`` does not rule out every pod (a ``podSelector`` narrows pods,
    never namespaces, so it never excludes one). When the state is not fully loaded, or a
    policy's newest generation failed to compile (what it selects is unknown), nothing may be
    skipped.
    """
    if not ready or any(entry.error is not None for entry in entries.values()):
        return WIDE
    policies = [entry.policy for entry in entries.values() if entry.policy is not None]
    governs = NamespaceIndex(policies)
    patches = NamespaceIndex([p for p in policies if policy_patches(p)])
    skip_validate: set[str] = set()
    skip_mutate: set[str] = set()
    for namespace in namespaces:
        if not governs.may_govern(namespace):
            skip_validate.add(namespace.name)
            skip_mutate.add(namespace.name)
        elif not patches.may_govern(namespace):
            skip_mutate.add(namespace.name)
    return Scope(validate=frozenset(skip_validate), mutate=frozenset(skip_mutate))


class NamespaceIndex:
    """Which namespaces some of ``policies`` may govern, without asking each policy.

    A pass looks at every namespace (10,000 x 100 policies one by one took seconds). Policies
    are grouped by how they select: namespaced policies by their namespace; cluster policies
    without ``exclude`` by their name globs (one combined expression) or their namespace
    selector (identical selectors once); the rest (an exclusion, or names and a selector
    together) are asked one by one. Each group over-approximates nothing away: a namespace
    is governed exactly when ``Policy.may_apply_to_pods_labelled(namespace, {})`` holds for
    some policy, or (namespaced policies) it is the policy's own namespace, which can only
    call more, never less.
    """

    def __init__(self, policies: Iterable[Policy]) -> None:
        own: set[str] = set()
        globs: list[str] = []
        selectors: set[LabelSelector] = set()
        rest: list[Policy] = []
        for policy in policies:
            match = policy.match
            if policy.ref.namespace is not None:
                own.add(policy.ref.namespace)
            elif not policy.exclude.empty:
                rest.append(policy)
            elif match.namespaces is not None and match.namespace_selector is None:
                globs.extend(match.namespaces)
            elif match.namespace_selector is not None and match.namespaces is None:
                selectors.add(match.namespace_selector)
            else:
                rest.append(policy)
        self.own = frozenset(own)
        self.globs = tuple(sorted(set(globs)))
        self.selectors = tuple(selectors)
        self.rest = tuple(rest)

    def may_govern(self, namespace: NamespaceFacts) -> bool:
        if namespace.name in self.own:
            return True
        if self.globs and matches_any_glob(namespace.name, self.globs):
            return True
        if self.selectors:
            labels = namespace.selector_labels()
            if any(selector.matches(labels) for selector in self.selectors):
                return True
        return any(p.governs_namespace(namespace) for p in self.rest)


def skipped_names(
    selector: Mapping[str, Any] | None,
    skip: frozenset[str] | None,
    namespaces: Mapping[str, NamespaceFacts],
) -> list[str]:
    """The names to skip: known, called by the chart's selector (namespaces carrying the
    enforced label, say, never reach the complement anyway), sorted, at most ``MAX_EXCLUDED``.
    None, or a chart selector the operator cannot read, skips nothing."""
    if skip is None:
        return []
    try:
        chart = LabelSelector.parse(selector or {})
    except SelectorError:
        return []
    return sorted(
        name
        for name in skip
        if name in namespaces and chart.matches(namespaces[name].selector_labels())
    )[:MAX_EXCLUDED]


def scope_condition(names: list[str]) -> dict[str, str]:
    """The operator's match condition: call modelward unless the namespace is listed.
    Namespace names are DNS labels, so they need no escaping in a CEL string."""
    listed = ", ".join(f'"{name}"' for name in names)
    return {"name": SCOPE_CONDITION, "expression": f"!(request.namespace in [{listed}])"}


def narrowed_conditions(
    hook: Mapping[str, Any], skip: frozenset[str] | None, namespaces: Mapping[str, NamespaceFacts]
) -> list[dict[str, Any]]:
    """The hook's ``matchConditions`` with the operator's for ``skip`` (None: without it).

    Conditions the chart or the user wrote are kept, in their order; the operator's comes
    last. With no room left (a webhook holds at most 64), nothing is skipped.
    """
    others = [
        dict(c) for c in hook.get("matchConditions") or [] if c.get("name") != SCOPE_CONDITION
    ]
    names = skipped_names(hook.get("namespaceSelector"), skip, namespaces)
    if not names or len(others) >= MAX_CONDITIONS:
        return others
    return [*others, scope_condition(names)]


def scope_patch(
    configuration: Mapping[str, Any],
    skip: frozenset[str] | None,
    namespaces: Mapping[str, NamespaceFacts],
) -> list[dict[str, Any]]:
    """JSON Patch operations narrowing the configuration's fail-open webhooks; [] if in step.

    The first operation tests the resourceVersion read, so a concurrent writer (``helm
    upgrade``, another replica) makes the patch fail rather than be undone.
    """
    ops: list[dict[str, Any]] = []
    for index, hook in enumerate(configuration.get("webhooks") or []):
        if not str(hook.get("name", "")).endswith(FAIL_OPEN_SUFFIX):
            continue
        wanted = narrowed_conditions(hook, skip, namespaces)
        if wanted == (hook.get("matchConditions") or []):
            continue
        path = f"/webhooks/{index}/matchConditions"
        if wanted:
            ops.append({"op": "add", "path": path, "value": wanted})  # add replaces a member
        else:
            ops.append({"op": "remove", "path": path})
    if not ops:
        return []
    version = (configuration.get("metadata") or {}).get("resourceVersion")
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": version}, *ops]


class WebhookConfigurationApi(Protocol):
    def read_webhook_configuration(self, kind: str, name: str) -> dict[str, Any] | None: ...

    def patch_webhook_configuration(
        self, kind: str, name: str, patch: list[dict[str, Any]]
    ) -> None: ...


class WebhookScope:
    """Narrows one configuration pair's fail-open webhooks to what the policies select.

    ``request()`` asks for a pass soon (a namespace changed); ``settle()`` waits for a pass
    that started after it was called (a policy's status is written only once the webhooks
    call modelward wherever it selects). A pass also runs every ``recheck_interval`` seconds,
    so a configuration rewritten by ``helm upgrade`` is narrowed again, and every second while
    the configuration does not exist yet.
    """

    def __init__(
        self,
        *,
        state: ClusterState,
        kube: WebhookConfigurationApi,
        configuration: str,
        recheck_interval: float = 10.0,
        on_pass: Callable[[Scope], None] | None = None,
        narrow: bool = True,
    ) -> None:
        self.narrow = narrow
        self.state = state
        self.kube = kube
        self.configuration = configuration
        self.recheck_interval = recheck_interval
        self.on_pass = on_pass
        self._wake = asyncio.Event()
        self._done = asyncio.Condition()
        self._requested = 0
        self._completed = 0
        self._stopped = False

    def desired(self) -> tuple[Scope, dict[str, NamespaceFacts]]:
        namespaces = self.state.namespaces
        if not self.narrow:
            return WIDE, namespaces
        scope = unselected_namespaces(
            self.state.policies, namespaces.values(), ready=self.state.ready
        )
        return scope, namespaces

    def sync_once(self) -> bool:
        """One blocking pass over both configurations; False when one does not exist (yet)."""
        scope, namespaces = self.desired()
        found = True
        for kind, which in CONFIGURATION_KINDS:
            for _ in range(MAX_ATTEMPTS):
                current = self.kube.read_webhook_configuration(kind, self.configuration)
                if current is None:
                    found = False
                    break
                ops = scope_patch(current, scope.for_webhook(which), namespaces)
                if not ops:
                    break
                try:
                    self.kube.patch_webhook_configuration(kind, self.configuration, ops)
                except ApiException as exc:
                    if exc.status in (409, 422):
                        continue  # changed under us: read it again
                    raise
                skipped = scope.for_webhook(which)
                log.info(
                    "%s/%s: fail-open webhook %s",
                    kind,
                    self.configuration,
                    "restored to the chart's namespaces"
                    if skipped is None
                    else f"skips {len(skipped)} namespaces no policy selects",
                )
                break
        if self.on_pass is not None:
            self.on_pass(scope)
        return found

    def request(self) -> None:
        self._requested += 1
        self._wake.set()

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait (at most ``timeout``) for a pass that began after this call (``run`` makes
        the passes; it is started with the other tasks, so a pass may be waited for before
        its first)."""
        if self._stopped:
            return
        self.request()
        mine = self._requested
        try:
            async with self._done:
                await asyncio.wait_for(
                    self._done.wait_for(lambda: self._completed >= mine), timeout
                )
        except TimeoutError:
            log.warning("the webhook scope did not settle within %.0fs", timeout)

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                target = self._requested
                try:
                    found = await asyncio.to_thread(self.sync_once)
                except Exception as exc:
                    log.warning("cannot narrow the fail-open webhooks (%s); will retry", exc)
                    found = False
                async with self._done:
                    self._completed = max(self._completed, target)
                    self._done.notify_all()
                wait = self.recheck_interval if found else 1.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            self._stopped = True

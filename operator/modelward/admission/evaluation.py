"""Evaluation off the event loop, within a time budget, a bounded number at a time.

The event loop serves ``/healthz``, ``/readyz``, kopf's watches and every other review; an
evaluation that ran on it would stall all of them for as long as it takes. Reviews are judged
in a small thread pool instead (see docs/architecture.md, "Decisions", for why threads and
not processes), and each is answered by its deadline whatever the evaluation does: past the
budget the review is denied with a message naming the budget, and when as many reviews as the
bound allows are in flight (a stuck evaluation keeps its slot until it really ends) a new one
is denied at once rather than queued without bound.

What an evaluation records (Events, policy status counts) is held while it runs in its thread
and replayed on the event loop only if the review was answered with that evaluation: the
recorder is not thread-safe, and a review answered "over budget" must not leave records of a
decision nobody received.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from modelward.admission.review import ReviewRequest, review_response
from modelward.admission.service import DecisionRecorder, Outcome
from modelward.engine import Decision, Subject

log = logging.getLogger("modelward.admission")


@dataclass(frozen=True)
class HeldRecord:
    recorder: DecisionRecorder
    subject: Subject
    decision: Decision
    outcome: str

    def replay(self) -> None:
        self.recorder.record(self.subject, self.decision, outcome=self.outcome)


_HELD: contextvars.ContextVar[list[HeldRecord] | None] = contextvars.ContextVar(
    "modelward_held_records", default=None
)


class DeferredRecorder:
    """A ``DecisionRecorder`` that holds records made inside an evaluation worker (to be
    replayed on the event loop) and passes the others straight through."""

    def __init__(self, inner: DecisionRecorder) -> None:
        self.inner = inner

    def record(self, subject: Subject, decision: Decision, *, outcome: str) -> None:
        held = _HELD.get()
        if held is None:
            self.inner.record(subject, decision, outcome=outcome)
        else:
            held.append(HeldRecord(self.inner, subject, decision, outcome))


@dataclass(frozen=True)
class Evaluated:
    outcome: Outcome
    records: Sequence[HeldRecord] = ()


Judge = Callable[[ReviewRequest], Outcome]


def _run(judge: Judge, request: ReviewRequest, deadline: float) -> Evaluated | None:
    """In a worker: judge the request unless it already waited past its deadline."""
    if time.monotonic() >= deadline:
        return None
    held: list[HeldRecord] = []
    token = _HELD.set(held)
    try:
        return Evaluated(judge(request), tuple(held))
    finally:
        _HELD.reset(token)


def _subject(request: ReviewRequest) -> str:
    return f"{request.kind} {request.namespace}/{request.name}".rstrip("/")


class Evaluator:
    """Runs judgements in ``workers`` threads, with at most ``workers + queue`` in flight."""

    def __init__(
        self,
        *,
        workers: int,
        queue: int,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self.capacity = workers + queue
        self.in_flight = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modelward-eval")
        self._on_change = on_change

    def _changed(self, delta: int) -> None:
        self.in_flight += delta
        if self._on_change is not None:
            self._on_change(self.in_flight)

    def _finished(self, future: asyncio.Future[Evaluated | None]) -> None:
        self._changed(-1)
        if not future.cancelled() and future.exception() is not None:
            # Retrieved here so that an evaluation answered "over budget" that fails later
            # does not log "exception never retrieved"; it is logged once, with its cause.
            log.debug("an evaluation ended with %r", future.exception())

    async def evaluate(
        self, judge: Judge, request: ReviewRequest, *, deadline: float, budget: float
    ) -> Evaluated:
        """The judgement, or a denial naming the budget or the bound; ``deadline`` is in
        ``time.monotonic()`` seconds. Exceptions from ``judge`` propagate."""
        if self.in_flight >= self.capacity:
            return Evaluated(
                Outcome(
                    review_response(
                        request.uid,
                        allowed=False,
                        code=429,
                        message=f"modelward is already judging {self.in_flight} reviews (its "
                        f"limit), so {_subject(request)} is refused to stay safe. Fix: retry "
                        "shortly; if this persists, add replicas or raise --review-workers "
                        "(see the runbook 'Admission overloaded').",
                    ),
                    "overloaded",
                )
            )
        loop = asyncio.get_running_loop()
        self._changed(+1)
        future = loop.run_in_executor(self._pool, _run, judge, request, deadline)
        future.add_done_callback(self._finished)
        done, _ = await asyncio.wait({future}, timeout=max(0.0, deadline - time.monotonic()))
        result = future.result() if done else None
        if result is not None:
            return result
        log.warning(
            "%s was not judged within the %.1f s budget; refused", _subject(request), budget
        )
        return Evaluated(
            Outcome(
                review_response(
                    request.uid,
                    allowed=False,
                    code=504,
                    message=f"modelward could not judge {_subject(request)} within its "
                    f"{budget:g} s budget, so it is refused to stay safe. Fix: retry; if it "
                    "recurs, make the object smaller (fewer containers, shorter values), or "
                    "see the runbook 'Reviews over budget'.",
                ),
                "timeout",
            )
        )

    def shutdown(self) -> None:
        """Stop taking work; running evaluations finish in their threads (not waited for)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

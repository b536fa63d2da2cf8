"""Evaluation never holds the event loop, answers within its budget, and is bounded.

A stand-in judge blocks on a ``threading.Event`` for chosen reviews (the seam), so these tests
do not depend on how fast anything runs: a stuck review stays stuck until the test releases it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from modelward.admission.evaluation import DeferredRecorder, Evaluator
from modelward.admission.review import ReviewRequest
from modelward.admission.service import AdmissionService, Outcome
from modelward.engine import Decision, Subject
from modelward.state import ClusterState
from tests.contract.conftest import ServerOptions, _state, start_server
from tests.contract.test_admission_contract import review
from tests.unit.engine.builders import compliant_pod

STUCK = "stuck"


class StuckJudge:
    """Judges like ``AdmissionService`` except that pods named ``stuck`` block until
    ``release`` is set (at most 30 s, then it raises so an old server cannot hang forever)."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.real = AdmissionService(state=state)
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def _judge(self, request: ReviewRequest, real: Any) -> Outcome:
        if request.name == STUCK:
            self.entered.release()
            if not self.release.wait(30):
                raise RuntimeError("the test never released the stuck review")
        result: Outcome = real(request)
        return result

    def validate(self, request: ReviewRequest) -> Outcome:
        return self._judge(request, self.real.validate)

    def mutate(self, request: ReviewRequest) -> Outcome:
        return self._judge(request, self.real.mutate)


def _pod(name: str) -> dict[str, Any]:
    pod = compliant_pod()
    pod["metadata"]["name"] = name
    return pod


async def _entered(judge: StuckJudge, count: int = 1) -> None:
    for _ in range(count):
        assert await asyncio.to_thread(judge.entered.acquire, True, 30)


async def test_a_stuck_review_does_not_stall_health_or_other_reviews() -> None:
    judge = StuckJudge(_state())
    options = ServerOptions(service=judge, deadline_seconds=1.0)
    async with start_server(options) as server:
        try:
            stuck = asyncio.create_task(server.post("/validate", review(_pod(STUCK))))
            await _entered(judge)
            async with server.session.get(server.health_url + "/healthz") as health:
                assert health.status == 200
            status, answer = await server.post("/validate", review(_pod("other")))
            assert status == 200 and answer["response"]["allowed"] is True
            status, answer = await stuck
            response = answer["response"]
            assert status == 200 and response["allowed"] is False
            assert response["status"]["code"] == 504
            assert "within its 1 s budget" in response["status"]["message"]
            assert "Fix:" in response["status"]["message"]
        finally:
            judge.release.set()


async def test_reviews_beyond_the_bound_are_refused_at_once_not_queued() -> None:
    judge = StuckJudge(_state())
    evaluator = Evaluator(workers=1, queue=1)
    options = ServerOptions(service=judge, evaluator=evaluator, deadline_seconds=20.0)
    async with start_server(options) as server:
        try:
            running = asyncio.create_task(server.post("/validate", review(_pod(STUCK))))
            await _entered(judge)
            queued = asyncio.create_task(server.post("/validate", review(_pod(STUCK))))
            while evaluator.in_flight < 2:
                await asyncio.sleep(0.01)
            # The third review neither waits for the 20 s budget nor for the stuck ones.
            _status, answer = await server.post("/validate", review(_pod("third")))
            response = answer["response"]
            assert response["allowed"] is False and response["status"]["code"] == 429
            assert "already judging 2 reviews" in response["status"]["message"]
            judge.release.set()
            for task in (running, queued):
                _, answer = await task
                assert answer["response"]["allowed"] is True
            while evaluator.in_flight:
                await asyncio.sleep(0.01)
            _, answer = await server.post("/validate", review(_pod("fourth")))
            assert answer["response"]["allowed"] is True
        finally:
            judge.release.set()


async def test_one_users_slow_reviews_leave_room_for_others() -> None:
    """Three reviews stuck (a user's huge dry-run pods), four workers: others are judged."""
    judge = StuckJudge(_state())
    options = ServerOptions(
        service=judge, evaluator=Evaluator(workers=4, queue=0), deadline_seconds=30.0
    )
    async with start_server(options) as server:
        try:
            stuck = [
                asyncio.create_task(server.post("/validate", review(_pod(STUCK)))) for _ in range(3)
            ]
            await _entered(judge, 3)
            for i in range(5):
                _, answer = await server.post("/validate", review(_pod(f"other-{i}")))
                assert answer["response"]["allowed"] is True
            judge.release.set()
            await asyncio.gather(*stuck)
        finally:
            judge.release.set()


class _Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[Subject, str]] = []
        self.threads: set[str] = set()

    def record(self, subject: Subject, decision: Decision, *, outcome: str) -> None:
        self.records.append((subject, outcome))
        self.threads.add(threading.current_thread().name)


async def test_records_happen_on_the_loop_and_only_for_namespaces_that_exist() -> None:
    recorder = _Recorder()
    service = AdmissionService(state=_state(), recorder=DeferredRecorder(recorder))
    async with start_server(ServerOptions(service=service)) as server:
        bad = _pod("bad")
        bad["spec"]["containers"][0]["image"] = "nginx:latest"
        _, answer = await server.post("/validate", review(bad))
        assert answer["response"]["allowed"] is False
        assert [(s.namespace, s.name, o) for s, o in recorder.records] == [
            ("serving-a", "bad", "denied")
        ]
        assert recorder.threads == {threading.current_thread().name}
        # The same review, for a namespace the cluster does not have (sent straight to the
        # port): answered, but no Event and no policy count, and no new label value.
        invented = review(bad)
        invented["request"]["namespace"] = "invented-namespace-1"
        _, answer = await server.post("/validate", invented)
        assert answer["response"]["allowed"] is False
        assert len(recorder.records) == 1


async def test_a_stuck_review_leaves_no_records_when_it_ends_late() -> None:
    recorder = _Recorder()
    state = _state()
    judge = StuckJudge(state)
    judge.real = AdmissionService(state=state, recorder=DeferredRecorder(recorder))
    evaluator = Evaluator(workers=2, queue=0)
    options = ServerOptions(service=judge, evaluator=evaluator, deadline_seconds=0.5)
    async with start_server(options) as server:
        try:
            bad = _pod(STUCK)
            bad["spec"]["containers"][0]["image"] = "nginx:latest"
            _, answer = await server.post("/validate", review(bad))
            assert answer["response"]["status"]["code"] == 504
        finally:
            judge.release.set()
        while evaluator.in_flight:  # the stuck evaluation has really ended (and denied)
            await asyncio.sleep(0.01)
        _, answer = await server.post("/validate", review(_pod("after")))
        assert answer["response"]["allowed"] is True
        assert recorder.records == []

"""A broken engine stops the Kafka consumer, not the backlog (real stack, real model).

The faulty-model hook (``tests/support/faulty_consumer.py``) makes the embedding model raise on
more inputs than ``ENGINE_MAX_CONSECUTIVE_FAILURES`` (default 3): the inputs before the engine
is declared broken are failed, then the consumer exits non-zero without answering or
committing the input it was on, and a healthy consumer of the same group completes the rest.
"""

from __future__ import annotations

import time

import pytest

from tests.support.conversation import conversation
from tests.support.faults import COMPLETED, FAILED, Figures, answers

pytestmark = pytest.mark.integration

LIMIT = 3  # ENGINE_MAX_CONSECUTIVE_FAILURES's default, not set here
INPUTS = 6
FAULTS = 5  # more than LIMIT: enough to fail every input the broken engine would take


def test_a_broken_engine_exits_the_consumer_and_a_healthy_one_completes_the_rest(stack, scenario):
    talks = [conversation(num_speakers=2, duration=10, seed=301 + n).wav.read_bytes() for n in range(INPUTS)]
    world = scenario("engine-broken", partitions=1)  # one partition: the inputs run in order
    faulty = world.consumer(
        # the 1st embedding call after warm-up raises, and the next FAULTS - 1: one per input
        {"FAULT_EMBEDDING_CALL": "1", "FAULT_TIMES": str(FAULTS)},
        name="faulty",
        module="tests.support.faulty_consumer",
    )
    inputs, results = world.inputs, world.results
    for index in range(INPUTS):
        inputs.submit(talks[index])  # all different: a repeated input would count once
    started = time.monotonic()
    try:
        exit_code = faulty.process.wait(300)
    except Exception:
        raise AssertionError(f"the consumer did not exit with a broken engine:\n{faulty.log_tail()}") from None
    log = faulty.log_lines()
    results.drain(3)
    before_restart = {job.event_id: [e.type for e in answers(results.events, job)] for job in inputs.jobs}
    committed = stack.committed(world.group, world.input_topic)
    figures = Figures(
        f"engine broken after {LIMIT} inputs ({FAULTS} faults, {INPUTS} inputs)",
        inputs=INPUTS,
        faults=FAULTS,
        notes={"exit_code": exit_code, "committed_at_exit": committed},
    )
    assert exit_code != 0, f"the consumer exited with 0:\n{log[-4000:]}"
    assert log.count("raising the injected fault") == LIMIT, log[-4000:]
    assert "engine broken" in log
    failed_first = [job.event_id for job in inputs.jobs[: LIMIT - 1]]
    assert before_restart == {
        **{event_id: [FAILED] for event_id in failed_first},
        **{job.event_id: [] for job in inputs.jobs[LIMIT - 1 :]},
    }, before_restart
    assert committed == {0: LIMIT - 1}, f"committed {committed}: the input the engine broke on must stay uncommitted"

    healthy = world.consumer(name="healthy")
    figures.seconds = time.monotonic() - started
    world.check(figures, expected={event_id: FAILED for event_id in failed_first}, timeout=400)
    kinds = [answers(results.events, job)[0].type for job in inputs.jobs]
    assert (kinds.count(FAILED), kinds.count(COMPLETED)) == (LIMIT - 1, INPUTS - LIMIT + 1), kinds
    for job in inputs.jobs[: LIMIT - 1]:
        [failed] = {e.id: e for e in answers(results.events, job)}.values()
        assert failed.data["error"]["code"] == "inference_failed", failed.data
    assert healthy.metric('kafka_messages_total{outcome="completed"}') == INPUTS - LIMIT + 1
    assert healthy.process.poll() is None

"""Threaded stage mechanics: overlap, order, bounded memory, drops, failure and stop."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from pipeline.app.stages import END_TO_END, READ_STAGE, THREAD_PREFIX, LatencyRecorder, Stage, StagePipeline


def sleeper(seconds: float):
    def work(item):
        time.sleep(seconds)
        return item

    return work


def collect(into: list):
    return Stage("collect", into.append)


def stage_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(THREAD_PREFIX)]


def test_slow_stages_overlap_instead_of_serialising():
    """Stage a on item 1 and stage b on item 0 must meet at a barrier: only stages running at once can."""
    meeting = threading.Barrier(2, timeout=30)

    def meet_on(item_to_meet: int):
        def work(item):
            if item == item_to_meet:
                meeting.wait()
            return item

        return work

    out: list[int] = []
    pipeline = StagePipeline(range(10), [Stage("a", meet_on(1)), Stage("b", meet_on(0)), collect(out)])
    assert pipeline.run() is None  # serialised stages would break the barrier: a BrokenBarrierError in a stage
    assert out == list(range(10))


def test_items_leave_in_frame_order_with_uneven_work():
    out: list[int] = []
    jitter = Stage("jitter", lambda i: (time.sleep(0.002 * (i % 3)), i)[1])
    StagePipeline(range(50), [jitter, Stage("double", lambda i: 2 * i), collect(out)], queue_size=2).run()
    assert out == [2 * i for i in range(50)]


def test_slow_sink_bounds_items_in_flight():
    produced = consumed = 0
    in_flight: list[int] = []

    def source():
        nonlocal produced
        for i in range(60):
            produced += 1
            yield i

    def slow_sink(item):
        nonlocal consumed
        time.sleep(0.005)
        consumed += 1
        in_flight.append(produced - consumed)

    stages = [Stage("a", lambda i: i), Stage("b", lambda i: i), Stage("sink", slow_sink)]
    pipeline = StagePipeline(source(), stages, queue_size=2)
    assert pipeline.run() is None
    # Each queue holds at most 2, each stage thread 1, the reader 1 it is trying to put.
    assert max(in_flight) <= 2 * len(stages) + len(stages) + 1
    assert pipeline.frames_done == 60
    # The slow sink's inbox is the one that fills up: the occupancy record points at the bottleneck.
    occupancy = {name: recorder.summary() for name, recorder in pipeline.queue_depth.items()}
    assert occupancy["sink"]["max"] == 2 and occupancy["sink"]["capacity"] == 2
    assert occupancy["sink"]["mean"] > occupancy["a"]["mean"]


def test_lossless_source_never_drops():
    out: list[int] = []
    pipeline = StagePipeline(range(30), [Stage("slow", sleeper(0.01)), collect(out)], queue_size=1)
    pipeline.run()
    assert out == list(range(30)) and pipeline.frames_read == pipeline.frames_done == 30


def test_first_exception_stops_every_stage_and_no_thread_is_left():
    def explode(item):
        if item == 3:
            raise RuntimeError("boom at 3")
        return item

    def endless():
        yield from itertools.count()

    out: list[int] = []
    pipeline = StagePipeline(endless(), [Stage("explode", explode), Stage("later", sleeper(0.001)), collect(out)])
    failure = pipeline.run()
    assert failure is not None and failure.stage == "explode" and str(failure.error) == "boom at 3"
    assert str(failure) == "explode stage failed: boom at 3"
    assert out == list(range(len(out))) and len(out) <= 3  # queued items are abandoned, not processed
    assert pipeline.running_stages() == [] and stage_threads() == []


def test_failure_in_the_source_is_reported_as_the_read_stage():
    def broken():
        yield 1
        raise OSError("disk gone")

    pipeline = StagePipeline(broken(), [Stage("noop", lambda i: i)])
    failure = pipeline.run()
    assert failure.stage == READ_STAGE and isinstance(failure.error, OSError)


def test_only_the_first_of_several_failures_is_kept():
    def fail(item):
        raise ValueError(f"fail {item}")

    failure = StagePipeline(range(5), [Stage("first", fail), Stage("second", fail)]).run()
    assert str(failure.error) == "fail 0" and failure.stage == "first"


def test_stop_ends_a_blocked_pipeline_promptly():
    def endless():
        yield from itertools.count()

    flowing = threading.Event()
    pipeline = StagePipeline(endless(), [Stage("slow", sleeper(0.02)), Stage("sink", lambda i: flowing.set())], queue_size=2)
    pipeline.start()
    assert flowing.wait(30)  # items reach the sink, every queue full behind the slow stage
    pipeline.stop()
    assert pipeline.wait(timeout=30)  # the bound only keeps a broken stop from hanging the suite
    assert pipeline.failure is None and stage_threads() == []


def test_latency_is_recorded_per_stage_and_end_to_end():
    pipeline = StagePipeline(range(20), [Stage("sleepy", sleeper(0.01)), Stage("sink", lambda i: None)])
    pipeline.run()
    sleepy = pipeline.latency["sleepy"].summary()
    assert sleepy["count"] == 20 and 9.0 <= sleepy["p50_ms"] <= sleepy["p95_ms"]
    assert pipeline.latency[END_TO_END].summary()["p50_ms"] >= sleepy["p50_ms"]
    assert pipeline.latency[READ_STAGE].summary()["count"] == 20


def test_latency_percentiles_are_nearest_rank():
    recorder = LatencyRecorder()
    for ms in range(1, 101):
        recorder.add(ms / 1000)
    assert recorder.summary() == {"count": 100, "p50_ms": 50.0, "p95_ms": 95.0}
    assert LatencyRecorder().summary() == {"count": 0, "p50_ms": None, "p95_ms": None}


@pytest.mark.parametrize("stages", [[], [Stage("a", id), Stage("a", id)]])
def test_invalid_pipelines_are_refused(stages):
    with pytest.raises(ValueError):
        StagePipeline(range(3), stages)


def test_reserved_stage_names_are_refused():
    with pytest.raises(ValueError):
        Stage(READ_STAGE, id)

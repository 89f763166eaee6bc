"""The inline fast path of streams/faust_fast.py: same results, exceptions and cancellation as a task."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging

import faust
import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP

from streams.faust_fast import FAUST_VERSION, QuietWorker, finish, start

# sha256 of inspect.getsource(faust.transport.consumer.Consumer._drain_messages) in the version
# FastDrainConsumer was copied from; a new faust-streaming must be reviewed and this updated
ORIGINAL_DRAIN_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"


def test_pinned_faust_version():
    src = inspect.getsource(FaustConsumer._drain_messages)
    digest = hashlib.sha256(src.encode()).hexdigest()
    assert faust.__version__ == FAUST_VERSION, (
        f"faust-streaming {faust.__version__}: review streams/faust_fast.py"
    )
    assert digest == ORIGINAL_DRAIN_SHA256, f"Consumer._drain_messages changed upstream ({digest})"


async def _no_wait(x):
    return x * 2


async def _waits(fut, log):
    log.append("before")
    got = await fut
    log.append("after")
    return got + 1


async def _raises_after_wait(fut):
    await fut
    raise KeyError("boom")


def test_start_completes_inline_without_a_task():
    async def go():
        done, value = start(_no_wait(21))
        assert (done, value) == (True, 42)

    asyncio.run(go())


def test_start_then_finish_equals_awaiting():
    async def go():
        loop = asyncio.get_running_loop()
        fut, log = loop.create_future(), []
        coro = _waits(fut, log)
        done, yielded = start(coro)
        assert not done and log == ["before"]  # ran up to its first wait, inline
        task = asyncio.ensure_future(finish(coro, yielded))
        await asyncio.sleep(0)
        assert not task.done()
        fut.set_result(1)
        assert await task == 2
        assert log == ["before", "after"]

    asyncio.run(go())


def test_finish_propagates_errors_and_cancellation():
    async def go():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        coro = _raises_after_wait(fut)
        done, yielded = start(coro)
        task = asyncio.ensure_future(finish(coro, yielded))
        fut.set_result(None)
        with pytest.raises(KeyError):
            await task

        log: list[str] = []
        fut2 = loop.create_future()
        coro2 = _waits(fut2, log)
        _, yielded2 = start(coro2)
        task2 = asyncio.ensure_future(finish(coro2, yielded2))
        await asyncio.sleep(0)
        task2.cancel()  # what wait_first does when the flow is suspended
        with pytest.raises(asyncio.CancelledError):
            await task2
        assert fut2.cancelled() and log == ["before"]

    asyncio.run(go())


def test_quiet_worker_keeps_the_root_logger_level():
    app = faust.App("quiet-test", broker="memory://", autodiscover=False, web_enabled=False)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        w = QuietWorker(app, loglevel="WARNING", quiet=True)
        w.on_setup_root_logger(root, logging.WARNING)
        assert w.spinner is None
        assert root.level == level and root.handlers == handlers
    finally:
        root.setLevel(level)


def _lane_consumer(rebalancing_count=3, flow_control_active=True, flow_active=True):
    """What FastDrainConsumer._run_lane reads of its consumer, recording tracks and acks."""
    from types import SimpleNamespace

    from streams.faust_fast import FastDrainConsumer

    seen = {"tracked": [], "acked": []}
    consumer = SimpleNamespace(
        app=SimpleNamespace(
            rebalancing_count=rebalancing_count,
            flow_control=SimpleNamespace(is_active=lambda: flow_control_active),
        ),
        flow_active=flow_active,
        should_stop=False,
        log=logging.getLogger("test.lane"),
        track_message=seen["tracked"].append,
        ack=seen["acked"].append,
        _lane_next={},
    )
    consumer._lane_uncollect = lambda messages: FastDrainConsumer._lane_uncollect(consumer, messages)
    return consumer, seen


def _run_lane(consumer, handler, messages, collected_in=3):
    from streams.faust_fast import BatchLane, FastDrainConsumer

    lane = BatchLane("events", handler)
    asyncio.run(FastDrainConsumer._run_lane(consumer, lane, messages, collected_in))


def test_lane_batch_is_tracked_handled_then_acked():
    consumer, seen = _lane_consumer()
    handled = []

    async def handler(messages):
        assert seen["tracked"] == [1, 2, 3] and seen["acked"] == []  # tracked first, acked after
        handled.append(list(messages))

    _run_lane(consumer, handler, [1, 2, 3])
    assert handled == [[1, 2, 3]] and seen["acked"] == [1, 2, 3]


def test_lane_batch_that_raises_is_never_acked():
    consumer, seen = _lane_consumer()

    async def handler(messages):
        raise RuntimeError("model down")

    with pytest.raises(RuntimeError):
        _run_lane(consumer, handler, [1, 2])
    assert seen["acked"] == []  # its offsets stay uncommitted: the batch is processed again


@pytest.mark.parametrize(
    "state", [{"rebalancing_count": 4}, {"flow_control_active": False}, {"flow_active": False}]
)
def test_lane_batch_from_before_a_rebalance_is_dropped_untracked(state):
    """Collected before the current rebalance, or while streams/flow are suspended: dropped, never
    tracked (a rebalance would wait for it) nor acked (the seek to committed fetches it again)."""
    consumer, seen = _lane_consumer(**state)
    consumer._lane_next[TP("events", 0)] = 13  # collected up to 12

    async def handler(messages):
        raise AssertionError("a dropped batch must not be handled")

    _run_lane(consumer, handler, [_Msg(TP("events", 0), 11), _Msg(TP("events", 0), 12)])
    assert seen == {"tracked": [], "acked": []}
    # and its partition expects them again (a seek, or _lane_in_order, fetches them again)
    assert consumer._lane_next == {TP("events", 0): 11}


class _Msg:
    def __init__(self, tp, offset):
        self.tp, self.offset = tp, offset


def _in_order_consumer():
    """What FastDrainConsumer._lane_in_order reads and does, recording its seeks and gaps."""
    from types import SimpleNamespace

    from streams.faust_fast import FastDrainConsumer

    seen = {"seeks": [], "gaps": []}

    async def seek(tp, offset):
        seen["seeks"].append((tp, offset))

    async def add_gap(tp, a, b):
        seen["gaps"].append((tp, a, b))

    consumer = SimpleNamespace(
        _lane_next={},
        _lane_reseek={},
        _fetch_no=1,
        log=logging.getLogger("test.lane"),
        seek=seek,
        _add_gap=add_gap,
    )

    def in_order(offset, fetched_in):
        return asyncio.run(FastDrainConsumer._lane_in_order(consumer, TP("events", 0), offset, fetched_in))

    return consumer, seen, in_order


def test_lane_takes_each_partition_in_offset_order():
    consumer, seen, in_order = _in_order_consumer()
    assert in_order(40, 1)  # nothing expected yet: taken
    assert in_order(41, 1) and not in_order(41, 1) and not in_order(30, 1)  # passed already: skipped
    # 43 when 42 is expected: 42 never arrived, so the partition is sought back to it
    assert not in_order(43, 1) and seen["seeks"] == [(TP("events", 0), 42)]
    assert not in_order(44, 1)  # the rest of that fetch, from before the seek: skipped
    consumer._fetch_no = 2
    assert in_order(42, 2) and in_order(43, 2)  # fetched again, in order
    assert seen["gaps"] == [] and len(seen["seeks"]) == 1


def test_lane_accepts_a_gap_that_is_in_the_log():
    consumer, seen, in_order = _in_order_consumer()
    assert in_order(10, 1) and not in_order(13, 1)  # sought back to 11
    consumer._fetch_no = 2
    assert in_order(13, 2)  # fetched after the seek and still past 11: the log has no 11, 12
    assert seen["gaps"] == [(TP("events", 0), 11, 13)] and in_order(14, 2)

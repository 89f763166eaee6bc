"""The inline fast path of streams/faust_fast.py: same results, exceptions and cancellation as a task."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from collections import Counter

import faust
import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP

from streams.faust_fast import FAUST_VERSION, FastDrainConsumer, QuietWorker, finish, start

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


class _Msg:
    def __init__(self, tp, offset):
        self.tp, self.offset = tp, offset


def _lane_consumer(rebalancing_count=3, flow_control_active=True, flow_active=True, open_in=3):
    """A FastDrainConsumer's lane state without a broker: seeks and commits are recorded."""
    from types import SimpleNamespace

    from streams.faust_fast import FastDrainConsumer

    seen = {"seeks": [], "commits": []}

    class Kafka:  # aiokafka's consumer, on its thread
        def seek(self, tp, offset):
            seen["seeks"].append((tp, offset))
            seen.setdefault("open_at_seek", []).append(consumer.lanes_open())

    async def call_thread(fun, *args):
        return await fun(*args)

    async def commit(offsets):
        seen["commits"].append(dict(offsets))
        seen.setdefault("open_at_commit", []).append(consumer.lanes_open())
        return True

    consumer = SimpleNamespace(
        app=SimpleNamespace(
            rebalancing_count=rebalancing_count,
            flow_control=SimpleNamespace(is_active=lambda: flow_control_active),
        ),
        flow_active=flow_active,
        should_stop=False,
        log=logging.getLogger("test.lane"),
        _thread=SimpleNamespace(_ensure_consumer=Kafka, call_thread=call_thread),
        _commit=commit,
        _committed_offset={},
        _read_offset={},
        _lane_next={},
        _lane_sought={},
        _lane_open_in=open_in,
        _fetch_no=1,
        lane_counts=Counter(),
    )
    for name in (
        "lanes_open",
        "_lane_expect",
        "_lane_seek",
        "_lane_in_order",
        "_run_lane",
        "_commit_lane_offsets",
    ):
        setattr(consumer, name, getattr(FastDrainConsumer, name).__get__(consumer))
    return consumer, seen


def _run_lane(consumer, handler, messages, collected_in=3):
    from streams.faust_fast import BatchLane

    asyncio.run(consumer._run_lane(BatchLane("events", handler), messages, collected_in))


E0, E1 = TP("events", 0), TP("events", 1)


def test_lane_batch_is_handled_then_its_next_offsets_committed():
    consumer, seen = _lane_consumer()
    handled = []

    async def handler(messages):
        assert seen["commits"] == []  # committed only once the handler returned
        handled.append(list(messages))

    batch = [_Msg(E0, 5), _Msg(E1, 9), _Msg(E0, 6)]
    _run_lane(consumer, handler, batch)
    assert handled == [batch] and seen["commits"] == [{E0: 7, E1: 10}]
    assert consumer._committed_offset == {E0: 7, E1: 10}


def test_lane_batch_that_raises_is_never_committed_and_closes_the_lanes():
    consumer, seen = _lane_consumer()

    async def handler(messages):
        raise RuntimeError("model down")

    with pytest.raises(RuntimeError):
        _run_lane(consumer, handler, [_Msg(E0, 1), _Msg(E0, 2)])
    assert seen["commits"] == [] and not consumer.lanes_open()  # until a rebalance reopens them


@pytest.mark.parametrize(
    "state",
    [
        {"rebalancing_count": 4},  # collected before the current rebalance
        {"rebalancing_count": 4, "open_in": 4},  # ... even once the lanes reopened
        {"open_in": None},  # lanes closed: recovery under way
        {"flow_control_active": False},
        {"flow_active": False},
    ],
)
def test_lane_batch_from_before_a_rebalance_is_dropped(state):
    """Dropped unhandled and uncommitted: the rebalance seeks the partitions to where their
    recovered states resume, which fetches it again."""
    consumer, seen = _lane_consumer(**state)

    async def handler(messages):
        raise AssertionError("a dropped batch must not be handled")

    _run_lane(consumer, handler, [_Msg(E0, 11), _Msg(E0, 12)])
    assert seen == {"seeks": [], "commits": []} and consumer.lane_counts == {"dropped": 2}


def _in_order(consumer, offset, fetched_in):
    return asyncio.run(consumer._lane_in_order(E0, offset, fetched_in))


def test_lane_takes_each_partition_in_offset_order():
    consumer, seen = _lane_consumer()
    assert _in_order(consumer, 40, 1)  # nothing expected yet: taken
    assert _in_order(consumer, 41, 1) and not _in_order(consumer, 41, 1)  # passed already: skipped
    assert not _in_order(consumer, 30, 1)
    # 43 when 42 is expected: aiokafka's position went past 42, so the partition is sought back
    assert not _in_order(consumer, 43, 1) and seen["seeks"] == [(E0, 42)]
    assert not _in_order(consumer, 44, 1)  # the rest of that fetch, returned before the seek
    assert len(seen["seeks"]) == 1
    consumer._fetch_no = 2
    assert _in_order(consumer, 42, 2) and _in_order(consumer, 43, 2)  # fetched again, in order
    assert consumer.lane_counts == {"passed": 2, "refetched": 1}  # the worker's stats show these


def test_lane_takes_the_expected_offset_from_any_fetch():
    """An offset is a record's identity: the expected one is taken even from a fetch made before
    the last seek, and what aiokafka then fetches again from the seek is skipped."""
    consumer, seen = _lane_consumer()
    consumer._lane_next[E0] = 10
    consumer._lane_sought[E0] = (10, 5, False)  # the rebalance's seek, while fetch 5 ran
    assert _in_order(consumer, 10, 5) and _in_order(consumer, 11, 5)
    assert not _in_order(consumer, 10, 6) and not _in_order(consumer, 11, 6) and _in_order(consumer, 12, 6)
    assert seen["seeks"] == []


def test_lane_seeks_again_after_a_seek_made_while_a_fetch_ran():
    """perform_seek runs beside the drain loop: the fetch in flight may have moved aiokafka's
    position past the sought offset, so a later offset from it seeks again (from the loop)."""
    consumer, seen = _lane_consumer()
    consumer._fetch_no = 5
    consumer._lane_next[E0] = 10
    consumer._lane_sought[E0] = (10, 5, False)
    assert not _in_order(consumer, 14, 5) and seen["seeks"] == [(E0, 10)]
    assert consumer._lane_sought[E0] == (10, 5, True)
    assert not _in_order(consumer, 15, 5) and len(seen["seeks"]) == 1  # the rest of fetch 5


def test_lane_accepts_a_gap_that_is_in_the_log():
    consumer, seen = _lane_consumer()
    assert _in_order(consumer, 10, 1) and not _in_order(consumer, 13, 1)  # sought back to 11
    consumer._fetch_no = 2
    assert _in_order(consumer, 13, 2)  # fetched after the seek and still past 11: no 11, 12 in the log
    assert _in_order(consumer, 14, 2) and seen["seeks"] == [(E0, 11)]
    assert consumer.lane_counts == {"refetched": 1, "holes": 1}


def test_lanes_open_at_the_resume_offsets():
    """After a rebalance's seek each lane partition is sought to where its lane's ``resume``
    says (None: left where the consumer is), and the lanes open for that rebalance. Where the
    resume offset is ahead of the group's committed one (the last owner's final commit never
    came) it is committed at once; a resume offset behind the committed one is never committed
    (the commit would move back)."""
    from streams.faust_fast import BatchLane

    consumer, seen = _lane_consumer(rebalancing_count=7, open_in=None)
    resumed = []
    E2 = TP("events", 2)

    def resume(partition, committed):
        resumed.append((partition, committed))
        return {0: 100, 1: None, 2: 40}[partition]

    consumer.app.batch_lanes = {"events": BatchLane("events", None, resume=resume)}
    consumer.assignment = lambda: {E0, E1, E2, TP("changelog", 0)}
    consumer._committed_offset = {E0: 60, E1: 3, E2: 45}
    consumer._lane_next[E1] = 50
    assert not consumer.lanes_open()
    asyncio.run(FastDrainConsumer._open_lanes(consumer, 7))
    assert sorted(resumed) == [(0, 60), (1, 3), (2, 45)]
    assert sorted(seen["seeks"]) == [(E0, 100), (E2, 40)] and consumer._lane_next == {E0: 100, E2: 40}
    assert consumer._lane_sought[E0] == (100, 1, False) and consumer.lanes_open()
    # open before the seek: what a fetch brings meanwhile is judged by its offset, not dropped
    assert seen["open_at_seek"] == [True, True]
    assert seen["commits"] == [{E0: 100}] and consumer._committed_offset[E0] == 100
    assert seen["open_at_commit"] == [False]  # before any batch of this rebalance can commit
    assert consumer.lane_counts == {"catchup_commits": 1}
    assert consumer._committed_offset[E2] == 45


def test_a_failed_commit_on_opening_is_logged_not_raised(caplog):
    """The states hold the offsets: a commit refused on opening (a rebalance again) must not
    stop the lanes from opening."""
    from streams.faust_fast import BatchLane

    consumer, seen = _lane_consumer(rebalancing_count=2, open_in=None)

    async def refused(offsets):
        raise RuntimeError("rebalance in progress")

    consumer._commit = refused
    consumer.app.batch_lanes = {"events": BatchLane("events", None, resume=lambda p, c: 10)}
    consumer.assignment = lambda: {E0}
    consumer._committed_offset = {}
    with caplog.at_level(logging.WARNING, logger="test.lane"):
        asyncio.run(FastDrainConsumer._open_lanes(consumer, 2))
    assert consumer.lanes_open() and seen["seeks"] == [(E0, 10)] and E0 not in consumer._committed_offset
    assert "rebalance in progress" in caplog.text and consumer.lane_counts["commits_failed"] == 1


def test_only_the_seek_that_ends_a_rebalance_opens_the_lanes():
    """``perform_seek`` with the flow running (the end of a rebalance) opens the lanes after
    Faust's own seek; the one ``getmany`` makes while the flow is stopped does not."""
    from unittest import mock

    from faust.transport.drivers import aiokafka as faust_aiokafka

    consumer = object.__new__(FastDrainConsumer)  # no broker: only what perform_seek reads
    calls = []

    async def faust_seek(self):
        calls.append("faust")

    async def open_lanes(count):
        calls.append(("open", count))

    consumer.app = type("App", (), {"rebalancing_count": 4})()
    consumer._open_lanes = open_lanes
    with mock.patch.object(faust_aiokafka.Consumer, "perform_seek", faust_seek):
        consumer.flow_active = False
        asyncio.run(consumer.perform_seek())
        assert calls == ["faust"]
        consumer.flow_active = True
        asyncio.run(consumer.perform_seek())
        assert calls == ["faust", "faust", ("open", 4)]

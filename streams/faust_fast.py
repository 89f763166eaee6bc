"""Three faust-streaming hot spots, replaced for the worker's throughput (profiled, then measured).

1. **The per-message drain.** ``faust.transport.consumer.Consumer._drain_messages`` hands every
   fetched message to the conductor through ``Service.wait_first(callback(message),
   suspend_flow.wait())``: four tasks, two ``Event.wait`` coroutines and an ``asyncio.wait`` per
   message, about a fifth of the worker's CPU at 5k events/s (py-spy with ``--gil``). Almost every
   delivery completes without ever suspending (the stream's queue has room, flow is active), so
   ``FastDrainConsumer`` runs the callback's first step inline and only falls back to the same
   ``wait_first`` (same cancellation on a flow suspension, same stop handling) when the callback
   actually waits. The rest of the loop is the original's (one nested ``if`` merged into one).
2. **Batch lanes.** Even inline, Faust's per-event path (conductor callback, Event, channel queue,
   Stream, sensors, per-event ack) costs about 37 us of CPU per event with no processing at all
   (``faust.App`` with an empty agent drains 13.5k events/s, 18k with the fast path above). A topic
   registered with ``LiftStreamApp.batch_lane`` skips it: its fetched messages are collected into
   batches (at most ``max_batch`` messages, at most ``within_s`` after the first) and handed to
   the lane's handler, which runs inline in the drain loop. Right before the handler runs they
   are tracked like Faust tracks them (``Consumer.track_message``); when it returns, each is
   acknowledged through ``Consumer.ack``, so offsets are committed by Faust exactly as for a
   stream, and a handler that raises leaves its batch unacknowledged (processed again). A batch
   collected before a rebalance began is dropped unprocessed and fetched again from the
   committed offsets after it (``_run_lane``). A lane partition's messages are collected in
   offset order from its last seek: one already passed is skipped, and one past the next
   expected offset means the records in between were fetched and lost on the way, so the
   partition is sought back to them (``_lane_in_order``). Under CPU load a restarted worker of
   the crash test lost exactly one fetch (200 records) of a partition at its resume point
   without this: never processed, never fetched again, its commits stuck there.
   Changelog and other topics keep Faust's path.
3. **The spinner's root logger.** ``faust.Worker`` installs a terminal-spinner handler and sets
   the *root* logger to DEBUG even at ``--loglevel warning``, so every ``log.debug`` in aiokafka
   and Faust builds a ``LogRecord`` (about 5% of the worker's CPU). ``QuietWorker`` skips it.

All are written against faust-streaming 0.15.3; ``tests/test_faust_fast.py`` pins the original
source of the drain loop so that an upgrade fails a test instead of silently diverging.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from time import monotonic
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service

FAUST_VERSION = "0.15.3"  # the version _drain_messages below was copied from


@types.coroutine
def resume(coro: Coroutine, yielded: Any):
    """Run ``coro`` to its end, given that its first step already ran and yielded ``yielded``.

    A generator-based coroutine that forwards what the task sends or throws, so it can be handed
    to ``asyncio.ensure_future`` (the task then drives the rest of ``coro``).
    """
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - a cancellation or error thrown in by the task
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def finish(coro: Coroutine, yielded: Any) -> Any:
    """``resume`` as a native coroutine (what ``Service.wait_first`` and tasks accept)."""
    return await resume(coro, yielded)


def start(coro: Coroutine) -> tuple[bool, Any]:
    """Run the first step of ``coro``: (True, its result) when it finished without waiting,
    else (False, what it yielded) to be finished with ``resume``."""
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, yielded


@dataclass(frozen=True)
class BatchLane:
    """A topic whose messages go to ``handler(messages)`` in batches instead of Faust streams."""

    topic: str
    handler: Callable[[list], Awaitable[None]]
    max_batch: int = 2000
    within_s: float = 0.2


class FastDrainConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer with an inline fast path for message delivery (see module doc)."""

    _fetch_no = 0  # getmany calls made by the drain loop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lane_next: dict = {}  # lane partition -> the offset its next message must have
        self._lane_reseek: dict = {}  # lane partition -> (offset sought again, _fetch_no then)

    async def _lane_in_order(self, tp: Any, offset: int, fetched_in: int) -> bool:
        """Whether a lane message is the next one of its partition (see the module doc).

        A partition's messages are collected in offset order from where the consumer last sought
        it: an offset already passed is skipped (fetched again after a seek), and one past the
        expected offset means that the records in between were fetched and lost on the way; the
        partition is then sought back to the expected offset and the message skipped. Only a
        message fetched after that seek and still past it is taken, the log having no records in
        between (transaction markers, compaction), and the gap is acknowledged as Faust does."""
        nxt = self._lane_next.get(tp)
        if nxt is not None and offset != nxt:
            if offset < nxt:
                return False
            sought = self._lane_reseek.get(tp)
            if sought is None or sought[0] != nxt:
                self.log.warning(
                    "batch lane %s: offsets %d-%d of partition %d never arrived; fetching them again",
                    tp.topic,
                    nxt,
                    offset - 1,
                    tp.partition,
                )
                self._lane_reseek[tp] = (nxt, self._fetch_no)
                try:
                    await self.seek(tp, nxt)
                except Exception as exc:  # noqa: BLE001 - revoked meanwhile: the rebalance seeks
                    self._lane_reseek.pop(tp, None)
                    self.log.warning("seeking partition %d back failed: %r", tp.partition, exc)
                return False
            if fetched_in <= sought[1]:
                return False  # fetched before that seek
            await self._add_gap(tp, nxt, offset)
        self._lane_next[tp] = offset + 1
        return True

    def _lane_uncollect(self, messages: list) -> None:
        """Collected messages dropped unprocessed: their partitions expect them again, so that a
        rebalance's seek or, without one, ``_lane_in_order`` fetches them again."""
        for message in messages:
            tp = message.tp
            self._lane_next[tp] = min(self._lane_next.get(tp, message.offset), message.offset)

    async def perform_seek(self) -> None:
        """Faust's seek of every partition to its committed offset; lanes expect those next."""
        await super().perform_seek()
        for tp in self.assignment():
            if tp.topic in self.app.batch_lanes:
                self._lane_reseek.pop(tp, None)
                offset = self._committed_offset.get(tp)
                if offset is None:
                    self._lane_next.pop(tp, None)
                else:
                    self._lane_next[tp] = offset

    async def _drain_messages(self, fetcher) -> None:  # pragma: no cover - runs in every worker test
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        # LiftStream: batch lanes (topic -> BatchLane) and the batch being collected for each
        lanes: dict[str, BatchLane] = self.app.batch_lanes
        pending: dict[str, list] = {name: [] for name in lanes}
        deadline: float | None = None  # when the oldest collected message must be handed over
        collected_in = 0  # app.rebalancing_count when the oldest collected message was fetched
        flow_control = self.app.flow_control  # Faust's switch for its streams (off until recovered)

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                timeout = 1.0 if deadline is None else max(deadline - monotonic(), 0.0)
                self._fetch_no += 1
                fetched_in = self._fetch_no  # which getmany call this iteration's records come from
                ait = cast(AsyncIterator, getmany(timeout=timeout))

                # Sleeping because sometimes getmany is called in a loop
                # never releasing to the event loop
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        lane = lanes.get(tp.topic) if lanes else None
                        if lane is not None:  # LiftStream: collected for the lane's handler
                            if not flow_control.is_active():
                                # streams are suspended (table recovery, rebalance): Faust
                                # clears what its queues hold when it resumes, after seeking
                                # to the committed offsets; so is this message
                                set_read_offset(tp, offset)
                                continue
                            if not await self._lane_in_order(tp, offset, fetched_in):
                                continue
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if deadline is not None and self.app.rebalancing_count != collected_in:
                                # what was collected before a rebalance is dropped: the
                                # rebalance ended with a seek to the committed offsets, and
                                # this message may be one of those fetched again, so it must
                                # not share a batch with them (the whole batch is dropped)
                                for name in pending:
                                    self._lane_uncollect(pending[name])
                                    pending[name] = []
                                deadline = None
                            batch = pending[tp.topic]
                            batch.append(message)
                            if deadline is None:
                                deadline = monotonic() + lane.within_s
                                collected_in = self.app.rebalancing_count
                            if len(batch) >= lane.max_batch:
                                pending[tp.topic] = []
                                await self._run_lane(lane, batch, collected_in)
                            set_read_offset(tp, offset)
                            continue
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            # We have a gap in income messages
                            if gap > 1 and r_offset:
                                acks_enabled = acks_enabled_for(message.topic)
                                if acks_enabled:
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            # LiftStream: the inline fast path (the original always awaits
                            # wait_first(callback(message), suspend_flow.wait()))
                            coro = callback(message)
                            done, yielded = start(coro)
                            if not done:
                                await self.wait_first(finish(coro, yielded), self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev(
                                "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                                offset,
                                message.key,
                                message.value,
                            )
                    unset_flag(flag_consumer_fetching)
                # LiftStream: hand over the collected batches when due (or when the flow stopped)
                if deadline is not None and (
                    monotonic() >= deadline or not self.flow_active or self.should_stop
                ):
                    deadline = None
                    for name, batch in pending.items():
                        if batch:
                            pending[name] = []
                            await self._run_lane(lanes[name], batch, collected_in)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)

    async def _run_lane(self, lane: BatchLane, messages: list, collected_in: int) -> None:
        """Process one batch of a lane and acknowledge its messages (see the module doc).

        Collected messages are tracked (``track_message``) only here, right before the handler
        runs: a rebalance waits (``Consumer.wait_empty``) for every tracked message to be acked,
        and the drain loop cannot hand a batch over while ``getmany`` waits for the flow to
        resume, so messages tracked while still being collected would stall the rebalance. A
        batch collected before a rebalance began (or while one runs, or while Faust's streams are
        suspended for table recovery: ``app.flow_control``) is dropped unprocessed and
        unacknowledged: the rebalance ends with a seek to the committed offsets, which fetches
        those messages again. Processing them would apply events to states not yet recovered.
        """
        app = self.app
        if (
            app.rebalancing_count != collected_in
            or not app.flow_control.is_active()
            or not self.flow_active
            or self.should_stop
        ):
            self.log.info(
                "batch lane %s: %d message(s) dropped, fetched again after the rebalance",
                lane.topic,
                len(messages),
            )
            self._lane_uncollect(messages)
            return
        track = self.track_message
        for message in messages:  # no await between the check above and this: no rebalance starts
            track(message)
        await lane.handler(messages)
        ack = self.ack
        for message in messages:
            ack(message)


class FastTransport(faust_aiokafka.Transport):
    Consumer = FastDrainConsumer


class LiftStreamApp(faust.App):
    """``faust.App`` whose consumer transport is ``FastTransport`` (for kafka:// brokers), with
    batch lanes (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.batch_lanes: dict[str, BatchLane] = {}  # topic name -> lane
        super().__init__(*args, **kwargs)

    def batch_lane(self, topic, handler, *, max_batch: int = 2000, within_s: float = 0.2) -> BatchLane:
        """Subscribe ``topic`` (a ``faust.Topic`` of one topic name) and send its messages to
        ``handler(list of Message)`` in batches; each is acknowledged once the handler returns."""
        (name,) = topic.topics
        lane = self.batch_lanes[name] = BatchLane(name, handler, max_batch=max_batch, within_s=within_s)
        self.topics.add(topic)  # the conductor subscribes it; no stream reads it
        return lane

    def _new_transport(self):
        url = self.conf.broker_consumer[0]
        if url.scheme != "kafka":
            return super()._new_transport()
        return FastTransport(self.conf.broker_consumer, self)


class QuietWorker(faust.Worker):
    """``faust.Worker`` without the terminal spinner, whose handler puts the root logger at DEBUG."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None

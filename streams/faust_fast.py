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
   the lane's handler, which runs inline in the drain loop.

   The handler saves, with its states, the last offset of each partition they include; the lane
   keeps no offsets of its own that could disagree with them:

   - *Opening.* A lane is closed from the start of a rebalance until the rebalance has recovered
     the tables and Faust seeks to the committed offsets (``perform_seek``); then each of its
     partitions is sought to where the lane's ``resume`` says (the worker: right after the last
     offset its recovered states include) and the lane opens. What is fetched while it is closed
     (Faust resumes the flow to read the changelogs, with input records still on the way) is
     dropped, and so is a batch collected before the rebalance.
   - *Order.* A partition's messages are taken strictly in offset order from there
     (``_lane_in_order``): the expected offset is taken whichever fetch brought it, an offset
     already passed is skipped, and a later one means aiokafka's position went past records the
     lane never took (around a seek), so the partition is sought back to the expected offset.
     A batch therefore always continues its partition's states exactly.
   - *Commits.* Lane messages are neither tracked nor acknowledged through Faust: after the
     handler returns, the lane commits each partition's next offset itself. The commit only
     matters where the states say nothing (a new group) and for the lag an operator sees, so a
     failed or late commit (a rebalance under way) loses nothing. Where the recovered states
     are ahead of the group's committed offset (the last owner's final commit failed or never
     came), the lane commits their resume offset on opening, so a partition with no new records
     does not show that lag for ever. A handler that raises closes the lanes until the next
     rebalance.

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
from collections import Counter
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
    """A topic whose messages go to ``handler(messages)`` in batches instead of Faust streams.

    ``resume(partition, committed)``: where a partition's messages must resume once a rebalance
    has recovered the tables (default: the group's committed offset; None: wherever the consumer
    starts)."""

    topic: str
    handler: Callable[[list], Awaitable[None]]
    max_batch: int = 2000
    within_s: float = 0.2
    resume: Callable[[int, int | None], int | None] | None = None


class FastDrainConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer with an inline fast path for message delivery and batch lanes
    (see the module doc)."""

    _fetch_no = 0  # getmany calls made by the drain loop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lane_next: dict = {}  # lane partition -> the offset its next message must have
        # lane partition -> (offset sought, _fetch_no then, sought from the drain loop itself)
        self._lane_sought: dict = {}
        self._lane_open_in: int | None = None  # app.rebalancing_count the lanes were opened in
        # what the lanes had to mend, for the worker's stats: records skipped as already taken
        # ("passed"), re-seeks for records that never arrived ("refetched"), holes accepted,
        # messages of dropped batches, catch-up commits on opening, commits refused or failed
        self.lane_counts: Counter[str] = Counter()

    def lanes_open(self) -> bool:
        """Whether lane messages may be collected and handled now: the lanes were opened (sought
        to where the recovered tables resume) after the current rebalance, and the flow runs."""
        app = self.app
        return (
            self._lane_open_in == app.rebalancing_count
            and self.flow_active
            and app.flow_control.is_active()
            and not self.should_stop
        )

    def _lane_expect(self, tp: Any, offset: int, *, inside: bool) -> None:
        """Expect ``offset`` next on a lane partition, about to be sought there. ``inside``: sought
        from the drain loop between two ``getmany`` calls, so every record of the calls made so
        far was returned before the seek."""
        self._lane_next[tp] = offset
        self._lane_sought[tp] = (offset, self._fetch_no, inside)
        self._read_offset[tp] = offset if offset else None

    async def _lane_seek(self, tp: Any, offset: int) -> None:
        """Seek a lane partition to ``offset`` on the consumer's own thread (aiokafka is not
        thread-safe; Faust's ``seek`` calls it from this one)."""
        consumer = self._thread._ensure_consumer()

        async def seek() -> None:
            consumer.seek(tp, offset)

        try:
            await self._thread.call_thread(seek)
        except Exception as exc:  # noqa: BLE001 - revoked meanwhile: the rebalance reopens the lanes
            self.log.warning("seeking partition %d to %d failed: %r", tp.partition, offset, exc)

    async def _lane_in_order(self, tp: Any, offset: int, fetched_in: int) -> bool:
        """Whether a lane message is the next one of its partition (see the module doc).

        A partition's messages are taken strictly in offset order from where the lanes were
        opened (``perform_seek``): an offset is a record's identity, so the expected one is taken
        whichever fetch brought it, and one already passed is skipped. One past the expected
        offset means that aiokafka's position went past records the lane never took (fetched
        around a seek, or dropped with a batch): the partition is sought back from the drain
        loop, and the rest of that fetch skipped. Only when a fetch started after such a seek
        still brings a later offset does the log have no records in between (transaction
        markers, compaction), and the message is taken."""
        nxt = self._lane_next.get(tp)
        if nxt is None or offset == nxt:
            self._lane_next[tp] = offset + 1
            return True
        if offset < nxt:
            self.lane_counts["passed"] += 1
            return False
        sought = self._lane_sought.get(tp)
        if sought is not None and sought[0] == nxt and sought[2]:
            if fetched_in <= sought[1]:
                return False  # returned before that seek, which fetches the partition again
            self.log.warning(
                "batch lane %s: partition %d has no records at offsets %d-%d; going on from %d",
                tp.topic,
                tp.partition,
                nxt,
                offset - 1,
                offset,
            )
            self._lane_next[tp] = offset + 1
            self.lane_counts["holes"] += 1
            return True
        self.lane_counts["refetched"] += 1
        self.log.warning(
            "batch lane %s: offsets %d-%d of partition %d never arrived; fetching them again",
            tp.topic,
            nxt,
            offset - 1,
            tp.partition,
        )
        self._lane_expect(tp, nxt, inside=True)
        await self._lane_seek(tp, nxt)
        return False

    async def perform_seek(self) -> None:
        """Faust's seek of every partition to its committed offset; then, when the flow runs
        (the call that ends a rebalance, after the tables were recovered, not the one ``getmany``
        makes while the flow is stopped), the lanes open (``_open_lanes``)."""
        opening = self.flow_active
        count = self.app.rebalancing_count
        await super().perform_seek()
        if opening:
            await self._open_lanes(count)

    async def _open_lanes(self, rebalancing_count: int) -> None:
        """Open the lanes for that rebalance, each partition expected at where its lane's
        ``resume`` says (from the committed offsets Faust's seek just read), then seek them there.

        The lanes open before the seeks: a record fetched meanwhile is then judged by its offset
        (``_lane_in_order``), where a closed lane would drop it after aiokafka's position had
        passed it, with nothing later in a partition's tail to show the loss. Resume offsets ahead
        of the group's committed ones are committed first, while the lanes are still closed, so
        that no batch's later commit can be overtaken by them."""
        lanes = self.app.batch_lanes
        seeks, ahead = [], {}
        for tp in self.assignment():
            lane = lanes.get(tp.topic)
            if lane is None:
                continue
            committed = self._committed_offset.get(tp)
            offset = committed if lane.resume is None else lane.resume(tp.partition, committed)
            if offset is None:
                self._lane_next.pop(tp, None)
                self._lane_sought.pop(tp, None)
            else:
                self._lane_expect(tp, offset, inside=False)
                seeks.append((tp, offset))
                if committed is None or offset > committed:
                    ahead[tp] = offset
        if ahead:  # before opening: no batch of this rebalance can have committed a later offset yet
            self.lane_counts["catchup_commits"] += len(ahead)
            self.log.info(
                "batch lanes resume where their states stop, ahead of the group's commits: committing %s",
                {tp.partition: offset for tp, offset in ahead.items()},
            )
            await self._commit_lane_offsets(ahead)
        self._lane_open_in = rebalancing_count
        for tp, offset in seeks:
            await self._lane_seek(tp, offset)

    async def _commit_lane_offsets(self, offsets: dict) -> None:
        """Commit lane partitions' next offsets; a failure is logged, not raised (the states hold
        the offsets, and the next batch commits again)."""
        try:
            if await self._commit(offsets):
                self._committed_offset.update(offsets)
            else:
                self.lane_counts["commits_refused"] += 1
        except Exception as exc:  # noqa: BLE001
            self.lane_counts["commits_failed"] += 1
            self.log.warning("committing %s failed: %r", sorted({tp.topic for tp in offsets}), exc)

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
                            if not self.lanes_open():
                                # a rebalance, table recovery or a stop: the rebalance ends
                                # by seeking the lane's partitions to where the recovered
                                # states resume (perform_seek), so this message comes again
                                set_read_offset(tp, offset)
                                continue
                            if deadline is not None and self.app.rebalancing_count != collected_in:
                                # collected before a rebalance: dropped, the rebalance sought
                                # the partitions to where the recovered states resume
                                for name in pending:
                                    pending[name] = []
                                deadline = None
                            if not await self._lane_in_order(tp, offset, fetched_in):
                                continue
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
        """Process one batch of a lane, then commit its offsets (see the module doc).

        A batch collected before the current rebalance, or while the lanes are closed (a
        rebalance, table recovery, a stop), is dropped unprocessed: processing it would apply
        events to states not yet recovered, and the rebalance ends by seeking each lane partition
        to where its recovered states resume (``perform_seek``), which fetches it again. (Faust
        stops the flow only for a rebalance or a stop.) Lane messages are neither tracked nor
        acknowledged through Faust: the handler saves, with the states, the last offset of each
        partition they include, and the lanes resume there (``BatchLane.resume``), so the commit
        after the handler is only where a partition resumes when its states say nothing, and
        what an operator sees as the group's lag. A handler that raises closes the lanes until
        the next rebalance; nothing of its batch is committed.
        """
        if self.app.rebalancing_count != collected_in or not self.lanes_open():
            self.lane_counts["dropped"] += len(messages)
            self.log.info(
                "batch lane %s: %d message(s) dropped, fetched again after the rebalance",
                lane.topic,
                len(messages),
            )
            return
        try:
            await lane.handler(messages)
        except BaseException:
            self._lane_open_in = None
            raise
        offsets = {}
        for message in messages:
            offsets[message.tp] = message.offset + 1
        await self._commit_lane_offsets(offsets)


class FastTransport(faust_aiokafka.Transport):
    Consumer = FastDrainConsumer


class LiftStreamApp(faust.App):
    """``faust.App`` whose consumer transport is ``FastTransport`` (for kafka:// brokers), with
    batch lanes (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.batch_lanes: dict[str, BatchLane] = {}  # topic name -> lane
        super().__init__(*args, **kwargs)

    def batch_lane(
        self,
        topic,
        handler,
        *,
        max_batch: int = 2000,
        within_s: float = 0.2,
        resume: Callable[[int, int | None], int | None] | None = None,
    ) -> BatchLane:
        """Subscribe ``topic`` (a ``faust.Topic`` of one topic name) and send its messages to
        ``handler(list of Message)`` in batches, in offset order per partition from where
        ``resume(partition, committed offset)`` says after each rebalance (see ``BatchLane``)."""
        (name,) = topic.topics
        lane = self.batch_lanes[name] = BatchLane(
            name, handler, max_batch=max_batch, within_s=within_s, resume=resume
        )
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

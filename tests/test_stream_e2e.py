"""The Faust worker against a real Kafka-protocol broker (Tansu) and a real ClickHouse server.

Each test runs ``python -m streams.app`` workers as subprocesses with their own app id, topics
and database, replays the simulator's tiny world into Kafka and compares what ClickHouse holds
(after FINAL, wall-clock columns aside) with what the same Processor makes of the same events
in-process. Fault tests (bad input, late sales) live in test_stream_faults.py.

    .venv/bin/pytest tests/test_stream_e2e.py -q
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from schemas.topics import EVENTS, topic_names
from streams.services import start_clickhouse
from streams.sinks import open_store
from tests.stream_support import (
    PY,
    REPO,
    WorkerProc,
    commit_offsets,
    committed_offsets,
    committed_total,
    counts_final,
    dump_changelog,
    expected_rows,
    payloads,
    produce,
    sim_events,
    store_rows,
    wait_for,
    worker_argv,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def world() -> tuple[list[bytes], dict[str, set], dict]:
    """The tiny world's events as payloads, and the in-process reference rows and counts."""
    items = payloads(sim_events("tiny", seed=0))
    rows, totals = expected_rows(items, EVENTS)
    return items, rows, totals


def _workers(n, tmp_path, argv, env=None):
    return [
        WorkerProc(argv, tmp_path / f"worker{i}.log", tmp_path / f"worker{i}.json", dict(env or {}))
        for i in range(n)
    ]


def _assert_same(store, db, expected, workers):
    got = store_rows(store, db)
    if got != expected:
        print("dead letters in ClickHouse:", sorted((r[3], r[4][:200]) for r in got["dead_letters"])[:10])
    for table, rows in expected.items():
        assert got[table] == rows, (
            f"{table}: {len(got[table])} rows in ClickHouse, {len(rows)} expected; "
            f"missing {sorted(rows - got[table])[:3]}, extra {sorted(got[table] - rows)[:3]}\n"
            + "\n".join(w.log_tail() for w in workers)
        )


def _done(workers, n):
    return lambda: sum(w.received() for w in workers) >= n and all(w.stats().get("totals") for w in workers)


def test_end_to_end_matches_in_process(world, kafka_broker, clickhouse_server, unique_name, tmp_path):
    items, expected, totals = world
    db = f"db_{unique_name}"
    (w,) = _workers(1, tmp_path, worker_argv(kafka_broker.bootstrap, clickhouse_server.url + db, unique_name))
    w.start()
    try:
        # through the command line, as an operator would replay the world
        out = subprocess.run(
            [
                PY,
                "-m",
                "streams.cli",
                "produce",
                "--bootstrap",
                kafka_broker.bootstrap,
                "--topic-prefix",
                f"{unique_name}.",
                "--preset",
                "tiny",
                "--seed",
                "0",
                "--rate",
                "5000",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0 and f"produced {len(items)} events" in out.stdout, out.stdout + out.stderr
        wait_for(lambda: w.received() >= len(items) or not w.alive(), 90, "the worker to take every event")
        assert w.alive(), w.log_tail()
        got_totals = w.stats()["totals"]
        assert got_totals["received"] == len(items)
        assert {k: got_totals.get(k, 0) for k in totals} == dict(totals)
        store = open_store(clickhouse_server.url + db)
        _assert_same(store, db, expected, [w])
        # every input is accounted for: rows out (input tables) + dead letters == in, less duplicates
        n = counts_final(store, db)
        assert n["videos"] + n["engagement_daily"] + n["sales_daily"] + n["dead_letters"] == len(items)
        assert n["forecasts"] > 0 and n["advice"] == n["videos"]
    finally:
        w.stop()


def test_two_workers_split_products(world, kafka_broker, clickhouse_server, unique_name, tmp_path):
    items, expected, _ = world
    db = f"db_{unique_name}"
    ws = _workers(2, tmp_path, worker_argv(kafka_broker.bootstrap, clickhouse_server.url + db, unique_name))
    for w in ws:
        w.start()
    try:
        # both members in the group, the 4 partitions split between them, before any event
        def split():
            a, b = (set(w.stats().get("assigned", [])) for w in ws)
            return a and b and not a & b and a | b == {0, 1, 2, 3}

        wait_for(split, 60, "two workers to share the 4 partitions")
        produce(kafka_broker.bootstrap, topic_names(f"{unique_name}.")["events"], items)
        wait_for(_done(ws, len(items)), 90, "the two workers to take every event")
        received = [w.received() for w in ws]
        assert all(r > 0 for r in received) and sum(received) == len(items), received
        # each product's state lives in exactly one worker
        assert sum(w.stats()["products"] for w in ws) == len({e for e in _product_ids(items)})
        _assert_same(open_store(clickhouse_server.url + db), db, expected, ws)
    finally:
        for w in ws:
            w.stop()


@pytest.mark.parametrize("fetch", ["plain", "slow_fetch"])
def test_a_worker_joining_and_leaving_mid_stream_loses_nothing(
    world, kafka_broker, clickhouse_server, unique_name, tmp_path, fetch
):
    """Scale out and back in while events flow (what an operator does with a Faust deployment):
    a second worker joins a running one part way through the stream and takes half the
    partitions, whose states it recovers from the changelog; later it stops (SIGTERM) and the
    first takes them back. Every event is applied exactly once across the two and the rows equal
    an in-process run's. ``slow_fetch`` holds every 3rd non-empty fetch 0.25 s on the consumer
    thread, so records fetched before a rebalance's seeks arrive after them
    (tests/faults/sitecustomize.py)."""
    items, expected, totals = world
    db = f"db_{unique_name}"
    argv = worker_argv(
        kafka_broker.bootstrap, clickhouse_server.url + db, unique_name, batch_max=200, loglevel="info"
    )
    env = (
        {"PYTHONPATH": str(FAULTS), "LIFTSTREAM_FAULT_SLOW_FETCH": "3:0.25"} if fetch == "slow_fetch" else {}
    )
    first, second = ws = _workers(2, tmp_path, argv, env)
    topic = topic_names(f"{unique_name}.")["events"]
    group = f"app_{unique_name}"
    n = len(items)
    first.start()
    producer = None
    try:
        wait_for(
            lambda: len(first.stats().get("assigned", [])) == 4,
            60,
            "the first worker to take all 4 partitions",
        )
        producer = threading.Thread(
            target=produce, args=(kafka_broker.bootstrap, topic, items), kwargs={"rate": 250}
        )
        producer.start()
        wait_for(lambda: first.received() >= n // 5, 30, "the first worker to be mid-stream")
        second.start()
        wait_for(
            lambda: len(second.stats().get("assigned", [])) == 2 and second.received() > 0,
            60,
            "the second worker to take 2 partitions and events from them",
        )
        at_join = first.received()
        time.sleep(2)  # both workers process side by side for a while
        second.stop()  # scale back in: the first worker takes its partitions back
        assert at_join < n, "the second worker joined after the end of the stream"
        producer.join(60)
        applied = lambda: [w.stats().get("totals", {}).get("applied", 0) for w in ws]  # noqa: E731
        try:
            # the group's committed offsets reach the end too: a partition with nothing new after
            # the rebalance has its lag cleared when the lane opens (FastDrainConsumer._open_lanes)
            wait_for(
                lambda: committed_total(kafka_broker.bootstrap, group, topic) >= n and sum(applied()) >= n,
                90,
                "the first worker to take the rest and commit it",
                interval_s=0.5,
            )
        except AssertionError:
            print(
                "committed:", committed_offsets(kafka_broker.bootstrap, group, topic), "applied:", applied()
            )
            print("stats:", [(w.stats().get("offsets"), w.stats().get("lane")) for w in ws])
            raise
        assert all(applied()) and sum(applied()) == totals["applied"], applied()  # each event once
        _assert_same(open_store(clickhouse_server.url + db), db, expected, ws)
    finally:
        if producer is not None:
            producer.join(60)
        first.stop()
        second.stop()


def test_moving_to_more_partitions_by_copy_and_replay(
    world, kafka_broker, clickhouse_server, unique_name, tmp_path
):
    """The documented way past the partition count (deploy/README.md, "Scaling"): the events sit
    on a 2-partition input topic; ``liftstream repartition`` copies them into a new 4-partition
    one, and a new deployment (its own prefix and app id, 4 partitions, 2 workers) replays them.
    Its rows equal the in-process run's, each event applied once."""
    items, expected, totals = world
    db = f"db_{unique_name}"
    old = f"{unique_name}.old."
    produce(kafka_broker.bootstrap, topic_names(old)["events"], items, partitions=2)
    out = subprocess.run(
        [PY, "-m", "streams.cli", "repartition", "--bootstrap", kafka_broker.bootstrap]
        + ["--from-prefix", old, "--to-prefix", f"{unique_name}.", "--partitions", "4"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and f"copied {len(items)} records" in out.stdout, out.stdout + out.stderr
    ws = _workers(2, tmp_path, worker_argv(kafka_broker.bootstrap, clickhouse_server.url + db, unique_name))
    for w in ws:
        w.start()
    try:
        applied = lambda: sum(w.stats().get("totals", {}).get("applied", 0) for w in ws)  # noqa: E731
        wait_for(lambda: applied() >= totals["applied"], 90, "the new deployment to replay every event")
        assert applied() == totals["applied"]
        _assert_same(open_store(clickhouse_server.url + db), db, expected, ws)
    finally:
        for w in ws:
            w.stop()


def _process_first_half(bootstrap, topic, group, first_half):
    """Produce the first half and wait until the running worker has committed all of it."""
    produce(bootstrap, topic, first_half)
    wait_for(
        lambda: committed_total(bootstrap, group, topic) >= len(first_half),
        60,
        "the first half to be processed and committed",
        interval_s=0.5,
    )


SESSION_TIMEOUT_S = 6  # worker_argv's --session-timeout
FAULTS = REPO / "tests" / "faults"  # sitecustomize.py: fault injection in worker subprocesses


@pytest.mark.parametrize("restart", ["after_session_timeout", "at_once", "slow_changelog", "slow_fetch"])
def test_crash_recovery_restores_state_from_changelog(
    world, kafka_broker, clickhouse_server, unique_name, tmp_path, restart
):
    """SIGKILL mid-stream, restart: the states come back from the changelog and the rows equal an
    uninterrupted run's. ``after_session_timeout`` restarts once the broker has expired the killed
    member (one rebalance); ``at_once`` restarts while it is still in the group (two);
    ``slow_changelog`` is ``at_once`` with every 25th changelog record delayed 0.3 s before
    aiokafka's producer takes it (Faust's flush before a commit gives up after 0.1 s): offsets
    must still never be committed ahead of the states; ``slow_fetch`` is ``at_once`` with every
    3rd non-empty fetch held 0.25 s on the consumer thread, so fetches are in flight while the
    rebalances' seeks move the partitions (tests/faults/sitecustomize.py)."""
    items, expected, _ = world
    db = f"db_{unique_name}"
    argv = worker_argv(
        kafka_broker.bootstrap, clickhouse_server.url + db, unique_name, batch_max=200, loglevel="info"
    )
    env = {}
    if restart == "slow_changelog":
        env = {"PYTHONPATH": str(FAULTS), "LIFTSTREAM_FAULT_SLOW_CHANGELOG": "25:0.3"}
    elif restart == "slow_fetch":
        env = {"PYTHONPATH": str(FAULTS), "LIFTSTREAM_FAULT_SLOW_FETCH": "3:0.25"}
    first, second = _workers(2, tmp_path, argv, env)
    topic = topic_names(f"{unique_name}.")["events"]
    group = f"app_{unique_name}"
    first.start()
    producer = None
    try:
        half = len(items) // 2
        _process_first_half(kafka_broker.bootstrap, topic, group, items[:half])
        # the second half arrives while the worker runs; SIGKILL it part way through
        producer = threading.Thread(
            target=produce, args=(kafka_broker.bootstrap, topic, items[half:]), kwargs={"rate": 1500}
        )
        producer.start()
        wait_for(lambda: first.received() >= half + 300, 30, "the worker to be mid-stream")
        first.kill()
        producer.join(60)
        killed_at = first.received()
        assert killed_at < len(items), "the kill came after the end of the stream"
        committed = committed_total(kafka_broker.bootstrap, group, topic)
        if restart == "after_session_timeout":
            # the broker expires a member that sent no heartbeat for the session timeout
            time.sleep(SESSION_TIMEOUT_S + 2)
        second.start()
        store = open_store(clickhouse_server.url + db)
        try:
            wait_for(
                lambda: committed_total(kafka_broker.bootstrap, group, topic) >= len(items),
                90,
                f"the restarted worker to take the rest ({committed} committed at the kill)",
                interval_s=0.5,
            )
            # it resumed at the committed offsets (or where its recovered states stop, were that
            # earlier), never seeing the first half again, so the equal rows prove the states
            # came back from the changelog: fresh states would give other revisions, forecasts
            # and alerts (events the states already hold count as duplicates)
            applied = second.stats()["totals"].get("applied", 0)  # duplicates apart
            assert committed >= half and 0 < applied <= len(items) - half
            _assert_same(store, db, expected, [first, second])
        except AssertionError:  # what the changelog and the group hold, for the post-mortem
            changelog = f"{group}-product_state-changelog"
            dump_changelog(kafka_broker.bootstrap, changelog, tmp_path / "changelog.jsonl")
            print("committed:", committed_offsets(kafka_broker.bootstrap, group, topic))
            raise
    finally:
        if producer is not None:
            producer.join(60)
        first.stop()
        second.stop()


def _restart_pair(kafka_broker, clickhouse_server, unique_name, tmp_path):
    """(database, first worker, second worker, input topic, group) of a kill-and-restart test."""
    db = f"db_{unique_name}"
    argv = worker_argv(
        kafka_broker.bootstrap, clickhouse_server.url + db, unique_name, batch_max=200, loglevel="info"
    )
    first, second = _workers(2, tmp_path, argv)
    return db, first, second, topic_names(f"{unique_name}.")["events"], f"app_{unique_name}"


def _wait_second_half(worker, bootstrap, group, topic, n_applied: int, n_committed: int, what: str) -> int:
    """Wait until ``worker`` applied ``n_applied`` events and the group committed ``n_committed``
    (or the worker died); returns what it applied. Waits on what was applied, not received:
    records the batch lane skipped and fetched again (``FastDrainConsumer._lane_in_order``) are
    received twice, so a received count can reach the total while a partition's replayed range
    is still being fetched."""
    applied = lambda: worker.stats().get("totals", {}).get("applied", 0)  # noqa: E731
    wait_for(
        lambda: (
            (applied() >= n_applied and committed_total(bootstrap, group, topic) >= n_committed)
            or not worker.alive()
        ),
        90,
        what,
        interval_s=0.5,
    )
    return applied()


def test_offsets_committed_ahead_of_the_states_are_replayed(
    world, kafka_broker, clickhouse_server, unique_name, tmp_path
):
    """The states, not the group's committed offsets, say where a partition resumes.

    The first worker processes the first half and is killed; then the group's offsets are moved
    forward past 40 events of every partition that no worker ever processed, which is what a
    commit that overtook its changelog records would leave (the failure class the
    ``slow_changelog`` variant provokes). The restarted worker must find in the recovered table
    that its states stop earlier and resume there: the rows equal an uninterrupted run's."""
    items, expected, _ = world
    db, first, second, topic, group = _restart_pair(kafka_broker, clickhouse_server, unique_name, tmp_path)
    half = len(items) // 2
    first.start()
    try:
        _process_first_half(kafka_broker.bootstrap, topic, group, items[:half])
        first.kill()
        produce(kafka_broker.bootstrap, topic, items[half:])
        time.sleep(SESSION_TIMEOUT_S + 2)  # the killed member expires: the group is empty
        ahead = {p: o + 40 for p, o in committed_offsets(kafka_broker.bootstrap, group, topic).items()}
        commit_offsets(kafka_broker.bootstrap, group, topic, ahead)
        assert committed_total(kafka_broker.bootstrap, group, topic) == half + 160
        second.start()
        applied = _wait_second_half(
            second,
            kafka_broker.bootstrap,
            group,
            topic,
            len(items) - half,
            len(items),
            "the restarted worker to replay from its states' offsets and commit the rest",
        )
        # every event of the second half applied once (a redelivered one counts as a duplicate)
        assert applied == len(items) - half, second.log_tail()
        assert second.stats()["totals"].get("resumed_from_state", 0) >= 4  # every partition
        _assert_same(open_store(clickhouse_server.url + db), db, expected, [first, second])
    finally:
        first.stop()
        second.stop()


def test_states_ahead_of_the_group_commits_are_committed_on_opening(
    world, kafka_broker, clickhouse_server, unique_name, tmp_path
):
    """The other direction: the group's committed offsets lag the states (a commit that failed or
    never came before the worker died). The first worker processes the first half and is
    killed; the group's offsets are moved back 40 events per partition. The restarted worker's
    lanes commit where the recovered states stop as they open, before any new event (so a
    partition that gets nothing new does not sit behind), apply none of the 160 events again,
    then take the second half: the rows equal an uninterrupted run's."""
    items, expected, _ = world
    db, first, second, topic, group = _restart_pair(kafka_broker, clickhouse_server, unique_name, tmp_path)
    half = len(items) // 2
    first.start()
    try:
        _process_first_half(kafka_broker.bootstrap, topic, group, items[:half])
        first.kill()
        time.sleep(SESSION_TIMEOUT_S + 2)  # the killed member expires: the group is empty
        states_end = committed_offsets(kafka_broker.bootstrap, group, topic)
        behind = {p: o - 40 for p, o in states_end.items()}
        commit_offsets(kafka_broker.bootstrap, group, topic, behind)
        assert committed_total(kafka_broker.bootstrap, group, topic) == half - 160
        second.start()
        lane = lambda: second.stats().get("lane", {})  # noqa: E731
        wait_for(
            lambda: (
                committed_offsets(kafka_broker.bootstrap, group, topic) == states_end or not second.alive()
            ),
            60,
            "the restarted worker to commit where its states stop, with no new event",
            interval_s=0.5,
        )
        assert committed_offsets(kafka_broker.bootstrap, group, topic) == states_end, second.log_tail()
        wait_for(lambda: lane().get("catchup_commits", 0) >= 4, 10, "the lane's stats")
        produce(kafka_broker.bootstrap, topic, items[half:])
        applied = _wait_second_half(
            second,
            kafka_broker.bootstrap,
            group,
            topic,
            len(items) - half,
            len(items),
            "the restarted worker to take the second half",
        )
        assert applied == len(items) - half, second.log_tail()  # none of the 160 again
        assert lane()["catchup_commits"] == 4 and lane().get("commits_failed", 0) == 0, lane()
        _assert_same(open_store(clickhouse_server.url + db), db, expected, [first, second])
    finally:
        first.stop()
        second.stop()


def test_clickhouse_outage_loses_nothing(world, kafka_broker, unique_name, tmp_path):
    items, expected, _ = world
    ch = start_clickhouse(tmp_path / "ch")
    db = f"db_{unique_name}"
    (w,) = _workers(1, tmp_path, worker_argv(kafka_broker.bootstrap, ch.url + db, unique_name))
    topic = topic_names(f"{unique_name}.")["events"]
    w.start()
    try:
        third = len(items) // 3
        produce(kafka_broker.bootstrap, topic, items[:third])
        wait_for(lambda: w.received() >= third, 60, "the first third")
        ch.stop()
        produce(kafka_broker.bootstrap, topic, items[third:])
        # the worker holds the batch and retries with backoff (nothing is acknowledged past it);
        # 6 retries of 0.05 s doubling is an outage of at least 3 s
        wait_for(lambda: (w.stats().get("sink") or {}).get("retries", 0) >= 6, 30, "the sink to retry")
        assert w.alive() and w.received() < len(items)
        ch.start()
        wait_for(lambda: w.received() >= len(items), 90, "the worker to drain after the outage")
        _assert_same(open_store(ch.url + db), db, expected, [w])
    finally:
        w.stop()
        ch.stop()


def _product_ids(items: list[bytes]):
    import json

    for raw in items:
        yield json.loads(raw)["product_id"]

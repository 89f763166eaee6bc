"""The real local services start, answer their protocols, keep data over a restart and stop.

Also: the install script is idempotent, start failures are typed and say why, and
``liftstream stack`` brings the services up and down in the background.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from streams.services import (
    INSTALL_HINT,
    REPO_ROOT,
    TANSU_BIN,
    BinaryNotFound,
    ServiceStartError,
    find_binary,
    kafka_api_versions,
    start_clickhouse,
    start_tansu,
    stop_pid,
    tcp_open,
)

pytestmark = pytest.mark.services


def _require(binary_ok: bool, what: str) -> None:
    """Tests that start their own service need its binary: fail in CI, skip elsewhere (as conftest)."""
    if not binary_ok:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is not installed in CI: {INSTALL_HINT}", pytrace=False)
        pytest.skip(f"{what} is not installed: {INSTALL_HINT}")


def _clickhouse_installed() -> bool:
    try:
        find_binary("clickhouse-server")
    except BinaryNotFound:
        return False
    return True


def test_clickhouse_answers_and_keeps_data_over_a_restart(tmp_path):
    _require(_clickhouse_installed(), "clickhouse-server")
    from clickhouse_driver import Client

    server = start_clickhouse(tmp_path / "ch")
    try:
        client = Client(server.host, port=server.tcp_port)
        assert client.execute("SELECT 1, timezone()") == [(1, "Etc/UTC")]
        client.execute("CREATE TABLE default.t (k UInt32, s String) ENGINE = MergeTree ORDER BY k")
        client.execute("INSERT INTO default.t (k, s) VALUES", [(1, "a"), (2, "ü'")])
        pid, ports = server.pid, (server.tcp_port, server.http_port)
        server.stop()
        assert not server.running()
        assert not tcp_open(server.host, server.tcp_port)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped, not a zombie
        server.start()  # same data dir, same ports
        assert (server.tcp_port, server.http_port) == ports
        assert client.execute("SELECT k, s FROM default.t ORDER BY k") == [(1, "a"), (2, "ü'")]
        client.disconnect()
    finally:
        server.stop()
    assert (tmp_path / "ch" / "data").is_dir()


def test_tansu_answers_kafka_and_stops(tmp_path):
    _require(TANSU_BIN.is_file(), "tansu")
    broker = start_tansu(tmp_path / "tansu")
    try:
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        assert kafka_api_versions(broker.host, broker.port)
    finally:
        broker.stop()
    assert not broker.running()
    assert not kafka_api_versions(broker.host, broker.port)


def test_kafka_fixture_round_trips_messages(kafka_broker, unique_name):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def go() -> list[tuple[bytes, bytes]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(unique_name, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        await producer.start()
        try:
            for i in range(3):
                await producer.send_and_wait(unique_name, f"v{i}".encode(), key=b"p1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        try:
            tp = TopicPartition(unique_name, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            got: list[tuple[bytes, bytes]] = []
            while len(got) < 3:
                batch = await asyncio.wait_for(consumer.getmany(tp, timeout_ms=500), timeout=15)
                got += [(m.key, m.value) for m in batch.get(tp, [])]
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(asyncio.wait_for(go(), timeout=60)) == [(b"p1", b"v0"), (b"p1", b"v1"), (b"p1", b"v2")]


def test_clickhouse_fixture_answers(clickhouse_server):
    from clickhouse_driver import Client

    client = Client(clickhouse_server.host, port=clickhouse_server.tcp_port)
    assert client.execute("SELECT count() FROM system.one") == [(1,)]
    client.disconnect()


def test_missing_binary_says_how_to_install(tmp_path):
    with pytest.raises(BinaryNotFound, match="install_services.sh"):
        start_tansu(tmp_path, binary=tmp_path / "no-tansu-here")


def test_start_failure_is_typed_and_carries_the_log(tmp_path):
    _require(TANSU_BIN.is_file(), "tansu")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServiceStartError) as info:
            start_tansu(tmp_path, port=port, timeout_s=20)
    assert "tansu broker" in str(info.value)


def test_stop_kills_a_process_that_ignores_sigterm():
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    assert stop_pid(proc.pid, timeout_s=0.3, proc=proc) is True
    assert proc.returncode == -9
    proc.stdout.close()


def test_stack_up_status_down(tmp_path):
    _require(TANSU_BIN.is_file() and _clickhouse_installed(), "tansu and clickhouse-server")
    cmd = [sys.executable, "-m", "streams.cli", "stack"]
    args = ["--dir", str(tmp_path / "stack"), "--triton", "off", "--any-ports"]

    def run(action: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            cmd + [action] + args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
        )

    try:
        up = run("up")
        assert up.returncode == 0, up.stderr
        status = run("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert [line.split()[0] for line in status.stdout.splitlines()] == ["clickhouse", "kafka"]
        env = run("env").stdout.splitlines()
        assert [line.split("=")[0] for line in env] == [
            "export LIFTSTREAM_KAFKA_BOOTSTRAP",
            "export LIFTSTREAM_STORE",
        ]
        assert run("up").stdout.count("already up") == 2  # idempotent
    finally:
        down = run("down")
    assert down.returncode == 0, down.stderr
    assert down.stdout.splitlines() == ["kafka: stopped", "clickhouse: stopped"]
    assert run("status").returncode == 3


@pytest.mark.slow
def test_install_script_is_idempotent():
    script = REPO_ROOT / "deploy" / "scripts" / "install_services.sh"
    first = subprocess.run(["bash", str(script)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    mtime = TANSU_BIN.stat().st_mtime_ns
    again = subprocess.run(["bash", str(script)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    lines = again.stdout.splitlines()
    assert any(line.startswith("install_services: clickhouse-server already installed") for line in lines)
    assert any(line.startswith("install_services: tansu already at") for line in lines)
    assert TANSU_BIN.stat().st_mtime_ns == mtime  # not copied again

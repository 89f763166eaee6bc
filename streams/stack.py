"""``liftstream stack``: the real local services in the background, for the local-real mode.

    liftstream stack up        # ClickHouse server + Tansu broker (+ tritonserver when installed)
    eval "$(liftstream stack env)"   # LIFTSTREAM_KAFKA_BOOTSTRAP / _STORE / _MODELS for the worker
    liftstream worker ...
    liftstream stack status
    liftstream stack down      # SIGTERM, SIGKILL after a deadline; ClickHouse data stays in --dir

Install the binaries first with ``bash deploy/scripts/install_services.sh`` (``make services``).
Ports are the usual ones (Kafka 9092, ClickHouse 9000/8123) when free, else free ones; ``env``
prints what to export either way. State (ports, pids, logs, ClickHouse data) lives in ``--dir``
(default ``.liftstream/stack``), in ``stack.json`` and one folder per service.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from streams.services import (
    REPO_ROOT,
    ServiceError,
    clickhouse_ping,
    kafka_api_versions,
    pid_cmdline,
    start_clickhouse,
    start_tansu,
    stop_pid,
    tcp_open,
)

DEFAULT_DIR = Path(".liftstream/stack")
STATE_FILE = "stack.json"
DATABASE = "liftstream"
# the binary each recorded pid must still run, so a recycled pid is never signalled
_EXPECTED_EXE = {"clickhouse": "clickhouse", "kafka": "tansu", "triton": "tritonserver"}


def _load(state_dir: Path) -> dict[str, dict[str, Any]]:
    path = state_dir / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _save(state_dir: Path, state: dict[str, dict[str, Any]]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(state_dir / STATE_FILE)


def _ours(name: str, entry: dict[str, Any]) -> bool:
    """The recorded pid is alive and still runs the service's binary."""
    argv = pid_cmdline(int(entry["pid"]))
    return bool(argv) and _EXPECTED_EXE[name] in Path(argv[0]).name


def _ready(name: str, entry: dict[str, Any]) -> bool:
    if name == "clickhouse":
        return clickhouse_ping("127.0.0.1", entry["http_port"]) and tcp_open("127.0.0.1", entry["tcp_port"])
    if name == "kafka":
        host, port = entry["bootstrap"].rsplit(":", 1)
        return kafka_api_versions(host, int(port))
    host, port = entry["http"].rsplit(":", 1)
    return tcp_open(host, int(port))


def _port(preferred: int | None, *, previous: int | None = None) -> int | None:
    """The previous port, else the usual one, when free; None lets the service pick a free one."""
    for port in (previous, preferred):
        if port and not tcp_open("127.0.0.1", port, timeout_s=0.2):
            return port
    return None


def _start_triton(state_dir: Path, mode: str) -> dict[str, Any] | None:
    repo = REPO_ROOT / "triton_models"
    has_models = any(repo.glob("*/config.pbtxt"))
    if mode == "off" or (mode == "auto" and not has_models):
        print(f"tritonserver: skipped ({'--triton off' if mode == 'off' else f'no models in {repo}'})")
        return None
    from inference.triton_server import TritonNotInstalled, TritonServer, TritonStartError

    try:
        server = TritonServer(repo, log_path=state_dir / "triton" / "tritonserver.log").start()
    except TritonNotInstalled as exc:
        if mode == "on":
            raise ServiceError(str(exc)) from exc
        print(f"tritonserver: skipped ({exc})")
        return None
    except TritonStartError as exc:
        raise ServiceError(str(exc)) from exc
    assert server.proc is not None
    return {
        "pid": server.proc.pid,
        "grpc": server.grpc_url,
        "http": server.http_url,
        "log": str(server.log_path),
    }


def up(state_dir: Path, triton: str = "auto", usual_ports: bool = True) -> int:
    state = _load(state_dir)
    usual = {"tcp": 9000, "http": 8123, "kafka": 9092} if usual_ports else {}
    started: list[str] = []
    try:
        if "clickhouse" in state and _ours("clickhouse", state["clickhouse"]):
            print(f"clickhouse: already up (pid {state['clickhouse']['pid']})")
        else:
            prev = state.get("clickhouse", {})
            ch = start_clickhouse(
                state_dir / "clickhouse",
                tcp_port=_port(usual.get("tcp"), previous=prev.get("tcp_port")),
                http_port=_port(usual.get("http"), previous=prev.get("http_port")),
            )
            assert ch.proc is not None
            state["clickhouse"] = {
                "pid": ch.proc.pid,
                "tcp_port": ch.tcp_port,
                "http_port": ch.http_port,
                "url": f"{ch.url}{DATABASE}",
                "state_dir": str(ch.state_dir),
                "log": str(ch.log_path),
            }
            started.append("clickhouse")
            _save(state_dir, state)
        if "kafka" in state and _ours("kafka", state["kafka"]):
            print(f"kafka: already up (pid {state['kafka']['pid']})")
        else:
            prev_port = int(state["kafka"]["bootstrap"].rsplit(":", 1)[1]) if "kafka" in state else None
            kafka = start_tansu(state_dir / "tansu", port=_port(usual.get("kafka"), previous=prev_port))
            assert kafka.proc is not None
            state["kafka"] = {"pid": kafka.proc.pid, "bootstrap": kafka.bootstrap, "log": str(kafka.log_path)}
            started.append("kafka")
            _save(state_dir, state)
        if "triton" in state and _ours("triton", state["triton"]):
            print(f"triton: already up (pid {state['triton']['pid']})")
        else:
            state.pop("triton", None)
            entry = _start_triton(state_dir, triton)
            if entry is not None:
                state["triton"] = entry
                started.append("triton")
            _save(state_dir, state)
    except BaseException:
        for name in started:  # leave nothing half-started behind
            _stop(name, state.pop(name))
        _save(state_dir, state)
        raise
    for name in started:
        print(f"{name}: started (pid {state[name]['pid']})")
    print(env(state))
    return 0


def _stop(name: str, entry: dict[str, Any]) -> str:
    if not _ours(name, entry):
        return "not running"
    pid = int(entry["pid"])
    killed = stop_pid(pid, timeout_s=20.0)
    if name == "triton":  # its python-backend stubs share its process group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    return "killed after the SIGTERM deadline" if killed else "stopped"


def down(state_dir: Path) -> int:
    state = _load(state_dir)
    if not state:
        print(f"no stack recorded in {state_dir}")
        return 0
    for name in ("triton", "kafka", "clickhouse"):
        if name in state:
            print(f"{name}: {_stop(name, state[name])}")
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return 0


def status(state_dir: Path, as_json: bool = False) -> int:
    """Exit 0 when every recorded service answers, 1 when one does not, 3 when nothing is up."""
    state = _load(state_dir)
    report = {
        name: {**entry, "running": _ours(name, entry), "ready": _ours(name, entry) and _ready(name, entry)}
        for name, entry in state.items()
    }
    if as_json:
        print(json.dumps(report, indent=2, sort_keys=True))
    elif not report:
        print(f"no stack recorded in {state_dir}")
    for name, r in report.items():
        if not as_json:
            where = r.get("url") or r.get("bootstrap") or r.get("grpc")
            print(f"{name:<10} pid {r['pid']:<8} {'ready' if r['ready'] else 'DOWN':<5} {where}")
    if not report:
        return 3
    return 0 if all(r["ready"] for r in report.values()) else 1


def env(state: dict[str, dict[str, Any]]) -> str:
    """Shell exports that point the worker and the API at the running stack."""
    lines = []
    if "kafka" in state:
        lines.append(f"export LIFTSTREAM_KAFKA_BOOTSTRAP={state['kafka']['bootstrap']}")
    if "clickhouse" in state:
        lines.append(f"export LIFTSTREAM_STORE={state['clickhouse']['url']}")
    if "triton" in state:
        lines.append(f"export LIFTSTREAM_MODELS=triton://{state['triton']['grpc']}")
    return "\n".join(lines)


def cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="liftstream stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("action", choices=("up", "down", "status", "env"))
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state folder (default %(default)s)")
    p.add_argument(
        "--triton",
        choices=("auto", "on", "off"),
        default="auto",
        help="start tritonserver: auto = when installed and triton_models/ has models",
    )
    p.add_argument("--json", action="store_true", help="status as JSON")
    p.add_argument(
        "--any-ports", action="store_true", help="free ports, not the usual 9092 / 9000 / 8123 (tests)"
    )
    a = p.parse_args(argv)
    state_dir = a.dir.resolve()
    try:
        if a.action == "up":
            return up(state_dir, a.triton, usual_ports=not a.any_ports)
        if a.action == "down":
            return down(state_dir)
        if a.action == "status":
            return status(state_dir, a.json)
        print(env(_load(state_dir)))
        return 0
    except ServiceError as exc:
        print(f"liftstream stack {a.action}: {exc}", file=sys.stderr)
        return 1

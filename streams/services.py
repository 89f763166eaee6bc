"""Start, probe and stop the real local services: ClickHouse server and the Tansu Kafka broker.

Each service runs as a child process on free 127.0.0.1 ports with all of its files in one state
directory, is ready only when a real protocol probe answers (HTTP ``/ping`` and a native-port
connect for ClickHouse, a Kafka ApiVersions round trip for Tansu), and stops with SIGTERM, then
SIGKILL after a deadline. The binaries come from ``deploy/scripts/install_services.sh``.

    from streams.services import start_clickhouse, start_tansu
    ch = start_clickhouse(tmp / "ch")      # ch.host, ch.tcp_port, ch.http_port
    kafka = start_tansu(tmp / "kafka")     # kafka.bootstrap == "127.0.0.1:PORT"
    ...
    ch.stop(); kafka.stop()

Test fixtures (tests/conftest.py) and ``liftstream stack`` (streams/stack.py) build on these.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = REPO_ROOT / ".liftstream" / "bin"
TANSU_BIN = BIN_DIR / "tansu"
CLICKHOUSE_ETC = Path("/etc/clickhouse-server")
INSTALL_HINT = "run deploy/scripts/install_services.sh"
LOCALHOST = "127.0.0.1"


class ServiceError(RuntimeError):
    """A local service could not be started or stopped."""


class BinaryNotFound(ServiceError):
    """A service's binary (or its stock config) is not installed."""


class ServiceStartError(ServiceError):
    """The process exited or did not answer its readiness probe before the deadline."""


# ----------------------------------------------------------------------------------------------
# Processes, ports, probes


def free_port(host: str = LOCALHOST) -> int:
    """A port nothing listens on right now (the caller binds it soon after; a lost race is retried)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tcp_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _log_tail(path: Path, n_bytes: int = 3000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "(no log)"
    return data[-n_bytes:].decode("utf-8", "replace").strip() or "(empty log)"


def _wait_ready(
    what: str, probe: Callable[[], bool], proc: subprocess.Popen, timeout_s: float, logs: list[Path]
) -> None:
    """Poll ``probe`` until it is true; fail fast when the process exits, fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            tails = "\n".join(f"--- {p}:\n{_log_tail(p)}" for p in logs)
            raise ServiceStartError(f"{what} exited with status {proc.returncode} while starting\n{tails}")
        if probe():
            return
        if time.monotonic() >= deadline:
            tails = "\n".join(f"--- {p}:\n{_log_tail(p)}" for p in logs)
            raise ServiceStartError(f"{what} not ready after {timeout_s:.0f} s\n{tails}")
        time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie has exited: it only waits for its parent to reap it
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def pid_cmdline(pid: int) -> list[str]:
    """The command line of a live process (empty when it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def stop_pid(pid: int, timeout_s: float = 15.0, proc: subprocess.Popen | None = None) -> bool:
    """SIGTERM ``pid``, wait up to ``timeout_s``, then SIGKILL. True if it had to be killed.

    Pass ``proc`` when the process is our child so it is reaped (no zombie left behind).
    """

    def gone() -> bool:
        return proc.poll() is not None if proc is not None else not _pid_alive(pid)

    if gone():
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if gone():
            return False
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 10.0
    while not gone():
        if time.monotonic() >= deadline:
            raise ServiceError(f"process {pid} survived SIGKILL for 10 s")
        time.sleep(0.05)
    return True


def _spawn(argv: list[str], cwd: Path, log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        # its own session: a Ctrl-C in the terminal reaches only us (tests stop their services in
        # fixtures), and `liftstream stack up` can exit while the service keeps running
        return subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def find_binary(name: str) -> str:
    found = shutil.which(name) or next(
        (
            str(p)
            for d in ("/usr/bin", "/usr/sbin")
            if (p := Path(d) / name).is_file() and os.access(p, os.X_OK)
        ),
        None,
    )
    if found is None:
        raise BinaryNotFound(f"{name} is not installed: {INSTALL_HINT}")
    return found


@dataclass
class _Service:
    state_dir: Path
    host: str
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; the data directory stays for a restart."""
        if self.proc is not None:
            stop_pid(self.proc.pid, timeout_s, self.proc)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL now, as a crash would; the data directory stays for a restart."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


# ----------------------------------------------------------------------------------------------
# ClickHouse server (Debian's 18.16)


def _set(root: ET.Element, tag: str, value: str | int) -> None:
    el = root.find(tag)
    if el is None:
        el = ET.SubElement(root, tag)
    el.text = str(value)


def write_clickhouse_config(
    state_dir: Path, host: str, tcp_port: int, http_port: int, interserver_port: int
) -> Path:
    """Copy Debian's config.xml/users.xml into ``state_dir`` with every path and port pointed there."""
    src_config, src_users = CLICKHOUSE_ETC / "config.xml", CLICKHOUSE_ETC / "users.xml"
    if not (src_config.is_file() and src_users.is_file()):
        raise BinaryNotFound(f"{src_config} or {src_users} missing: {INSTALL_HINT}")
    state_dir = state_dir.resolve()
    data = state_dir / "data"
    for sub in ("data/tmp", "data/user_files", "data/format_schemas", "log"):
        (state_dir / sub).mkdir(parents=True, exist_ok=True)
    users = ET.parse(src_users)
    profile = users.getroot().find("profiles/default")
    if profile is None:
        raise BinaryNotFound(f"{src_users} has no profiles/default: reinstall clickhouse-server")
    # an idle native connection re-checks for shutdown every poll_interval (10 s by default), which
    # would hold a SIGTERM for 10 s while any client stays connected
    _set(profile, "poll_interval", 1)
    users.write(state_dir / "users.xml", encoding="utf-8", xml_declaration=True)

    tree = ET.parse(src_config)
    root = tree.getroot()
    logger = root.find("logger")
    if logger is None:
        logger = ET.SubElement(root, "logger")
    _set(logger, "level", "warning")
    _set(logger, "log", state_dir / "log" / "clickhouse-server.log")
    _set(logger, "errorlog", state_dir / "log" / "clickhouse-server.err.log")
    _set(logger, "size", "50M")
    _set(logger, "count", 2)
    for tag in ("https_port", "tcp_port_secure", "mysql_port", "postgresql_port", "listen_host"):
        for el in root.findall(tag):
            root.remove(el)
    ET.SubElement(root, "listen_host").text = host
    _set(root, "tcp_port", tcp_port)
    _set(root, "http_port", http_port)
    _set(root, "interserver_http_port", interserver_port)
    _set(root, "interserver_http_host", host)
    _set(root, "path", f"{data}/")
    _set(root, "tmp_path", f"{data}/tmp/")
    _set(root, "user_files_path", f"{data}/user_files/")
    _set(root, "format_schema_path", f"{data}/format_schemas/")
    _set(root, "users_config", state_dir / "users.xml")
    # DateTime columns carry no zone: naive UTC in, naive UTC out, the same as chdb (streams/sinks.py)
    _set(root, "timezone", "UTC")
    # caches are allocated on demand, but keep the ceilings modest on a shared 2-core box
    _set(root, "mark_cache_size", 256 * 1024 * 1024)
    _set(root, "uncompressed_cache_size", 256 * 1024 * 1024)
    config = state_dir / "config.xml"
    tree.write(config, encoding="utf-8", xml_declaration=True)
    return config


def clickhouse_ping(host: str, http_port: int, timeout_s: float = 0.5) -> bool:
    """True when the server's HTTP interface answers ``/ping`` with ``Ok.``."""
    try:
        with urllib.request.urlopen(f"http://{host}:{http_port}/ping", timeout=timeout_s) as resp:
            return resp.status == 200 and resp.read().strip() == b"Ok."
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class ClickHouseService(_Service):
    """A clickhouse-server child process; native protocol on ``tcp_port`` (clickhouse-driver)."""

    tcp_port: int = 0
    http_port: int = 0
    interserver_port: int = 0

    @property
    def config_path(self) -> Path:
        return self.state_dir / "config.xml"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "log" / "stdout.log"

    @property
    def url(self) -> str:
        """Store URL for ``streams.sinks.open_store`` (append a database name)."""
        return f"clickhouse://{self.host}:{self.tcp_port}/"

    def ready(self) -> bool:
        return clickhouse_ping(self.host, self.http_port) and tcp_open(self.host, self.tcp_port)

    def start(self, timeout_s: float = 60.0) -> ClickHouseService:
        """Start (or restart, keeping the data and ports) and wait until it answers."""
        if self.running():
            return self
        binary = find_binary("clickhouse-server")
        write_clickhouse_config(
            self.state_dir, self.host, self.tcp_port, self.http_port, self.interserver_port
        )
        self.proc = _spawn([binary, f"--config-file={self.config_path}"], self.state_dir, self.log_path)
        err_log = self.state_dir / "log" / "clickhouse-server.err.log"
        try:
            _wait_ready("clickhouse-server", self.ready, self.proc, timeout_s, [self.log_path, err_log])
        except ServiceStartError:
            self.stop(timeout_s=5.0)
            raise
        return self


def start_clickhouse(
    state_dir: str | Path,
    *,
    tcp_port: int | None = None,
    http_port: int | None = None,
    timeout_s: float = 60.0,
) -> ClickHouseService:
    """Start clickhouse-server with its config, data and logs under ``state_dir``.

    Ports default to free ones (retried on a lost race); pass them to restart on the same ports.
    """
    state_dir = Path(state_dir).resolve()
    fixed = tcp_port is not None or http_port is not None
    for attempt in range(1 if fixed else 3):
        svc = ClickHouseService(
            state_dir=state_dir,
            host=LOCALHOST,
            tcp_port=tcp_port or free_port(),
            http_port=http_port or free_port(),
            interserver_port=free_port(),
        )
        try:
            return svc.start(timeout_s=timeout_s)
        except ServiceStartError:
            if fixed or attempt == 2:
                raise
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------------------------
# Tansu Kafka broker (memory storage)


def kafka_api_versions(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when a Kafka ApiVersions v0 request gets a well-formed, error-free response."""
    client_id = b"liftstream-probe"
    correlation_id = 0x4C53
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = _recv_exact(s, 4)
            (size,) = struct.unpack(">i", head)
            if not 6 <= size <= 1 << 20:
                return False
            resp = _recv_exact(s, size)
    except OSError:
        return False
    got_correlation, error_code = struct.unpack(">ih", resp[:6])
    return got_correlation == correlation_id and error_code == 0


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        buf += chunk
    return bytes(buf)


@dataclass
class TansuService(_Service):
    """A Tansu broker child process with memory storage: its topics vanish when it stops."""

    port: int = 0
    binary: Path = TANSU_BIN

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "tansu.log"

    def ready(self) -> bool:
        return kafka_api_versions(self.host, self.port)

    def start(self, timeout_s: float = 30.0) -> TansuService:
        if self.running():
            return self
        if not (self.binary.is_file() and os.access(self.binary, os.X_OK)):
            raise BinaryNotFound(f"no Tansu broker at {self.binary}: {INSTALL_HINT}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://{self.host}:{self.port}"
        argv = [
            str(self.binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        self.proc = _spawn(argv, self.state_dir, self.log_path)
        try:
            _wait_ready("tansu broker", self.ready, self.proc, timeout_s, [self.log_path])
        except ServiceStartError:
            self.stop(timeout_s=5.0)
            raise
        return self


def start_tansu(
    state_dir: str | Path,
    *,
    port: int | None = None,
    binary: str | Path = TANSU_BIN,
    timeout_s: float = 30.0,
) -> TansuService:
    """Start a Tansu broker (memory storage) on ``port`` or a free one; log in ``state_dir``."""
    state_dir = Path(state_dir).resolve()
    for attempt in range(1 if port is not None else 3):
        svc = TansuService(state_dir=state_dir, host=LOCALHOST, port=port or free_port(), binary=Path(binary))
        try:
            return svc.start(timeout_s=timeout_s)
        except ServiceStartError:
            if port is not None or attempt == 2:
                raise
    raise AssertionError("unreachable")


__all__ = [
    "BinaryNotFound",
    "ClickHouseService",
    "ServiceError",
    "ServiceStartError",
    "TansuService",
    "clickhouse_ping",
    "find_binary",
    "free_port",
    "kafka_api_versions",
    "pid_cmdline",
    "start_clickhouse",
    "start_tansu",
    "stop_pid",
    "write_clickhouse_config",
]

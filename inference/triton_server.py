"""Start and stop a local tritonserver (CPU, python backend) over a model repository.

The server comes from ``deploy/scripts/install_triton.sh`` (``.liftstream/tritonserver/``). Run one
by hand over an exported repository:

    .venv/bin/python -m inference.triton_server --model-repository triton_models/

It prints the gRPC/HTTP addresses once every model is ready and stops on Ctrl-C / SIGTERM.
``TritonServer`` is what the tests' fixture and the benchmarks use::

    with TritonServer("triton_models").start() as server:
        client = TritonModelClient(server.grpc_url)

Why the environment looks the way it does (the python backend's stub is a separate process that
embeds libpython in *isolated* mode, so PYTHONPATH and VIRTUAL_ENV are ignored):

- ``LD_LIBRARY_PATH`` = the interpreter's LIBDIR first (the stub links ``libpython3.11.so.1.0``;
  a different patch release's libpython under the same soname fails in ``threading`` with
  ``'_thread.RLock' object has no attribute '_recursion_count'``), then the wheel's bundled libs.
- ``PATH`` starts with the virtualenv's ``bin/``: the embedded interpreter locates its prefix by
  finding ``python3`` on PATH, sees the venv's ``pyvenv.cfg`` and takes the venv's site-packages.
  Without it the stub imports numpy (``triton_python_backend_utils`` does at load) from the base
  interpreter's site-packages, which on a clean machine has none. model.py also adds the
  ``python_path`` config parameter (belt and braces, and the only way in the GPU container).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HOME = ROOT / ".liftstream" / "tritonserver"
INSTALL_HINT = "run `bash deploy/scripts/install_triton.sh` (or `make services`)"


class TritonNotInstalled(RuntimeError):
    """No tritonserver under the install folder."""


class TritonStartError(RuntimeError):
    """tritonserver exited or did not become ready in time (the message holds its log tail)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_paths(home: str | Path = DEFAULT_HOME) -> dict[str, Path]:
    """The binary, the backend directory (BK, holding python/) and the bundled libs of an install."""
    home = Path(home)
    base = home / "pytriton" / "tritonserver"
    paths = {
        "binary": base / "bin" / "tritonserver",
        "backends": base / "backends",
        "stub": base / "backends" / "python" / "triton_python_backend_stub",
        "libs": home / "nvidia_pytriton.libs",
    }
    missing = [str(p) for k, p in paths.items() if not p.exists()]
    if missing:
        raise TritonNotInstalled(
            f"tritonserver is not installed under {home} (missing {', '.join(missing)}): {INSTALL_HINT}"
        )
    return paths


def server_env(python: str | Path = sys.executable, home: str | Path = DEFAULT_HOME) -> dict[str, str]:
    """Environment for tritonserver so its python stub embeds ``python``'s libpython and venv."""
    paths = install_paths(home)
    libdir = sysconfig.get_config_var("LIBDIR") if Path(python) == Path(sys.executable) else None
    if libdir is None:  # another interpreter: ask it
        libdir = subprocess.run(
            [str(python), "-c", "import sysconfig;print(sysconfig.get_config_var('LIBDIR'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    soname = f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0"
    if not (Path(libdir) / soname).exists():
        raise TritonNotInstalled(
            f"the python backend stub needs {soname} in {libdir} (a Python built with --enable-shared)"
        )
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (libdir, str(paths["libs"]), env.get("LD_LIBRARY_PATH", "")) if p
    )
    # os.path.abspath, not resolve(): the venv's bin/python is a symlink to the base interpreter
    env["PATH"] = os.pathsep.join([os.path.dirname(os.path.abspath(python)), env.get("PATH", "")])
    env.pop("PYTHONHOME", None)
    return env


class TritonServer:
    """One tritonserver process on free loopback ports over ``model_repository``."""

    def __init__(
        self,
        model_repository: str | Path,
        *,
        home: str | Path = DEFAULT_HOME,
        python: str | Path = sys.executable,
        log_path: str | Path | None = None,
        startup_timeout_s: float = 120.0,
        extra_args: Sequence[str] = (),
    ):
        self.model_repository = Path(model_repository).resolve()
        self.home, self.python = Path(home), Path(python)
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.http_port = self.grpc_port = self.metrics_port = 0

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def command(self) -> list[str]:
        paths = install_paths(self.home)
        return [
            str(paths["binary"]),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={paths['backends']}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=true",
            f"--metrics-port={self.metrics_port}",
            "--exit-timeout-secs=10",
            *self.extra_args,
        ]

    def start(self) -> TritonServer:
        if not self.model_repository.is_dir():
            raise FileNotFoundError(f"no model repository at {self.model_repository}")
        env = server_env(self.python, self.home)
        for attempt in range(3):  # a free port can be taken between probing and binding
            self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    self.command(), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            try:
                self._wait_ready()
                return self
            except TritonStartError as e:
                self.stop()
                if attempt == 2 or "address already in use" not in self.log_tail().lower():
                    raise e from None
        raise AssertionError("unreachable")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TritonStartError(
                    f"tritonserver exited with {self.proc.returncode} before it was ready; log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise TritonStartError(
            f"tritonserver not ready after {self.startup_timeout_s:.0f} s; log {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL (the whole process group: the stubs too) after ``timeout_s``."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # stubs left behind by a killed server would keep their shared memory: end the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode

    def __enter__(self) -> TritonServer:
        return self if self.proc else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inference.triton_server", description=__doc__.split("\n")[0])
    ap.add_argument("--model-repository", default=str(ROOT / "triton_models"))
    ap.add_argument("--home", default=str(DEFAULT_HOME), help="tritonserver install folder")
    ap.add_argument("--log", default=None, help="server log file (default: a temp file)")
    args = ap.parse_args(argv)
    server = TritonServer(args.model_repository, home=args.home, log_path=args.log).start()
    print(
        f"tritonserver ready: grpc {server.grpc_url} http {server.http_url} (log {server.log_path})",
        flush=True,
    )
    stop = {"now": False}

    def _on_signal(*_):
        stop["now"] = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        while not stop["now"] and server.proc and server.proc.poll() is None:
            time.sleep(0.2)
    finally:
        rc = server.stop()
    return 0 if rc in (0, None, -signal.SIGTERM) else 1


if __name__ == "__main__":
    sys.exit(main())

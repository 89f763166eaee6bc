"""Triton serving: a real tritonserver (CPU, python backend) over repositories exported in tmp.

For each model set (stand-ins; small random-initialised torch models; LAMM + FEI when their
modules exist) the exporter writes a repository, a server starts on free ports, and every served
model must match the same objects called in-process (``allclose``). Also: config.pbtxt equals
``inference.triton_names``; a malformed request fails alone while good ones in flight succeed;
typed client errors. Needs ``bash deploy/scripts/install_triton.sh`` (``make services``).

    .venv/bin/pytest tests/test_triton.py -q
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from inference import triton_names as N
from inference.client import AsyncInProcessClient, InProcessClient
from inference.export import (
    STANDIN_ADVISOR,
    STANDIN_FORECASTER,
    Source,
    export_repository,
    probe_forecaster,
)
from inference.export import (
    cli as export_cli,
)
from inference.model_dir import ModelDirError
from inference.triton_client import (
    AsyncTritonModelClient,
    TritonModelClient,
    TritonRequestRejected,
    TritonTimeout,
    TritonUnavailable,
    load_client,
)
from inference.triton_server import TritonNotInstalled, TritonServer, free_port
from tests.triton_fixtures import (
    TinyTorchAdvisor,
    TinyTorchForecaster,
    random_meta,
    random_videos,
    random_x,
    start_triton,
)

# generous: a shared 2-core machine under heavy load ran LAMM/FEI calls for tens of seconds
pytestmark = [pytest.mark.services, pytest.mark.timeout(900)]
CALL_TIMEOUT_S = 120.0

RTOL, ATOL = 1e-5, 1e-6


def _standin(tmp: Path) -> tuple[Source, Source]:
    return Source(STANDIN_FORECASTER, None), Source(STANDIN_ADVISOR, None)


def _tiny(tmp: Path) -> tuple[Source, Source]:
    f = TinyTorchForecaster().save(tmp / "tiny_forecaster")
    a = TinyTorchAdvisor(seed=3).save(tmp / "tiny_advisor")
    return (
        Source("tests.triton_fixtures:TinyTorchForecaster", f),
        Source("tests.triton_fixtures:TinyTorchAdvisor", a),
    )


_CHECKPOINTS: dict[str, tuple[Path, Path]] = {}  # built once per session, only read afterwards


def _lamm_fei_dirs(tmp: Path) -> tuple[Path, Path]:
    from tests.triton_fixtures import lamm_fei_checkpoints

    if "lamm_fei" not in _CHECKPOINTS:
        _CHECKPOINTS["lamm_fei"] = lamm_fei_checkpoints(tmp)
    return _CHECKPOINTS["lamm_fei"]


def _lamm_fei(tmp: Path) -> tuple[Source, Source]:
    f, a = _lamm_fei_dirs(tmp)
    return Source("inference.lamm:LammForecaster", f), Source("inference.fei:FeiAdvisor", a)


MODEL_SETS = {"standin": _standin, "tiny_torch": _tiny}
if importlib.util.find_spec("inference.lamm") and importlib.util.find_spec("inference.fei"):
    MODEL_SETS["lamm_fei"] = _lamm_fei


@dataclass
class Served:
    name: str
    repo: Path
    server: TritonServer
    client: TritonModelClient
    eager: InProcessClient
    hidden_dim: int


@pytest.fixture(scope="module", params=list(MODEL_SETS))
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp(f"triton_{request.param}")
    fsrc, asrc = MODEL_SETS[request.param](tmp)
    summary = export_repository(tmp / "repo", fsrc, asrc)
    server = start_triton(tmp / "repo", tmp / "tritonserver.log")
    try:
        with TritonModelClient(server.grpc_url, timeout_s=CALL_TIMEOUT_S) as client:
            eager = InProcessClient(fsrc.build(), asrc.build())
            yield Served(request.param, tmp / "repo", server, client, eager, summary["sizes"]["H"])
    finally:
        server.stop()


def _close(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL)


def _assert_advice_equal(got, want) -> None:
    assert got.curve_shape == want.curve_shape
    for field in dataclasses.fields(want):
        if field.name != "curve_shape":
            _close(getattr(got, field.name), getattr(want, field.name))


# --- the contract: config.pbtxt == inference.triton_names -----------------------------------


def _parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_config_pbtxt_matches_names(tmp_path: Path, device: str) -> None:
    fsrc, asrc = _tiny(tmp_path)
    summary = export_repository(tmp_path / "repo", fsrc, asrc, device=device)
    sizes = summary["sizes"]
    assert sizes == {"H": 16, "R": 8, "X": N.x_dim(16)}
    for name in N.MODELS:
        cfg = _parse(tmp_path / "repo" / name / "config.pbtxt")
        assert cfg.name == name and cfg.backend == "python" and cfg.max_batch_size > 0
        assert (tmp_path / "repo" / name / "1" / "model.py").is_file()
        want_in, want_out = N.SPECS[name]
        for got, want in ((cfg.input, want_in), (cfg.output, want_out)):
            assert [t.name for t in got] == [s.name for s in want]
            assert [model_config_pb2.DataType.Name(t.data_type) for t in got] == [s.data_type for s in want]
            assert [tuple(t.dims) for t in got] == [s.resolve(sizes) for s in want]
        kind = model_config_pb2.ModelInstanceGroup.Kind.Name(cfg.instance_group[0].kind)
        assert kind == ("KIND_GPU" if device == "gpu" else "KIND_CPU")
        assert cfg.HasField("dynamic_batching")
        params = {k: v.string_value for k, v in cfg.parameters.items()}
        assert params[N.P_ROLE] == N.ROLES[name]
        assert params[N.P_DEVICE] == ("cuda" if device == "gpu" else "cpu")
        assert params[N.P_TORCH_THREADS] == ("0" if device == "gpu" else "1")
        assert (
            params[N.P_CHECKPOINT] == "checkpoint"
            and (tmp_path / "repo" / name / "1" / "checkpoint").is_dir()
        )
    step = {
        k: v.string_value for k, v in _parse(tmp_path / "repo" / N.STEP / "config.pbtxt").parameters.items()
    }
    assert step[N.P_LEVEL] == "0.9" and step[N.P_HAS_BASELINE] == "1"
    assert step[N.P_MODEL_VERSION] == "tiny-torch-seed0"


def test_client_refuses_a_repository_that_lacks_an_output_it_reads(tmp_path: Path) -> None:
    """A repository exported by an older release (fewer advisor outputs) is refused at connect
    time, naming the output, instead of failing on the first advice request."""
    from google.protobuf import json_format

    from inference.triton_client import ServedInfo, TritonClientError

    fsrc, asrc = _tiny(tmp_path)
    export_repository(tmp_path / "repo", fsrc, asrc)
    configs = {
        m: json_format.MessageToDict(
            _parse(tmp_path / "repo" / m / "config.pbtxt"), preserving_proto_field_name=True
        )
        for m in N.MODELS
    }
    assert ServedInfo.from_configs(configs).hidden_dim == 16
    configs[N.ADVISOR]["output"] = [
        o for o in configs[N.ADVISOR]["output"] if o["name"] != "OPTIMAL_FOLLOWERS_LOW"
    ]
    with pytest.raises(TritonClientError, match="OPTIMAL_FOLLOWERS_LOW.*re-export"):
        ServedInfo.from_configs(configs)


def test_export_is_deterministic(tmp_path: Path) -> None:
    fsrc, asrc = _standin(tmp_path)
    for out in ("a", "b"):
        export_repository(tmp_path / out, fsrc, asrc, python_path="/opt/liftstream")
    for name in N.MODELS:
        for rel in ("config.pbtxt", "1/model.py"):
            assert (tmp_path / "a" / name / rel).read_bytes() == (tmp_path / "b" / name / rel).read_bytes()


def test_served_config_matches_names(served: Served) -> None:
    """What the running server parsed (not only the file) carries the names, dtypes and dims."""
    sizes = {
        "H": served.hidden_dim,
        "R": served.client.info.init_row.shape[0],
        "X": N.x_dim(served.hidden_dim),
    }
    with grpcclient.InferenceServerClient(served.server.grpc_url) as c:
        for name in N.MODELS:
            assert c.is_model_ready(name)
            cfg = c.get_model_config(name).config
            want_in, want_out = N.SPECS[name]
            assert [
                (t.name, model_config_pb2.DataType.Name(t.data_type), tuple(t.dims)) for t in cfg.input
            ] == [(s.name, s.data_type, s.resolve(sizes)) for s in want_in]
            assert [
                (t.name, model_config_pb2.DataType.Name(t.data_type), tuple(t.dims)) for t in cfg.output
            ] == [(s.name, s.data_type, s.resolve(sizes)) for s in want_out]


def test_stub_runs_in_this_virtualenv(served: Served) -> None:
    """The python stub ignores virtualenvs unless started as inference.triton_server does: every
    served model must report this venv's prefix and numpy (numpy 2, through DLPack)."""
    log = served.server.log_path.read_text()
    for name in N.MODELS:
        line = next((ln for ln in log.splitlines() if f"liftstream {name}:" in ln), None)
        assert line is not None, f"no load line for {name} in {served.server.log_path}"
        assert f"sys.prefix {sys.prefix};" in line
        assert f"numpy {np.__version__} at {np.__file__}" in line
        assert line.endswith('(1 threads)"'), line  # torch_threads of a CPU export


# --- parity: eager (in-process) vs served, allclose ------------------------------------------


def test_versions_and_init_state(served: Served) -> None:
    assert served.client.model_version == served.eager.model_version
    assert served.client.advice_version == served.eager.advice_version
    # the lamm_fei set serves a content LAMM: its encodings end with q_v (lamm_step's parameter)
    assert served.client.content_channel == served.eager.content_channel == (served.name == "lamm_fei")
    for n in (0, 1, 5):
        got, want = served.client.init_state(n), served.eager.init_state(n)
        assert got.shape == want.shape and got.dtype == np.float32
        _close(got, want)


def test_encode_parity(served: Served) -> None:
    videos = random_videos(7, seed=1)
    got, want = served.client.encode(videos), served.eager.encode(videos)
    assert got.shape == (7, served.hidden_dim) and got.dtype == np.float32
    _close(got, want)
    assert served.client.encode(random_videos(0)).shape == (0, served.hidden_dim)


def test_step_parity_over_days(served: Served) -> None:
    """Three chained days: the served state fed back must stay on the eager trajectory."""
    n = 6
    s_got, s_want = served.client.init_state(n), served.eager.init_state(n)
    for day in range(3):
        x = random_x(n, served.hidden_dim, seed=10 + day)
        got, want = served.client.step(s_got, x), served.eager.step(s_want, x)
        for field in ("state", "point", "lower", "upper"):
            _close(getattr(got, field), getattr(want, field))
        assert got.level == pytest.approx(want.level)
        assert (got.baseline is None) == (want.baseline is None)
        if want.baseline is not None:
            _close(got.baseline, want.baseline)
        s_got, s_want = got.state, want.state


def test_zero_rows_need_no_call(served: Served) -> None:
    out = served.client.step(served.client.init_state(0), random_x(0, served.hidden_dim))
    assert out.state.shape == (0, served.client.info.init_row.shape[0]) and out.point.shape == (0,)
    adv = served.client.advise(random_videos(0), random_meta(0), 0.01, 5.0)
    assert adv.fei.shape == (0,) and adv.curve_shape == []


def test_step_split_into_max_batch_chunks(served: Served) -> None:
    """A batch above max_batch_size goes as several requests; the answers concatenate in order."""
    n = 11
    x = random_x(n, served.hidden_dim, seed=3)
    state = served.client.init_state(n)
    whole = served.eager.step(state, x)
    saved = dict(served.client.info.max_batch)
    served.client.info.max_batch[N.STEP] = 4
    try:
        got = served.client.step(state, x)
    finally:
        served.client.info.max_batch.update(saved)
    _close(got.point, whole.point)
    _close(got.state, whole.state)


def test_advise_parity(served: Served) -> None:
    videos, meta = random_videos(9, seed=2), random_meta(9, seed=2)
    for value, cost in ((0.01, 5.0), (0.002, 0.5)):
        _assert_advice_equal(
            served.client.advise(videos, meta, value, cost), served.eager.advise(videos, meta, value, cost)
        )


def test_async_client_parity_concurrent(served: Served) -> None:
    """Concurrent aio calls (the dynamic batcher may merge them) each get their own answer."""
    videos, meta = random_videos(5, seed=4), random_meta(5, seed=4)
    xs = [random_x(3, served.hidden_dim, seed=20 + i) for i in range(4)]
    state = served.eager.init_state(3)

    async def go():
        client = AsyncTritonModelClient(served.server.grpc_url, timeout_s=CALL_TIMEOUT_S)
        try:
            assert client.model_version == served.eager.model_version
            return await asyncio.gather(
                client.encode(videos),
                client.advise(videos, meta, 0.01, 5.0),
                client.advise(videos, meta, 0.003, 1.0),
                *(client.step(state, x) for x in xs),
            )
        finally:
            await client.close()

    h, adv1, adv2, *steps = asyncio.run(go())
    _close(h, served.eager.encode(videos))
    _assert_advice_equal(adv1, served.eager.advise(videos, meta, 0.01, 5.0))
    _assert_advice_equal(adv2, served.eager.advise(videos, meta, 0.003, 1.0))
    for x, got in zip(xs, steps, strict=True):
        want = served.eager.step(state, x)
        _close(got.point, want.point)
        _close(got.state, want.state)


# --- a bad request fails alone ----------------------------------------------------------------


def _raw_inputs(specs, arrays):
    out = []
    for spec, a in zip(specs, arrays, strict=True):
        i = aioclient.InferInput(spec.name, list(a.shape), N.client_dtype(spec.data_type))
        i.set_data_from_numpy(np.ascontiguousarray(a, dtype=spec.np_dtype))
        out.append(i)
    return out


def test_malformed_request_fails_alone(served: Served) -> None:
    """Wrong shape (refused by the server) and a bad advisor request (refused by model.py) fail
    with clear errors while good requests sent at the same time succeed with exact answers."""
    n, r = 4, served.client.info.init_row.shape[0]
    state, x = served.eager.init_state(n), random_x(n, served.hidden_dim, seed=5)
    bad_state = np.zeros((n, r + 1), np.float32)  # wrong state width
    videos, meta = random_videos(3, seed=6), random_meta(3, seed=6)
    adv_arrays = [getattr(videos, f) for f in N.VIDEO_FIELDS]
    adv_arrays += [np.asarray(getattr(meta, f)).reshape(3, 1) for _, f in N.META_INPUTS]
    mixed_value = np.array([[0.01], [0.02], [0.01]])  # one request, several prices: refused
    bad_adv = adv_arrays + [mixed_value, np.full((3, 1), 5.0)]

    async def go():
        c = aioclient.InferenceServerClient(served.server.grpc_url)
        try:

            async def call(model, arrays):
                try:
                    return await c.infer(
                        model, _raw_inputs(N.SPECS[model][0], arrays), client_timeout=CALL_TIMEOUT_S
                    )
                except InferenceServerException as e:
                    return e

            return await asyncio.gather(
                call(N.STEP, [state, x]),
                call(N.STEP, [bad_state, x]),
                call(N.STEP, [state, x]),
                call(N.ADVISOR, bad_adv),
                call(N.ADVISOR, adv_arrays + [np.full((3, 1), 0.01), np.full((3, 1), 5.0)]),
            )
        finally:
            await c.close()

    good1, bad_shape, good2, bad_value, good_adv = asyncio.run(go())
    want = served.eager.step(state, x)
    for good in (good1, good2):
        assert not isinstance(good, Exception), good
        _close(good.as_numpy("POINT")[:, 0], want.point)
        _close(good.as_numpy("STATE_OUT"), want.state)
    assert isinstance(bad_shape, InferenceServerException)
    assert str(bad_shape.status()) == "StatusCode.INVALID_ARGUMENT"
    assert "STATE" in bad_shape.message() and "shape" in bad_shape.message()
    assert isinstance(bad_value, InferenceServerException)
    assert "VALUE_PER_IMPRESSION must be one finite value" in bad_value.message()
    assert not isinstance(good_adv, Exception), good_adv
    _close(
        good_adv.as_numpy("PROFIT_ACTUAL")[:, 0], served.eager.advise(videos, meta, 0.01, 5.0).profit_actual
    )
    # through the client: a typed error, and the client still works afterwards
    with pytest.raises(TritonRequestRejected, match="STATE"):
        served.client.step(bad_state, x)
    _close(served.client.step(state, x).point, want.point)


# --- typed client errors, load_client, not-installed -----------------------------------------


def test_timeout_is_typed(served: Served) -> None:
    """A peer that accepts TCP but never speaks gRPC: the call ends at its deadline, typed."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(TritonTimeout):
            TritonModelClient(url, connect_timeout_s=0.5)
        c = TritonModelClient(served.server.grpc_url, timeout_s=0.5, connect_timeout_s=CALL_TIMEOUT_S)
        c._c.close()
        c._c = grpcclient.InferenceServerClient(url)  # same client, its server gone silent
        try:
            t0 = time.monotonic()
            with pytest.raises(TritonTimeout):
                c.step(c.init_state(2), random_x(2, served.hidden_dim))
            assert time.monotonic() - t0 < 5.0
        finally:
            c.close()


def test_unreachable_server_is_typed() -> None:
    with pytest.raises(TritonUnavailable):
        TritonModelClient(f"127.0.0.1:{free_port()}", connect_timeout_s=2)


def test_load_client(served: Served) -> None:
    c = load_client(f"triton://{served.server.grpc_url}", asynchronous=False, timeout_s=CALL_TIMEOUT_S)
    try:
        assert isinstance(c, TritonModelClient) and c.model_version == served.eager.model_version
    finally:
        c.close()
    ac = load_client(f"triton://{served.server.grpc_url}", timeout_s=CALL_TIMEOUT_S)
    assert isinstance(ac, AsyncTritonModelClient) and ac.advice_version == served.eager.advice_version
    x = random_x(2, served.hidden_dim)

    async def go():
        try:
            return await ac.step(await ac.init_state(2), x)
        finally:
            await ac.close()

    _close(asyncio.run(go()).point, served.eager.step(served.eager.init_state(2), x).point)
    assert isinstance(load_client("inprocess", asynchronous=False), InProcessClient)
    assert isinstance(load_client("inprocess"), AsyncInProcessClient)
    with pytest.raises(ValueError, match="unknown model client spec"):
        load_client("http://x")
    # the worker's client takes its deadline from the settings (it ignored model_timeout_s before)
    from streams.app import build_client
    from streams.settings import Settings, SettingsError

    wc = build_client(Settings(models=f"triton://{served.server.grpc_url}", model_timeout_s=2.5))
    assert isinstance(wc, AsyncTritonModelClient) and wc.timeout_s == 2.5
    asyncio.run(wc.close())
    with pytest.raises(SettingsError, match="LIFTSTREAM_MODELS"):  # a typo fell back to in-process before
        Settings(models="trition://127.0.0.1:8001")


def test_export_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`liftstream export-triton`: checkpoint folders load with the default LAMM / FEI classes."""
    if "lamm_fei" not in MODEL_SETS:
        pytest.skip("inference.lamm / inference.fei not present")
    f, a = _lamm_fei_dirs(tmp_path)
    argv = ["--forecaster", str(f), "--advisor", str(a), "--out", str(tmp_path / "repo"), "--device", "gpu"]
    assert export_cli(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sizes"]["R"] == 256 and summary["device"] == "gpu"
    step = _parse(tmp_path / "repo" / N.STEP / "config.pbtxt")
    assert step.parameters[N.P_LOADER].string_value == "inference.lamm:LammForecaster"
    assert _parse(tmp_path / "repo" / N.ADVISOR / "config.pbtxt").parameters[N.P_LOADER].string_value == (
        "inference.fei:FeiAdvisor"
    )
    with pytest.raises(ModelDirError, match="not 'standin'"):
        export_cli(["--forecaster", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])


def test_not_installed_is_clear(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    with pytest.raises(TritonNotInstalled, match="install_triton.sh"):
        TritonServer(tmp_path / "repo", home=tmp_path / "nowhere").start()


def test_probe_rejects_n_dependent_init_state() -> None:
    class Odd(TinyTorchForecaster):
        def init_state(self, n):
            return np.arange(n * 8, dtype=np.float32).reshape(n, 8)

    with pytest.raises(AssertionError, match="init_state rows differ"):
        probe_forecaster(Odd())

"""The Triton backend of ``inference.client``: the same calls, answered by a tritonserver over gRPC.

    client = load_client("triton://127.0.0.1:8001")   # AsyncTritonModelClient (the Faust agents)
    client = load_client("triton://127.0.0.1:8001", asynchronous=False)  # TritonModelClient (sync)
    client = load_client("inprocess")                 # AsyncInProcessClient over the stand-ins

Tensor names, dtypes and dims come from ``inference.triton_names`` (the module the exporter writes
config.pbtxt from). At construction the client reads each model's config from the server once:
``model_version`` / ``advice_version``, the step's interval ``level``, whether it has a baseline,
the ``init_state`` row (``init_state(n)`` repeats it locally: no round trip) and
``max_batch_size`` (larger batches are split into several requests, answers concatenated).

Every call has an explicit timeout (``timeout_s``); failures raise a ``TritonClientError``
subclass chosen by gRPC status code, never by message text.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from inference import triton_names as N
from inference.client import AdviceBatch, InProcessClient, StepOutput, VideoBatch, VideoMeta


class TritonClientError(RuntimeError):
    """A call to the Triton server failed (``status`` is the gRPC status code, if any)."""

    def __init__(self, message: str, status: str | None = None):
        super().__init__(message)
        self.status = status


class TritonUnavailable(TritonClientError):
    """The server cannot be reached or the model is not ready."""


class TritonTimeout(TritonClientError):
    """The call ran past its deadline."""


class TritonRequestRejected(TritonClientError):
    """The server refused this request (wrong shape/dtype, or the model said it is bad)."""


_STATUS_CLASS = {
    "StatusCode.UNAVAILABLE": TritonUnavailable,
    "StatusCode.DEADLINE_EXCEEDED": TritonTimeout,
    "StatusCode.INVALID_ARGUMENT": TritonRequestRejected,
    "StatusCode.NOT_FOUND": TritonUnavailable,
    "StatusCode.INTERNAL": TritonRequestRejected,  # python-backend error responses arrive as INTERNAL
}


def _wrap(e: InferenceServerException, what: str) -> TritonClientError:
    status = e.status()
    cls = _STATUS_CLASS.get(str(status), TritonClientError)
    return cls(f"{what}: {e.message()}", status=None if status is None else str(status))


@dataclass
class ServedInfo:
    """What the client learns from the served models' config.pbtxt."""

    model_version: str
    advice_version: str
    level: float
    has_baseline: bool
    init_row: np.ndarray  # (R,)
    hidden_dim: int
    max_batch: dict[str, int]
    content_channel: bool = False  # H ends with q_v, x with the content-lift channel

    @classmethod
    def from_configs(cls, configs: dict[str, dict]) -> ServedInfo:
        def param(name: str, key: str) -> str:
            try:
                return configs[name]["parameters"][key]["string_value"]
            except KeyError:
                raise TritonClientError(
                    f"model {name} has no config parameter {key!r}: not exported by this version"
                ) from None

        for m, (_, outputs) in N.SPECS.items():
            served = {o["name"] for o in configs[m].get("output", [])}
            missing = [s.name for s in outputs if s.name not in served]
            if missing:
                raise TritonClientError(
                    f"model {m} does not serve outputs {missing}: exported by an older version; "
                    "re-export the repository with `liftstream export-triton`"
                )
        h_dims = [o for o in configs[N.ENCODER]["output"] if o["name"] == "H"][0]["dims"]
        return cls(
            model_version=param(N.STEP, N.P_MODEL_VERSION),
            advice_version=param(N.ADVISOR, N.P_MODEL_VERSION),
            level=float(param(N.STEP, N.P_LEVEL)),
            has_baseline=param(N.STEP, N.P_HAS_BASELINE) == "1",
            init_row=np.asarray(json.loads(param(N.STEP, N.P_INIT_STATE)), dtype=np.float32),
            hidden_dim=int(h_dims[0]),
            max_batch={m: int(configs[m].get("max_batch_size", 0)) for m in N.MODELS},
            # absent in repositories exported before the channel existed: those models have none
            content_channel=configs[N.STEP].get("parameters", {}).get(N.P_CONTENT, {}).get("string_value")
            == "1",
        )


# --- request building and answer decoding, shared by the sync and the async client ------------


def _inputs(specs, arrays: list[np.ndarray]) -> list[grpcclient.InferInput]:
    out = []
    for spec, arr in zip(specs, arrays, strict=True):
        a = np.ascontiguousarray(arr, dtype=spec.np_dtype)
        i = grpcclient.InferInput(spec.name, list(a.shape), N.client_dtype(spec.data_type))
        i.set_data_from_numpy(a)
        out.append(i)
    return out


def _outputs(specs) -> list[grpcclient.InferRequestedOutput]:
    return [grpcclient.InferRequestedOutput(s.name) for s in specs]


def _video_arrays(videos: VideoBatch) -> list[np.ndarray]:
    return [getattr(videos, f) for f in N.VIDEO_FIELDS]


def _col(v, n: int) -> np.ndarray:
    return np.asarray(v).reshape(n, 1)


def _advisor_arrays(videos: VideoBatch, meta: VideoMeta, value: float, cost: float) -> list[np.ndarray]:
    n = len(videos)
    arrays = _video_arrays(videos) + [_col(getattr(meta, field), n) for _, field in N.META_INPUTS]
    return arrays + [np.full((n, 1), float(value)), np.full((n, 1), float(cost))]


def _chunks(n: int, size: int) -> list[slice]:
    size = max(size, 1)
    return [slice(i, i + size) for i in range(0, n, size)]  # n == 0: no request at all


def _decode_step(results, info: ServedInfo) -> StepOutput:
    if not results:  # zero rows
        z = np.zeros(0)
        state = np.zeros((0, info.init_row.shape[0]), np.float32)
        return StepOutput(state, z, z, z, info.level, z if info.has_baseline else None)
    cat = lambda name: np.concatenate([r.as_numpy(name) for r in results])  # noqa: E731
    base = cat("BASELINE")[:, 0] if info.has_baseline else None
    return StepOutput(
        state=cat("STATE_OUT"),
        point=cat("POINT")[:, 0],
        lower=cat("LOWER")[:, 0],
        upper=cat("UPPER")[:, 0],
        level=info.level,
        baseline=base,
    )


def _decode_advice(results) -> AdviceBatch:
    if not results:  # zero rows
        return AdviceBatch.empty()
    cols = {}
    for spec, field in N.ADVISOR_OUTPUTS_FIELDS:
        v = np.concatenate([r.as_numpy(spec.name) for r in results])[:, 0]
        cols[field] = [N.CURVE_SHAPES[int(i)] for i in v] if field == "curve_shape" else v
    return AdviceBatch(**cols)


def _check_step(state: np.ndarray, x: np.ndarray) -> None:
    assert state.ndim == 2 and x.ndim == 2 and state.shape[0] == x.shape[0], (
        f"expected state (N, R) and x (N, X) with the same N, got {state.shape} and {x.shape}"
    )


class TritonModelClient:
    """``ModelClient`` over a Triton server (sync gRPC): the embedded runner, scripts, tests."""

    def __init__(self, url: str, *, timeout_s: float = 10.0, connect_timeout_s: float = 10.0):
        self.url, self.timeout_s = url, timeout_s
        self._c = grpcclient.InferenceServerClient(url)
        try:
            configs = {
                m: self._c.get_model_config(m, as_json=True, client_timeout=connect_timeout_s)["config"]
                for m in N.MODELS
            }
        except InferenceServerException as e:
            self._c.close()
            raise _wrap(e, f"reading model configs from {url}") from None
        self.info = ServedInfo.from_configs(configs)
        self.model_version, self.advice_version = self.info.model_version, self.info.advice_version
        self.content_channel = self.info.content_channel

    def _infer(self, model: str, arrays: list[np.ndarray]) -> list:
        inputs, outputs = N.SPECS[model]
        n = arrays[0].shape[0]
        results = []
        for sl in _chunks(n, self.info.max_batch[model]):
            try:
                r = self._c.infer(
                    model,
                    _inputs(inputs, [a[sl] for a in arrays]),
                    outputs=_outputs(outputs),
                    client_timeout=self.timeout_s,
                )
            except InferenceServerException as e:
                raise _wrap(e, f"{model} at {self.url}") from None
            results.append(r)
        return results

    def encode(self, videos: VideoBatch) -> np.ndarray:
        if len(videos) == 0:
            return np.zeros((0, self.info.hidden_dim), dtype=np.float32)
        return np.concatenate([r.as_numpy("H") for r in self._infer(N.ENCODER, _video_arrays(videos))])

    def init_state(self, n: int) -> np.ndarray:
        return np.repeat(self.info.init_row[None, :], n, axis=0)

    def step(self, state: np.ndarray, x: np.ndarray) -> StepOutput:
        _check_step(state, x)
        return _decode_step(self._infer(N.STEP, [state, x]), self.info)

    def advise(
        self, videos: VideoBatch, meta: VideoMeta, value_per_impression: float, cost_per_1k_followers: float
    ) -> AdviceBatch:
        arrays = _advisor_arrays(videos, meta, value_per_impression, cost_per_1k_followers)
        return _decode_advice(self._infer(N.ADVISOR, arrays))

    def close(self) -> None:
        self._c.close()

    def __enter__(self) -> TritonModelClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncTritonModelClient:
    """``AsyncModelClient`` over a Triton server (``tritonclient.grpc.aio``): the Faust agents.

    The served models' configs are read once, synchronously, in ``__init__`` (so the versions
    are known before the first event); every call after that is awaitable with ``timeout_s``.
    Chunks of a batch larger than ``max_batch_size`` are sent concurrently.
    """

    def __init__(self, url: str, *, timeout_s: float = 10.0, connect_timeout_s: float = 10.0):
        with TritonModelClient(url, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s) as sync:
            self.info = sync.info
        self.url, self.timeout_s = url, timeout_s
        self.model_version, self.advice_version = self.info.model_version, self.info.advice_version
        self.content_channel = self.info.content_channel
        self._c: aioclient.InferenceServerClient | None = None

    def _client(self) -> aioclient.InferenceServerClient:
        # created on first use: the aio channel binds to the running event loop
        if self._c is None:
            self._c = aioclient.InferenceServerClient(self.url)
        return self._c

    async def _infer(self, model: str, arrays: list[np.ndarray]) -> list:
        inputs, outputs = N.SPECS[model]
        c = self._client()

        async def one(sl: slice):
            try:
                return await c.infer(
                    model,
                    _inputs(inputs, [a[sl] for a in arrays]),
                    outputs=_outputs(outputs),
                    client_timeout=self.timeout_s,
                )
            except InferenceServerException as e:
                raise _wrap(e, f"{model} at {self.url}") from None

        return list(
            await asyncio.gather(*(one(sl) for sl in _chunks(arrays[0].shape[0], self.info.max_batch[model])))
        )

    async def encode(self, videos: VideoBatch) -> np.ndarray:
        if len(videos) == 0:
            return np.zeros((0, self.info.hidden_dim), dtype=np.float32)
        return np.concatenate([r.as_numpy("H") for r in await self._infer(N.ENCODER, _video_arrays(videos))])

    async def init_state(self, n: int) -> np.ndarray:
        return np.repeat(self.info.init_row[None, :], n, axis=0)

    async def step(self, state: np.ndarray, x: np.ndarray) -> StepOutput:
        _check_step(state, x)
        return _decode_step(await self._infer(N.STEP, [state, x]), self.info)

    async def advise(
        self, videos: VideoBatch, meta: VideoMeta, value_per_impression: float, cost_per_1k_followers: float
    ) -> AdviceBatch:
        arrays = _advisor_arrays(videos, meta, value_per_impression, cost_per_1k_followers)
        return _decode_advice(await self._infer(N.ADVISOR, arrays))

    async def close(self) -> None:
        if self._c is not None:
            await self._c.close()
            self._c = None


def load_client(
    spec: str,
    *,
    asynchronous: bool = True,
    forecaster: str = "standin",
    advisor: str = "standin",
    timeout_s: float = 10.0,
):
    """A model client from a spec: ``"inprocess"`` or ``"triton://host:port"`` (gRPC port).

    Async by default (``AsyncModelClient``: what ``streams.app.build_client`` hands the agents);
    ``asynchronous=False`` gives the sync ``ModelClient``.

    ``forecaster`` / ``advisor`` (``standin`` or a checkpoint folder, as for export-triton) only
    matter in-process; a Triton server serves whatever was exported into its repository.
    """
    if spec == "inprocess":
        from inference.client import AsyncInProcessClient
        from inference.export import resolve

        client = InProcessClient(
            resolve(forecaster, "forecaster").build(), resolve(advisor, "advisor").build()
        )
        return AsyncInProcessClient(client) if asynchronous else client
    if spec.startswith("triton://"):
        url = spec.removeprefix("triton://").rstrip("/")
        cls = AsyncTritonModelClient if asynchronous else TritonModelClient
        return cls(url, timeout_s=timeout_s)
    raise ValueError(f"unknown model client spec {spec!r}: expected 'inprocess' or 'triton://host:port'")

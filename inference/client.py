"""One interface to the models, two backends: in-process (torch/numpy here) and Triton.

The stream never touches a model object: it hands batches to a ``ModelClient`` (sync, the
embedded runner) or an ``AsyncModelClient`` (async, the Faust agents) and gets numpy back.

- ``encode(videos) -> (N, H)``: the video encoder (LAMM's ladder attention), once per video.
- ``init_state(n) -> (n, R)`` and ``step(state, x) -> StepOutput``: the recurrent forecaster
  advanced one product-day; ``x`` rows come from ``inference.daily.day_input``.
- ``advise(videos, meta, value_per_impression, cost_per_1k_followers) -> AdviceBatch``: the FEI
  curve of each video's content and the follower size that maximises profit.

``InProcessClient`` wraps any objects with those methods; ``inference.triton_client`` sends the
same calls to a Triton server. ``load_client`` builds one from a URL-ish spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Protocol, runtime_checkable

import numpy as np

from schemas import limits as L


@dataclass
class VideoBatch:
    """Padded multimodal features of N videos (float32; masks True where real)."""

    frame: np.ndarray  # (N, S, D) batch, segments, dim
    motion: np.ndarray  # (N, S, D)
    audio: np.ndarray  # (N, S, D)
    seg_mask: np.ndarray  # (N, S) bool
    title: np.ndarray  # (N, T, D) batch, title tokens, dim
    title_mask: np.ndarray  # (N, T) bool

    def __post_init__(self) -> None:
        n, s, d = self.frame.shape
        assert s == L.MAX_SEGMENTS and d == L.FEATURE_DIM, (
            f"expected frame (N, {L.MAX_SEGMENTS}, {L.FEATURE_DIM}), got {self.frame.shape}"
        )
        for name in ("motion", "audio"):
            assert getattr(self, name).shape == (n, s, d), (
                f"expected {name} {(n, s, d)}, got {getattr(self, name).shape}"
            )
        assert self.seg_mask.shape == (n, s), f"expected seg_mask {(n, s)}, got {self.seg_mask.shape}"
        assert self.title.shape == (n, L.MAX_TITLE_TOKENS, d), (
            f"expected title (N, {L.MAX_TITLE_TOKENS}, {d}), got {self.title.shape}"
        )
        assert self.title_mask.shape == (n, L.MAX_TITLE_TOKENS), (
            f"expected title_mask {(n, L.MAX_TITLE_TOKENS)}, got {self.title_mask.shape}"
        )

    def __len__(self) -> int:
        return self.frame.shape[0]

    @classmethod
    def empty(cls, n: int, fill: bool = True) -> VideoBatch:
        """A batch of n videos with no segments (zeros); ``fill=False`` leaves the memory
        uninitialised for callers that overwrite every row."""
        s, t, d = L.MAX_SEGMENTS, L.MAX_TITLE_TOKENS, L.FEATURE_DIM
        alloc = np.zeros if fill else np.empty
        z = lambda *shape: alloc(shape, dtype=np.float32)  # noqa: E731
        return cls(z(n, s, d), z(n, s, d), z(n, s, d), alloc((n, s), bool), z(n, t, d), alloc((n, t), bool))

    @classmethod
    def from_arrays(cls, items: list[dict[str, np.ndarray]]) -> VideoBatch:
        """Pad unpadded per-video arrays (``SegmentFeatures.arrays()``) into one batch."""
        b = cls.empty(len(items))
        for i, a in enumerate(items):
            ns, nt = a["frame"].shape[0], a["title"].shape[0]
            b.frame[i, :ns], b.motion[i, :ns], b.audio[i, :ns] = a["frame"], a["motion"], a["audio"]
            b.seg_mask[i, :ns] = True
            b.title[i, :nt] = a["title"]
            b.title_mask[i, :nt] = True
        return b

    def take(self, idx) -> VideoBatch:
        return VideoBatch(
            *(
                np.asarray(getattr(self, f))[idx]
                for f in ("frame", "motion", "audio", "seg_mask", "title", "title_mask")
            )
        )


@dataclass
class VideoMeta:
    """Post statistics of N videos, as the FEI model needs them (numpy columns)."""

    followers: np.ndarray  # (N,) follower count at publish
    past_avg_hearts: np.ndarray  # (N,) the instrument
    verified: np.ndarray  # (N,) bool
    video_type: np.ndarray  # (N,) int index into limits.VIDEO_TYPES
    length_s: np.ndarray  # (N,)
    create_hour: np.ndarray  # (N,)
    n_segments: np.ndarray  # (N,)


@dataclass
class StepOutput:
    state: np.ndarray  # (N, R) recurrent state after the step
    point: np.ndarray  # (N,) expected units on the next day
    lower: np.ndarray  # (N,) lower bound of the central `level` interval
    upper: np.ndarray  # (N,)
    level: float
    baseline: np.ndarray | None = None  # (N,) expected units with no active videos, if the model can say


@dataclass
class AdviceBatch:
    fei: np.ndarray  # (N,) elasticity d log impressions / d log followers at the actual size
    curve_shape: list[str]  # "s_shaped" | "linear" | "concave"
    expected_impressions: np.ndarray  # (N,) at the actual follower count
    optimal_followers: np.ndarray  # (N,)
    # (N,) each: the sizes around the optimum whose expected profit is within 95% of it
    # (inference.optimum.near_optimal_range); both equal optimal_followers where no size pays
    optimal_followers_low: np.ndarray
    optimal_followers_high: np.ndarray
    expected_impressions_optimal: np.ndarray  # (N,)
    profit_actual: np.ndarray  # (N,)
    profit_optimal: np.ndarray  # (N,)

    @classmethod
    def empty(cls) -> AdviceBatch:
        z = np.zeros(0)
        return cls(**{f.name: ([] if f.name == "curve_shape" else z) for f in fields(cls)})

    @classmethod
    def concat(cls, parts: list[AdviceBatch]) -> AdviceBatch:
        if not parts:
            return cls.empty()
        return cls(
            **{
                f.name: (
                    [s for p in parts for s in p.curve_shape]
                    if f.name == "curve_shape"
                    else np.concatenate([getattr(p, f.name) for p in parts])
                )
                for f in fields(cls)
            }
        )


@runtime_checkable
class ModelClient(Protocol):
    """What the stream needs from the models (sync form)."""

    model_version: str
    advice_version: str

    def encode(self, videos: VideoBatch) -> np.ndarray: ...
    def init_state(self, n: int) -> np.ndarray: ...
    def step(self, state: np.ndarray, x: np.ndarray) -> StepOutput: ...
    def advise(
        self, videos: VideoBatch, meta: VideoMeta, value_per_impression: float, cost_per_1k_followers: float
    ) -> AdviceBatch: ...


class AsyncModelClient(Protocol):
    """The same calls, awaitable (Triton's aio client inside the Faust agents)."""

    model_version: str
    advice_version: str

    async def encode(self, videos: VideoBatch) -> np.ndarray: ...
    async def init_state(self, n: int) -> np.ndarray: ...
    async def step(self, state: np.ndarray, x: np.ndarray) -> StepOutput: ...
    async def advise(
        self, videos: VideoBatch, meta: VideoMeta, value_per_impression: float, cost_per_1k_followers: float
    ) -> AdviceBatch: ...


@dataclass
class InProcessClient:
    """The in-process backend: calls model objects in this process.

    ``forecaster`` has ``encode``, ``init_state``, ``step`` and ``model_version``;
    ``advisor`` has ``advise`` and ``model_version``.
    """

    forecaster: object
    advisor: object
    max_batch: int = 4096
    model_version: str = field(init=False)
    advice_version: str = field(init=False)
    content_channel: bool = field(init=False)

    def __post_init__(self) -> None:
        # a LAMM with the content-lift channel: encodings end with q_v, x with the channel
        self.content_channel = bool(getattr(self.forecaster, "content_channel", False))
        self.model_version = self.forecaster.model_version
        self.advice_version = self.advisor.model_version

    def encode(self, videos: VideoBatch) -> np.ndarray:
        n = len(videos)
        if n <= self.max_batch:
            return self.forecaster.encode(videos)
        parts = [
            self.forecaster.encode(videos.take(slice(i, i + self.max_batch)))
            for i in range(0, n, self.max_batch)
        ]
        return np.concatenate(parts)

    def init_state(self, n: int) -> np.ndarray:
        return self.forecaster.init_state(n)

    def step(self, state: np.ndarray, x: np.ndarray) -> StepOutput:
        assert state.shape[0] == x.shape[0], (
            f"expected state and x with the same batch, got {state.shape} and {x.shape}"
        )
        return self.forecaster.step(state, x)

    def advise(self, videos, meta, value_per_impression, cost_per_1k_followers) -> AdviceBatch:
        return self.advisor.advise(videos, meta, value_per_impression, cost_per_1k_followers)


class AsyncInProcessClient:
    """``InProcessClient`` behind the async interface (same numbers, no server)."""

    def __init__(self, client: InProcessClient):
        self.sync = client
        self.model_version = client.model_version
        self.advice_version = client.advice_version
        self.content_channel = client.content_channel

    async def encode(self, videos):
        return self.sync.encode(videos)

    async def init_state(self, n):
        return self.sync.init_state(n)

    async def step(self, state, x):
        return self.sync.step(state, x)

    async def advise(self, videos, meta, value_per_impression, cost_per_1k_followers):
        return self.sync.advise(videos, meta, value_per_impression, cost_per_1k_followers)

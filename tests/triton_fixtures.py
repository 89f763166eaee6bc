"""Triton test helpers: small random-initialised torch models, random inputs, a server fixture.

- ``TinyTorchForecaster`` / ``TinyTorchAdvisor``: torch models of the ``inference.client``
  protocol's shapes (non-zero learned initial state, a baseline, all three curve shapes) with
  ``save(dir)`` / ``load(dir)``, so the exporter's checkpoint path is exercised the way LAMM /
  FEI use it. Served by Triton they are imported from this module (the repository's
  python_path holds the project root).
- ``random_videos`` / ``random_meta`` / ``random_x``: seeded inputs with ragged masks.
- ``start_triton(repo)``: a ``TritonServer`` that fails loudly in CI and skips elsewhere when
  tritonserver is not installed (``bash deploy/scripts/install_triton.sh``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inference.client import AdviceBatch, StepOutput, VideoBatch, VideoMeta
from inference.daily import PRODUCT_DIM, SIDE_DIM
from inference.optimum import near_optimal_range
from inference.triton_names import CURVE_SHAPES
from inference.triton_server import TritonNotInstalled, TritonServer, TritonStartError
from schemas import limits as L


@dataclass
class TinyConfig:
    hidden: int = 16  # H
    state: int = 8  # R
    seed: int = 0


def _pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    w = mask.to(x.dtype)[..., None]  # (N, L, 1)
    return (x * w).sum(1) / w.sum(1).clamp(min=1.0)  # (N, D)


class _TinyNet(nn.Module):
    def __init__(self, cfg: TinyConfig):
        super().__init__()
        torch.manual_seed(cfg.seed)
        d = L.FEATURE_DIM
        self.enc = nn.Linear(4 * d, cfg.hidden)
        self.cell = nn.GRUCell(cfg.hidden + SIDE_DIM + PRODUCT_DIM, cfg.state)
        self.head = nn.Linear(cfg.state, 3)  # log point, log half-width, log baseline
        self.h0 = nn.Parameter(torch.randn(cfg.state) * 0.1)  # a learned, non-zero initial state


class TinyTorchForecaster:
    """A random-initialised torch forecaster with LAMM's interface (not a forecast of anything)."""

    def __init__(self, cfg: TinyConfig | None = None):
        self.cfg = cfg or TinyConfig()
        self.net = _TinyNet(self.cfg).eval()
        self.model_version = f"tiny-torch-seed{self.cfg.seed}"
        self.level = 0.9

    @property
    def hidden_dim(self) -> int:
        return self.cfg.hidden

    @property
    def state_dim(self) -> int:
        return self.cfg.state

    def encode(self, videos: VideoBatch) -> np.ndarray:
        t = torch.from_numpy
        with torch.inference_mode():
            seg = torch.cat([t(videos.frame), t(videos.motion), t(videos.audio)], dim=-1)  # (N, S, 3D)
            z = torch.cat(
                [_pool(seg, t(videos.seg_mask)), _pool(t(videos.title), t(videos.title_mask))], dim=-1
            )
            return torch.tanh(self.net.enc(z)).numpy()  # (N, H)

    def init_state(self, n: int) -> np.ndarray:
        return self.net.h0.detach().numpy()[None, :].repeat(n, axis=0).astype(np.float32)  # (n, R)

    def step(self, state: np.ndarray, x: np.ndarray) -> StepOutput:
        assert state.shape[1] == self.state_dim, f"expected state (N, {self.state_dim}), got {state.shape}"
        with torch.inference_mode():
            s = self.net.cell(
                torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(state)
            )  # (N, R)
            out = self.net.head(s).double()  # (N, 3)
        point = torch.exp(out[:, 0]).numpy()
        half = torch.exp(out[:, 1]).numpy()
        return StepOutput(
            s.numpy(),
            point,
            np.maximum(point - half, 0.0),
            point + half,
            self.level,
            torch.exp(out[:, 2]).numpy(),
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), path / "weights.pt")
        (path / "config.json").write_text(json.dumps(asdict(self.cfg), sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TinyTorchForecaster:
        path = Path(path)
        obj = cls(TinyConfig(**json.loads((path / "config.json").read_text())))
        obj.net.load_state_dict(torch.load(path / "weights.pt", weights_only=True))
        return obj


class TinyTorchAdvisor:
    """A random-initialised torch advisor: content -> elasticity, all three curve shapes appear."""

    def __init__(self, seed: int = 0):
        torch.manual_seed(seed)
        self.seed = seed
        self.net = nn.Linear(L.FEATURE_DIM + 2, 1).double().eval()
        self.model_version = f"tiny-advisor-seed{seed}"
        self.grid = np.logspace(2, 7, 51)

    def advise(
        self, videos: VideoBatch, meta: VideoMeta, value_per_impression: float, cost_per_1k_followers: float
    ) -> AdviceBatch:
        f = np.asarray(meta.followers, dtype=np.float64).clip(1)
        z = np.concatenate(
            [
                (videos.frame * videos.seg_mask[..., None]).sum(1)
                / np.maximum(videos.seg_mask.sum(1, keepdims=True), 1),
                np.log1p(np.asarray(meta.past_avg_hearts, np.float64))[:, None] / 10,
                np.asarray(meta.verified, np.float64)[:, None],
            ],
            axis=1,
        )
        with torch.inference_mode():
            e = 0.2 + 1.2 * torch.sigmoid(self.net(torch.from_numpy(z)))[:, 0].numpy()  # (N,) in (0.2, 1.4)

        def imp(fol, el):
            return 0.5 * 1e4 * (fol / 1e4) ** el

        profit_grid = (
            value_per_impression * imp(self.grid[None, :], e[:, None])
            - cost_per_1k_followers * self.grid / 1e3
        )
        best = profit_grid.argmax(1)
        lo, hi = near_optimal_range(
            imp(self.grid[None, :], e[:, None]), self.grid, value_per_impression, cost_per_1k_followers
        )
        return AdviceBatch(
            fei=e,
            curve_shape=[
                CURVE_SHAPES[0] if v > 1.05 else CURVE_SHAPES[1] if v > 0.95 else CURVE_SHAPES[2] for v in e
            ],
            expected_impressions=imp(f, e),
            optimal_followers=self.grid[best],
            optimal_followers_low=self.grid[lo],
            optimal_followers_high=self.grid[hi],
            expected_impressions_optimal=imp(self.grid[best], e),
            profit_actual=value_per_impression * imp(f, e) - cost_per_1k_followers * f / 1e3,
            profit_optimal=profit_grid[np.arange(len(e)), best],
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), path / "weights.pt")
        (path / "config.json").write_text(json.dumps({"seed": self.seed}))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TinyTorchAdvisor:
        path = Path(path)
        obj = cls(**json.loads((path / "config.json").read_text()))
        obj.net.load_state_dict(torch.load(path / "weights.pt", weights_only=True))
        return obj


# --- inputs ---------------------------------------------------------------------------------


def random_videos(n: int, seed: int = 0) -> VideoBatch:
    """n videos with ragged segment / title lengths (at least one segment each; one title empty)."""
    rng = np.random.default_rng(seed)
    v = VideoBatch.empty(n)
    for i in range(n):
        ns, nt = (
            int(rng.integers(1, L.MAX_SEGMENTS + 1)),
            int(rng.integers(0 if i == 0 else 1, L.MAX_TITLE_TOKENS + 1)),
        )
        for name in ("frame", "motion", "audio"):
            getattr(v, name)[i, :ns] = rng.normal(size=(ns, L.FEATURE_DIM))
        v.seg_mask[i, :ns] = True
        v.title[i, :nt] = rng.normal(size=(nt, L.FEATURE_DIM))
        v.title_mask[i, :nt] = True
    return v


def random_meta(n: int, seed: int = 0) -> VideoMeta:
    rng = np.random.default_rng(seed)
    return VideoMeta(
        followers=np.round(10 ** rng.uniform(2, 7, n)),
        past_avg_hearts=np.round(10 ** rng.uniform(0, 5, n)),
        verified=rng.random(n) < 0.3,
        video_type=rng.integers(0, len(L.VIDEO_TYPES), n),
        length_s=rng.uniform(5, 120, n),
        create_hour=rng.integers(0, 24, n).astype(np.float64),
        n_segments=rng.integers(1, L.MAX_SEGMENTS + 1, n),
    )


def random_x(n: int, hidden_dim: int, seed: int = 0) -> np.ndarray:
    """(n, X) day inputs shaped like inference.daily.day_input (units column log1p(units) >= 0)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, hidden_dim + SIDE_DIM + PRODUCT_DIM)).astype(np.float32)
    x[:, hidden_dim + SIDE_DIM] = np.log1p(rng.integers(0, 500, n))  # units
    return x


def lamm_fei_checkpoints(tmp: str | Path) -> tuple[Path, Path]:
    """Checkpoint folders of a random-initialised ``LammForecaster`` with a GBM head (20 trees on
    random rows: the served default is LAMM blended with one) and the content-lift channel (random
    detectors and conversion weights: the embedded run serves one), and of an ``FeiAdvisor`` whose
    control-function IV (the advisor's default estimator) ran two epochs on random rows: real
    classes and save/load, numbers of no meaning."""
    import lightgbm as lgb

    from inference import fei as F
    from inference import vsvae as V
    from inference.deepiv import ControlFunctionIV
    from inference.gbm_head import GbmHead
    from inference.lamm import Conformal, Lamm, LammConfig, LammForecaster
    from tests.bench.bench_lamm import bench_content_model

    tmp = Path(tmp)
    torch.manual_seed(0)
    cfg = LammConfig(content_channel=True)
    rng = np.random.default_rng(3)
    xt = rng.standard_normal((2000, cfg.x_dim - cfg.d_model)).astype(np.float32)
    trees = lgb.LGBMRegressor(n_estimators=20, num_leaves=15, verbose=-1, n_jobs=1)
    trees.fit(xt, np.tanh(xt[:, 0]) + 0.5 * xt[:, 10] + 0.1 * rng.standard_normal(len(xt)))
    lamm = LammForecaster(
        Lamm(cfg),
        # per bucket of active videos, as trained forecasters have (the step parity test covers both buckets)
        Conformal(
            level=0.8,
            q_lo=-1.2,
            q_hi=1.1,
            n_calib=100,
            column=cfg.x_column("n_active"),
            edges=(0.0,),
            q_lo_by=(-1.5, -0.9),
            q_hi_by=(1.4, 0.8),
            n_by=(50, 50),
        ),
        gbm=GbmHead(trees.booster_.model_to_string(), weight=0.5),
        content=bench_content_model(seed=4),
    )
    fdir = lamm.save(tmp / "lamm")
    n = 96
    videos, meta = random_videos(n, seed=11), random_meta(n, seed=11)
    vs = V.VSVAE(V.VSVAEConfig(progress=False)).eval()
    feats = {k: getattr(videos, k) for k in ("frame", "motion", "audio", "seg_mask", "title", "title_mask")}
    editing = V.editing_features(
        videos.frame, videos.motion, videos.audio, videos.seg_mask, np.asarray(meta.length_s)
    )
    src = V.FeatureSource(feats, editing)
    x = F.covariates(V.encode(vs, src), meta)
    t, z = F.treatment(meta.followers), F.instrument(meta.past_avg_hearts)
    y = 0.7 * t + 0.1 * z[:, 0] + np.random.default_rng(1).normal(0, 0.3, n)
    verified = x.shape[1] - len(F.COVARIATE_POST_STATS) + F.COVARIATE_POST_STATS.index("verified")
    est = ControlFunctionIV(
        max_epochs=2, batch_size=32, n_components=2, progress=False, first_stage_exclude=(verified,)
    ).fit(treatment=t, covariates=x, instruments=z, outcome=y)
    adv = F.FeiAdvisor(vs, src.scale, est, 1.05, (float(np.log(1e3)), float(np.log(5e6))))
    adir = adv.save(tmp / "fei")
    return fdir, adir


# --- server ---------------------------------------------------------------------------------


def start_triton(repo: str | Path, log_path: str | Path | None = None) -> TritonServer:
    """Start tritonserver over ``repo``; fail loudly in CI, skip elsewhere, if it cannot run."""
    try:
        return TritonServer(repo, log_path=log_path, startup_timeout_s=300).start()
    except (TritonNotInstalled, TritonStartError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"tritonserver could not start in CI: {exc}", pytrace=False)
        pytest.skip(f"tritonserver unavailable ({exc}); run deploy/scripts/install_triton.sh")

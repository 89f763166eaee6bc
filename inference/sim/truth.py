"""The simulator's known causal response of impressions to followers, and truth/ readers.

Each video has an FEI curve (follower elasticity of impressions, d log R / d log F, natural logs)

    fei(l) = floor + amp * K(l)       l = ln(followers)
    K(l)   = exp(-(l - mu)^2 / (2 w^2))      curve "s_shaped" (inverted-U FEI, S-shaped impressions)
             0                               curve "linear"   (constant FEI)
             sigmoid((mu - l) / w)           curve "concave"  (decreasing FEI)

and its two-week log impressions, without the confounder and the noise, are the integral

    g(l) = intercept + floor * (l - L_REF) + amp * (G(l) - G(L_REF)),   G' = K

so ``intercept`` is the expected log impressions at 10,000 followers. ``true_log_impressions``
and ``true_fei`` evaluate g and its slope for any follower counts; evaluation code compares a
fitted Deep IV curve with them. ``read_truth`` loads a simulated dataset's truth/ folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from scipy.special import erf

CURVE_CODES = {"s_shaped": 0, "linear": 1, "concave": 2}
CURVE_NAMES = tuple(CURVE_CODES)
L_REF = float(np.log(1e4))  # intercept is g at 10k followers
PARAM_NAMES = ("curve", "intercept", "floor", "amp", "mu", "w")
# the grid stored in truth/fei_grid.npy: ln(followers) from 100 to 10 million
GRID = np.linspace(np.log(1e2), np.log(1e7), 64)


def _params(params) -> dict[str, np.ndarray]:
    """Accept a mapping (dict / pyarrow table / pandas frame) with PARAM_NAMES columns."""
    names = params.column_names if hasattr(params, "column_names") else params
    missing = [k for k in PARAM_NAMES if k not in names]
    if missing:
        raise KeyError(f"video_params lacks {missing}; expected columns {PARAM_NAMES}")
    out = {k: np.asarray(params[k], dtype=np.float64) for k in PARAM_NAMES}
    n = {v.shape for v in out.values()}
    if len(n) != 1 or len(next(iter(n))) != 1:
        raise ValueError(
            f"video_params columns must be 1-d of one length, got { {k: v.shape for k, v in out.items()} }"
        )
    return out


def _kernel_integral(lf: np.ndarray, curve: np.ndarray, mu: np.ndarray, w: np.ndarray) -> np.ndarray:
    """G(lf) with G' = K, broadcast over (N, G)."""
    s = np.sqrt(np.pi / 2) * w * erf((lf - mu) / (np.sqrt(2) * w))
    c = -w * np.logaddexp(0.0, (mu - lf) / w)  # d/dlf = sigmoid((mu - lf) / w)
    return np.where(curve == CURVE_CODES["s_shaped"], s, np.where(curve == CURVE_CODES["concave"], c, 0.0))


def _kernel(lf: np.ndarray, curve: np.ndarray, mu: np.ndarray, w: np.ndarray) -> np.ndarray:
    s = np.exp(-((lf - mu) ** 2) / (2 * w**2))
    c = 1.0 / (1.0 + np.exp(-(mu - lf) / w))
    return np.where(curve == CURVE_CODES["s_shaped"], s, np.where(curve == CURVE_CODES["concave"], c, 0.0))


def _broadcast(log_f, p: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """log_f (N,) -> one value per video; (G,) with N != G or (N, G) -> a grid per video."""
    lf = np.asarray(log_f, dtype=np.float64)
    n = p["curve"].shape[0]
    if lf.ndim == 0:
        lf = np.full(n, float(lf))
    if lf.ndim == 1 and lf.shape[0] == n:
        return lf, p
    if lf.ndim == 1:
        lf = np.broadcast_to(lf[None, :], (n, lf.shape[0]))
    if lf.ndim != 2 or lf.shape[0] != n:
        raise ValueError(f"log_f must be scalar, (N,), (G,) or (N, G) for N={n} videos, got {lf.shape}")
    return lf, {k: v[:, None] for k, v in p.items()}


def true_log_impressions(log_f, video_params) -> np.ndarray:
    """g(ln F): expected two-week log impressions of each video if posted with F followers.

    ``log_f`` is ln(followers): scalar, (N,) one per video, (G,) a grid for every video or (N, G).
    ``video_params``: columns PARAM_NAMES (truth/videos.parquet has them). Excludes the hidden
    confounder and the noise, which do not depend on F.
    """
    p = _params(video_params)
    lf, q = _broadcast(log_f, p)
    integral = _kernel_integral(lf, q["curve"], q["mu"], q["w"]) - _kernel_integral(
        np.full_like(lf, L_REF), q["curve"], q["mu"], q["w"]
    )
    return q["intercept"] + q["floor"] * (lf - L_REF) + q["amp"] * integral


def true_fei(log_f, video_params) -> np.ndarray:
    """d g / d ln F: the true follower elasticity of impressions at ln(followers) ``log_f``."""
    p = _params(video_params)
    lf, q = _broadcast(log_f, p)
    return q["floor"] + q["amp"] * _kernel(lf, q["curve"], q["mu"], q["w"])


def read_truth(root: str | Path) -> dict:
    """The truth/ folder of a simulated dataset: tables (pyarrow), arrays (numpy), json."""
    t = Path(root) / "truth"
    if not t.is_dir():
        raise FileNotFoundError(f"{t}: no truth folder (real datasets have none)")
    out: dict = {}
    for f in sorted(t.iterdir()):
        if f.suffix == ".parquet":
            out[f.stem] = pq.read_table(f)
        elif f.suffix == ".npy":
            out[f.stem] = np.load(f, mmap_mode="r")
        elif f.suffix == ".json":
            out[f.stem] = json.loads(f.read_text())
    return out

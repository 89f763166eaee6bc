"""GBM head: gradient-boosted trees on the day input's tabular part, blended with LAMM's forecast.

On the paper world LAMM alone is level with the LightGBM baseline (docs/lamm.md), and their errors
differ enough that an equal-weight average of the two beats both (measured there). The served
forecaster therefore carries, beside the LSTM, a LightGBM model that reads the same day input x
the LSTM reads, without the video encodings: the mean side information and the product part
(``inference.daily.PRODUCT_FEATURES``, campaign columns included), i.e. ``x[..., H:]``. Nothing
new has to reach the stream or Triton: x is already there, and the head lives in the LAMM
checkpoint (``gbm.txt``), so ``LammForecaster.step`` returns the blend in every backend.

    z = (1 - weight) * z_lamm + weight * z_gbm         (standardized log1p units of day t+1)

The weight is chosen on the held-out products (``choose_weight``: the grid value with the lowest
held-out MAE), because how the two compare depends on the world: level on the paper world
(weights 0.3-0.7 within 0.001 of each other), LightGBM far ahead where videos cause most sales
(docs/lamm.md, "content world"), where a fixed 0.5 put the blend behind LightGBM alone.

Trained on the same fit products as the LSTM, with early stopping on the same held-out products;
its settings are tuned on those held-out products (``fit_lightgbm_tuned``: the ``TUNE_GRID``
setting with the lowest held-out MAE, as the LightGBM baseline is tuned; docs/lamm.md "v10"); the
conformal interval is then calibrated on the blend's held-out residuals.

Serving cost: LightGBM's own ``predict`` walks those trees (200-350 with v9's fixed recipe,
up to about 800 of 7 leaves since v10's tuning) at 9-26 us a row on one core, which alone would
hold the day step under 100,000 products/s. Batches of at least
``COMPILE_MIN_ROWS`` rows therefore go through the trees compiled to machine code by lleaves
(LLVM; the same predictions to float64 rounding; the day step with head and counterfactual went
from 50,009 to 102,456 products/s, docs/lamm.md "v9"), compiled once per head on the
first such batch and cached on disk by the model's hash (``LIFTSTREAM_TREE_CACHE``, default
~/.cache/liftstream/gbm); small batches, or a machine without lleaves, use LightGBM.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference.lamm_data import LammData, tab_part

# the LightGBM baseline's settings (inference.baselines.fit_predict_lightgbm uses them too)
LGBM_PARAMS = dict(
    n_estimators=2000,
    learning_rate=0.03,
    num_leaves=31,
    min_child_samples=20,
    subsample=0.8,
    subsample_freq=1,
    colsample_bytree=0.8,
    reg_lambda=1.0,
)
# the head's: the baseline's recipe. Until v8 it had smaller trees and a larger step (learning
# rate 0.1, 15 leaves; 2-3x cheaper per row); on all three simulated worlds the blend was 0.0005
# to 0.0011 MAE worse with them (tests/bench/head_variants.py, docs/lamm.md "v9")
HEAD_PARAMS = dict(LGBM_PARAMS)
# the settings the head and the LightGBM baseline choose from on the held-out products (v10), each
# the recipe above with these fields replaced. A 60-setting search per fold on the paper world
# (tests/bench/lightgbm_tuned.py, docs/lamm.md "v10") chose 7 or 15 leaves and 20-300 rows per
# leaf; this grid spans those choices and the recipe itself, at a fifth of the fits
TUNE_GRID = {
    "num_leaves": (7, 15, 31),
    "min_child_samples": (20, 100),
    "colsample_bytree": (0.5, 0.8),
}
EARLY_STOPPING_ROUNDS = 100
COMPILE_MIN_ROWS = 4096  # batches from this size on are predicted by the compiled trees (lleaves)
log = logging.getLogger(__name__)


def _cache_dir() -> Path:
    return Path(os.environ.get("LIFTSTREAM_TREE_CACHE", Path.home() / ".cache" / "liftstream" / "gbm"))


def compile_trees(model_str: str):
    """The trees of a LightGBM text model compiled by lleaves (an object with ``predict(x, n_jobs)``
    on float64 rows), cached on disk by the model's hash; None where lleaves is not installed or
    the compilation fails (the caller then uses LightGBM)."""
    try:
        import lleaves
    except ImportError:
        return None
    digest = hashlib.sha256(model_str.encode()).hexdigest()[:24]
    cache = _cache_dir() / f"{digest}.o"
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache = None  # a read-only home: compile without the disk cache
    try:
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "gbm.txt"
            f.write_text(model_str)
            model = lleaves.Model(model_file=str(f))
            if cache is None or cache.exists():
                model.compile(cache=None if cache is None else str(cache))
            else:  # written beside the cache and renamed into place: another process that
                # compiles the same head at the same time never reads a half-written object
                part = cache.with_name(f"{cache.stem}.{os.getpid()}.part")
                try:
                    model.compile(cache=str(part))
                    os.replace(part, cache)
                finally:
                    part.unlink(missing_ok=True)
        return model
    except Exception as e:  # noqa: BLE001 - any compiler failure falls back to LightGBM's predict
        log.warning("gbm head: lleaves compilation failed (%s); predicting with LightGBM", e)
        return None


def fit_lightgbm(x, y, x_val, y_val, *, seed: int, threads: int, categorical=(), params=None):
    """A LightGBM regressor (``params``, default ``LGBM_PARAMS``) early-stopped on (x_val, y_val);
    NaN targets dropped."""
    import lightgbm as lgb

    ok, ok_v = ~np.isnan(y), ~np.isnan(y_val)
    params = LGBM_PARAMS if params is None else params
    model = lgb.LGBMRegressor(**params, random_state=seed, n_jobs=threads, verbose=-1)
    with (
        warnings.catch_warnings()
    ):  # eval_set is deprecated in 4.7, but eval_X does not exist in 4.3 (our floor)
        warnings.simplefilter("ignore")
        model.fit(
            x[ok],
            y[ok],
            eval_set=[(x_val[ok_v], y_val[ok_v])],
            categorical_feature=list(categorical) or "auto",
            callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
        )
    return model


def tune_settings(grid: dict | None = None, base: dict | None = None) -> list[dict]:
    """Every point of ``grid`` (default ``TUNE_GRID``) as LightGBM params: ``base`` (default
    ``LGBM_PARAMS``) with the grid's fields replaced."""
    grid = TUNE_GRID if grid is None else grid
    base = LGBM_PARAMS if base is None else base
    keys = list(grid)
    return [{**base, **dict(zip(keys, v, strict=True))} for v in itertools.product(*grid.values())]


def fit_lightgbm_tuned(
    x, y, x_val, y_val, *, seed: int, threads: int, categorical=(), grid: dict | None = None
) -> tuple[object, dict, float]:
    """``fit_lightgbm`` for every setting of ``tune_settings(grid)``; the model with the lowest MAE
    on (x_val, y_val) (NaN targets skipped; the first such setting on a tie), its params and that MAE.
    The held-out rows both stop each fit early and choose among them, as a practitioner's
    validation set does; the test products see neither."""
    ok_v = ~np.isnan(y_val)
    if not ok_v.any():
        raise ValueError("fit_lightgbm_tuned: no held-out targets")
    best = None
    for params in tune_settings(grid):
        model = fit_lightgbm(
            x, y, x_val, y_val, seed=seed, threads=threads, categorical=categorical, params=params
        )
        mae = float(np.mean(np.abs(model.predict(x_val[ok_v]) - y_val[ok_v])))
        if best is None or mae < best[2]:
            best = (model, params, mae)
    return best


def _xy(data: LammData, products: np.ndarray, norm: dict) -> tuple[np.ndarray, np.ndarray]:
    x = tab_part(data, products)[:, :-1]  # day t's input predicts day t+1
    y = (data.log_units()[np.asarray(products)][:, 1:] - norm["y_mean"]) / norm["y_std"]
    return x.reshape(-1, x.shape[-1]), y.reshape(-1)


@dataclass
class GbmHead:
    """A fitted LightGBM booster over x[..., H:] and its weight in the blend."""

    model_str: str  # lightgbm's text format, best iteration only
    weight: float = 0.5
    n_features: int = 0
    threads: int = 1  # prediction threads (a served model is one of several processes)
    compile: bool = True  # large batches through the lleaves-compiled trees (module docstring)
    _compiled: object = field(default=None, init=False, repr=False)
    _compile_tried: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        import lightgbm as lgb

        assert 0.0 < self.weight <= 1.0, f"GBM weight must be in (0, 1], got {self.weight}"
        self._booster = lgb.Booster(model_str=self.model_str)
        self.n_features = self._booster.num_feature()

    @property
    def compiled(self):
        """The compiled trees (compiling them on first use), or None: LightGBM predicts."""
        if self.compile and not self._compile_tried:
            self._compile_tried = True
            self._compiled = compile_trees(self.model_str)
        return self._compiled

    def predict_z(self, tab: np.ndarray) -> np.ndarray:
        """(N, n_features) x[..., H:] -> (N,) float64 forecast of the next day's z."""
        assert tab.ndim == 2 and tab.shape[1] == self.n_features, (
            f"expected (N, {self.n_features}) tabular inputs, got {tab.shape}"
        )
        if tab.shape[0] == 0:
            return np.zeros(0)
        # float32, as the stream's x is and as the head was trained on (LightGBM reads it as is;
        # the compiled trees compare the same values widened to float64)
        tab = np.asarray(tab, dtype=np.float32)
        if tab.shape[0] >= COMPILE_MIN_ROWS and self.compiled is not None:
            return self._compiled.predict(tab.astype(np.float64), n_jobs=self.threads)
        return self._booster.predict(tab, num_threads=self.threads)

    def blend(self, z_lamm: np.ndarray, z_gbm: np.ndarray) -> np.ndarray:
        return (1.0 - self.weight) * np.asarray(z_lamm, dtype=np.float64) + self.weight * z_gbm

    def save(self, path: str | Path) -> None:
        path = Path(path)
        (path / "gbm.txt").write_text(self.model_str)
        (path / "gbm.json").write_text(json.dumps({"weight": self.weight, "n_features": self.n_features}))

    @classmethod
    def load(cls, path: str | Path) -> GbmHead | None:
        """The head saved in checkpoint ``path``, or None when it has none (LAMM alone)."""
        path = Path(path)
        if not (path / "gbm.txt").exists():
            return None
        meta = json.loads((path / "gbm.json").read_text())
        return cls((path / "gbm.txt").read_text(), weight=float(meta["weight"]))


def fit_gbm_head(
    data: LammData,
    fit_p: np.ndarray,
    cal_p: np.ndarray,
    norm: dict,
    *,
    weight: float = 0.5,
    seed: int = 0,
    threads: int = 1,
    tune: bool = True,
) -> GbmHead:
    """Fit the head on ``fit_p``'s product-days, early-stopped on ``cal_p``'s; with ``tune`` its
    settings are the ``TUNE_GRID`` point with the lowest MAE on ``cal_p`` (else ``HEAD_PARAMS``)."""
    (x, y), (xv, yv) = _xy(data, fit_p, norm), _xy(data, cal_p, norm)
    if tune:
        model, _, _ = fit_lightgbm_tuned(x, y, xv, yv, seed=seed, threads=threads)
    else:
        model = fit_lightgbm(x, y, xv, yv, seed=seed, threads=threads, params=HEAD_PARAMS)
    return GbmHead(model.booster_.model_to_string(num_iteration=model.best_iteration_), weight=weight)


WEIGHT_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)  # 0, 0.05, ..., 1


def choose_weight(z_lamm: np.ndarray, z_gbm: np.ndarray, target: np.ndarray, grid=WEIGHT_GRID) -> float:
    """The blend weight of ``grid`` with the lowest MAE on held-out forecasts (NaN targets
    skipped; the lower weight on a tie). 0 means LAMM alone is best there."""
    ok = ~np.isnan(target)
    a, b, y = (np.asarray(v, dtype=np.float64)[ok] for v in (z_lamm, z_gbm, target))
    if y.size == 0:
        raise ValueError("choose_weight: no held-out targets")
    mae = [float(np.mean(np.abs((1.0 - w) * a + w * b - y))) for w in grid]
    return float(grid[int(np.argmin(mae))])


def predict_gbm_z(head: GbmHead, data: LammData, products: np.ndarray) -> np.ndarray:
    """(B, D-1) the head's z forecasts of days 1..D-1 (``predict_z``'s layout)."""
    p = np.asarray(products)
    x = tab_part(data, p)[:, :-1]
    return head.predict_z(x.reshape(-1, x.shape[-1])).reshape(len(p), data.n_days - 1)

"""Train LAMM, calibrate its intervals, cross-validate it against its baselines, write a report.

    liftstream train --data data/small --out runs/lamm-small        # fit + conformal -> checkpoint dir
    liftstream evaluate --data data/paper --out runs/eval-paper     # 5-fold CV, baselines, ablation, report

Target scale: z = (log1p(units) - y_mean) / y_std with y_mean / y_std from the training products'
days (stored in the checkpoint). MAE / MSE are reported on z, MAPE on raw units (days with >= 1 unit).

Intervals: split conformal. The training products are split into a fit part and a held-out
calibration part (``calib_frac``); the calibration residuals z_true - z_pred give the 10% / 90%
quantiles stored with the checkpoint. The same held-out part picks the best epoch (early
stopping); out-of-fold coverage in ``evaluate`` is the honest check of both.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from inference.lamm import Conformal, Lamm, LammConfig, LammForecaster
from inference.lamm_data import LammData, build_day_inputs, load_lamm_data, make_batch, tabular_stats


@dataclass
class TrainConfig:
    epochs: int = 12  # upper bound; early stopping on the held-out products picks the best
    patience: int = 3
    batch_products: int = 32
    lr: float = 1e-3  # section 4.4
    weight_decay: float = 1e-3  # section 4.4: Eq. 7's L2 term, as Adam weight decay
    grad_clip: float = 1.0
    calib_frac: float = 0.2  # share of training products held out for early stopping + conformal
    level: float = 0.8
    seed: int = 0
    threads: int = 2
    bf16: bool = True  # bf16 autocast for the video encoder while training (AVX-512 BF16 CPUs: ~2x)
    max_minutes: float = 0.0  # wall-clock cap per fit (0 = none); stops after the current epoch


# ----------------------------------------------------------------------------------------------
# normalisation and targets


def norm_constants(data: LammData, products: np.ndarray) -> dict[str, np.ndarray | float]:
    x_mean, x_std = tabular_stats(data, products)
    y = data.log_units()[products]
    y = y[~np.isnan(y)]
    return {"x_mean": x_mean, "x_std": x_std, "y_mean": float(y.mean()), "y_std": float(max(y.std(), 1e-3))}


def apply_norm(model: torch.nn.Module, norm: dict) -> None:
    with torch.no_grad():
        model.x_mean.copy_(torch.as_tensor(norm["x_mean"]))
        model.x_std.copy_(torch.as_tensor(norm["x_std"]))
        model.y_mean.fill_(norm["y_mean"])
        model.y_std.fill_(norm["y_std"])


def targets_z(data: LammData, products: np.ndarray, norm: dict) -> np.ndarray:
    """(B, D-1): z of day t+1 for each input day t (NaN where the sales row is missing)."""
    y = data.log_units()[products][:, 1:]
    return (y - norm["y_mean"]) / norm["y_std"]


def _chunks(a: np.ndarray, n: int):
    for i in range(0, len(a), n):
        yield a[i : i + n]


def _encode(model, batch, bf16: bool) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        h = model.encode_packed(*batch.videos())
    return h.float()


def predict_z(model, data: LammData, products: np.ndarray, batch_products: int = 64) -> np.ndarray:
    """(B, D-1) predicted z of day t+1 from days 0..t (eval mode, fp32)."""
    model.eval()
    out = []
    with torch.inference_mode():
        for p in _chunks(np.asarray(products), batch_products):
            b = make_batch(data, p)
            x = build_day_inputs(_encode(model, b, False), b)  # (B, D, F)
            z, _ = model.forward_days(x)
            out.append(z[:, :-1].numpy())
    return np.concatenate(out) if out else np.zeros((0, data.n_days - 1), np.float32)


def masked_mse(pred: np.ndarray, target: np.ndarray) -> float:
    ok = ~np.isnan(target)
    return float(np.mean((pred[ok] - target[ok]) ** 2))


# ----------------------------------------------------------------------------------------------
# fitting


def fit(model, data: LammData, fit_p: np.ndarray, val_p: np.ndarray, norm: dict, tc: TrainConfig, log=print) -> dict:
    """Adam on next-day MSE (Eq. 7) over batches of products; keeps the best epoch on ``val_p``."""
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    apply_norm(model, norm)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    val_t = targets_z(data, val_p, norm)
    best, best_state, bad, hist = math.inf, copy.deepcopy(model.state_dict()), 0, []
    t0 = time.time()
    for epoch in range(tc.epochs):
        model.train()
        losses = []
        for p in _chunks(rng.permutation(fit_p), tc.batch_products):
            b = make_batch(data, np.sort(p))
            x = build_day_inputs(_encode(model, b, tc.bf16), b)  # (B, D, F)
            z, _ = model.forward_days(x)  # (B, D)
            tgt = (b.units[:, 1:] - norm["y_mean"]) / norm["y_std"]  # (B, D-1)
            ok = ~torch.isnan(tgt)
            loss = ((z[:, :-1] - torch.nan_to_num(tgt)) ** 2)[ok].mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            losses.append(loss.item())
        val = masked_mse(predict_z(model, data, val_p), val_t) if len(val_p) else float(np.mean(losses))
        hist.append({"epoch": epoch, "train_mse": float(np.mean(losses)), "val_mse": val, "s": time.time() - t0})
        log(f"  epoch {epoch}: train mse {np.mean(losses):.4f}  val mse {val:.4f}  ({time.time() - t0:.0f}s)")
        if val < best - 1e-4:
            best, best_state, bad = val, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
        if bad >= tc.patience or (tc.max_minutes and time.time() - t0 > 60 * tc.max_minutes):
            break
    model.load_state_dict(best_state)
    model.eval()
    return {"best_val_mse": best, "history": hist, "seconds": time.time() - t0}


def split_calib(products: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    p = np.random.default_rng(seed + 7).permutation(np.asarray(products))
    n_cal = max(1, int(round(frac * len(p)))) if len(p) > 1 else 0
    return np.sort(p[n_cal:]), np.sort(p[:n_cal])


def train_lamm(data: LammData, cfg: LammConfig, tc: TrainConfig, products: np.ndarray | None = None,
               log=print) -> tuple[LammForecaster, dict]:
    """Fit on part of ``products`` (default all), conformal-calibrate on the rest; a forecaster."""
    torch.set_num_threads(tc.threads)
    products = np.arange(data.n_products) if products is None else np.asarray(products)
    fit_p, cal_p = split_calib(products, tc.calib_frac, tc.seed)
    norm = norm_constants(data, fit_p)
    torch.manual_seed(tc.seed)
    model = Lamm(cfg)
    info = fit(model, data, fit_p, cal_p, norm, tc, log=log)
    resid = targets_z(data, cal_p, norm) - predict_z(model, data, cal_p)
    conf = Conformal.fit(resid[~np.isnan(resid)], level=tc.level)
    info.update({"n_fit_products": int(len(fit_p)), "n_calib_products": int(len(cal_p)), "conformal": asdict(conf)})
    meta = {"train": asdict(tc), "dataset": data.root, "n_days": data.n_days, "fit": info}
    return LammForecaster(model, conf, meta=meta), info


# ----------------------------------------------------------------------------------------------
# train_or_load: what the embedded demo calls


def dataset_fingerprint(root: str | Path) -> str:
    """Hash of meta.json and the tables' bytes, plus the feature files' sizes (they are GBs at paper scale)."""
    root = Path(root)
    h = hashlib.sha256((root / "meta.json").read_bytes())
    for name in ("products", "videos", "engagement", "sales"):
        h.update((root / f"{name}.parquet").read_bytes())
    for f in sorted((root / "features").glob("*.npy")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


def train_or_load(dataset_path: str | Path, cache_dir: str | Path, config: LammConfig | None = None,
                  train: TrainConfig | None = None, max_day: int | None = None, log=print) -> LammForecaster:
    """A LammForecaster for a dataset folder: the cached checkpoint if one matches, else train one.

    Trains on days ``0..max_day``; by default the dataset's history days (meta.json
    ``history_days``), so a demo replaying the later days forecasts days the model never saw.
    The cache key is the dataset fingerprint + model config + train config + max_day.
    """
    dataset_path = Path(dataset_path)
    config = config or LammConfig()
    train = train or TrainConfig()
    if max_day is None:
        meta = json.loads((dataset_path / "meta.json").read_text())
        max_day = int(meta["history_days"]) - 1 if meta.get("history_days") else None
    key = hashlib.sha256(json.dumps([dataset_fingerprint(dataset_path), asdict(config), asdict(train), max_day],
                                    sort_keys=True).encode()).hexdigest()[:12]
    ckpt = Path(cache_dir) / f"lamm-{key}"
    if (ckpt / "meta.json").exists():
        log(f"lamm: loading cached checkpoint {ckpt}")
        return LammForecaster.load(ckpt)
    log(f"lamm: training on {dataset_path} (days 0..{max_day if max_day is not None else 'all'}) -> {ckpt}")
    data = load_lamm_data(dataset_path, max_day=max_day)
    fc, _ = train_lamm(data, config, train, log=log)
    fc.meta["cache_key"] = key
    fc.save(ckpt)
    return LammForecaster.load(ckpt)


# ----------------------------------------------------------------------------------------------
# CLI


def _config_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", required=True, help="dataset folder (schemas.dataset)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--batch-products", type=int, default=TrainConfig.batch_products)
    ap.add_argument("--max-day", type=int, default=None, help="train on days 0..MAX_DAY only")
    ap.add_argument("--reading", choices=("target_query", "aux_query"), default="target_query")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-bf16", action="store_true", help="train the encoder in fp32")


def cli_train(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="liftstream train", description="Train LAMM + conformal intervals.")
    _config_args(ap)
    a = ap.parse_args(argv)
    tc = TrainConfig(epochs=a.epochs, batch_products=a.batch_products, seed=a.seed, threads=a.threads, bf16=not a.no_bf16)
    data = load_lamm_data(a.data, max_day=a.max_day)
    print(f"lamm: {data.n_products} products x {data.n_days} days, {data.n_videos} videos")
    fc, info = train_lamm(data, LammConfig(reading=a.reading), tc)
    path = fc.save(a.out)
    print(f"lamm: saved {fc.model_version} to {path} (best held-out mse {info['best_val_mse']:.4f}, "
          f"80% interval z + [{fc.conformal.q_lo:.3f}, {fc.conformal.q_hi:.3f}])")
    return 0

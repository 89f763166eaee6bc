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

from inference import content_scores as CS
from inference import daily as D
from inference.cli_types import non_negative_int, positive_int
from inference.gbm_head import HEAD_PARAMS, TUNE_GRID, GbmHead, choose_weight, fit_gbm_head, predict_gbm_z
from inference.lamm import INTERVAL_BY, Conformal, Lamm, LammConfig, LammForecaster
from inference.lamm_data import (
    MODALITIES,
    LammData,
    build_day_inputs,
    load_lamm_data,
    make_batch,
    permute_modality,
    rescore_content,
    tabular_stats,
)


@dataclass
class TrainConfig:
    epochs: int = 8  # the budget the cosine decay spans; the held-out products pick the best epoch
    patience: int = 8  # = epochs: no early stop, the decay runs to its end (measured: docs/lamm.md)
    batch_products: int = 0  # 0 = auto: n_fit // 20 clipped to [8, 32] (>= ~20 updates per epoch)
    lr: float = 1e-3  # section 4.4 (the peak lr with lr_decay="cosine")
    lr_decay: str = "cosine"  # "cosine": per-update cosine decay from lr to 0 over `epochs` | "none"
    loss: str = "mse"  # "mse" (Eq. 7) | "l1": the evaluation's MAE; | "huber" (delta 1 on z)
    weight_decay: float = 1e-3  # section 4.4: Eq. 7's L2 term, as Adam weight decay
    grad_clip: float = 1.0
    calib_frac: float = 0.2  # share of training products held out for early stopping + conformal
    level: float = 0.8
    seed: int = 0
    threads: int = 1  # 1 by default: on a shared 2-core machine 2 OpenMP threads ran 5-8x slower (spinning)
    # bf16 autocast for the video encoder while training: ~2x on CPUs with native bf16 (AVX-512
    # BF16, AMX), 8-9x slower than fp32 where oneDNN emulates it (AVX2); None: where native
    bf16: bool | None = None
    max_minutes: float = 0.0  # wall-clock cap per fit (0 = none); stops after the current epoch
    # weight of the GBM head (inference.gbm_head) in the served forecast: None = chosen on the
    # held-out products (gbm_head.choose_weight); 0 = LAMM alone; in (0, 1] = that weight
    gbm_weight: float | None = None
    # the content-lift channel (inference.content_scores): PE-score detectors trained on the
    # dataset's annotations/, conversion weights fitted on the fit products' same-day sales
    content_scores: bool = False
    # the 80% interval per bucket of the product's active videos (Mondrian conformal, up to this
    # many quantile buckets of >= 500 held-out rows each; docs/lamm.md "Intervals by active
    # videos"); 1 = one interval for every forecast
    interval_buckets: int = 4

    def __post_init__(self) -> None:
        assert self.lr_decay in ("none", "cosine"), f"unknown lr_decay {self.lr_decay!r}"
        assert self.loss in ("mse", "l1", "huber"), f"unknown loss {self.loss!r}"
        assert self.gbm_weight is None or 0.0 <= self.gbm_weight <= 1.0, (
            f"gbm_weight must be None (chosen) or in [0, 1], got {self.gbm_weight}"
        )


def with_content(data: LammData, fit_p: np.ndarray, log=print, model=None) -> LammData:
    """``data`` with the content-lift channel: q_v of every video from ``model`` (default: a
    content model fitted on ``fit_p``, inference.content_scores.fit_content)."""
    from inference.content_scores import fit_content, video_q

    t0 = time.time()
    cm = model if model is not None else fit_content(data, fit_p, log=log)
    q = video_q(cm, data)
    log(f"content scores: q_v of {len(q)} videos in {time.time() - t0:.0f} s")
    return replace(data, video_q=q, content=cm)


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


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX). Measured on an AVX2-only
    EPYC: the encoder's forward + backward under bf16 autocast took 8-9x fp32's time, which made
    `make demo`'s training 504 s instead of about a minute."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without the probes: fp32, never the slow path
        return False


def _encode(model, batch, bf16: bool | None) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=native_bf16() if bf16 is None else bf16):
        h = model.encode_packed(*batch.videos())
    return h.float()


def predict_z(
    model,
    data: LammData,
    products: np.ndarray,
    batch_products: int = 64,
    permute: str | None = None,
    seed: int = 0,
) -> np.ndarray:
    """(B, D-1) predicted z of day t+1 from days 0..t (eval mode, fp32). ``permute``: a modality
    shuffled across each batch's videos first (``lamm_data.permute_modality``, seeded by ``seed``)."""
    model.eval()
    out = []
    rng = np.random.default_rng(seed)
    with torch.inference_mode():
        for p in _chunks(np.asarray(products), batch_products):
            b = make_batch(data, p)
            if permute:
                b = rescore_content(permute_modality(b, permute, rng), data)
            x = build_day_inputs(_encode(model, b, False), b)  # (B, D, F)
            z, _ = model.forward_days(x)
            out.append(z[:, :-1].numpy())
    return np.concatenate(out) if out else np.zeros((0, data.n_days - 1), np.float32)


def masked_mse(pred: np.ndarray, target: np.ndarray) -> float:
    ok = ~np.isnan(target)
    return float(np.mean((pred[ok] - target[ok]) ** 2))


def masked_loss(pred: np.ndarray, target: np.ndarray, loss: str) -> float:
    """The training loss on held-out products (what early stopping compares), numpy."""
    ok = ~np.isnan(target)
    e = np.abs(pred[ok] - target[ok])
    if loss == "mse":
        return float(np.mean(e**2))
    if loss == "l1":
        return float(np.mean(e))
    return float(np.mean(np.where(e < 1.0, 0.5 * e**2, e - 0.5)))  # huber, delta 1


def _loss(err: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "mse":
        return (err**2).mean()
    if loss == "l1":
        return err.abs().mean()
    return torch.nn.functional.huber_loss(err, torch.zeros_like(err), delta=1.0)


# ----------------------------------------------------------------------------------------------
# fitting


def fit(
    model, data: LammData, fit_p: np.ndarray, val_p: np.ndarray, norm: dict, tc: TrainConfig, log=print
) -> dict:
    """Adam on the next-day loss (Eq. 7: MSE; ``tc.loss``) over batches of products; keeps the
    epoch with the lowest loss on ``val_p`` (the same loss), logging its MSE too."""
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    apply_norm(model, norm)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    bs = tc.batch_products or int(np.clip(len(fit_p) // 20, 8, 32))
    n_updates = tc.epochs * math.ceil(len(fit_p) / bs)
    sched = None
    if tc.lr_decay == "cosine":  # per update, to 0 at the end of the epoch budget
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: 0.5 * (1.0 + math.cos(math.pi * min(i / n_updates, 1.0)))
        )
    val_t = targets_z(data, val_p, norm)
    best, best_state, bad, hist = math.inf, copy.deepcopy(model.state_dict()), 0, []
    t0 = time.time()
    for epoch in range(tc.epochs):
        model.train()
        losses = []
        for p in _chunks(rng.permutation(fit_p), bs):
            b = make_batch(data, np.sort(p))
            x = build_day_inputs(_encode(model, b, tc.bf16), b)  # (B, D, F)
            z, _ = model.forward_days(x)  # (B, D)
            tgt = (b.units[:, 1:] - norm["y_mean"]) / norm["y_std"]  # (B, D-1)
            ok = ~torch.isnan(tgt)
            loss = _loss((z[:, :-1] - torch.nan_to_num(tgt))[ok], tc.loss)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            if sched is not None:
                sched.step()
            losses.append(loss.item())
        if len(val_p):
            pv = predict_z(model, data, val_p)
            val, val_mse = masked_loss(pv, val_t, tc.loss), masked_mse(pv, val_t)
        else:
            val = val_mse = float(np.mean(losses))
        hist.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "val_loss": val,
                "val_mse": val_mse,
                "lr": opt.param_groups[0]["lr"],
                "s": time.time() - t0,
            }
        )
        also = "" if tc.loss == "mse" else f"  val mse {val_mse:.4f}"
        log(
            f"  epoch {epoch}: train {tc.loss} {np.mean(losses):.4f}  val {tc.loss} {val:.4f}{also}"
            f"  ({time.time() - t0:.0f}s)"
        )
        if val < best - 1e-4:
            best, best_state, bad = val, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
        if bad >= tc.patience or (tc.max_minutes and time.time() - t0 > 60 * tc.max_minutes):
            break
    model.load_state_dict(best_state)
    model.eval()
    return {"best_val_loss": best, "loss": tc.loss, "history": hist, "seconds": time.time() - t0}


# one product to fit, one held out (early stopping, the head's weight, the conformal quantiles)
MIN_TRAIN_PRODUCTS = 2


def check_trainable(n_products: int, n_days: int) -> None:
    """ValueError unless there are products to fit and to hold out, and a next day to predict."""
    if n_products < MIN_TRAIN_PRODUCTS or n_days < 2:
        raise ValueError(
            f"{n_products} products x {n_days} days: training needs >= {MIN_TRAIN_PRODUCTS} products "
            "(some to fit, some held out to calibrate) and >= 2 days"
        )


def split_calib(products: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    p = np.random.default_rng(seed + 7).permutation(np.asarray(products))
    n_cal = max(1, int(round(frac * len(p)))) if len(p) > 1 else 0
    return np.sort(p[n_cal:]), np.sort(p[:n_cal])


def train_lamm(
    data: LammData, cfg: LammConfig, tc: TrainConfig, products: np.ndarray | None = None, log=print
) -> tuple[LammForecaster, dict]:
    """Fit on part of ``products`` (default all), conformal-calibrate on the rest; a forecaster."""
    torch.set_num_threads(tc.threads)
    products = np.arange(data.n_products) if products is None else np.asarray(products)
    check_trainable(len(products), data.n_days)
    fit_p, cal_p = split_calib(products, tc.calib_frac, tc.seed)
    if tc.content_scores:
        data = with_content(data, fit_p, log=log)
        cfg = replace(cfg, content_channel=True)
    norm = norm_constants(data, fit_p)
    torch.manual_seed(tc.seed)
    model = Lamm(cfg)
    info = fit(model, data, fit_p, cal_p, norm, tc, log=log)
    gbm = _fit_head(model, data, fit_p, cal_p, norm, tc, log)
    conf = calibrate(model, gbm, data, cal_p, norm, tc, cfg)
    info.update(
        {"n_fit_products": int(len(fit_p)), "n_calib_products": int(len(cal_p)), "conformal": asdict(conf)}
    )
    meta = {"train": asdict(tc), "dataset": data.root, "n_days": data.n_days, "fit": info}
    return LammForecaster(model, conf, meta=meta, gbm=gbm, content=data.content), info


def calibrate(
    model, gbm, data: LammData, cal_p: np.ndarray, norm: dict, tc: TrainConfig, cfg: LammConfig
) -> Conformal:
    """The forecaster's interval from its residuals on the held-out products: by buckets of
    ``INTERVAL_BY`` (log1p active videos) where ``tc.interval_buckets`` > 1 and there are enough
    held-out rows, else one interval (``Conformal.fit``)."""
    resid = targets_z(data, cal_p, norm) - _blend_z(model, gbm, data, cal_p)
    ok = ~np.isnan(resid)
    if tc.interval_buckets < 2:
        return Conformal.fit(resid[ok], level=tc.level)
    by = interval_values(data, cal_p)
    return Conformal.fit(
        resid[ok], level=tc.level, by=by[ok], column=cfg.x_column(INTERVAL_BY), buckets=tc.interval_buckets
    )


def interval_values(data: LammData, products: np.ndarray) -> np.ndarray:
    """(B, D-1) the interval's bucketing column (``INTERVAL_BY``) on each forecast's day."""
    return data.product_x[np.asarray(products)][:, :-1, D.PRODUCT_FEATURES.index(INTERVAL_BY)]


def _fit_head(model, data: LammData, fit_p, cal_p, norm: dict, tc: TrainConfig, log) -> GbmHead | None:
    """The served blend's GBM head for the trained ``model``, or None for LAMM alone: when
    ``tc.gbm_weight`` is 0, or when the weight chosen on the held-out products is 0."""
    if tc.gbm_weight == 0:
        return None
    t0 = time.time()
    head = fit_gbm_head(
        data, fit_p, cal_p, norm, weight=tc.gbm_weight or 1.0, seed=tc.seed, threads=tc.threads
    )
    how = "fixed"
    if tc.gbm_weight is None:
        how = f"chosen on {len(cal_p)} held-out products"
        z_lamm, z_gbm = predict_z(model, data, cal_p), predict_gbm_z(head, data, cal_p)
        head.weight = choose_weight(z_lamm, z_gbm, targets_z(data, cal_p, norm))
        if head.weight == 0:
            log(f"gbm head: weight 0 {how}: the forecaster is LAMM alone")
            return None
    log(
        f"gbm head: {head.model_str.count('Tree=')} trees in {time.time() - t0:.1f} s, weight {head.weight} ({how})"
    )
    return head


def _blend_z(model, gbm: GbmHead | None, data: LammData, products: np.ndarray) -> np.ndarray:
    """(B, D-1) the forecaster's z: LAMM's, blended with the head's when there is one."""
    z = predict_z(model, data, products)
    return z if gbm is None else gbm.blend(z, predict_gbm_z(gbm, data, products))


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


def train_or_load(
    dataset_path: str | Path,
    cache_dir: str | Path,
    config: LammConfig | None = None,
    train: TrainConfig | None = None,
    max_day: int | None = None,
    log=print,
) -> LammForecaster:
    """A LammForecaster for a dataset folder: the cached checkpoint if one matches, else train one.

    Trains on days ``0..max_day``; by default the dataset's history days (meta.json
    ``history_days``), so a demo replaying the later days forecasts days the model never saw.
    The cache key is the dataset fingerprint + model config + train config + max_day + the day-input
    feature names (inference.daily), so a checkpoint trained on another x is never loaded.
    """
    dataset_path = Path(dataset_path)
    config = config or LammConfig()
    train = train or TrainConfig()
    if max_day is None:
        meta = json.loads((dataset_path / "meta.json").read_text())
        max_day = int(meta["history_days"]) - 1 if meta.get("history_days") else None
    key = hashlib.sha256(
        json.dumps(
            [
                dataset_fingerprint(dataset_path),
                asdict(config),
                asdict(train),
                max_day,
                list(D.SIDE_FEATURES),
                list(D.PRODUCT_FEATURES),
                D.DAY_INPUT_VERSION,
                list(CS.SCORES),
                HEAD_PARAMS,  # the GBM head's recipe: a checkpoint with another head never loads
                TUNE_GRID,  # and the settings it is tuned over (v10)
            ],  # the day-input definition: a checkpoint of another x never loads
            sort_keys=True,
        ).encode()
    ).hexdigest()[:12]
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
    ap.add_argument("--epochs", type=positive_int, default=TrainConfig.epochs)
    ap.add_argument("--patience", type=positive_int, default=TrainConfig.patience)
    ap.add_argument("--batch-products", type=non_negative_int, default=TrainConfig.batch_products)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--lr-decay", choices=("none", "cosine"), default=TrainConfig.lr_decay)
    ap.add_argument("--loss", choices=("mse", "l1", "huber"), default=TrainConfig.loss)
    ap.add_argument(
        "--max-day",
        type=positive_int,
        default=None,
        help="train on days 0..MAX_DAY only (>= 1: a target needs 2 days)",
    )
    ap.add_argument("--reading", choices=("target_query", "aux_query"), default="target_query")
    ap.add_argument(
        "--dropout", type=float, default=LammConfig.dropout, help="LAMM's dropout (section 4.4: 0.2)"
    )
    ap.add_argument(
        "--skip-hidden",
        type=int,
        default=LammConfig.skip_hidden,
        help="MLP width beside the linear skip (0: none)",
    )
    ap.add_argument(
        "--tab-dropout",
        choices=("on", "off"),
        default="on" if LammConfig.tab_dropout else "off",
        help="input dropout on the side + product part of x too",
    )
    ap.add_argument(
        "--gbm-weight",
        type=_gbm_weight,
        default=None,
        metavar="auto|W",
        help="weight of the GBM head in the served forecast (inference.gbm_head): auto (default) = "
        "chosen on the held-out products, 0 = LAMM alone, or a fixed weight in (0, 1]",
    )
    ap.add_argument("--seed", type=non_negative_int, default=0)
    ap.add_argument("--threads", type=positive_int, default=TrainConfig.threads)
    ap.add_argument(
        "--no-bf16",
        action="store_true",
        help="train the encoder in fp32 (default: bf16 where the CPU has it natively)",
    )
    ap.add_argument(
        "--content-scores",
        action="store_true",
        help="add the content-lift channel to x (inference.content_scores: PE-score detectors trained "
        "on the dataset's annotations/, conversion weights from the fit products' same-day sales)",
    )
    ap.add_argument(
        "--interval-buckets",
        type=positive_int,
        default=TrainConfig.interval_buckets,
        help="the 80%% interval per quantile bucket of the product's active videos, up to this many "
        "buckets of >= 500 held-out rows (Mondrian conformal); 1 = one interval for every forecast",
    )
    ap.add_argument(
        "--in-memory",
        action="store_true",
        help="copy the feature arrays into RAM (default: memory-map them, "
        "so parallel runs share the page cache; paper scale is 1.8 GB per copy)",
    )


def _gbm_weight(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        w = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number in [0, 1], got {text!r}") from None
    if not 0.0 <= w <= 1.0:
        raise argparse.ArgumentTypeError(f"expected auto or a number in [0, 1], got {text!r}")
    return w


def _train_config(a: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the flags ``_config_args`` added."""
    return TrainConfig(
        epochs=a.epochs,
        patience=a.patience,
        batch_products=a.batch_products,
        lr=a.lr,
        lr_decay=a.lr_decay,
        loss=a.loss,
        seed=a.seed,
        threads=a.threads,
        bf16=False if a.no_bf16 else None,
        gbm_weight=a.gbm_weight,
        content_scores=a.content_scores,
        interval_buckets=a.interval_buckets,
    )


def _lamm_config(a: argparse.Namespace) -> LammConfig:
    """The LammConfig of the flags ``_config_args`` added."""
    return LammConfig(
        reading=a.reading, dropout=a.dropout, skip_hidden=a.skip_hidden, tab_dropout=a.tab_dropout == "on"
    )


def cli_train(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="liftstream train", description="Train LAMM (+ its GBM head) and conformal intervals."
    )
    _config_args(ap)
    a = ap.parse_args(argv)
    tc = _train_config(a)
    data = load_lamm_data(a.data, max_day=a.max_day, in_memory=a.in_memory)
    print(f"lamm: {data.n_products} products x {data.n_days} days, {data.n_videos} videos")
    try:
        check_trainable(data.n_products, data.n_days)
    except ValueError as e:
        ap.error(f"{a.data}: {e}")
    fc, info = train_lamm(data, _lamm_config(a), tc)
    path = fc.save(a.out)
    head = "" if fc.gbm is None else f", blended with a GBM head of weight {fc.gbm.weight}"
    print(
        f"lamm: saved {fc.model_version} to {path} (best held-out {info['loss']} {info['best_val_loss']:.4f}"
        f"{head}, 80% interval z + [{fc.conformal.q_lo:.3f}, {fc.conformal.q_hi:.3f}])"
    )
    return 0


# ----------------------------------------------------------------------------------------------
# evaluation: 5-fold CV by product against the baselines, ablation, coverage, report

ABLATIONS: dict[str, dict] = {
    "w/o frame": {"use_frame": False},
    "w/o text": {"ladder": ("audio", "motion")},
    "w/o audio": {"ladder": ("text", "motion")},
    "w/o motion": {"ladder": ("text", "audio")},
    "Eq.2 literal (Q=aux)": {"reading": "aux_query"},
}
ABLATION_MODALITY = {"w/o frame": "frame", "w/o text": "text", "w/o audio": "audio", "w/o motion": "motion"}
# the permutation ablation: the fold's trained LAMM with one modality shuffled across the test
# videos (lamm_data.permute_modality), MAE averaged over this many shuffles
PERMUTATION_REPEATS = 3
GROUPS = ("models", "ablations", "permutation")  # the row groups of a fold's results
ALL_MODELS = (
    "LAMM",
    "LAMM+GBM",
    "Gate_LSTM",
    "Gate_MLP",
    "Concat_LSTM",
    "Concat_MLP",
    "LR",
    "LightGBM",
    "SeasonalNaive",
)


def fold_assignment(n_products: int, folds: int, seed: int) -> np.ndarray:
    """(P,) fold of each product: a seeded permutation cut into equal parts (80/20 for 5 folds)."""
    f = np.empty(n_products, dtype=np.int64)
    f[np.random.default_rng(seed).permutation(n_products)] = np.arange(n_products) % folds
    return f


def metrics(pred_z: np.ndarray, true_z: np.ndarray, norm: dict) -> dict:
    ok = ~np.isnan(true_z)
    e = pred_z[ok] - true_z[ok]
    units = np.expm1(true_z[ok] * norm["y_std"] + norm["y_mean"])
    pred_u = np.expm1(np.clip(pred_z[ok] * norm["y_std"] + norm["y_mean"], 0, 30))
    pos = units >= 1
    return {
        "mae": float(np.mean(np.abs(e))),
        "mse": float(np.mean(e**2)),
        "mape": float(np.mean(np.abs(pred_u[pos] - units[pos]) / units[pos])),
        "n": int(ok.sum()),
    }


def _fit_neural(name: str, data: LammData, fit_p, cal_p, norm: dict, tc: TrainConfig, log):
    from inference.baselines import NEURAL, NeuralBaseline

    torch.manual_seed(tc.seed)
    model = NeuralBaseline(NEURAL[name])
    info = fit(model, data, fit_p, cal_p, norm, tc, log=log)
    return model, info


@dataclass
class _Fold:
    data: LammData
    fit_p: np.ndarray
    cal_p: np.ndarray
    test_p: np.ndarray
    norm: dict
    tc: TrainConfig
    true: np.ndarray  # (B_test, D-1) target z
    extra: dict = field(default_factory=dict)
    log: object = print


def _fold_view(f: _Fold, cfg: LammConfig) -> tuple[LammData, dict, LammConfig]:
    """The data, normalisation and LAMM config of the fold's models that read a day input: with the
    content-lift channel when ``tc.content_scores`` (inference.content_scores, fitted once per fold
    on its fit products)."""
    if not f.tc.content_scores:
        return f.data, f.norm, cfg
    if "content_view" not in f.extra:
        view = with_content(f.data, f.fit_p, log=f.log)
        f.extra["content_view"] = (view, norm_constants(view, f.fit_p))
    view, norm = f.extra["content_view"]
    return view, norm, replace(cfg, content_channel=True)


def _fold_lamm(f: _Fold, cfg: LammConfig) -> Lamm:
    """The fold's LAMM of ``cfg``, trained once: the LAMM and LAMM+GBM rows share it."""
    data, norm, cfg = _fold_view(f, cfg)
    key = "lamm:" + json.dumps(asdict(cfg), sort_keys=True)
    if key not in f.extra:
        torch.manual_seed(f.tc.seed)
        model = Lamm(cfg)
        fit(model, data, f.fit_p, f.cal_p, norm, f.tc, log=f.log)
        f.extra[key] = model
    return f.extra[key]


def _predict_lamm(f: _Fold, cfg: LammConfig, coverage: bool, gbm: bool = False) -> np.ndarray:
    """LAMM's test z (``gbm``: blended with a GBM head fitted on the fold, the "LAMM+GBM" row);
    ``coverage`` records the conformal interval's out-of-fold coverage in ``f.extra``."""
    model = _fold_lamm(f, cfg)
    data, norm, _ = _fold_view(f, cfg)
    head = None
    if gbm:  # the served blend; asked for with gbm_weight 0 (LAMM alone), its weight is chosen
        tc = f.tc if f.tc.gbm_weight != 0 else replace(f.tc, gbm_weight=None)
        head = _fit_head(model, data, f.fit_p, f.cal_p, norm, tc, f.log)
        f.extra["gbm_weight"] = head.weight if head is not None else 0.0
    pred = _blend_z(model, head, data, f.test_p)
    if coverage:
        conf = calibrate(model, head, data, f.cal_p, norm, f.tc, cfg)
        key = "coverage_gbm" if gbm else "coverage"
        f.extra[key] = interval_coverage(conf, pred, f.true, interval_values(data, f.test_p))
    return pred


def interval_coverage(conf: Conformal, pred: np.ndarray, true: np.ndarray, by: np.ndarray) -> dict:
    """Out-of-fold coverage of ``conf``'s interval around ``pred`` (B, D-1) z, overall and per
    bucket (``by``: each forecast's value of the bucketing column, ``interval_values``); with
    buckets, also what one interval from the same residuals (``q_lo`` / ``q_hi``) covers in each."""
    ok = ~np.isnan(true)
    lo, hi = conf.offsets_by(by[ok])
    y, p = true[ok], pred[ok]
    inside = (y >= p + lo) & (y <= p + hi)
    out = {"level": conf.level, "covered": float(inside.mean()), **asdict(conf)}
    if conf.edges:
        b = conf.bucket(by[ok])
        one = (y >= p + conf.q_lo) & (y <= p + conf.q_hi)
        out["by_bucket"] = [
            {
                "covered": float(inside[b == j].mean()),
                "covered_one_interval": float(one[b == j].mean()),
                "n": int((b == j).sum()),
            }
            for j in range(len(conf.edges) + 1)
        ]
    return out


def _permutation_metrics(
    f: _Fold, cfg: LammConfig, modality: str, repeats: int = PERMUTATION_REPEATS
) -> dict:
    """Metrics of the fold's LAMM (the "LAMM" row's model; not the blend) on the test products
    with ``modality`` shuffled, averaged over ``repeats`` shuffles (with content scores, the
    shuffled videos are rescored). Same model, same products: the difference to the "LAMM" row is
    what the trained model draws from that modality, free of the retraining noise the removal
    ablation carries."""
    model = _fold_lamm(f, cfg)
    data, _, _ = _fold_view(f, cfg)
    runs = [
        metrics(predict_z(model, data, f.test_p, permute=modality, seed=r), f.true, f.norm)
        for r in range(repeats)
    ]
    out = {met: float(np.mean([r[met] for r in runs])) for met in ("mae", "mse", "mape")}
    return {**out, "n": runs[0]["n"], "mae_repeats": [r["mae"] for r in runs]}


def _predict(name: str, f: _Fold, cfg: LammConfig, pooled) -> np.ndarray:
    from inference import baselines as B

    if name == "LAMM":
        return _predict_lamm(f, cfg, coverage=True)
    if name == "LAMM+GBM":
        return _predict_lamm(f, cfg, coverage=True, gbm=True)
    if name in ABLATIONS:
        return _predict_lamm(f, replace(cfg, **ABLATIONS[name]), coverage=False)
    # with --content-scores every model that reads a day input gets the channel too (same view)
    data, norm, _ = _fold_view(f, cfg)
    if name in B.NEURAL:
        torch.manual_seed(f.tc.seed)
        # LAMM's day-model options, so a neural baseline differs from LAMM only in its video encoder
        bcfg = replace(
            B.NEURAL[name],
            dropout=cfg.dropout,
            tab_dropout=cfg.tab_dropout,
            skip_hidden=cfg.skip_hidden,
            content_channel=f.tc.content_scores,
        )
        model = B.NeuralBaseline(bcfg)
        fit(model, data, f.fit_p, f.cal_p, norm, f.tc, log=f.log)
        return predict_z(model, data, f.test_p)
    if name == "LR":
        return B.fit_predict_lr(data, f.fit_p, f.test_p, norm, pooled=pooled)
    if name == "LightGBM":
        return B.fit_predict_lightgbm(
            data, f.fit_p, f.cal_p, f.test_p, norm, seed=f.tc.seed, threads=f.tc.threads
        )
    if name == "SeasonalNaive":
        return B.predict_seasonal_naive(f.data, f.test_p, f.norm)
    raise KeyError(f"unknown model {name!r}")


def _run_fold(data, k, fold_of, models, ablations, permutation, tc, cfg, pooled, res, log) -> dict:
    test_p = np.flatnonzero(fold_of == k)
    fit_p, cal_p = split_calib(np.flatnonzero(fold_of != k), tc.calib_frac, tc.seed)
    norm = norm_constants(data, fit_p)
    f = _Fold(data, fit_p, cal_p, test_p, norm, tc, targets_z(data, test_p, norm), log=log)
    fold: dict = {
        "fold": k,
        "n_test_products": int(len(test_p)),
        "models": {},
        "ablations": {},
        "permutation": {},
    }
    log(f"fold {k + 1}/{res['folds']}: fit {len(fit_p)} / calib {len(cal_p)} / test {len(test_p)} products")
    for group, names in (("models", models), ("ablations", ablations)):
        for name in names:
            t0 = time.time()
            m = metrics(_predict(name, f, cfg, pooled), f.true, norm)
            m["seconds"] = time.time() - t0
            res["seconds"].setdefault(name, []).append(m["seconds"])
            fold[group][name] = m
            log(
                f"  {name:<22} MAE {m['mae']:.4f}  MSE {m['mse']:.4f}  MAPE {m['mape']:.3f}  ({m['seconds']:.0f}s)"
            )
            if name == SERVED:
                fold["gbm_weight"] = f.extra["gbm_weight"]
            if name in ("LAMM", "LAMM+GBM"):
                key = "coverage" if name == "LAMM" else "coverage_gbm"
                fold[key] = f.extra[key]
                log(f"  80% interval coverage out of fold: {fold[key]['covered']:.3f}")
    if "LAMM" in models:  # the permutation rows are read against the LAMM row
        for modality in permutation:
            t0 = time.time()
            m = _permutation_metrics(f, cfg, modality)
            m["seconds"] = time.time() - t0
            fold["permutation"][modality] = m
            delta = m["mae"] - fold["models"]["LAMM"]["mae"]
            name = f"LAMM, {modality} shuffled"
            log(f"  {name:<22} MAE {m['mae']:.4f}  ({delta:+.5f} vs LAMM, {m['seconds']:.0f}s)")
    return fold


def check_evaluate_args(
    folds: int,
    models,
    ablations,
    max_folds: int = 0,
    only_folds: tuple[int, ...] = (),
    n_products: int | None = None,
) -> None:
    """ValueError for arguments ``evaluate`` cannot run, raised before any training (a typo must not
    surface after an hour of folds, nor an empty fold as a NaN row); ``n_products`` once the data
    is loaded."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if n_products is not None and folds > n_products:  # a fold without test products
        raise ValueError(f"{folds} folds need at least {folds} products; the dataset has {n_products}")
    unknown = sorted(set(models) - set(ALL_MODELS)) + sorted(set(ablations) - set(ABLATIONS))
    if unknown:
        raise ValueError(
            f"unknown models / ablations {unknown}; models: {','.join(ALL_MODELS)}; "
            f"ablations: {','.join(ABLATIONS)}"
        )
    if any(not 0 <= k < folds for k in only_folds) or len(set(only_folds)) != len(only_folds):
        raise ValueError(
            f"only_folds {list(only_folds)}: each fold at most once, 0-based, below folds = {folds}"
        )
    if not 0 <= max_folds <= folds:
        raise ValueError(f"max_folds must be in [0, folds = {folds}], got {max_folds}")


def evaluate(
    data: LammData,
    out: str | Path,
    folds: int = 5,
    models=ALL_MODELS,
    ablations=tuple(ABLATIONS),
    permutation=MODALITIES,
    tc: TrainConfig | None = None,
    cfg: LammConfig | None = None,
    log=print,
    max_folds: int = 0,
    only_folds: tuple[int, ...] = (),
) -> dict:
    """K-fold CV by product; writes results.json, report.md and plots to ``out``; returns the results.

    ``permutation``: modalities of the permutation ablation, run on each fold's LAMM when
    ``models`` has "LAMM" (cheap: predictions only)."""
    from inference import baselines as B

    tc = tc or TrainConfig()
    cfg = cfg or LammConfig()
    torch.set_num_threads(tc.threads)
    out = Path(out)
    if tc.content_scores and ablations:
        raise ValueError(
            "the removal ablations retrain LAMM without a modality, but the content scores would still "
            "read it; with --content-scores use the permutation ablation (--ablations= --permutation ...)"
        )
    if tc.content_scores and data.annotations is None:
        from schemas.dataset import DatasetError

        raise DatasetError(
            f"{data.root}: --content-scores needs the dataset's annotations/ (schemas.dataset)"
        )
    check_evaluate_args(folds, models, ablations, max_folds, only_folds, n_products=data.n_products)
    out.mkdir(parents=True, exist_ok=True)
    fold_of = fold_assignment(data.n_products, folds, tc.seed)
    pooled = B.pooled_raw_features(data) if "LR" in models else None
    res: dict = {
        "dataset": data.root,
        "n_products": data.n_products,
        "n_days": data.n_days,
        "n_videos": data.n_videos,
        "folds": folds,
        "train": asdict(tc),
        "lamm_config": asdict(cfg),
        "per_fold": [],
        "seconds": {},
    }
    t_start = time.time()
    for k in only_folds or range(max_folds or folds):
        fold = _run_fold(
            data,
            k,
            fold_of,
            models,
            ablations,
            permutation,
            replace(tc, seed=tc.seed + k),
            cfg,
            pooled,
            res,
            log,
        )
        res["per_fold"].append(fold)
        (out / "results.json").write_text(json.dumps(res, indent=2))
    res["total_seconds"] = time.time() - t_start
    truth = Path(data.root) / "truth" / "modality_importance.json"
    res["truth_importance"] = json.loads(truth.read_text()) if truth.exists() else None
    res["summary"] = summarize(res)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    write_report(res, out)
    return res


def summarize(res: dict) -> dict:
    from scipy import stats

    folds = res["per_fold"]
    summary: dict = {"models": {}, "ablations": {}, "permutation": {}}
    names = list(dict.fromkeys(n for f in folds for n in f["models"]))
    for group in GROUPS:
        for name in dict.fromkeys(n for f in folds for n in f.get(group, {})):
            # a row may cover only some folds (an evaluation run in parts): "-" in the tables
            have = [i for i, f in enumerate(folds) if name in f.get(group, {})]
            row: dict = {"folds": have}
            for met in ("mae", "mse", "mape"):
                v = np.array([folds[i][group][name][met] for i in have])
                row[met] = [folds[i][group][name][met] if i in have else None for i in range(len(folds))]
                row[f"{met}_mean"] = float(v.mean())
                paired = [i for i in have if "LAMM" in folds[i]["models"]]
                if name != "LAMM" and len(paired) > 1:
                    ref = np.array([folds[i]["models"]["LAMM"][met] for i in paired])
                    v = np.array([folds[i][group][name][met] for i in paired])
                    t, p = stats.ttest_rel(ref, v)  # t < 0: LAMM lower
                    row[f"{met}_t"], row[f"{met}_p"] = float(t), float(p)
                if name != "LAMM" and paired:  # LAMM's mean on the same folds, for relative changes
                    row[f"{met}_lamm_same_folds"] = float(
                        np.mean([folds[i]["models"]["LAMM"][met] for i in paired])
                    )
            summary[group][name] = row
    if "LAMM" in names:
        cov = [f["coverage"]["covered"] for f in folds if "coverage" in f]
        summary["coverage"] = {"per_fold": cov, "mean": float(np.mean(cov)) if cov else None}
        best = min(summary["models"], key=lambda n: summary["models"][n]["mae_mean"])
        summary["best_mae_model"] = best
        summary["lamm_beats_all_p05"] = bool(
            all(
                r["mae_mean"] > summary["models"]["LAMM"]["mae_mean"] and r.get("mae_p", 1.0) < 0.05
                for n, r in summary["models"].items()
                if n != "LAMM"
            )
        )
    if SERVED in names:
        summary["served"] = _served_summary(folds, summary)
    truth = res.get("truth_importance")
    if "LAMM" in names:
        ablated = {ab: ABLATION_MODALITY[ab] for ab in summary["ablations"] if ab in ABLATION_MODALITY}
        _modality_order(summary, "ablations", "ablation", ablated, truth)
        _modality_order(summary, "permutation", "permutation", {m: m for m in summary["permutation"]}, truth)
    return summary


def _modality_order(summary: dict, group: str, prefix: str, modality_of: dict, truth: dict | None) -> None:
    """Order the modalities by the MAE increase of their ``group`` rows (the removal ablation or the
    permutation) and compare it with the simulator's truth; writes ``{prefix}_*`` keys to ``summary``."""
    if not modality_of:
        return
    lamm_mae = summary["models"]["LAMM"]["mae_mean"]
    drop = {
        modality_of[name]: summary[group][name]["mae_mean"]
        - summary[group][name].get("mae_lamm_same_folds", lamm_mae)
        for name in modality_of
    }
    summary[f"{prefix}_mae_increase"] = drop
    summary[f"{prefix}_order"] = sorted(drop, key=lambda m: -drop[m])
    if not truth:
        return
    summary["truth_order"] = [m for m in truth["order"] if m in drop]
    same = summary[f"{prefix}_order"] == summary["truth_order"]
    # the order of four deltas says nothing when removing a modality does not hurt: the
    # match also needs every increase to be positive, each by a paired t-test p < 0.05
    positive = all(d > 0 for d in drop.values())
    significant = all(summary[group][name].get("mae_p", 1.0) < 0.05 for name in modality_of)
    summary[f"{prefix}_order_same_as_truth"] = same
    summary[f"{prefix}_increases_positive"] = positive
    summary[f"{prefix}_increases_significant"] = significant
    summary[f"{prefix}_order_matches_truth"] = same and positive and significant


SERVED = "LAMM+GBM"  # what `liftstream train` serves by default (unless the chosen weight is 0)


def _served_summary(folds: list[dict], summary: dict) -> dict:
    """The served blend against every other model: paired t-tests of MAE over the folds both ran."""
    from scipy import stats

    out: dict = {"vs": {}}
    for name in summary["models"]:
        if name == SERVED:
            continue
        both = [f for f in folds if SERVED in f["models"] and name in f["models"]]
        a = np.array([f["models"][SERVED]["mae"] for f in both])
        b = np.array([f["models"][name]["mae"] for f in both])
        row = {"folds": len(both), "mae_diff": float(np.mean(a - b)) if both else None}
        if len(both) > 1:
            t, p = stats.ttest_rel(a, b)  # t < 0: the blend lower
            row["t"], row["p"] = float(t), float(p)
        out["vs"][name] = row
    out["beats_all_p05"] = bool(
        out["vs"] and all(r.get("mae_diff", 0) < 0 and r.get("p", 1.0) < 0.05 for r in out["vs"].values())
    )
    cov = [f["coverage_gbm"]["covered"] for f in folds if "coverage_gbm" in f]
    out["coverage"] = {"per_fold": cov, "mean": float(np.mean(cov)) if cov else None}
    by = [f["coverage_gbm"].get("by_bucket") for f in folds if "coverage_gbm" in f]
    if by and all(b and len(b) == len(by[0]) for b in by):  # quantile buckets: comparable across folds
        out["coverage"]["by_bucket"] = {
            k: [float(np.mean([b[j][k] for b in by])) for j in range(len(by[0]))]
            for k in ("covered", "covered_one_interval")
        }
    out["weights"] = [f["gbm_weight"] for f in folds if "gbm_weight" in f]  # the head's, per fold
    return out


def _table(res: dict, group: str, met: str) -> list[str]:
    s = res["summary"][group]
    k = len(res["per_fold"])
    lines = [
        f"| Model | {' | '.join(f'K{i + 1}' for i in range(k))} | Mean | t | Sig. (p) |",
        "|" + "---|" * (k + 4),
    ]
    for name, row in s.items():
        vals = " | ".join("-" if v is None else f"{v:.4f}" for v in row[met])
        t = f"{row[f'{met}_t']:.3f}" if f"{met}_t" in row else "-"
        p = f"{row[f'{met}_p']:.4f}" if f"{met}_p" in row else "-"
        lines.append(f"| {name} | {vals} | {row[f'{met}_mean']:.4f} | {t} | {p} |")
    return lines


def _increase_table(res: dict, group: str) -> list[str]:
    """MAE increase of each ``group`` row over the same fold's LAMM, per fold, with the paired test."""
    folds, s = res["per_fold"], res["summary"][group]
    lines = [
        f"| Shuffled | {' | '.join(f'K{i + 1}' for i in range(len(folds)))} | Mean | t | Sig. (p) |",
        "|" + "---|" * (len(folds) + 4),
    ]
    for name, row in s.items():
        inc = [
            f"{f[group][name]['mae'] - f['models']['LAMM']['mae']:+.5f}"
            if name in f.get(group, {}) and "LAMM" in f["models"]
            else "-"
            for f in folds
        ]
        mean = row["mae_mean"] - row.get("mae_lamm_same_folds", row["mae_mean"])
        t, p = (f"{row['mae_t']:.3f}", f"{row['mae_p']:.4f}") if "mae_t" in row else ("-", "-")
        lines.append(f"| {name} | {' | '.join(inc)} | {mean:+.5f} | {t} | {p} |")
    return lines


def _importance_plot(inc: dict, truth: dict | None, label: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    mods = list(inc)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(np.arange(len(mods)) - 0.2, [inc[m] for m in mods], 0.4, label=f"MAE increase, modality {label}")
    if truth:
        ax2 = ax.twinx()
        ax2.bar(
            np.arange(len(mods)) + 0.2,
            [truth["log_lift"].get(m, 0) for m in mods],
            0.4,
            color="C1",
            label="simulator truth: log-lift variance share",
        )
        ax2.set_ylabel("truth importance")
    ax.set_xticks(np.arange(len(mods)), mods)
    ax.set_ylabel("MAE increase (z)")
    handles = [h for a in fig.axes for h in a.get_legend_handles_labels()[0]]
    fig.legend(handles, [h.get_label() for h in handles], loc="lower center", ncol=1, fontsize=8)
    fig.subplots_adjust(bottom=0.25)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _order_lines(s: dict, prefix: str) -> list[str]:
    lines = (
        [f"Modalities by MAE increase: {' > '.join(s[f'{prefix}_order'])}."]
        if s.get(f"{prefix}_order")
        else []
    )
    if s.get(f"{prefix}_order_same_as_truth") is not None:
        lines += [
            f"Simulator truth (modality_importance.json `order`): {' > '.join(s['truth_order'])}. "
            f"Same order: {s[f'{prefix}_order_same_as_truth']}; every increase positive: "
            f"{s[f'{prefix}_increases_positive']}; every increase significant (paired t-test, p < 0.05): "
            f"{s[f'{prefix}_increases_significant']}. Match: **{s[f'{prefix}_order_matches_truth']}**."
        ]
    return lines


def write_report(res: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res["summary"]
    out = Path(out)
    models = list(s["models"])
    if models:
        fig, ax = plt.subplots(1, 2, figsize=(11, 4))
        for a, met in zip(ax, ("mae", "mse"), strict=True):
            means = [s["models"][m][f"{met}_mean"] for m in models]
            sds = [np.std([v for v in s["models"][m][met] if v is not None]) for m in models]
            a.bar(models, means, yerr=sds, color=["C3" if m == "LAMM" else "C0" for m in models])
            a.set_title(f"{met.upper()} (z scale), mean over the folds run")
            a.tick_params(axis="x", rotation=45)
        fig.tight_layout()
        fig.savefig(out / "models.png", dpi=110)
        plt.close(fig)
    for prefix, label in (("ablation", "removed (retrained)"), ("permutation", "shuffled (same model)")):
        if s.get(f"{prefix}_mae_increase"):
            _importance_plot(
                s[f"{prefix}_mae_increase"], res.get("truth_importance"), label, out / f"{prefix}.png"
            )
    lines = [
        f"# LAMM evaluation: {res['dataset']}",
        "",
        f"{res['n_products']} products x {res['n_days']} days, {res['n_videos']} videos; {res['folds']}-fold CV "
        f"by product; within each fold {int(100 * res['train']['calib_frac'])}% of the training products are "
        "held out for early stopping and conformal calibration.",
        "",
        "Scale: z = (log1p(units) - y_mean) / y_std (constants from each fold's fit products); MAPE on raw "
        "units over product-days with >= 1 unit. t and p: paired t-test (scipy.stats.ttest_rel) of LAMM "
        "against the row over folds; t < 0 means LAMM is lower.",
        "",
    ]
    if models:
        lines += [
            "## MAE per fold (Table 2)",
            "",
            *_table(res, "models", "mae"),
            "",
            "## MSE per fold (Table 3)",
            "",
            *_table(res, "models", "mse"),
            "",
            "## MAPE per fold (raw units)",
            "",
            *_table(res, "models", "mape"),
            "",
            "![models](models.png)",
            "",
        ]
        lines += [
            f"Lowest mean MAE: **{s.get('best_mae_model')}**. LAMM lower than every other model with p < 0.05: "
            f"**{s.get('lamm_beats_all_p05')}**.",
            "",
        ]
    if s.get("served"):
        sv = s["served"]
        lines += [
            f"## The served forecaster ({SERVED}: LAMM blended with its GBM head) against each model",
            "",
            "MAE difference (the blend minus the row; < 0: the blend lower) and paired t-test over the folds both ran.",
            "",
            "| Model | folds | MAE difference | t | p |",
            "|---|---|---|---|---|",
            *(
                f"| {n} | {r['folds']} | {r['mae_diff']:+.4f} | {r.get('t', float('nan')):.3f} | "
                f"{r.get('p', float('nan')):.4f} |"
                for n, r in sv["vs"].items()
                if r["folds"]
            ),
            "",
            f"{SERVED} lower than every other model with p < 0.05: **{sv['beats_all_p05']}**. "
            + (
                f"The head's weight in the blend, per fold: {' / '.join(f'{w:.2f}' for w in sv['weights'])}. "
                if sv.get("weights")
                else ""
            )
            + (
                f"80% interval coverage out of fold: {sv['coverage']['mean']:.3f} "
                f"({' / '.join(f'{c:.3f}' for c in sv['coverage']['per_fold'])})."
                if sv["coverage"]["per_fold"]
                else ""
            )
            + (
                " By quantile bucket of the product's active videos (fewest first; "
                f"{INTERVAL_BY}, docs/lamm.md): "
                + " / ".join(f"{c:.3f}" for c in sv["coverage"]["by_bucket"]["covered"])
                + "; one interval for all rows would cover "
                + " / ".join(f"{c:.3f}" for c in sv["coverage"]["by_bucket"]["covered_one_interval"])
                + "."
                if sv["coverage"].get("by_bucket")
                else ""
            ),
            "",
        ]
    if s.get("coverage", {}).get("per_fold"):
        cov = s["coverage"]
        lines += [
            "## 80% prediction intervals (split conformal), out-of-fold coverage",
            "",
            "| " + " | ".join(f"K{i + 1}" for i in range(len(cov["per_fold"]))) + " | Mean |",
            "|" + "---|" * (len(cov["per_fold"]) + 1),
            "| " + " | ".join(f"{c:.3f}" for c in cov["per_fold"]) + f" | {cov['mean']:.3f} |",
            "",
        ]
    if s["ablations"]:
        lines += [
            "## Ablation (Table 4) and the Eq. 2 reading",
            "",
            *_table(res, "ablations", "mae"),
            "",
            *_table(res, "ablations", "mse"),
            "",
        ]
        lines += _order_lines(s, "ablation")
        lines += ["", "![ablation](ablation.png)", ""]
    if s.get("permutation"):
        lines += [
            "## Permutation ablation: what the trained LAMM draws from each modality",
            "",
            "Each fold's LAMM (the LAMM row's model, no retraining) on its test products with one modality "
            "shuffled across the test videos (an independent draw of that content, videos of equal length "
            f"swapping frame / motion / audio), MAE averaged over {PERMUTATION_REPEATS} shuffles; the table gives its increase over "
            "the LAMM row (> 0: the model draws on that modality and it helps), t and p of the paired test. Same model, same products: unlike the removal ablation above, no retraining noise.",
            "",
            *_increase_table(res, "permutation"),
            "",
            *_order_lines(s, "permutation"),
            "",
            "![permutation](permutation.png)",
            "",
        ]
    secs = {k: float(np.sum(v)) for k, v in res["seconds"].items()}
    lines += [
        "## Wall-clock (this machine)",
        "",
        "| Model | seconds, all folds |",
        "|---|---|",
        *[f"| {k} | {v:.0f} |" for k, v in secs.items()],
        "",
        f"Total: {res.get('total_seconds', 0):.0f} s.",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))


def merge_results(dirs: list[str | Path], out: str | Path) -> dict:
    """Combine evaluations of the same dataset / folds / seed run in parts (model groups) into one report.

    ValueError when the parts cannot be one evaluation: a folder without results.json, a folder
    given twice, another dataset, fold count, training or LAMM config (threads and the time cap
    aside), or one model on one fold in two parts with different results."""
    if len(set(map(str, dirs))) != len(dirs):
        raise ValueError(f"merge: a folder is given twice in {[str(d) for d in dirs]}")
    parts = []
    for d in dirs:
        path = Path(d) / "results.json"
        if not path.is_file():
            raise ValueError(f"merge: {path} missing (not a liftstream evaluate output folder)")
        parts.append(json.loads(path.read_text()))

    def same_run(r: dict) -> tuple:
        train = {k: v for k, v in r["train"].items() if k not in ("threads", "max_minutes")}
        return r["dataset"], r["folds"], train, r.get("lamm_config")

    res = copy.deepcopy(parts[0])
    for d, part in zip(dirs[1:], parts[1:], strict=True):
        if same_run(part) != same_run(res):
            raise ValueError(
                f"merge: {d} is not the same evaluation as {dirs[0]} (dataset, folds, training and LAMM "
                "config must match; threads may differ)"
            )
        by_fold = {f["fold"]: f for f in res["per_fold"]}
        for g in part["per_fold"]:
            if g["fold"] not in by_fold:  # a fold run in another process
                by_fold[g["fold"]] = copy.deepcopy(g)
                res["per_fold"].append(by_fold[g["fold"]])
                continue
            f = by_fold[g["fold"]]
            for group in GROUPS:
                # a row in two parts must be the same run (e.g. LAMM retrained with the same seed
                # for a permutation part); two different results for one row would be a silent pick
                differ = [
                    name
                    for name in set(f.get(group, {})) & set(g.get(group, {}))
                    if abs(f[group][name]["mae"] - g[group][name]["mae"]) > 1e-9
                ]
                if differ:
                    raise ValueError(
                        f"merge: fold {g['fold'] + 1} has {sorted(differ)} in two parts with different results "
                        f"({d} and an earlier part): run each model in one part only"
                    )
                f.setdefault(group, {}).update(g.get(group, {}))
            for key in ("coverage", "coverage_gbm", "gbm_weight"):
                if key in g:
                    f[key] = g[key]
        for k, v in part["seconds"].items():
            res["seconds"].setdefault(k, []).extend(v)
        res["total_seconds"] = res.get("total_seconds", 0) + part.get("total_seconds", 0)
        res["truth_importance"] = res.get("truth_importance") or part.get("truth_importance")
    res["per_fold"].sort(key=lambda f: f["fold"])
    # LAMM first, as in the paper's tables
    for f in res["per_fold"]:
        f["models"] = dict(sorted(f["models"].items(), key=lambda kv: kv[0] != "LAMM"))
    res["merged_from"] = [str(d) for d in dirs]
    res["summary"] = summarize(res)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    write_report(res, out)
    return res


def cli_evaluate(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="liftstream evaluate",
        description="K-fold CV of LAMM against its baselines, ablation, coverage, report.",
    )
    _config_args(ap)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--max-folds", type=non_negative_int, default=0, help="run only the first N folds of the K-fold split"
    )
    ap.add_argument("--only-folds", default="", help="comma-separated fold indices to run (parallel parts)")
    ap.add_argument(
        "--models", default=",".join(ALL_MODELS), help="comma-separated subset of " + ",".join(ALL_MODELS)
    )
    ap.add_argument("--ablations", default=",".join(ABLATIONS), help="comma-separated subset (empty: none)")
    ap.add_argument(
        "--permutation",
        default=",".join(MODALITIES),
        help="modalities of the permutation ablation on each fold's LAMM (needs LAMM in --models; empty: none)",
    )
    ap.add_argument(
        "--merge", default="", help="comma-separated evaluation folders to merge into --out (no training)"
    )
    a = ap.parse_args(argv)
    perm = tuple(x for x in a.permutation.split(",") if x)
    bad = sorted(set(perm) - set(MODALITIES))
    if bad:
        ap.error(f"--permutation: unknown modalities {bad}; choose from {','.join(MODALITIES)}")
    if a.content_scores and a.ablations and not a.merge:
        ap.error(
            "--content-scores with removal ablations: a LAMM retrained without a modality would still read "
            "it through the content scores; pass --ablations= and use the permutation ablation"
        )
    if a.merge:
        try:
            res = merge_results(a.merge.split(","), a.out)
        except ValueError as e:
            ap.error(str(e))
        print(f"evaluate: merged report in {Path(a.out) / 'report.md'}")
        return 0
    tc = _train_config(a)
    from inference.sim import stale_world

    why = stale_world(a.data)
    if why:  # the figures would not be reproducible from a fresh clone
        print(f"evaluate: WARNING: {why}", flush=True)
    models = tuple(m for m in a.models.split(",") if m)
    abl = tuple(x for x in a.ablations.split(",") if x)
    try:
        only = tuple(int(k) for k in a.only_folds.split(",") if k)
    except ValueError:
        ap.error(f"--only-folds: comma-separated 0-based fold indices, got {a.only_folds!r}")
    try:
        check_evaluate_args(a.folds, models, abl, a.max_folds, only)
    except ValueError as e:
        ap.error(str(e))
    data = load_lamm_data(a.data, max_day=a.max_day, in_memory=a.in_memory)
    print(f"evaluate: {data.n_products} products x {data.n_days} days, {data.n_videos} videos")
    try:
        check_evaluate_args(a.folds, models, abl, a.max_folds, only, n_products=data.n_products)
    except ValueError as e:
        ap.error(str(e))
    res = evaluate(
        data,
        a.out,
        folds=a.folds,
        models=models,
        ablations=abl,
        permutation=perm,
        tc=tc,
        cfg=_lamm_config(a),
        max_folds=a.max_folds,
        only_folds=only,
    )
    s = res["summary"]
    print(
        f"evaluate: report in {Path(a.out) / 'report.md'}; best MAE {s.get('best_mae_model')}, "
        f"coverage {s.get('coverage', {}).get('mean')}, total {res['total_seconds']:.0f}s"
    )
    return 0

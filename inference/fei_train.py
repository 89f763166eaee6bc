"""Fit the FEI advisor (content vector + IV estimator) on a dataset folder and advise from a fitted one.

    liftstream fit-fei --dataset data/paper --out runs/fei/paper
    liftstream advise  --model runs/fei/paper --dataset data/paper --value 0.02 --cost 10 --out advice.csv

Works on any folder in the schemas.dataset format (a real dataset has no truth/ and needs none):
t = ln(videos.followers), z = log1p(videos.past_avg_hearts), y = ln(videos.impressions_14d),
x = [r, the content vector of the features/ (by default noise-whitened components of the pooled
segment statistics, fei.PooledPCA; ``content="vsvae"``: the paper's VS-VAE), verified (influencers
table), video type, length, hour, segments]; the IV estimator is the control function by default
(``estimator="deepiv"``: the paper's Deep IV), ``members`` > 1 averages that many seeds.
``fit_or_load_advisor(dataset, cache_dir)`` is what the embedded demo calls: it loads a cached fit
keyed by the dataset's contents and the configs, or fits and caches one.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from inference import fei as F
from inference import vsvae as V
from inference.cli_types import non_negative_int, positive_int
from inference.client import VideoBatch, VideoMeta
from inference.deepiv import IV_ESTIMATORS, DeepIVConfig, IVEnsemble, instrument_validity
from inference.optimum import check_economics
from schemas import dataset as DS
from schemas import limits as L

FIT_VERSION = "fei-fit-5"  # bump when fitting changes so cached fits are not reused


CONTENT_KINDS = ("pooled", "vsvae")


@dataclass
class FitConfig:
    # content representation: "pooled" = per-modality pooled statistics reduced to pooled_dim
    # components (default, measured better on the paper world, docs/fei.md); "vsvae" = the paper's
    # VS-VAE posterior mean
    content: str = "pooled"
    pooled_dim: int = 16  # components kept
    # of which the first snr_dim are noise-whitened directions of the segment means (fei.PooledPCA;
    # measured against plain PCA in docs/fei.md, "Noise-whitened content")
    snr_dim: int = 16
    # plain principal components of all pooled statistics appended to those, which reach the IV
    # estimator's h only through its level (DeepIVConfig.level_only): they read how many
    # impressions a video's content earns (docs/fei.md, "Level components")
    level_dim: int = 0
    # one more content column fitted to the outcome: the direction of the pooled statistics that
    # says how many impressions a video earns at any follower count (fei.LevelScore), also reaching
    # h only through its level. Off by default: it raises the profit share but lowers the shape
    # accuracy and helps the naive regression more (docs/fei.md, "Supervised level score")
    level_score: bool = False
    # one more level-only content column from the dataset's annotations/: the engagement-saliency
    # detector of "Engagement that Sells" (inference.content_scores: a ridge of the saliency labels
    # on one motion segment) applied to the motion means, i.e. the video's mean saliency. How many
    # impressions a video earns rises with it; a label, not the outcome, finds the direction
    # (docs/fei.md, "Saliency level")
    saliency_level: bool = False
    vsvae: V.VSVAEConfig = field(default_factory=V.VSVAEConfig)
    # the IV estimator behind the FEI: "control_function" (default; measured better on the paper
    # world, docs/fei.md) or "deepiv" (the paper's Deep IV); each has its own network settings
    estimator: str = "control_function"
    # > 1: the average of that many fits with consecutive seeds (deepiv.IVEnsemble; docs/fei.md, "Ensemble")
    members: int = 3
    deepiv: DeepIVConfig = field(default_factory=lambda: DeepIVConfig(progress=True))
    # chosen on the paper world over seeds 0-4 (docs/fei.md, "Control function settings"); 25
    # knots (ramps half as wide as 13's) over seeds 0-2 (docs/fei.md, "25 knots")
    control: DeepIVConfig = field(
        default_factory=lambda: DeepIVConfig(
            n_knots=25,
            dropout=0.0,
            weight_decay=1e-3,
            lr=5e-4,
            patience=20,
            max_epochs=150,
            batch_size=1024,
            progress=True,
        )
    )
    fei: F.FeiConfig = field(default_factory=F.FeiConfig)
    validity_rows: int = 100_000  # rows for the instrument validity check (gamma)


# ------------------------------------------------------------------------------------------ reading


def read_video_meta(root: str | Path) -> tuple[pa.Table, VideoMeta, np.ndarray]:
    """Videos table, their VideoMeta (verified joined from influencers) and feature rows."""
    videos = DS.read_table(root, "videos")
    infl = DS.read_table(root, "influencers")
    verified_of = dict(
        zip(infl.column("influencer_id").to_pylist(), infl.column("verified").to_pylist(), strict=True)
    )
    type_idx = {t: i for i, t in enumerate(L.VIDEO_TYPES)}
    vt = videos.column("video_type").to_pylist()
    unknown = sorted({t for t in vt if t not in type_idx})
    if unknown:
        raise DS.DatasetError(
            f"{root}/videos.parquet: unknown video_type {unknown[:3]} (expected one of limits.VIDEO_TYPES)"
        )
    col = lambda name: np.asarray(videos.column(name).to_numpy(zero_copy_only=False))  # noqa: E731
    meta = VideoMeta(
        followers=col("followers").astype(np.float64),
        past_avg_hearts=col("past_avg_hearts").astype(np.float64),
        verified=np.array(
            [bool(verified_of.get(i, False)) for i in videos.column("influencer_id").to_pylist()]
        ),
        video_type=np.array([type_idx[t] for t in vt], dtype=np.int64),
        length_s=col("length_s").astype(np.float64),
        create_hour=col("create_hour").astype(np.float64),
        n_segments=col("n_segments").astype(np.float64),
    )
    return videos, meta, col("feature_row").astype(np.int64)


class _RowView:
    """feats[name][idx] for video rows (maps dataset rows to feature_row)."""

    def __init__(self, feats: dict[str, np.ndarray], rows: np.ndarray):
        self.feats, self.rows = feats, rows

    def __getitem__(self, name: str):
        return _Indexed(self.feats[name], self.rows)


class _Indexed:
    def __init__(self, arr, rows):
        self.arr, self.rows = arr, rows

    def __getitem__(self, idx):
        r = self.rows[idx]
        order = np.argsort(r, kind="stable")  # memory maps read faster in order
        out = np.empty((len(r),) + self.arr.shape[1:], self.arr.dtype)
        out[order] = self.arr[r[order]]
        return out


def dataset_editing(
    feats: dict[str, np.ndarray],
    rows: np.ndarray,
    length_s: np.ndarray,
    chunk: int = 4096,
    progress: bool = True,
) -> np.ndarray:
    parts = []
    for i in tqdm(range(0, len(rows), chunk), desc="editing features", disable=not progress):
        r = rows[i : i + chunk]
        parts.append(
            V.editing_features(
                feats["frame"][r],
                feats["motion"][r],
                feats["audio"][r],
                feats["seg_mask"][r],
                length_s[i : i + chunk],
            )
        )
    return np.concatenate(parts) if parts else np.zeros((0, len(V.EDITING_FEATURES)), np.float32)


def dataset_pooled(
    feats: dict[str, np.ndarray], rows: np.ndarray, chunk: int = 4096, progress: bool = True
) -> np.ndarray:
    """(N, 7 D) fei.pooled_statistics of the dataset's videos (rows = their feature rows)."""
    parts = []
    for i in tqdm(range(0, len(rows), chunk), desc="pooled statistics", disable=not progress):
        r = np.sort(rows[i : i + chunk])
        inv = np.argsort(np.argsort(rows[i : i + chunk], kind="stable"), kind="stable")
        st = F.pooled_statistics(
            *(feats[k][r] for k in ("frame", "motion", "audio", "seg_mask", "title", "title_mask"))
        )
        parts.append(st[inv])
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def dataset_segment_noise(
    feats: dict[str, np.ndarray], rows: np.ndarray, max_rows: int = 20_000, seed: int = 0, chunk: int = 4096
) -> np.ndarray:
    """The segment noise covariance of [frame, motion, audio] (fei.segment_noise_moments) over a
    random sample of up to ``max_rows`` of the videos."""
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(rows, min(max_rows, len(rows)), replace=False))
    total, dof = 0.0, 0
    for i in range(0, len(take), chunk):
        r = take[i : i + chunk]
        s, n = F.segment_noise_moments(*(feats[k][r] for k in ("frame", "motion", "audio", "seg_mask")))
        total, dof = total + s, dof + n
    if dof < 1:
        raise DS.DatasetError("no video has two real segments; cannot estimate the segment noise")
    return total / dof


def load_source(root: str | Path, progress: bool = True) -> tuple[pa.Table, VideoMeta, V.FeatureSource]:
    videos, meta, rows = read_video_meta(root)
    feats = DS.load_features(root)
    ed = dataset_editing(feats, rows, meta.length_s, progress=progress)
    return videos, meta, V.FeatureSource(_RowView(feats, rows), ed)


# ------------------------------------------------------------------------------------------ fitting


def fit_advisor(root: str | Path, cfg: FitConfig | None = None, progress: bool = True) -> FeiAdvisorFit:
    cfg = cfg or FitConfig()
    if cfg.content not in CONTENT_KINDS:
        raise ValueError(f"cfg.content: {cfg.content!r}, expected one of {CONTENT_KINDS}")
    if cfg.estimator not in IV_ESTIMATORS:
        raise ValueError(f"cfg.estimator: {cfg.estimator!r}, expected one of {tuple(IV_ESTIMATORS)}")
    t0 = time.time()
    vfit, pooled, vs_report = None, None, {}
    if cfg.content == "vsvae":
        videos, meta, src = load_source(root, progress)
        if len(src) < 20:
            raise DS.DatasetError(f"{root}: {len(src)} videos; fitting FEI needs at least 20")
        vfit = V.fit_vsvae(src, cfg.vsvae)
        r = V.encode(vfit.model, src, progress=progress)
        vs_report = {"vsvae": {"reconstruction_test": vfit.test_report, **vfit.history}}
    else:
        videos, meta, rows = read_video_meta(root)
        if len(rows) < 20:
            raise DS.DatasetError(f"{root}: {len(rows)} videos; fitting FEI needs at least 20")
        feats = DS.load_features(root)
        stats = dataset_pooled(feats, rows, progress=progress)
        noise = dataset_segment_noise(feats, rows, seed=cfg.deepiv.seed) if cfg.snr_dim else None
        pooled = F.PooledPCA.fit(
            stats,
            cfg.pooled_dim + cfg.level_dim,
            seed=cfg.deepiv.seed,
            noise=noise,
            snr_dim=min(cfg.snr_dim, cfg.pooled_dim),
        )
        if cfg.level_score:
            level = F.LevelScore.fit(
                (stats - pooled.mean) / pooled.scale,
                F.treatment(meta.followers),
                F.covariates(np.zeros((len(rows), 0)), meta),
                F.outcome(videos.column("impressions_14d").to_numpy()),
                seed=cfg.deepiv.seed,
            )
            pooled = pooled.with_direction(level.weights / level.scale)
            vs_report = {"level_score": {"blocks": level.blocks, "cv_mse": level.cv_mse}}
        if cfg.saliency_level:
            weights, info = saliency_direction(root, videos, rows, feats, stats, pooled)
            pooled = pooled.with_direction(weights)
            vs_report = {**vs_report, "saliency_level": info}
        r = pooled.transform(stats)
    t_vae = time.time() - t0
    x = F.covariates(r, meta)
    t = F.treatment(meta.followers)
    z = F.instrument(meta.past_avg_hearts)
    y = F.outcome(videos.column("impressions_14d").to_numpy())
    t1 = time.time()
    est = fit_iv(cfg, r.shape[1], t, x, z, y)
    t_iv = time.time() - t1
    report = {
        "n_videos": int(len(t)),
        "content": cfg.content,
        **vs_report,
        **iv_report(est, cfg, t, x, z, y),
        "seconds": {"content": round(t_vae, 1), "iv": round(t_iv, 1)},
    }
    lo, hi = np.quantile(t, cfg.fei.support_quantiles)
    adv = F.FeiAdvisor(
        vfit.model if vfit else None,
        vfit.scale if vfit else None,
        est,
        F.smearing_factor(est, t, x, y),
        (float(lo), float(hi)),
        cfg.fei,
        report,
        pooled=pooled,
    )
    return FeiAdvisorFit(adv, x, t, z, y, r)


def saliency_direction(root, videos: pa.Table, rows: np.ndarray, feats, stats: np.ndarray, pooled):
    """(P,) weights over ``pooled``'s standardized statistics that read a video's mean engagement
    saliency, scaled to unit variance over the videos, and a report. The saliency detector is
    ``inference.content_scores``' ridge of the annotations' per-segment saliency on one motion
    segment; averaged over a video's segments it is the same linear map of the motion means (before
    the detector's clip to [0, 1], which the level column does without)."""
    from inference.content_scores import ridge

    ann = DS.annotations_for(root, videos.column("video_id").to_pylist())
    if ann is None:
        raise DS.DatasetError(
            f"{root}: no annotations/ (schemas.dataset): the saliency level needs per-segment labels of some videos"
        )
    pos, seg, _ = ann
    order = np.argsort(rows[pos])  # memmaps read in row order
    fr = rows[pos][order]
    motion = np.asarray(feats["motion"][fr], dtype=np.float32)
    mask = np.asarray(feats["seg_mask"][fr], dtype=bool)
    label = seg[order][..., DS.ANNOTATION_LABELS.index("saliency")]
    w = ridge(motion[mask], label[mask])
    d = stats.shape[1] // len(F.POOLED_STATS)
    raw = np.zeros(stats.shape[1])
    b = F.POOLED_STATS.index("motion_mean")
    raw[b * d : (b + 1) * d] = w[:-1]
    weights = raw * pooled.scale  # on (stats - mean) / scale
    score = ((stats - pooled.mean) / pooled.scale) @ weights
    sd = float(score.std()) or 1.0
    pred = np.clip(motion[mask] @ w[:-1] + w[-1], 0, 1)
    r2 = 1.0 - float(np.mean((pred - label[mask]) ** 2) / np.var(label[mask]))
    return weights / sd, {"annotated_videos": len(pos), "segment_r2_in_sample": round(r2, 3)}


def fit_iv(cfg: FitConfig, content_dim: int, t, x, z, y, **overrides):
    """cfg.estimator fitted on (t, x, z, y) with ``iv_config``'s settings; ``overrides`` are
    DeepIVConfig fields (e.g. ``progress=False``)."""
    ivc = replace(iv_config(cfg, content_dim), **overrides)
    if cfg.members > 1:
        est = IVEnsemble.of(IV_ESTIMATORS[cfg.estimator], ivc, cfg.members)
    else:
        est = IV_ESTIMATORS[cfg.estimator](ivc)
    return est.fit(treatment=t, covariates=x, instruments=z, outcome=y)


def iv_report(est, cfg: FitConfig, t, x, z, y) -> dict:
    """The advisor report's IV part: estimator, its training history and first-stage R^2, gamma."""
    return {
        "estimator": cfg.estimator,
        "iv": {
            **est.history,
            "first_stage_r2": est.first_stage_r2(treatment=t, covariates=x, instruments=z),
        },
        "instrument_validity_gamma": validity_gamma(
            est, y - est.predict(treatment=t, covariates=x), x, z, max_rows=cfg.validity_rows
        ),
    }


def validity_gamma(est, residual: np.ndarray, x: np.ndarray, z: np.ndarray, **kw) -> float:
    """gamma = 1 - loss / loss_zero (deepiv.instrument_validity) of the residual y - h(t, x) given
    the exogenous covariates and z. Columns the estimator left out of its first stage are caused by
    the treatment; E[e | x, z] = 0 is not claimed for them (``verified`` carries the confounder),
    so they are left out of the check too."""
    drop = list(est.cfg.first_stage_exclude) if hasattr(est, "cfg") else []  # 2SLS has no cfg
    return instrument_validity(residual, np.delete(x, drop, axis=1), z, **kw)


def iv_config(cfg: FitConfig, content_dim: int) -> DeepIVConfig:
    """The network settings of cfg.estimator for covariates F.covariates(r) with r of content_dim
    columns. The control function leaves ``verified`` out of its first stage: verification follows
    follower count (the treatment), so it carries the confounder; given t it says nothing more about
    it, and h keeps it as a covariate (docs/fei.md, "Control function")."""
    level = {}
    n_level = cfg.level_dim + int(cfg.level_score) + int(cfg.saliency_level)
    if cfg.content == "pooled" and n_level:
        level = {"level_only": tuple(range(content_dim - n_level, content_dim))}
    if cfg.estimator == "deepiv":
        return replace(cfg.deepiv, **level)
    verified = content_dim + F.COVARIATE_POST_STATS.index("verified")
    return replace(cfg.control, first_stage_exclude=(verified,), **level)


@dataclass
class FeiAdvisorFit:
    advisor: F.FeiAdvisor
    x: np.ndarray
    t: np.ndarray
    z: np.ndarray
    y: np.ndarray
    r: np.ndarray


def _dataset_key(root: Path, cfg: FitConfig) -> str:
    h = hashlib.sha256(FIT_VERSION.encode())
    h.update((root / "meta.json").read_bytes())
    with open(root / "videos.parquet", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    h.update(json.dumps(asdict(cfg), sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def fit_or_load_advisor(
    dataset_path: str | Path, cache_dir: str | Path, cfg: FitConfig | None = None, progress: bool = True
) -> F.FeiAdvisor:
    """A fitted FeiAdvisor for this dataset: loaded from ``cache_dir`` when a fit of the same dataset
    contents and configs is there, else fitted (content encoder, by default pooled statistics + PCA,
    then Deep IV) and saved there."""
    root = Path(dataset_path)
    DS.read_meta(root)
    cfg = cfg or FitConfig()
    out = Path(cache_dir) / f"fei-{_dataset_key(root, cfg)}"
    if (out / "config.json").exists() and (out / "weights.pt").exists():
        return F.FeiAdvisor.load(out)
    adv = fit_advisor(root, cfg, progress).advisor
    adv.save(out)
    return adv


# ---------------------------------------------------------------------------------------------- CLI


def cli_fit(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="liftstream fit-fei",
        description="Fit the FEI advisor (content encoder + IV estimator) on a dataset folder.",
    )
    p.add_argument("--dataset", required=True, help="dataset folder (schemas.dataset format)")
    p.add_argument("--out", required=True, help="model directory to write (config.json + weights.pt)")
    p.add_argument(
        "--vae-train-videos",
        type=int,
        default=V.VSVAEConfig.max_train_videos,
        help="VS-VAE training subsample",
    )
    p.add_argument("--vae-epochs", type=int, default=V.VSVAEConfig.max_epochs)
    p.add_argument(
        "--estimator",
        choices=tuple(IV_ESTIMATORS),
        default=FitConfig.estimator,
        help="IV estimator: control function (default) or the paper's Deep IV",
    )
    p.add_argument(
        "--iv-epochs", type=int, default=None, help="maximum epochs per stage (default: the estimator's)"
    )
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument(
        "--content",
        choices=CONTENT_KINDS,
        default=FitConfig.content,
        help="content representation: pooled statistics (default; see --snr-dim) or the paper's VS-VAE",
    )
    p.add_argument(
        "--members", type=int, default=FitConfig.members, help="IV fits with consecutive seeds, averaged"
    )
    p.add_argument(
        "--snr-dim",
        type=int,
        default=FitConfig.snr_dim,
        help="pooled content: noise-whitened components of the segment means (0: plain PCA)",
    )
    p.add_argument(
        "--level-dim",
        type=int,
        default=FitConfig.level_dim,
        help="pooled content: principal components that move only the level of the impression curve",
    )
    p.add_argument(
        "--level-score",
        action="store_true",
        help="pooled content: add the supervised level score (fei.LevelScore), a level-only covariate",
    )
    p.add_argument(
        "--saliency-level",
        action="store_true",
        help="pooled content: add the mean engagement saliency read by a detector trained on the "
        "dataset's annotations/, a level-only covariate",
    )
    a = p.parse_args(argv)
    base = FitConfig()
    epochs = {} if a.iv_epochs is None else {"max_epochs": a.iv_epochs}
    cfg = FitConfig(
        content=a.content,
        members=a.members,
        snr_dim=a.snr_dim,
        level_dim=a.level_dim,
        level_score=a.level_score,
        saliency_level=a.saliency_level,
        vsvae=V.VSVAEConfig(max_train_videos=a.vae_train_videos, max_epochs=a.vae_epochs, seed=a.seed),
        estimator=a.estimator,
        deepiv=replace(base.deepiv, seed=a.seed, **epochs),
        control=replace(base.control, seed=a.seed, **epochs),
    )
    try:
        fit = fit_advisor(a.dataset, cfg)
    except DS.DatasetError as e:
        print(f"fit-fei: {e}")
        return 2
    fit.advisor.save(a.out)
    rep = fit.advisor.report
    print(f"wrote {a.out} model_version={fit.advisor.model_version}")
    print(
        f"videos={rep['n_videos']} {rep['estimator']} first-stage R2={rep['iv']['first_stage_r2']:.3f} gamma={rep['instrument_validity_gamma']:.5f} "
        f"smearing={fit.advisor.smearing:.3f} seconds={rep['seconds']}"
    )
    for k, v in rep.get("vsvae", {}).get("reconstruction_test", {}).items():
        print(f"  vs-vae {k:8s} test MSE {v['vsvae_mse']:.4f}  NIR {v['nir_mse']:.4f}")
    return 0


ADVICE_COLUMNS = (
    "video_id",
    "product_id",
    "influencer_id",
    "day",
    "followers",
    "tier",
    "fei",
    "curve_shape",
    "expected_impressions",
    "optimal_followers",
    "optimal_tier",
    "optimal_followers_low",
    "optimal_followers_high",
    "expected_impressions_optimal",
    "profit_actual",
    "profit_optimal",
    "value_per_impression",
    "cost_per_1k_followers",
    "model_version",
)


def cli_advise(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="liftstream advise", description="Influencer-size advice for the videos of a dataset."
    )
    p.add_argument("--model", required=True, help="directory written by fit-fei")
    p.add_argument("--dataset", required=True)
    p.add_argument("--value", type=float, required=True, help="$ value per impression")
    p.add_argument("--cost", type=float, required=True, help="$ cost per 1,000 followers")
    p.add_argument("--out", help="csv to write (default: print a summary only)")
    p.add_argument("--chunk", type=positive_int, default=4096)
    a = p.parse_args(argv)
    try:
        check_economics(a.value, a.cost)
    except ValueError as e:
        p.error(str(e))
    adv = F.FeiAdvisor.load(a.model)
    try:
        videos, meta, rows = read_video_meta(a.dataset)
        feats = DS.load_features(a.dataset)
        start = date.fromisoformat(DS.read_meta(a.dataset).get("start_date", "1970-01-01"))
    except DS.DatasetError as e:
        print(f"advise: {e}")
        return 2
    n = len(rows)
    t0 = time.time()
    parts = []
    for i in tqdm(range(0, n, a.chunk), desc="advise"):
        r = rows[i : i + a.chunk]
        vb = VideoBatch(
            *(
                np.asarray(feats[k][r], dtype=np.float32 if k not in ("seg_mask", "title_mask") else bool)
                for k in ("frame", "motion", "audio", "seg_mask", "title", "title_mask")
            )
        )
        parts.append(adv.advise(vb, F._meta_slice(meta, slice(i, i + a.chunk)), a.value, a.cost))
    secs = time.time() - t0
    fei = np.concatenate([b.fei for b in parts]) if parts else np.zeros(0)
    shapes = [s for b in parts for s in b.curve_shape]
    opt = np.concatenate([b.optimal_followers for b in parts]) if parts else np.zeros(0)
    print(f"{n} videos in {secs:.1f} s ({n / max(secs, 1e-9):.0f} videos/s), model {adv.model_version}")
    if n:
        print(
            f"mean FEI {fei.mean():.3f}; shapes "
            + ", ".join(f"{s}={shapes.count(s)}" for s in F.SHAPES)
            + f"; median optimal followers {np.median(opt):,.0f}"
        )
    if a.out:
        cols = {
            k: videos.column(k).to_pylist()
            for k in ("video_id", "product_id", "influencer_id", "publish_day")
        }
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        with open(a.out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(ADVICE_COLUMNS)
            j = 0
            for b in parts:
                for k in range(len(b.fei)):
                    fol = int(meta.followers[j])
                    w.writerow(
                        [
                            cols["video_id"][j],
                            cols["product_id"][j],
                            cols["influencer_id"][j],
                            str(start + timedelta(days=int(cols["publish_day"][j]))),
                            fol,
                            L.follower_tier(fol),
                            f"{b.fei[k]:.5f}",
                            b.curve_shape[k],
                            f"{b.expected_impressions[k]:.1f}",
                            int(b.optimal_followers[k]),
                            L.follower_tier(b.optimal_followers[k]),
                            int(b.optimal_followers_low[k]),
                            int(b.optimal_followers_high[k]),
                            f"{b.expected_impressions_optimal[k]:.1f}",
                            f"{b.profit_actual[k]:.2f}",
                            f"{b.profit_optimal[k]:.2f}",
                            a.value,
                            a.cost,
                            adv.model_version,
                        ]
                    )
                    j += 1
        print(f"wrote {a.out}")
    return 0

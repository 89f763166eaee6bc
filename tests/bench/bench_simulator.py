"""Benchmark: generate the paper-scale world with features, write it, compare with LAMM Table 1.

    nice -n 10 .venv/bin/python -m tests.bench.bench_simulator [--preset paper] [--keep]

Prints wall time per phase, peak RSS (resource.getrusage), the marginals next to the LAMM
paper's Table 1 and the ground-truth diagnostics (FEI baselines, modality importance); writes
runs/bench/simulator_<preset>.json and simulator_<preset>.png. Targets for the paper preset:
under 3 minutes and under 8 GiB, features included. The dataset is written under
runs/bench/sim_<preset>/ and removed afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from inference.sim import PRESETS, simulate
from inference.sim.events import iter_event_batches, iter_events
from inference.sim.truth import GRID
from schemas.dataset import validate_dataset

OUT = Path("runs/bench")
TIME_TARGET_S, RSS_TARGET_GIB = 180.0, 8.0

# LAMM Table 1 (mean, min, max); None where the paper gives no number
TABLE1 = {
    "product daily sale count": (58.9, 0, 995),
    "product daily price": (59.7, 2.9, 3499.0),
    "product daily rating": (89.1, 71.4, 100.0),
    "product daily video count": (3.0, 0, 52),
    "product history sale count": (4132.7, 16, 225658),
    "product history video count": (149.6, 2, 1080),
    "influencer age": (29.7, 1, 99),
    "influencer followers": (69609.6, 65, 25453260),
    "video daily collect count": (7.8, 0, 9417),
    "video daily comment count": (5.9, 0, 1963),
    "video daily like count": (45.1, 0, 33393),
    "video daily share count": (6.0, 0, 8925),
    "video create hour": (11.5, 0, 23),
    "video length (s)": (17.1, 2.5, 865),
}


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def marginals(world) -> dict[str, tuple[float, float, float]]:
    t = world.tables
    a = lambda table, c: np.asarray(t[table].column(c), dtype=np.float64)  # noqa: E731
    counts = np.zeros((world.config.n_products, world.config.n_days))
    pid = np.asarray(pc.cast(pc.utf8_slice_codeunits(t["videos"].column("product_id"), 1), "int64"))
    np.add.at(counts, (pid, a("videos", "publish_day").astype(int)), 1)
    cols = {
        "product daily sale count": a("sales", "units"),
        "product daily price": a("sales", "price"),
        "product daily rating": a("sales", "rating"),
        "product daily video count": counts.ravel(),
        "product history sale count": a("products", "history_sales"),
        "product history video count": a("products", "history_videos"),
        "influencer age": a("influencers", "age"),
        "influencer followers": a("influencers", "followers"),
        "video daily collect count": a("engagement", "collects"),
        "video daily comment count": a("engagement", "comments"),
        "video daily like count": a("engagement", "likes"),
        "video daily share count": a("engagement", "shares"),
        "video create hour": a("videos", "create_hour"),
        "video length (s)": a("videos", "length_s"),
    }
    return {k: (float(v.mean()), float(v.min()), float(v.max())) for k, v in cols.items()}


def learnability(world, n_max: int = 20_000, seed: int = 0) -> dict[str, float]:
    """Held-out R^2 of ridge probes for the video quality (log conversion) on a subsample.

    pooled: the concatenated mean-pooled frame / motion / audio / title features (512 dims), all
    a concatenation model keeps. cross_modal: the same plus three per-segment cross-modal
    probes along the known directions (frame presence x motion saliency, frame presence x audio
    speech, the title's brand token x frame segments): an upper-bound sketch of what attention
    across modalities can add. The gap is the room LAMM has over a pooled concatenation.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import train_test_split

    from inference.sim.physics import geometry

    g = geometry()
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(world.n_videos, min(n_max, world.n_videos), replace=False))
    f = {k: np.asarray(v[idx]) for k, v in world.features.items()}
    m = f["seg_mask"].astype(np.float32)  # (n, S)
    tm = f["title_mask"].astype(np.float32)  # (n, T)
    ns, nt = np.maximum(m.sum(1), 1), np.maximum(tm.sum(1), 1)
    arr = {k: f[k].astype(np.float32) for k in ("frame", "motion", "audio", "title")}
    pooled = np.concatenate(
        [(arr[k] * m[..., None]).sum(1) / ns[:, None] for k in ("frame", "motion", "audio")]
        + [(arr["title"] * tm[..., None]).sum(1) / nt[:, None]],
        axis=1,
    )  # (n, 512)
    p, e, a = arr["frame"] @ g.presence, arr["motion"] @ g.saliency, arr["audio"] @ g.speech  # (n, S)
    name_w = np.clip(arr["title"] @ g.name / 1.8, 0, 1) * tm  # (n, T)
    brand = (arr["title"] * name_w[..., None]).sum(1)  # (n, D)
    cross = np.column_stack(
        [
            (p * e * m).sum(1) / ns,
            (p * a * m).sum(1) / ns,
            (np.einsum("nd,nsd->ns", brand, arr["frame"]) * m).sum(1) / ns,
        ]
    )
    q = np.asarray(world.truth["videos"].column("quality"))[idx]
    out = {"n_videos": int(idx.size)}
    for name, x in (("pooled", pooled), ("cross_modal", np.concatenate([pooled, cross], axis=1))):
        xtr, xte, ytr, yte = train_test_split(x, q, test_size=0.3, random_state=seed)
        out[f"r2_{name}"] = round(
            float(RidgeCV(alphas=np.logspace(-2, 3, 12)).fit(xtr, ytr).score(xte, yte)), 4
        )
    return out


def plot(world, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    units = np.asarray(world.tables["sales"].column("units"))
    ax[0, 0].hist(units, bins=np.linspace(0, np.percentile(units, 99.5), 60))
    ax[0, 0].set(title=f"daily units per product (mean {units.mean():.1f}, Table 1: 58.9)", xlabel="units")
    f = np.log10(np.asarray(world.tables["influencers"].column("followers")))
    imp = np.log10(np.maximum(np.asarray(world.tables["videos"].column("impressions_14d")), 1))
    ax[0, 1].hist(f, bins=50, alpha=0.6, label="log10 followers (influencers)")
    ax[0, 1].hist(imp, bins=50, alpha=0.6, label="log10 two-week impressions (videos)")
    ax[0, 1].legend()
    tv = world.truth["videos"]
    shape = np.asarray(tv.column("curve_shape").to_pylist())
    slope = world.truth["fei_slope"]
    x = np.exp(GRID)
    for name in ("s_shaped", "linear", "concave"):
        m = shape == name
        if m.any():
            ax[1, 0].plot(x, slope[m].mean(0), label=f"{name} ({m.sum()} videos)")
    ax[1, 0].plot(x, slope.mean(0), "k--", label="all videos")
    ax[1, 0].set(
        xscale="log", title="true FEI curves (mean by curve shape)", xlabel="followers", ylabel="FEI"
    )
    ax[1, 0].legend()
    imp_q = world.truth["modality_importance"]["quality"]
    ax[1, 1].bar(list(imp_q), list(imp_q.values()))
    ax[1, 1].set(title="modality importance (share of conversion variance lost)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the written dataset")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / f"sim_{args.preset}"
    shutil.rmtree(data, ignore_errors=True)

    t0 = time.perf_counter()
    world = simulate(args.preset, seed=args.seed, progress=True)
    t1 = time.perf_counter()
    rss_simulate = _peak_rss_gib()
    world.write_dataset(data, progress=True)
    t2 = time.perf_counter()
    validate_dataset(data)
    t3 = time.perf_counter()
    n_batch_events = 0
    for b in iter_event_batches(data):
        n_batch_events += (
            b.videos["video_id"].size + b.engagement["video_id"].size + b.sales["product_id"].size
        )
    t4 = time.perf_counter()
    n_day0, t5 = 0, time.perf_counter()  # pydantic events of day 0 only (the reference path)
    for ev in iter_events(data, inline_features=True):
        if ev.day.isoformat() != world.config.start_date:
            break
        n_day0 += 1
    t6 = time.perf_counter()
    disk = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
    rss = _peak_rss_gib()

    marg = marginals(world)
    t7 = time.perf_counter()
    learn = learnability(world)
    learn["seconds"] = round(time.perf_counter() - t7, 2)
    tm = world.truth["meta"]
    result = {
        "preset": args.preset,
        "seed": args.seed,
        "n_products": world.config.n_products,
        "n_days": world.config.n_days,
        "videos": world.n_videos,
        "influencers": world.tables["influencers"].num_rows,
        "engagement_rows": world.tables["engagement"].num_rows,
        "seconds": {
            "simulate": round(t1 - t0, 2),
            "write": round(t2 - t1, 2),
            "simulate_and_write": round(t2 - t0, 2),
            "validate": round(t3 - t2, 2),
            "event_batches_all_days": round(t4 - t3, 2),
            "pydantic_events_day0": round(t6 - t5, 2),
        },
        "pydantic_events_per_s": round(n_day0 / max(t6 - t5, 1e-9), 1),
        "batch_events": n_batch_events,
        "peak_rss_gib": {"after_simulate": round(rss_simulate, 3), "total": round(rss, 3)},
        "dataset_gib": round(disk / 2**30, 3),
        "targets": {
            "seconds": TIME_TARGET_S,
            "rss_gib": RSS_TARGET_GIB,
            "met": bool(t2 - t0 < TIME_TARGET_S and rss < RSS_TARGET_GIB),
        },
        "marginals": {k: {"sim": [round(x, 2) for x in v], "table1": TABLE1[k]} for k, v in marg.items()},
        "fei": {
            k: tm[k]
            for k in (
                "mean_true_fei",
                "true_linear_slope",
                "naive_ols_slope",
                "iv_2sls_slope",
                "instrument_corr_log_followers",
            )
            if k in tm
        },
        "realized_lift_share": tm["realized_lift_share"],
        "modality_importance": world.truth["modality_importance"],
        "learnability": learn,
    }
    (OUT / f"simulator_{args.preset}.json").write_text(json.dumps(result, indent=2))
    plot(world, OUT / f"simulator_{args.preset}.png")
    if not args.keep:
        shutil.rmtree(data, ignore_errors=True)

    s = result["seconds"]
    print(
        f"\nsimulator benchmark, preset {args.preset}: {result['videos']} videos, {result['influencers']} influencers, "
        f"{result['n_products']} products x {result['n_days']} days"
    )
    print(
        f"  simulate {s['simulate']} s + write {s['write']} s = {s['simulate_and_write']} s (target < {TIME_TARGET_S:.0f} s)"
    )
    print(
        f"  peak RSS {result['peak_rss_gib']['total']} GiB (target < {RSS_TARGET_GIB} GiB), dataset {result['dataset_gib']} GiB"
    )
    print(
        f"  validate {s['validate']} s; event batches (all days) {s['event_batches_all_days']} s; "
        f"pydantic events {result['pydantic_events_per_s']}/s"
    )
    print(
        f"\n  {'variable':<30}{'sim mean':>12}{'min':>10}{'max':>12}   {'Table 1 mean':>12}{'min':>8}{'max':>10}"
    )
    for k, v in marg.items():
        p = TABLE1[k]
        print(f"  {k:<30}{v[0]:>12.1f}{v[1]:>10.1f}{v[2]:>12.0f}   {p[0]:>12.1f}{p[1]:>8}{p[2]:>10}")
    print("\n  FEI: " + ", ".join(f"{k} {v:.3f}" for k, v in result["fei"].items()))
    mi = result["modality_importance"]
    print(
        "  modality importance (conversion): " + ", ".join(f"{k} {v:.3f}" for k, v in mi["quality"].items())
    )
    print(
        "  modality importance (log lift):   " + ", ".join(f"{k} {v:.3f}" for k, v in mi["log_lift"].items())
    )
    print(
        f"  quality R^2 of ridge probes ({learn['n_videos']} videos, held out): pooled concat {learn['r2_pooled']:.3f}, "
        f"+ per-segment cross-modal {learn['r2_cross_modal']:.3f}"
    )
    print(
        f"\n  wrote {OUT / f'simulator_{args.preset}.json'} and .png; targets met: {result['targets']['met']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

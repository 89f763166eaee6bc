"""LAMM benchmarks: in-process CPU throughput, and (optionally) the 5-fold CV on a dataset.

    .venv/bin/python -m tests.bench.bench_lamm                       # throughput only (random weights)
    .venv/bin/python -m tests.bench.bench_lamm --data data/paper     # + 5-fold CV of LAMM alone, timed
    .venv/bin/python -m tests.bench.bench_lamm --data data/paper --full   # + baselines and ablations
    .venv/bin/python -m tests.bench.bench_lamm --head-data data/paper    # + the step with a head fitted there
    .venv/bin/python -m tests.bench.bench_lamm --device cuda --out runs/bench/lamm_gpu.json   # on a GPU

Prints its figures and writes runs/bench/lamm.json (+ the evaluation report under
runs/bench/lamm-eval/ when --data is given). Targets: encode >= 2,000 videos/s, day step
>= 100,000 products/s (batched; --threads, default 1: 2 OpenMP threads crawl on a shared box), LAMM 5-fold CV at paper scale < 30 min.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from inference.client import VideoBatch
from inference.gbm_head import GbmHead
from inference.lamm import Conformal, Lamm, LammConfig, LammForecaster
from schemas import limits as L

OUT = Path("runs/bench")


def realistic_videos(n: int, seed: int = 0) -> VideoBatch:
    """Random features with the paper's length profile: mean 17 s (~6 segments), titles ~12 tokens."""
    rng = np.random.default_rng(seed)
    b = VideoBatch.empty(n)
    length = np.clip(np.exp(rng.normal(2.55, 0.55, n)), 2.5, 865)
    ns = np.clip(np.ceil(length / L.SEGMENT_SECONDS), 1, L.MAX_SEGMENTS).astype(int)
    nt = rng.integers(4, 20, n)
    for k in ("frame", "motion", "audio"):
        getattr(b, k)[:] = rng.standard_normal(getattr(b, k).shape).astype(np.float32)
    b.title[:] = rng.standard_normal(b.title.shape).astype(np.float32)
    b.seg_mask[:] = np.arange(L.MAX_SEGMENTS)[None] < ns[:, None]
    b.title_mask[:] = np.arange(L.MAX_TITLE_TOKENS)[None] < nt[:, None]
    for k in ("frame", "motion", "audio"):
        getattr(b, k)[~b.seg_mask] = 0
    b.title[~b.title_mask] = 0
    return b


def _best_of(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_head(x_tab_dim: int, n_trees: int = 350, num_leaves: int = 31, seed: int = 0) -> GbmHead:
    """A GBM head of at least the served size: ``n_trees`` full trees of ``num_leaves`` leaves over
    x[..., H:] (``gbm_head.HEAD_PARAMS``; the heads trained on the three simulated worlds' folds
    stopped at 196-363 trees, tests/bench/head_variants.py). A tree's cost is its depth, not what
    it learnt, so random data with a non-linear target gives the serving time. Compiled before
    the timing (``GbmHead.compiled``), as a served head is by its first large batch."""
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((20_000, x_tab_dim)).astype(np.float32)
    y = np.sin(x[:, 0] * 2) + x[:, 1] * x[:, 2] + 0.3 * rng.standard_normal(len(x))
    m = lgb.LGBMRegressor(
        n_estimators=n_trees, num_leaves=num_leaves, learning_rate=0.05, verbose=-1, n_jobs=1
    )
    m.fit(x, y)
    head = GbmHead(m.booster_.model_to_string())
    t0 = time.perf_counter()
    compiled = head.compiled is not None
    print(
        f"bench head: {n_trees} trees of {num_leaves} leaves, compiled {compiled} in {time.perf_counter() - t0:.1f} s"
    )
    return head


def bench_content_model(seed: int = 0):
    """A content model with random detectors and weights (the cost does not depend on them)."""
    from inference.content_scores import MATCH_DIM, SCORES, ContentModel, Detectors

    rng = np.random.default_rng(seed)
    f = L.FEATURE_DIM
    det = Detectors(
        *(rng.normal(0, 0.05, f + 1) for _ in range(4)),
        title_cal=np.array([1.0, 0.0]),
        match_look=rng.normal(0, 0.1, (f, MATCH_DIM)),
        match_brand=rng.normal(0, 0.1, (f, MATCH_DIM)),
        match_mean=np.zeros((2, f)),
    )
    return ContentModel(det, np.zeros(len(SCORES)), np.ones(len(SCORES)), rng.normal(0, 0.3, len(SCORES)))


def data_head(path: str, seed: int = 0) -> tuple[GbmHead, np.ndarray]:
    """A head fitted as ``train_lamm`` fits the served one (tuned and early-stopped on held-out
    products: 60% fit, 20% held out) on the dataset at ``path``, and the dataset's own x[..., H:]
    rows: the served head on the inputs it serves."""
    from inference.gbm_head import fit_gbm_head
    from inference.lamm_data import load_lamm_data, tab_part
    from inference.lamm_train import norm_constants

    data = load_lamm_data(path)
    p = np.random.default_rng(seed).permutation(data.n_products)
    fit_p, cal_p = p[: int(0.6 * len(p))], p[int(0.6 * len(p)) : int(0.8 * len(p))]
    head = fit_gbm_head(data, fit_p, cal_p, norm_constants(data, fit_p), seed=seed)
    rows = tab_part(data, np.arange(data.n_products)).reshape(-1, head.n_features)
    print(f"{path} head: {head._booster.num_trees()} trees, compiled {head.compiled is not None}")
    return head, rows


def throughput(threads: int = 2, head_data: str | None = None, device: str = "cpu") -> dict:
    """``device`` "cuda": the encoder and the LSTM on the GPU (numpy in and out, as Triton's GPU
    instance runs them); the GBM head stays on the CPU's ``threads``."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fc = LammForecaster(Lamm(LammConfig()), Conformal()).to(device)
    out: dict = {"threads": threads, "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    out["device"] = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    for n in (512, 4096):
        vb = realistic_videos(n)
        out[f"encode_videos_per_s_batch{n}"] = n / _best_of(lambda vb=vb: fc.encode(vb))
    full = realistic_videos(4096)
    full.seg_mask[:] = True  # worst case: every video 64 s, every title 32 tokens
    full.title_mask[:] = True
    out["encode_videos_per_s_batch4096_all_full_length"] = 4096 / _best_of(lambda: fc.encode(full))
    # a content LAMM (docs/lamm.md, item 10) also scores each video: h_v and q_v
    fcc = LammForecaster(
        Lamm(LammConfig(content_channel=True)), Conformal(), content=bench_content_model()
    ).to(device)
    vb = realistic_videos(4096)
    out["encode_videos_per_s_batch4096_content"] = 4096 / _best_of(lambda: fcc.encode(vb))
    rng = np.random.default_rng(0)
    heads: list = [("", None)]
    if importlib.util.find_spec("lightgbm") is not None:  # the GPU image has no LightGBM: LAMM alone there
        heads.append(("_gbm", bench_head(fc.cfg.x_dim - fc.cfg.d_model)))
    for suffix, head in heads:
        fc.gbm = head  # "_gbm": the served default, LAMM blended with its GBM head (inference.gbm_head)
        if head is not None:
            head.threads = threads
        for n in (10_000, 100_000):
            x = rng.standard_normal((n, fc.cfg.x_dim)).astype(np.float32)
            s = fc.init_state(n)
            for baseline in (True, False):
                fc.with_baseline = baseline
                key = f"step_products_per_s_batch{n}_{'with' if baseline else 'no'}_baseline{suffix}"
                out[key] = n / _best_of(lambda x=x, s=s: fc.step(s, x))
    if fc.gbm is None:
        return out
    # the same head through LightGBM's own predict (what the compiled trees replace)
    fc.gbm = GbmHead(fc.gbm.model_str, compile=False, threads=threads)
    fc.with_baseline = True
    out["step_products_per_s_batch100000_with_baseline_gbm_uncompiled"] = 100_000 / _best_of(
        lambda x=x, s=s: fc.step(s, x)
    )
    if head_data:  # a head trained on a dataset, on that dataset's product-day rows (tiled)
        fc.gbm, rows = data_head(head_data)
        fc.gbm.threads = threads
        x[:, fc.cfg.d_model :] = rows[np.arange(len(x)) % len(rows)]
        out["step_products_per_s_batch100000_with_baseline_datahead"] = 100_000 / _best_of(
            lambda x=x, s=s: fc.step(s, x)
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="dataset folder for the timed 5-fold CV")
    ap.add_argument("--full", action="store_true", help="CV with all baselines and ablations, not LAMM alone")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--head-data", help="also time the step with a head fitted on this dataset, on its rows")
    ap.add_argument("--device", default="cpu", help="cpu | cuda: where the encoder and the LSTM run")
    ap.add_argument("--out", default=str(OUT / "lamm.json"), help="JSON to write")
    a = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    res = {"throughput": throughput(a.threads, a.head_data, a.device)}
    if a.head_data:
        res["throughput"]["head_data"] = a.head_data
    for k, v in res["throughput"].items():
        print(f"{k:<52} {v:,.1f}" if isinstance(v, float) else f"{k:<52} {v}")
    if a.data:
        from inference.lamm_train import ABLATIONS, ALL_MODELS, TrainConfig, evaluate, load_lamm_data

        tc = (
            TrainConfig(threads=a.threads)
            if a.epochs is None
            else TrainConfig(threads=a.threads, epochs=a.epochs)
        )
        t0 = time.time()
        data = load_lamm_data(a.data)
        t_load = time.time() - t0
        models, abl = (ALL_MODELS, tuple(ABLATIONS)) if a.full else (("LAMM",), ())
        ev = evaluate(data, OUT / "lamm-eval", folds=5, models=models, ablations=abl, tc=tc)
        s = ev["summary"]
        res["cv"] = {
            "dataset": a.data,
            "n_products": data.n_products,
            "n_videos": data.n_videos,
            "load_seconds": t_load,
            "lamm_cv_seconds": float(np.sum(ev["seconds"]["LAMM"])),
            "total_seconds": ev["total_seconds"],
            "lamm_mae_mean": s["models"]["LAMM"]["mae_mean"],
            "lamm_mse_mean": s["models"]["LAMM"]["mse_mean"],
            "coverage_mean": s["coverage"]["mean"],
            "load_avg_1m_after": os.getloadavg()[0],
        }
        for k, v in res["cv"].items():
            print(f"{k:<52} {v:,.3f}" if isinstance(v, float) else f"{k:<52} {v}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

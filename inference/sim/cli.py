"""``liftstream simulate``: generate a synthetic ISA world and write it as a dataset folder.

liftstream simulate --preset small --seed 0 --out data/small [--events data/small/events.jsonl]
liftstream simulate --preset paper --out data/paper --n-products 500 --n-days 14 --no-features
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from inference.cli_types import non_negative_int
from inference.sim.world import PRESETS, simulate


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="liftstream simulate", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS), help="world size (default: small)")
    ap.add_argument("--seed", type=non_negative_int, default=0)
    ap.add_argument("--out", required=True, help="dataset folder to write")
    ap.add_argument("--events", default=None, help="also write the event stream as JSON lines to this file")
    ap.add_argument(
        "--media-uri",
        action="store_true",
        help="events reference features by dataset:// URI instead of embedding them",
    )
    ap.add_argument("--n-products", type=int, default=None, help="override the preset's number of products")
    ap.add_argument("--n-days", type=int, default=None, help="override the preset's number of days")
    ap.add_argument("--start-date", default=None, help="override the first day (YYYY-MM-DD)")
    ap.add_argument(
        "--lift-share", type=float, default=None, help="override the share of sales the videos cause"
    )
    ap.add_argument(
        "--quality-scale",
        type=float,
        default=None,
        help="multiply how much a video's content moves its sales (default 1: the calibrated world)",
    )
    ap.add_argument("--no-features", action="store_true", help="skip feature synthesis (arrays left zero)")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    over = {
        k: v
        for k, v in (
            ("n_products", args.n_products),
            ("n_days", args.n_days),
            ("start_date", args.start_date),
            ("lift_share", args.lift_share),
            ("quality_scale", args.quality_scale),
        )
        if v is not None
    }
    if args.no_features:
        over["features"] = False
    try:
        cfg = dataclasses.replace(PRESETS[args.preset], seed=args.seed, **over)
    except ValueError as exc:
        print(f"liftstream simulate: {exc}")
        return 2
    progress = not args.no_progress
    t0 = time.perf_counter()
    world = simulate(cfg, progress=progress)
    t1 = time.perf_counter()
    root = world.write_dataset(args.out, progress=progress)
    t2 = time.perf_counter()
    n_events = None
    if args.events:
        from inference.sim.events import write_events_jsonl

        n_events = write_events_jsonl(
            root, args.events, inline_features=not args.media_uri, progress=progress
        )
    t3 = time.perf_counter()

    units = np.asarray(world.tables["sales"].column("units"))
    tm = world.truth["meta"]
    summary = {
        "out": str(root),
        "preset": cfg.name,
        "seed": cfg.seed,
        "n_products": cfg.n_products,
        "n_days": cfg.n_days,
        "videos": world.n_videos,
        "influencers": world.tables["influencers"].num_rows,
        "engagement_rows": world.tables["engagement"].num_rows,
        "daily_units_mean": round(float(units.mean()), 2),
        "daily_units_max": int(units.max()),
        "lift_share": round(tm["realized_lift_share"], 3),
        "mean_true_fei": round(tm.get("mean_true_fei", float("nan")), 3),
        "naive_ols_fei": round(tm.get("naive_ols_slope", float("nan")), 3),
        "modality_importance": {
            k: round(v, 3) for k, v in world.truth["modality_importance"]["quality"].items()
        },
        "seconds": {"simulate": round(t1 - t0, 2), "write": round(t2 - t1, 2), "events": round(t3 - t2, 2)},
    }
    if n_events is not None:
        summary["events"] = n_events
        summary["events_file"] = args.events
    print(json.dumps(summary, indent=2))
    return 0

"""Benchmark: does the served 80% interval under-cover once forecasts leave the training window?

Trains the demo's forecaster (LAMM + GBM head, content channel when the world has annotations,
``train_lamm`` as ``train_or_load`` calls it) on days 0..``--last-day`` of a world, then scores
its one-day-ahead forecasts on every day: coverage and the share of actuals above the interval,
inside the window and 1-7 / 8-14 days past it, for the calibration products and for all.

    .venv/bin/python -m tests.bench.coverage_drift [--world DATASET] [--last-day 13]

(the default world is the one ``make demo`` simulates, simulated here if it is not cached; about a
minute on one core). Findings: docs/lamm.md, "Open items".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from inference.lamm import LammConfig
from inference.lamm_data import load_lamm_data
from inference.lamm_train import TrainConfig, _blend_z, split_calib, targets_z, train_lamm, with_content


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", help="dataset folder (default: the demo's small world, seed 0)")
    ap.add_argument("--last-day", type=int, default=13, help="train on days 0..LAST_DAY")
    ap.add_argument("--out", default="runs/bench/coverage_drift.json")
    a = ap.parse_args(argv)
    quiet = lambda *_: None  # noqa: E731
    if a.world is None:
        from streams.embedded import world_dataset
        from streams.settings import Settings

        a.world = str(world_dataset("small", 0, Settings().home, progress=False))
    window = load_lamm_data(a.world, max_day=a.last_day)
    tc = TrainConfig(content_scores=window.annotations is not None)
    fc, _ = train_lamm(window, LammConfig(), tc, log=quiet)
    full = load_lamm_data(a.world)
    if fc.content is not None:  # the trained content model scores every video of the full world
        full = with_content(full, np.arange(full.n_products), log=quiet, model=fc.content)
    prods = np.arange(full.n_products)
    _, cal_p = split_calib(prods, tc.calib_frac, tc.seed)
    norm = {"y_mean": float(fc.model.y_mean), "y_std": float(fc.model.y_std)}
    z = _blend_z(fc.model, fc.gbm, full, prods)  # (B, D-1): forecast of day t+1 from days 0..t
    t = targets_z(full, prods, norm)
    c = fc.conformal
    ok = ~np.isnan(t)
    inside, above = (t >= z + c.q_lo) & (t <= z + c.q_hi), t > z + c.q_hi
    target_day = np.arange(1, full.n_days)
    spans = {
        "in window": target_day <= a.last_day,
        "1-7 days past": (target_day > a.last_day) & (target_day <= a.last_day + 7),
        "8-14 days past": (target_day > a.last_day + 7) & (target_day <= a.last_day + 14),
    }
    res: dict = {"world": a.world, "last_day": a.last_day, "conformal": vars(c), "rows": []}
    for name, days in spans.items():
        for who, rows in (("calibration products", cal_p), ("all products", prods)):
            sel = np.zeros_like(ok)
            sel[np.ix_(rows, np.flatnonzero(days))] = True
            sel &= ok
            if not sel.any():
                continue
            row = {
                "span": name,
                "products": who,
                "n": int(sel.sum()),
                "coverage": float(inside[sel].mean()),
                "above": float(above[sel].mean()),
            }
            res["rows"].append(row)
            print(
                f"{name:<15} {who:<21} n={row['n']:>5}  coverage {row['coverage']:.3f}  above {row['above']:.3f}"
            )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

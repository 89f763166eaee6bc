"""Benchmark: would recalibrating the 80% interval on recent live residuals, across products, fix
the demo's live-day under-coverage?

Reads the day-close forecasts and the day's sales from a store that a run has filled (default:
``make demo``'s embedded ClickHouse) and scores, for each live day, the served interval and the
same interval widened by split conformal on the day-close forecasts of the ``W`` days before it,
all products together (conformalized quantile regression's score, max(lower - y, y - upper) on
log1p units, so the widening can also be a narrowing). Only days before the scored day enter its
offset, as a stream that recalibrates at each day close would have them.

    make demo && .venv/bin/python -m tests.bench.live_recalibration [--store chdb:///abs/dir] [--windows 3,5,7,10]

Seconds. Findings: docs/lamm.md, "Open items".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from streams.report import forecast_outcomes
from streams.settings import Settings
from streams.sinks import StoreError, StoreURLError, open_store


def rolling_offsets(day: np.ndarray, score: np.ndarray, window: int, level: float) -> dict[int, float]:
    """For each day d with at least one earlier score in [d - window, d): the conformal quantile
    (rank ceil(level (n + 1))) of those scores."""
    out = {}
    for d in np.unique(day):
        past = np.sort(score[(day < d) & (day >= d - window)])
        if len(past):
            out[int(d)] = float(past[min(len(past), int(np.ceil(level * (len(past) + 1)))) - 1])
    return out


def recalibrated_coverage(a: np.ndarray, live_from: int, window: int, level: float) -> dict:
    """Coverage of the live days' intervals widened by ``rolling_offsets`` (``a``: forecast_outcomes rows)."""
    day, _, lower, upper, y = a.T
    lo, hi, ly = np.log1p(lower), np.log1p(upper), np.log1p(y)
    off = rolling_offsets(day, np.maximum(lo - ly, ly - hi), window, level)
    live = day >= live_from
    q = np.array([off.get(int(d), 0.0) for d in day[live]])
    inside = (ly[live] >= lo[live] - q) & (ly[live] <= hi[live] + q)
    return {
        "window_days": window,
        "coverage": float(inside.mean()),
        "above": float((ly[live] > hi[live] + q).mean()),
        "below": float((ly[live] < lo[live] - q).mean()),
        "offset_log1p_by_live_day": [round(v, 4) for d, v in sorted(off.items()) if d >= live_from],
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", help="store URL (default: the embedded run's chdb store)")
    ap.add_argument("--database", default=Settings().database)
    ap.add_argument(
        "--history-days", type=int, default=21, help="days before the live ones (the demo's world: 21)"
    )
    ap.add_argument("--windows", default="3,5,7,10")
    ap.add_argument("--level", type=float, default=0.8)
    ap.add_argument("--out", default="runs/bench/live_recalibration.json")
    a = ap.parse_args(argv)
    url = a.store or f"chdb://{(Path(Settings().home) / 'chdb').resolve()}"
    try:
        store = open_store(url)
        rows = forecast_outcomes(store, a.database)
        if not len(rows):
            raise SystemExit(f"{url}: no day-close forecasts with sales; run `make demo` first")
        first_sales_day = store.query(f"SELECT toInt32(min(day)) FROM {a.database}.sales_daily FINAL")[0][0]
    except (StoreError, StoreURLError) as e:
        raise SystemExit(f"{url}: {e} (run `make demo` first, or pass --store)") from None
    live_from = int(first_sales_day) + a.history_days  # as the run's report counts live days
    day, _, lower, upper, y = rows.T
    live = day >= live_from
    res = {
        "store": url,
        "live_product_days": int(live.sum()),
        "served": {
            "coverage": float(((y >= lower) & (y <= upper))[live].mean()),
            "above": float((y > upper)[live].mean()),
            "below": float((y < lower)[live].mean()),
        },
        "recalibrated": [
            recalibrated_coverage(rows, live_from, int(w), a.level) for w in a.windows.split(",")
        ],
    }
    print(
        f"live product-days {res['live_product_days']}: served coverage {res['served']['coverage']:.3f} "
        f"(above {res['served']['above']:.3f}, below {res['served']['below']:.3f})"
    )
    for r in res["recalibrated"]:
        offs = r["offset_log1p_by_live_day"]
        print(
            f"  recalibrated on the last {r['window_days']:>2} days: coverage {r['coverage']:.3f} "
            f"(above {r['above']:.3f}, below {r['below']:.3f}); offsets {min(offs):+.3f}..{max(offs):+.3f} log1p"
        )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()

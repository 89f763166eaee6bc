"""Benchmark: the served blend against each model over repeated 5-fold cross-validations.

One 5-fold run gives a paired t-test with 4 degrees of freedom, where a difference of 0.001 MAE
between the served blend and the tuned LightGBM can be real and still miss p < 0.05. Repeating
the cross-validation with other product partitions (``liftstream evaluate --seed S`` draws the
folds, the calibration split and the torch seeds from S) gives more folds, but they share
training products, so a plain t-test over all of them would overstate the evidence. This reads
``evaluate``'s results.json of each repetition and reports, for the served model against each
other model:

- per repetition: the mean MAE difference, the folds where the served model is lower, and the
  paired t-test over its folds (what ``evaluate``'s report says);
- over all repetitions: the mean difference, the folds where it is lower, and the corrected
  resampled t-test of Nadeau and Bengio (2003), which inflates the variance of the mean
  difference by n_test / n_train for the overlap of the training sets (as in Bouckaert and Frank,
  2004, for r x k-fold cross-validation).

    .venv/bin/python -m tests.bench.repeated_cv runs/eval-v10-seed0 runs/eval-v10-seed1 runs/eval-v10-seed2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

SERVED = "LAMM+GBM"


def fold_mae(run: dict) -> dict[str, np.ndarray]:
    """Per model, the MAE of each fold of one evaluate run (folds in order)."""
    folds = sorted(run["per_fold"], key=lambda f: f["fold"])
    names = folds[0]["models"].keys()
    return {m: np.array([f["models"][m]["mae"] for f in folds]) for m in names}


def corrected_resampled_t(diff: np.ndarray, test_over_train: float) -> tuple[float, float]:
    """Nadeau and Bengio's corrected resampled t statistic and two-sided p over n = len(diff)
    differences: t = mean / sqrt((1 / n + test_over_train) * var), n - 1 degrees of freedom."""
    n = diff.size
    var = diff.var(ddof=1)
    if var == 0:
        raise ValueError("corrected_resampled_t: the differences do not vary")
    t = diff.mean() / np.sqrt((1.0 / n + test_over_train) * var)
    return float(t), float(2 * stats.t.sf(abs(t), n - 1))


def compare(runs: list[dict], served: str = SERVED) -> dict:
    per_run = [fold_mae(r) for r in runs]
    others = [m for m in per_run[0] if m != served and all(m in p for p in per_run)]
    # the share of a fold's products in test against those it trains on (fit + calibration)
    test_over_train = 1.0 / (runs[0]["folds"] - 1)
    out: dict = {
        "served": served,
        "repetitions": len(runs),
        "test_over_train": test_over_train,
        "against": {},
    }
    for m in others:
        rows, diffs = [], []
        for run, p in zip(runs, per_run, strict=True):
            d = p[served] - p[m]
            t = stats.ttest_rel(p[served], p[m])
            rows.append(
                {
                    "seed": run["train"]["seed"],
                    "served_mae": float(p[served].mean()),
                    "other_mae": float(p[m].mean()),
                    "diff": float(d.mean()),
                    "folds_lower": int((d < 0).sum()),
                    "folds": int(d.size),
                    "p": float(t.pvalue),
                }
            )
            diffs.append(d)
        d = np.concatenate(diffs)
        t, p = corrected_resampled_t(d, test_over_train)
        out["against"][m] = {
            "per_repetition": rows,
            "diff": float(d.mean()),
            "folds_lower": int((d < 0).sum()),
            "folds": int(d.size),
            "corrected_t": t,
            "corrected_p": p,
        }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="evaluate --out folders, one per partition seed")
    ap.add_argument("--served", default=SERVED)
    ap.add_argument("--out", default="", help="write the comparison as JSON here")
    a = ap.parse_args(argv)
    runs = [json.loads((Path(r) / "results.json").read_text()) for r in a.runs]
    seeds = [r["train"]["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        ap.error(f"each run needs its own partition seed, got {seeds}")
    res = compare(runs, a.served)
    for m, c in res["against"].items():
        print(f"{a.served} against {m}:")
        for r in c["per_repetition"]:
            print(
                f"  seed {r['seed']}: {r['served_mae']:.4f} vs {r['other_mae']:.4f}, diff {r['diff']:+.4f}, "
                f"lower on {r['folds_lower']}/{r['folds']} folds, paired t-test p = {r['p']:.3f}"
            )
        print(
            f"  all: diff {c['diff']:+.4f}, lower on {c['folds_lower']}/{c['folds']} folds, "
            f"corrected resampled t = {c['corrected_t']:.2f}, p = {c['corrected_p']:.4f}"
        )
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

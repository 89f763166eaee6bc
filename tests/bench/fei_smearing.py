"""Benchmark: would a follower-dependent smearing factor raise the FEI advisor's profit share?

The advisor turns h (the conditional mean of log impressions) into expected impressions with one
Duan smearing factor, mean exp(y - h) over the training rows. Under uncertainty about a video's
curve the Bayes decision averages impressions, not log impressions, and where the candidate curves
disagree (around an S-curve's bump) the gap between the two depends on the follower count. This
refits the factor per quantile bin of log followers on the training residuals and recomputes the
profit share of ``bench_fei``'s evaluation (same 3,000 videos, same value and cost):

- ``constant``: the advisor as saved (reproduces eval.json's share);
- ``binned, centred``: exp of the residuals minus their bin mean, averaged per bin: the spread
  only (a bin's mean residual is the confounding that the IV removed from h, not noise);
- ``binned, raw``: mean exp(residual) per bin, confounding included (for contrast).

    .venv/bin/python -m tests.bench.fei_smearing --run runs/bench/fei_k25 --dataset data/fei_paper \\
        --xtzy runs/bench/fei/paper_xtzy.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import inference.fei as F
import inference.sim.world as W
from tests.bench import bench_fei as BF


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/bench/fei", help="a bench_fei --out folder (its advisor/)")
    ap.add_argument("--dataset", default="data/fei_paper")
    ap.add_argument("--xtzy", default="", help="the fit's covariates (default: <run>/paper_xtzy.npz)")
    ap.add_argument("--bins", default="8,16,32")
    ap.add_argument("--n-eval", type=int, default=3000)
    a = ap.parse_args(argv)
    run, data = Path(a.run), Path(a.dataset)
    adv = F.FeiAdvisor.load(run / "advisor")
    d = np.load(a.xtzy or run / "paper_xtzy.npz")
    x, t, y = d["x"], d["t"], d["y"]
    params = BF.truth_params(data)
    sim_cfg = json.loads((data / "meta.json").read_text())["sim_config"]
    sim = W.SimConfig(**{k: v for k, v in sim_cfg.items() if k in W.SimConfig.__dataclass_fields__})
    idx = np.random.default_rng(0).choice(len(x), min(a.n_eval, len(x)), replace=False)  # as fei_errors
    true_grid = BF.true_expected_impressions(adv.log_grid, {k: v[idx] for k, v in params.items()}, sim)
    _, p_true = F.optimal_followers(true_grid, adv.grid_followers, BF.VALUE, BF.COST)
    pos = p_true > 0
    h_grid = F.impression_curves(adv.estimator, x[idx], adv.log_grid)

    def share(factor: np.ndarray | float) -> float:
        best, _ = F.optimal_followers(np.exp(h_grid) * factor, adv.grid_followers, BF.VALUE, BF.COST)
        got = F.profit(BF.VALUE, BF.COST, true_grid[np.arange(len(idx)), best], adv.grid_followers[best])
        return float(got[pos].sum() / p_true[pos].sum())

    resid = y - adv.estimator.predict(treatment=t, covariates=x)
    res: dict = {"constant": {"factor": adv.smearing, "share": share(adv.smearing)}}
    print(f"constant factor {adv.smearing:.3f}: profit share {res['constant']['share']:.4f}")
    for nb in (int(b) for b in a.bins.split(",")):
        edges = np.quantile(t, np.linspace(0, 1, nb + 1))
        b = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, nb - 1)
        mids = np.array([np.median(t[b == i]) for i in range(nb)])
        centred = np.array([np.mean(np.exp(resid[b == i] - resid[b == i].mean())) for i in range(nb)])
        raw = np.array([np.mean(np.exp(resid[b == i])) for i in range(nb)])
        sd = np.array([resid[b == i].std() for i in range(nb)])
        row = {
            "followers_bin_median": np.exp(mids).round().tolist(),
            "residual_sd": sd.tolist(),
            "centred": {"factor": centred.tolist(), "share": share(np.interp(adv.log_grid, mids, centred))},
            "raw": {"factor": raw.tolist(), "share": share(np.interp(adv.log_grid, mids, raw))},
        }
        res[f"bins_{nb}"] = row
        print(
            f"{nb} bins: centred {row['centred']['share']:.4f}, raw {row['raw']['share']:.4f}; "
            f"residual sd per bin {sd.min():.3f}-{sd.max():.3f}, centred factor {centred.min():.3f}-{centred.max():.3f}"
        )
    (run / "smearing.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

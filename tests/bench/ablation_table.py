"""The ablation (Table 4) of a merged ``liftstream evaluate`` result as markdown: per-fold MAE, deltas, tests.

``evaluate``'s report already has the per-fold ablation tables with a paired t-test against LAMM;
this adds what the model card needs to judge the ablation ordering:

- per variant: MAE per fold, mean, mean increase over full LAMM on the same folds, the number of
  folds on which the variant is worse, and the paired t-test against LAMM (``scipy.stats.ttest_rel``
  with LAMM first, as ``evaluate`` does: t < 0 = full LAMM lower, i.e. removing the part hurts);
- the modalities ordered by mean MAE increase next to the simulator's truth order
  (``truth/modality_importance.json``, carried in results.json);
- paired t-tests between the ablations of modalities adjacent in the truth order (is "frame hurts
  more than text" itself distinguishable from fold noise?).

Reads only results.json (no training):

    .venv/bin/python -m tests.bench.ablation_table runs/eval-paper-v3-abl/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

from inference.lamm_train import ABLATION_MODALITY


def _p(p: float) -> str:
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def ablation_tables(res: dict, met: str = "mae") -> str:
    folds = sorted(res["per_fold"], key=lambda f: f["fold"])
    k = [f["fold"] for f in folds]
    full = {f["fold"]: f["models"]["LAMM"][met] for f in folds if "LAMM" in f["models"]}
    names = list(dict.fromkeys(n for f in folds for n in f["ablations"]))
    head = " | ".join(f"K{i + 1}" for i in k)
    lines = [
        f"| Variant | {head} | Mean | Increase vs full | Folds worse | t | p |",
        "|" + "---|" * (len(k) + 6),
        "| LAMM (full) | "
        + " | ".join(f"{full[i]:.4f}" if i in full else "-" for i in k)
        + f" | {np.mean(list(full.values())):.4f} | - | - | - | - |",
    ]
    per: dict[str, dict[int, float]] = {}
    for name in names:
        v = {f["fold"]: f["ablations"][name][met] for f in folds if name in f["ablations"]}
        per[name] = v
        both = [i for i in k if i in v and i in full]
        ref = np.array([full[i] for i in both])
        ab = np.array([v[i] for i in both])
        row = " | ".join(f"{v[i]:.4f}" if i in v else "-" for i in k)
        worse = int((ab > ref).sum())
        if len(both) > 1:
            t, p = stats.ttest_rel(ref, ab)
            tp = f"{t:.2f} | {_p(p)}"
        else:
            tp = "- | -"
        lines.append(
            f"| {name} | {row} | {ab.mean():.4f} | {ab.mean() - ref.mean():+.5f} | {worse}/{len(both)} | {tp} |"
        )
    out = ["\n".join(lines)]
    mods = {ABLATION_MODALITY[n]: n for n in names if n in ABLATION_MODALITY}
    if mods and full:
        inc = {m: float(np.mean([per[n][i] - full[i] for i in per[n] if i in full])) for m, n in mods.items()}
        order = sorted(inc, key=lambda m: -inc[m])
        out.append("Order by mean MAE increase: " + " > ".join(f"{m} ({inc[m]:+.5f})" for m in order) + ".")
        # an order of increases means something only where removing a modality costs: count those
        hurt = []
        for m, n in mods.items():
            both = [i for i in per[n] if i in full]
            ref, ab = np.array([full[i] for i in both]), np.array([per[n][i] for i in both])
            if len(both) > 1 and ab.mean() > ref.mean() and stats.ttest_rel(ref, ab).pvalue < 0.05:
                hurt.append(m)
        out.append(
            f"Removing the modality raises MAE on the mean for {sum(v > 0 for v in inc.values())} of {len(inc)}; "
            f"significantly (paired, p < 0.05) for {len(hurt)}"
            + (f" ({', '.join(hurt)})" if hurt else "")
            + "."
        )
        truth = res.get("truth_importance")
        if truth:
            t_order = [m for m in truth["order"] if m in inc]
            share = truth.get("log_lift", {})
            out.append(
                "Simulator truth: "
                + " > ".join(f"{m} ({share.get(m, float('nan')):.3f})" for m in t_order)
                + f". Same order: **{order == t_order}**."
            )
            pair_lines = [
                "| Truth says | MAE increase, a vs b | a worse on folds | t (a vs b) | p |",
                "|---|---|---|---|---|",
            ]
            for a, b in zip(t_order, t_order[1:], strict=False):
                both = [i for i in k if i in per[mods[a]] and i in per[mods[b]]]
                if len(both) < 2:
                    continue
                xa = np.array([per[mods[a]][i] for i in both])
                xb = np.array([per[mods[b]][i] for i in both])
                t, p = stats.ttest_rel(xa, xb)  # t > 0: removing a hurts more than removing b
                pair_lines.append(
                    f"| {a} > {b} | {inc[a]:+.5f} vs {inc[b]:+.5f} | {int((xa > xb).sum())}/{len(both)} "
                    f"| {t:.2f} | {_p(p)} |"
                )
            if len(pair_lines) > 2:
                out.append("\n".join(pair_lines))
    return "\n\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="results.json of a (merged) evaluation that has LAMM and ablations")
    ap.add_argument("--metric", default="mae", choices=("mae", "mse", "mape"))
    a = ap.parse_args(argv)
    print(ablation_tables(json.loads(Path(a.results).read_text()), a.metric))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Experiment, not the served model: LAMM with trailing units appended to x's product part.

Appends log1p units lag 1 / 2 and 3- / 7-day rolling means (today included; zeros before day 0) to
``LammData.product_x`` and patches ``PRODUCT_DIM`` in the modules that size the model, then runs
one fold of the usual evaluation (LAMM + LightGBM). The stream cannot build these columns yet
(``ProductState`` keeps only the last closed day's units), so this only measures whether the
product's level, which LightGBM gets from explicit lags, is what LAMM is missing (docs/lamm.md).

    .venv/bin/python -m tests.bench.exp_lamm_lags FOLD [EPOCHS PATIENCE]   # -> runs/exp-lags-f<FOLD>[-e<EPOCHS>]
"""

from __future__ import annotations

import sys

import numpy as np

import inference.baselines as B
import inference.daily as D
import inference.lamm as LM
import inference.lamm_data as LD
from inference.lamm_train import TrainConfig, evaluate


def main(argv: list[str]) -> None:
    k = int(argv[0])
    ep, pa = (int(argv[1]), int(argv[2])) if len(argv) > 2 else (4, 1)
    data = LD.load_lamm_data("data/paper", in_memory=False)
    y = np.log1p(np.nan_to_num(data.units, nan=0.0))  # (P, D), what product_x's units column holds
    d = y.shape[1]

    def lag(a, j):
        out = np.zeros_like(a)
        out[:, j:] = a[:, :-j]
        return out

    def roll(a, w):
        c = np.cumsum(np.pad(a, ((0, 0), (1, 0))), axis=1)
        n = np.minimum(np.arange(1, d + 1), w)
        return (c[:, 1:] - c[:, np.maximum(np.arange(1, d + 1) - w, 0)]) / n

    extra = np.stack([lag(y, 1), lag(y, 2), roll(y, 3), roll(y, 7)], axis=-1).astype(np.float32)
    data.product_x = np.concatenate([data.product_x, extra], axis=2)
    for mod in (D, LM, LD, B):
        if hasattr(mod, "PRODUCT_DIM"):
            mod.PRODUCT_DIM = data.product_x.shape[2]
    out = f"runs/exp-lags-f{k}" + ("" if ep == 4 else f"-e{ep}")
    evaluate(data, out, folds=5, tc=TrainConfig(epochs=ep, patience=pa), models=("LAMM", "LightGBM"),
             ablations=(), only_folds=(k,))


if __name__ == "__main__":
    main(sys.argv[1:])

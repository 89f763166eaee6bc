"""Pilot: does the frame show the product the title names? ``inference.content_scores``' match
score (a CCA of the frames' product look and the title's brand token) against the truth.

The simulator's largest content term (``tp``) counts a video's product screen time only when the
title names the advertised product *and* the frames show that same product (25% of creators show
something else). The first v7 scores read "names the product" (the brand token) and "product on
screen" (the presence detector), not whether the two are the same product. The match score
(``fit_match`` / ``match_score``) reads it without a label. This prints how well it separates
``shows_advertised`` among held-out videos whose title names the product (AUC, from the
simulator's truth), and the cross-fitted linear R^2 of the true quality from the scores without
the three match columns, with them, and with the true ``shows_advertised`` in their place.

    .venv/bin/python -m tests.bench.match_pilot --data data/paper_content
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from inference import content_scores as CS


def main(argv: list[str] | None = None) -> dict:
    from sklearn.metrics import roc_auc_score

    from inference.lamm_data import load_lamm_data
    from tests.bench.encoder_probe import probe_r2
    from tests.bench.pe_score import _truth_videos, detector_scores, fit_detectors

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/paper_content")
    ap.add_argument("--annotated", type=int, default=2000)
    ap.add_argument(
        "--videos", type=int, default=30000, help="videos for the CCA (one half) and the read-out"
    )
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    root = Path(a.data)
    data = load_lamm_data(root)
    order = np.random.default_rng(a.seed).permutation(data.n_videos)
    annotated, rest = order[: a.annotated], order[a.annotated :][: a.videos]
    det = fit_detectors(data, root, annotated)
    rows = data.video_row[rest]
    frame, title = (np.asarray(data.features[k][rows], dtype=np.float32) for k in ("frame", "title"))
    mask = np.asarray(data.features["seg_mask"][rows], dtype=np.float32)
    _, names, look, brand = CS._product_reads(det, frame, mask, title)
    fit_half = np.arange(len(rest)) % 2 == 0
    det = replace(det, **CS.fit_match(look[fit_half & (names > 0.5)], brand[fit_half & (names > 0.5)]))
    match = CS.match_score(det, look, brand)
    truth = _truth_videos(data, root)
    shows = truth["shows_advertised"].to_numpy()[rest].astype(bool)
    named_true = truth["title_names_product"].to_numpy()[rest].astype(bool)
    held = named_true & ~fit_half
    s = detector_scores(data, det, rest).astype(np.float64)
    q = truth["quality"].to_numpy()[rest]
    idx = [CS.SCORES.index(k) for k in ("match", "names_x_match", "names_x_match_x_p")]
    without = np.delete(s, idx, axis=1)
    oracle = np.column_stack([without, s[:, CS.SCORES.index("names_x_p")] * shows])
    out = {
        "videos": int(len(rest)),
        "cca_videos": int((fit_half & (names > 0.5)).sum()),
        "auc_shows_advertised_named_heldout": round(float(roc_auc_score(shows[held], match[held])), 4),
        "quality_r2_without_match": round(probe_r2(without, q), 4),
        "quality_r2_with_match": round(probe_r2(s, q), 4),
        "quality_r2_with_true_shows": round(probe_r2(oracle, q), 4),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

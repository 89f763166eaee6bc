"""Pilot: content scores the "Engagement that Sells" way (PE-score), from detectors trained on a
small annotated set, and how much of a video's content quality they carry.

The PE-score paper scores a video by how much of its engagement falls on segments that show the
product: PE = sum_s presence_s x saliency_s / sum_s saliency_s, with presence from a product
detector and saliency from an engagement-saliency model. Here the detectors are ridge probes on
one segment's features, trained on ``--annotated`` videos whose per-segment labels are known
(the simulator's truth/seg_product.npy, seg_saliency.npy, seg_speech.npy stand in for an
annotation team's labels) and applied to every video:

- presence p_s from the frame segment, saliency e_s from the motion segment, "the voice talks
  about the product" a_s from the audio segment (each clipped to [0, 1]);
- "the title names the product" from the sum-pooled title tokens (truth/videos.parquet's
  ``title_names_product`` as the annotation).

A video's scores (``SCORES``): PE, the same with the voice (AF = sum a_s p_s / sum a_s), the
means of p, e and a, the title detector, and title x mean presence. Nothing of the sales is used.
``main`` prints the detectors' held-out R^2 and how well a cross-fitted linear read of the scores
recovers the true quality (R^2, as ``encoder_probe`` reports it for h_v and the pooled features).

    .venv/bin/python -m tests.bench.pe_score --data data/paper_content --annotated 2000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from inference import content_scores as CS

SCORES = CS.SCORES
_SEG_LABELS = (("frame", "seg_product"), ("motion", "seg_saliency"), ("audio", "seg_speech"))


def _rows(data, videos: np.ndarray, name: str) -> np.ndarray:
    return np.asarray(data.features[name][data.video_row[videos]], dtype=np.float32)


def fit_detectors(data, root: Path, annotated: np.ndarray) -> CS.Detectors:
    """``inference.content_scores.fit_detectors`` on the ``annotated`` videos (global indices),
    their labels read from the simulator's truth/ (the pilots ran before annotations/ existed)."""
    rows = data.video_row[annotated]
    labels = {}
    for modality, label in _SEG_LABELS:
        y = np.load(root / "truth" / f"{label}.npy", mmap_mode="r")
        labels[modality] = np.asarray(y[_truth_rows(data, root)[annotated]], dtype=np.float32)
    names = _truth_videos(data, root)["title_names_product"].to_numpy()[annotated].astype(np.float32)
    feats = [_rows(data, annotated, k) for k in ("frame", "motion", "audio")]
    mask = np.asarray(data.features["seg_mask"][rows], dtype=bool)
    return CS.fit_detectors(*feats, mask, _rows(data, annotated, "title"), labels, names)


def _truth_videos(data, root: Path) -> pd.DataFrame:
    t = pd.read_parquet(root / "truth" / "videos.parquet").set_index("video_id")
    return t.reindex(data.video_ids)


def _truth_rows(data, root: Path) -> np.ndarray:
    """(V,) row of each of data's videos in the truth/seg_*.npy arrays."""
    return _truth_videos(data, root)["feature_row"].to_numpy().astype(np.int64)


def scores_from_arrays(frame, motion, audio, seg_mask, title, det: CS.Detectors) -> np.ndarray:
    """(N, len(SCORES)) content scores of N videos' feature arrays (numpy or torch)."""
    return CS.scores(det, *(np.asarray(a, dtype=np.float32) for a in (frame, motion, audio, seg_mask, title)))


def detector_scores(
    data, det: CS.Detectors, videos: np.ndarray | None = None, chunk: int = 4096
) -> np.ndarray:
    """(len(videos), len(SCORES)) float32 content scores of ``videos`` (default: all)."""
    videos = np.arange(data.n_videos) if videos is None else np.asarray(videos)
    out = np.empty((len(videos), len(SCORES)), np.float32)
    for lo in range(0, len(videos), chunk):
        rows = data.video_row[videos[lo : lo + chunk]]
        out[lo : lo + len(rows)] = CS.scores(
            det, *(data.features[k][rows] for k in ("frame", "motion", "audio", "seg_mask", "title"))
        )
    return out


def main(argv: list[str] | None = None) -> dict:
    from inference.lamm_data import load_lamm_data
    from tests.bench.encoder_probe import probe_r2

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/paper_content")
    ap.add_argument("--annotated", type=int, default=2000, help="videos with per-segment labels")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    root = Path(a.data)
    data = load_lamm_data(root)
    rng = np.random.default_rng(a.seed)
    order = rng.permutation(data.n_videos)
    annotated, rest = order[: a.annotated], order[a.annotated :][:20000]
    det = fit_detectors(data, root, annotated)
    truth = _truth_videos(data, root)
    out: dict = {"annotated": a.annotated}
    # the detectors on held-out videos' segments
    rows = data.video_row[rest[:5000]]
    mask = np.asarray(data.features["seg_mask"][rows], dtype=bool)
    for modality, label in _SEG_LABELS:
        y = np.asarray(
            np.load(root / "truth" / f"{label}.npy", mmap_mode="r")[_truth_rows(data, root)[rest[:5000]]]
        )
        pred = np.clip(CS._apply(_rows(data, rest[:5000], modality)[mask], getattr(det, modality)), 0, 1)
        out[f"r2_{label}"] = round(float(1 - np.mean((pred - y[mask]) ** 2) / np.var(y[mask])), 3)
    s = detector_scores(data, det, rest)
    for name, col in (("pe", "pe"), ("af", "af"), ("p_mean", "p_mean"), ("names", "title_names_product")):
        out[f"corr_{name}"] = round(
            float(np.corrcoef(s[:, SCORES.index(name)], truth[col].to_numpy()[rest])[0, 1]), 3
        )
    q = truth["quality"].to_numpy()[rest]
    out["quality_r2_linear_scores"] = round(probe_r2(s.astype(np.float64), q), 3)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

"""The on-disk dataset format: what the simulator writes and what training reads.

A user with real data fills the same layout (parquet tables + .npy feature arrays) and runs
``liftstream train`` / ``liftstream fit-fei`` on it. Ground truth lives in ``truth/`` and only
evaluation and tests read it; a real dataset simply has no ``truth/`` folder.

    <dataset>/
      meta.json                  {"format": "liftstream-dataset", "version": 1, "start_date": "2026-01-01",
                                  "n_days": 14, "feature_dim": 128, "max_segments": 20, "max_title_tokens": 32, ...}
      products.parquet           PRODUCTS
      influencers.parquet        INFLUENCERS
      videos.parquet             VIDEOS      (row i <-> features/*.npy row i: ``feature_row``)
      engagement.parquet         ENGAGEMENT  (one row per video per day it is active)
      sales.parquet              SALES       (one row per product per day)
      features/frame.npy         float16 (N_videos, MAX_SEGMENTS, FEATURE_DIM), zero-padded
      features/motion.npy        float16 (N_videos, MAX_SEGMENTS, FEATURE_DIM)
      features/audio.npy         float16 (N_videos, MAX_SEGMENTS, FEATURE_DIM)
      features/seg_mask.npy      bool    (N_videos, MAX_SEGMENTS)   True = real segment
      features/title.npy         float16 (N_videos, MAX_TITLE_TOKENS, FEATURE_DIM)
      features/title_mask.npy    bool    (N_videos, MAX_TITLE_TOKENS)
      truth/                     simulator only (see inference.sim for what each file holds)

Days are integers counted from ``meta.json``'s ``start_date`` (day 0). ``validate_dataset``
checks a folder against this contract and says what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas import limits as L

FORMAT = "liftstream-dataset"
VERSION = 1

PRODUCTS = pa.schema(
    [
        ("product_id", pa.string()),
        ("category", pa.string()),  # one of limits.PRODUCT_CATEGORIES
        ("price", pa.float64()),  # list price
        ("rating", pa.float64()),  # 0..100
        ("history_sales", pa.int64()),  # units sold before the window
        ("history_videos", pa.int64()),  # videos before the window
    ]
)
INFLUENCERS = pa.schema(
    [
        ("influencer_id", pa.string()),
        ("followers", pa.int64()),  # at the start of the window
        ("past_avg_hearts", pa.float64()),  # instrument of the FEI paper
        ("verified", pa.bool_()),
        ("city_tier", pa.string()),  # one of limits.CITY_TIERS
        ("age", pa.int32()),
    ]
)
VIDEOS = pa.schema(
    [
        ("video_id", pa.string()),
        ("product_id", pa.string()),
        ("influencer_id", pa.string()),
        ("publish_day", pa.int32()),
        ("create_hour", pa.int32()),
        ("video_type", pa.string()),  # one of limits.VIDEO_TYPES
        ("length_s", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("size_mb", pa.float64()),
        ("title", pa.string()),
        ("followers", pa.int64()),  # the influencer's followers at publish
        ("past_avg_hearts", pa.float64()),  # the influencer's past average hearts at publish
        ("n_segments", pa.int32()),
        ("feature_row", pa.int64()),
        ("impressions_14d", pa.int64()),  # two-week impressions: the FEI outcome
    ]
)
ENGAGEMENT = pa.schema(
    [
        ("video_id", pa.string()),
        ("product_id", pa.string()),
        ("day", pa.int32()),
        ("likes", pa.int64()),
        ("comments", pa.int64()),
        ("shares", pa.int64()),
        ("collects", pa.int64()),
        ("impressions", pa.int64()),
    ]
)
SALES = pa.schema(
    [
        ("product_id", pa.string()),
        ("day", pa.int32()),
        ("units", pa.int64()),
        ("price", pa.float64()),
        ("rating", pa.float64()),
    ]
)

TABLES = {
    "products": PRODUCTS,
    "influencers": INFLUENCERS,
    "videos": VIDEOS,
    "engagement": ENGAGEMENT,
    "sales": SALES,
}

FEATURES = {
    # name -> (dtype, shape after the leading N_videos axis)
    "frame": (np.float16, (L.MAX_SEGMENTS, L.FEATURE_DIM)),
    "motion": (np.float16, (L.MAX_SEGMENTS, L.FEATURE_DIM)),
    "audio": (np.float16, (L.MAX_SEGMENTS, L.FEATURE_DIM)),
    "seg_mask": (np.bool_, (L.MAX_SEGMENTS,)),
    "title": (np.float16, (L.MAX_TITLE_TOKENS, L.FEATURE_DIM)),
    "title_mask": (np.bool_, (L.MAX_TITLE_TOKENS,)),
}


# Optional annotations/ folder: per-segment labels of a sample of videos, as an annotation team (or
# a product detector) would give them. inference.content_scores trains its detectors on them.
#   annotations/videos.parquet  video_id, title_names_product (bool), one row per annotated video
#   annotations/segments.npy    (N, MAX_SEGMENTS, 3) float16 in [0, 1], the parquet's row order:
ANNOTATION_LABELS = ("presence", "saliency", "speech")  # product on screen, engagement, voice on the product
ANNOTATION_VIDEOS = pa.schema([("video_id", pa.string()), ("title_names_product", pa.bool_())])


class DatasetError(ValueError):
    """A dataset folder does not follow the format; the message says where."""


def read_meta(root: str | Path) -> dict:
    path = Path(root) / "meta.json"
    if not path.exists():
        raise DatasetError(f"{path}: missing (not a {FORMAT} folder)")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DatasetError(
            f"{path}: expected format={FORMAT!r} version={VERSION}, got {meta.get('format')!r} {meta.get('version')!r}"
        )
    return meta


def read_table(root: str | Path, name: str) -> pa.Table:
    """Read one table and cast it to the contract's schema (extra columns are kept)."""
    path = Path(root) / f"{name}.parquet"
    if not path.exists():
        raise DatasetError(f"{path}: missing")
    table = pq.read_table(path)
    want = TABLES[name]
    missing = [f.name for f in want if f.name not in table.column_names]
    if missing:
        raise DatasetError(f"{path}: missing columns {missing}")
    cols = [table.column(f.name).cast(f.type) for f in want]
    extra = [c for c in table.column_names if c not in want.names]
    return pa.Table.from_arrays(cols + [table.column(c) for c in extra], names=want.names + extra)


def load_features(root: str | Path, mmap: bool = True) -> dict[str, np.ndarray]:
    """Feature arrays, memory-mapped by default (paper scale is ~2 GB in float16)."""
    out = {}
    for name, (dtype, shape) in FEATURES.items():
        path = Path(root) / "features" / f"{name}.npy"
        if not path.exists():
            raise DatasetError(f"{path}: missing")
        arr = np.load(path, mmap_mode="r" if mmap else None)
        if arr.dtype != dtype or arr.shape[1:] != shape:
            raise DatasetError(
                f"{path}: expected {np.dtype(dtype).name} (N, {', '.join(map(str, shape))}), got {arr.dtype} {arr.shape}"
            )
        out[name] = arr
    n = {a.shape[0] for a in out.values()}
    if len(n) != 1:
        raise DatasetError(
            f"{root}/features: arrays disagree on the number of videos: { {k: v.shape[0] for k, v in out.items()} }"
        )
    return out


def read_annotations(root: str | Path) -> tuple[pa.Table, np.ndarray] | None:
    """(annotations/videos.parquet, annotations/segments.npy), or None when the folder has none."""
    folder = Path(root) / "annotations"
    if not folder.exists():
        return None
    vpath, spath = folder / "videos.parquet", folder / "segments.npy"
    for path in (vpath, spath):
        if not path.exists():
            raise DatasetError(f"{path}: missing (annotations/ needs videos.parquet and segments.npy)")
    table = pq.read_table(vpath)
    missing = [f.name for f in ANNOTATION_VIDEOS if f.name not in table.column_names]
    if missing:
        raise DatasetError(f"{vpath}: missing columns {missing}")
    table = pa.Table.from_arrays(
        [table.column(f.name).cast(f.type) for f in ANNOTATION_VIDEOS], names=ANNOTATION_VIDEOS.names
    )
    seg = np.load(spath)
    want = (table.num_rows, L.MAX_SEGMENTS, len(ANNOTATION_LABELS))
    if seg.shape != want:
        raise DatasetError(f"{spath}: expected shape {want} (one row per annotated video), got {seg.shape}")
    if (
        table.column("video_id").null_count
        or len(set(table.column("video_id").to_pylist())) != table.num_rows
    ):
        raise DatasetError(f"{vpath}: video_id must be unique and not null")
    seg = seg.astype(np.float32)
    if not np.isfinite(seg).all() or seg.min() < 0 or seg.max() > 1:
        raise DatasetError(f"{spath}: labels must be finite and in [0, 1]")
    videos = Path(root) / "videos.parquet"
    if videos.exists():
        known = set(pq.read_table(videos, columns=["video_id"]).column("video_id").to_pylist())
        unknown = [v for v in table.column("video_id").to_pylist() if v not in known]
        if unknown:
            raise DatasetError(f"{vpath}: {len(unknown)} video_id not in videos.parquet, e.g. {unknown[:3]}")
    return table, seg


def annotations_for(root: str | Path, video_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``read_annotations`` in a caller's video order: (positions in ``video_ids`` of the annotated
    videos among them, their (n, S, 3) float32 labels, their (n,) float32 "title names the product"),
    or None without annotations/. Annotated videos outside ``video_ids`` are left out (a caller that
    reads part of the dataset, e.g. the days up to a cut)."""
    ann = read_annotations(root)
    if ann is None:
        return None
    table, seg = ann
    vid = np.asarray(video_ids, dtype=object)
    pos_of = {v: i for i, v in enumerate(vid.tolist())}
    ids = table.column("video_id").to_pylist()
    known = np.array([v in pos_of for v in ids], dtype=bool)
    pos = np.array([pos_of[v] for v, k in zip(ids, known, strict=True) if k], dtype=np.int64)
    names = table.column("title_names_product").to_numpy(zero_copy_only=False)
    return pos, seg[known], names[known].astype(np.float32)


def validate_dataset(root: str | Path) -> dict:
    """Check a dataset folder against the contract; return its meta. Raises DatasetError."""
    meta = read_meta(root)
    tables = {name: read_table(root, name) for name in TABLES}
    feats = load_features(root)
    n_videos = tables["videos"].num_rows
    rows = np.asarray(tables["videos"].column("feature_row"))
    n_feat = next(iter(feats.values())).shape[0]
    if n_videos and (rows.min() < 0 or rows.max() >= n_feat):
        raise DatasetError(f"{root}: videos.feature_row out of range [0, {n_feat})")
    vid = set(tables["videos"].column("video_id").to_pylist())
    if len(vid) != n_videos:
        raise DatasetError(f"{root}/videos.parquet: duplicate video_id")
    prods = set(tables["products"].column("product_id").to_pylist())
    bad = set(tables["videos"].column("product_id").to_pylist()) - prods
    if bad:
        raise DatasetError(f"{root}/videos.parquet: unknown product_id, e.g. {sorted(bad)[:3]}")
    bad = set(tables["engagement"].column("video_id").to_pylist()) - vid
    if bad:
        raise DatasetError(f"{root}/engagement.parquet: unknown video_id, e.g. {sorted(bad)[:3]}")
    return meta

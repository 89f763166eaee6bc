"""Write a simulated World in the on-disk dataset format of schemas.dataset, plus truth/.

    <out>/meta.json, products|influencers|videos|engagement|sales.parquet, features/*.npy
    <out>/truth/   (see docs/simulator.md for every file)

The folder passes ``schemas.dataset.validate_dataset``; training reads it like a real dataset
and only evaluation / tests look into truth/.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from schemas import dataset as DS
from schemas import limits as L


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def dataset_meta(world) -> dict:
    cfg = world.config
    start = date.fromisoformat(cfg.start_date)
    return {
        "format": DS.FORMAT,
        "version": DS.VERSION,
        "start_date": cfg.start_date,
        "end_date": (start + timedelta(days=cfg.n_days - 1)).isoformat(),
        "n_days": cfg.n_days,
        "feature_dim": L.FEATURE_DIM,
        "max_segments": L.MAX_SEGMENTS,
        "max_title_tokens": L.MAX_TITLE_TOKENS,
        "segment_seconds": L.SEGMENT_SECONDS,
        "window_days": L.WINDOW_DAYS,
        "n_products": world.tables["products"].num_rows,
        "n_influencers": world.tables["influencers"].num_rows,
        "n_videos": world.tables["videos"].num_rows,
        "features_synthesized": bool(cfg.features),
        "has_truth": True,
        **world.meta,
        "sim_config": dataclasses.asdict(cfg),
    }


ANNOTATION_SEED = 0xA4407  # mixed with the world's seed: which videos are annotated


def annotations(world) -> tuple[pa.Table, np.ndarray] | None:
    """The annotations/ of ``world`` (schemas.dataset): ``config.annotated_videos`` videos drawn
    at random, their per-segment latents (product on screen, engagement saliency, voice about the
    product) and whether the title names the product, as an annotation team would label them."""
    tv = world.truth["videos"]
    n = min(world.config.annotated_videos, tv.num_rows)
    if n == 0:
        return None
    rng = np.random.default_rng([world.config.seed, ANNOTATION_SEED])
    idx = np.sort(rng.choice(tv.num_rows, n, replace=False))
    rows = np.asarray(tv.column("feature_row"))[idx]
    seg = np.stack([world.truth[k][rows] for k in ("seg_product", "seg_saliency", "seg_speech")], axis=-1)
    table = pa.table(
        {
            "video_id": tv.column("video_id").take(pa.array(idx)),
            "title_names_product": tv.column("title_names_product").take(pa.array(idx)),
        },
        schema=DS.ANNOTATION_VIDEOS,
    )
    return table, seg.astype(np.float16)


def _annotation_steps(world, root: Path) -> list:
    ann = annotations(world)
    if ann is None:
        return []
    (root / "annotations").mkdir(exist_ok=True)
    table, seg = ann
    return [
        (
            "annotations/videos.parquet",
            lambda: pq.write_table(table, root / "annotations" / "videos.parquet"),
        ),
        ("annotations/segments.npy", lambda: np.save(root / "annotations" / "segments.npy", seg)),
    ]


def write_dataset(world, path: str | Path, progress: bool = False) -> Path:
    """Write ``world`` to ``path`` (created; existing files of the format are overwritten)."""
    root = Path(path)
    (root / "features").mkdir(parents=True, exist_ok=True)
    (root / "truth").mkdir(exist_ok=True)
    steps = [
        (f"{name}.parquet", lambda n=name: pq.write_table(world.tables[n], root / f"{n}.parquet"))
        for name in DS.TABLES
    ]
    steps += [
        (f"features/{name}.npy", lambda n=name: np.save(root / "features" / f"{n}.npy", world.features[n]))
        for name in DS.FEATURES
    ]
    for name, obj in world.truth.items():
        if isinstance(obj, pa.Table):
            steps.append(
                (
                    f"truth/{name}.parquet",
                    lambda o=obj, n=name: pq.write_table(o, root / "truth" / f"{n}.parquet"),
                )
            )
        elif isinstance(obj, np.ndarray):
            steps.append((f"truth/{name}.npy", lambda o=obj, n=name: np.save(root / "truth" / f"{n}.npy", o)))
        else:
            steps.append(
                (
                    f"truth/{name}.json",
                    lambda o=obj, n=name: (root / "truth" / f"{n}.json").write_text(
                        json.dumps(o, indent=2, default=_json_default)
                    ),
                )
            )
    steps += _annotation_steps(world, root)
    for _, write in tqdm(steps, desc="write", unit="file", disable=not progress):
        write()
    # meta.json last: a folder with meta.json is a complete dataset
    (root / "meta.json").write_text(json.dumps(dataset_meta(world), indent=2, default=_json_default))
    return root

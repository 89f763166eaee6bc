"""Replay a dataset folder (real or simulated) as the input event stream of schemas.events.

Stream order, for each day d = 0 .. n_days - 1:

1. ``VideoPublished`` for the videos published on day d, by publish time;
2. ``EngagementDaily`` for every video active on day d (its daily increments), in publish order;
3. one ``SalesDaily`` per product with a sales row for day d, by product id: it closes the day.

The dataset has a create hour but no minute, so publish times within one (day, hour) are spread
evenly over the hour in video-id order: deterministic, and the same for every replay. Event ids
are deterministic too: ``v:<video_id>``, ``e:<video_id>:<day>``, ``s:<product_id>:<day>``.

``iter_events`` yields validated pydantic events (the reference); ``iter_event_batches`` yields the
same content as per-day numpy columns for the embedded runner; ``write_events_jsonl`` writes one
``schemas.events.event_json`` line per event.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

from schemas import dataset as DS
from schemas.events import (
    EngagementDaily,
    InfluencerSnapshot,
    ProductSnapshot,
    SalesDaily,
    SegmentFeatures,
    VideoPublished,
    event_json,
)

ENGAGEMENT_COUNTS = ("likes", "comments", "shares", "collects", "impressions")


@dataclass
class DayBatch:
    """One day of the stream as columns (the order of each dict's rows is the stream order)."""

    day: int
    date: date
    videos: dict[
        str, np.ndarray
    ]  # videos.parquet columns + "ts" (datetime64[s]) + product/influencer columns
    engagement: dict[str, np.ndarray]  # engagement.parquet columns
    sales: dict[str, np.ndarray]  # sales.parquet columns


def _columns(table) -> dict[str, np.ndarray]:
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _take(cols: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in cols.items()}


class _Replay:
    """A dataset folder loaded once and indexed by day."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.meta = DS.validate_dataset(self.root)
        self.start = date.fromisoformat(self.meta["start_date"])
        videos = _columns(DS.read_table(self.root, "videos"))
        products = _columns(DS.read_table(self.root, "products"))
        infl = _columns(DS.read_table(self.root, "influencers"))
        eng = _columns(DS.read_table(self.root, "engagement"))
        sales = _columns(DS.read_table(self.root, "sales"))

        # join product and influencer attributes onto the videos
        p_index = {p: i for i, p in enumerate(products["product_id"])}
        i_index = {p: i for i, p in enumerate(infl["influencer_id"])}
        pi = np.array([p_index[p] for p in videos["product_id"]], dtype=np.int64)
        ii = np.array([i_index.get(x, -1) for x in videos["influencer_id"]], dtype=np.int64)
        if (ii < 0).any():
            bad = videos["influencer_id"][ii < 0][:3]
            raise DS.DatasetError(f"{self.root}/videos.parquet: unknown influencer_id, e.g. {list(bad)}")
        videos["category"] = products["category"][pi]
        videos["list_price"] = products["price"][pi]
        videos["history_sales"] = products["history_sales"][pi]
        videos["history_videos"] = products["history_videos"][pi]
        videos["verified"] = infl["verified"][ii]
        videos["city_tier"] = infl["city_tier"][ii]
        videos["age"] = infl["age"][ii]

        # publish order and times
        order = np.lexsort((videos["video_id"], videos["create_hour"], videos["publish_day"]))
        videos = _take(videos, order)
        key = videos["publish_day"].astype(np.int64) * 24 + videos["create_hour"]
        first = np.r_[True, key[1:] != key[:-1]]
        group_start = np.maximum.accumulate(np.where(first, np.arange(key.size), 0))
        rank = np.arange(key.size) - group_start
        size = np.bincount(np.cumsum(first) - 1)[np.cumsum(first) - 1]
        seconds = key * 3600 + (rank * 3600) // np.maximum(size, 1)
        videos["ts"] = np.datetime64(self.start.isoformat(), "s") + seconds.astype("timedelta64[s]")
        self.videos = videos
        self.publish_rank = {v: i for i, v in enumerate(videos["video_id"])}

        e_rank = np.array([self.publish_rank.get(v, -1) for v in eng["video_id"]], dtype=np.int64)
        early = eng["day"] < videos["publish_day"][e_rank]
        if early.any():
            i = int(np.argmax(early))
            raise DS.DatasetError(
                f"{self.root}/engagement.parquet: video {eng['video_id'][i]} has engagement on day "
                f"{eng['day'][i]} before its publish day {videos['publish_day'][e_rank[i]]}"
            )
        eo = np.lexsort((e_rank, eng["day"]))
        self.engagement = _take(eng, eo)
        so = np.lexsort((sales["product_id"], sales["day"]))
        self.sales = _take(sales, so)

        days = [int(self.meta.get("n_days", 0)) - 1]
        for cols, col in ((self.videos, "publish_day"), (self.engagement, "day"), (self.sales, "day")):
            if cols[col].size:
                days.append(int(cols[col].max()))
        self.n_days = max(days) + 1
        self._v_bounds = np.searchsorted(self.videos["publish_day"], np.arange(self.n_days + 1))
        self._e_bounds = np.searchsorted(self.engagement["day"], np.arange(self.n_days + 1))
        self._s_bounds = np.searchsorted(self.sales["day"], np.arange(self.n_days + 1))

    def batch(self, d: int) -> DayBatch:
        sl = lambda b: slice(int(b[d]), int(b[d + 1]))  # noqa: E731
        return DayBatch(
            day=d,
            date=self.start + timedelta(days=d),
            videos={k: v[sl(self._v_bounds)] for k, v in self.videos.items()},
            engagement={k: v[sl(self._e_bounds)] for k, v in self.engagement.items()},
            sales={k: v[sl(self._s_bounds)] for k, v in self.sales.items()},
        )


def iter_event_batches(dataset_path: str | Path) -> Iterator[DayBatch]:
    """The stream as per-day column batches (fast path; same order and content as iter_events)."""
    replay = _Replay(dataset_path)
    for d in range(replay.n_days):
        yield replay.batch(d)


def iter_events(
    dataset_path: str | Path, inline_features: bool = True
) -> Iterator[VideoPublished | EngagementDaily | SalesDaily]:
    """Validated input events of a dataset folder in stream order (see the module docstring).

    ``inline_features=True`` embeds each video's real segments / title tokens as float16
    ``SegmentFeatures``; False gives ``media_uri="dataset://<abs path>#row=<feature_row>"``.
    """
    replay = _Replay(dataset_path)
    feats = DS.load_features(replay.root) if inline_features else None
    for d in range(replay.n_days):
        b = replay.batch(d)
        v = b.videos
        for i in range(v["video_id"].size):
            row = int(v["feature_row"][i])
            features, uri = None, None
            if feats is not None:
                seg, tok = feats["seg_mask"][row], feats["title_mask"][row]
                features = SegmentFeatures.from_arrays(
                    feats["frame"][row][seg],
                    feats["motion"][row][seg],
                    feats["audio"][row][seg],
                    feats["title"][row][tok],
                )
            else:
                uri = f"dataset://{replay.root}#row={row}"
            ts = v["ts"][i].astype(datetime)
            age = int(v["age"][i])
            yield VideoPublished(
                event_id=f"v:{v['video_id'][i]}",
                ts=ts,
                day=b.date,
                video_id=v["video_id"][i],
                product_id=v["product_id"][i],
                influencer=InfluencerSnapshot(
                    influencer_id=v["influencer_id"][i],
                    followers=int(v["followers"][i]),
                    past_avg_hearts=float(v["past_avg_hearts"][i]),
                    verified=bool(v["verified"][i]),
                    city_tier=v["city_tier"][i],
                    age=age if 1 <= age <= 120 else None,
                ),
                product=ProductSnapshot(
                    category=v["category"][i],
                    price=float(v["list_price"][i]),
                    history_sales=int(v["history_sales"][i]),
                    history_videos=int(v["history_videos"][i]),
                ),
                video_type=v["video_type"][i],
                length_s=float(v["length_s"][i]),
                width=int(v["width"][i]),
                height=int(v["height"][i]),
                size_mb=float(v["size_mb"][i]),
                create_hour=int(v["create_hour"][i]),
                title=v["title"][i],
                media_uri=uri,
                features=features,
            )
        e = b.engagement
        for i in range(e["video_id"].size):
            yield EngagementDaily(
                event_id=f"e:{e['video_id'][i]}:{d}",
                day=b.date,
                video_id=e["video_id"][i],
                product_id=e["product_id"][i],
                **{k: int(e[k][i]) for k in ENGAGEMENT_COUNTS},
            )
        s = b.sales
        for i in range(s["product_id"].size):
            yield SalesDaily(
                event_id=f"s:{s['product_id'][i]}:{d}",
                day=b.date,
                product_id=s["product_id"][i],
                units=int(s["units"][i]),
                price=float(s["price"][i]),
                rating=float(s["rating"][i]),
            )


def write_events_jsonl(
    dataset_path: str | Path, out_file: str | Path, inline_features: bool = True, progress: bool = False
) -> int:
    """Write the stream as JSON lines (``event_json``); returns the number of events."""
    from tqdm import tqdm

    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with out.open("w", encoding="utf-8") as f:
        for ev in tqdm(
            iter_events(dataset_path, inline_features), desc="events", unit="ev", disable=not progress
        ):
            f.write(event_json(ev))
            f.write("\n")
            n += 1
    return n

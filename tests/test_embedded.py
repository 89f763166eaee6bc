"""The embedded run end to end: simulated tiny world -> Processor -> chdb -> report."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from inference.sim import simulate
from inference.sim.events import write_events_jsonl
from streams.embedded import run
from streams.settings import Settings
from streams.sinks import ChdbStore


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("world") / "tiny"
    simulate("tiny", seed=3).write_dataset(path)
    return path


def _settings(tmp: Path) -> Settings:
    return Settings(
        home=tmp / "home", store=f"chdb://{tmp / 'chdb'}", forecaster="standin", advisor="standin"
    )


def _rows(store_dir: Path, sql: str) -> list[tuple]:
    store = ChdbStore(store_dir, "liftstream")
    try:
        return store.query(sql)
    finally:
        store.close()


def test_embedded_run_writes_every_row_once_and_a_report(tiny_world, tmp_path):
    res = run(_settings(tmp_path), dataset=tiny_world, out_dir=tmp_path / "out", progress=False)
    videos = pq.read_table(tiny_world / "videos.parquet")
    eng = pq.read_table(tiny_world / "engagement.parquet")
    sales = pq.read_table(tiny_world / "sales.parquet")
    n_prod = len(set(sales.column("product_id").to_pylist()))
    n_days = len(set(sales.column("day").to_pylist()))
    assert res.n_events == videos.num_rows + eng.num_rows + sales.num_rows
    assert res.counts["applied"] == res.n_events and res.counts["dead_letter"] == 0

    store_dir = tmp_path / "chdb"
    got = dict(
        _rows(
            store_dir,
            """
        SELECT 'videos', count() FROM liftstream.videos FINAL UNION ALL
        SELECT 'engagement', count() FROM liftstream.engagement_daily FINAL UNION ALL
        SELECT 'sales', count() FROM liftstream.sales_daily FINAL UNION ALL
        SELECT 'day_close', count() FROM liftstream.forecasts FINAL WHERE kind = 'day_close' UNION ALL
        SELECT 'provisional', count() FROM liftstream.forecasts FINAL WHERE kind = 'provisional' UNION ALL
        SELECT 'advice', count() FROM liftstream.advice FINAL""",
        )
    )
    assert got == {
        "videos": videos.num_rows,
        "engagement": eng.num_rows,
        "sales": sales.num_rows,
        "day_close": n_prod * n_days,  # one per product per closed day
        "provisional": videos.num_rows,  # one per new video
        "advice": videos.num_rows,
    }
    # the seasonal-naive stand-in forecasts tomorrow = today: check it through the store
    pairs = _rows(
        store_dir,
        """
        SELECT f.point, s.units FROM
          (SELECT product_id, issued_day, point FROM liftstream.forecasts FINAL WHERE kind = 'day_close') AS f
          INNER JOIN (SELECT product_id, day, units FROM liftstream.sales_daily FINAL) AS s
          ON f.product_id = s.product_id AND f.issued_day = s.day""",
    )
    assert len(pairs) == n_prod * n_days
    assert all(abs(p - u) <= 1e-4 * max(u, 1) for p, u in pairs)

    report = (tmp_path / "out" / "report.html").read_text()
    assert "LiftStream run report" in report and "forecast_vs_actual.png" in report
    assert (tmp_path / "out" / "forecast_vs_actual.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["counts"]["forecasts"] == n_prod * n_days + videos.num_rows
    assert 0.0 <= summary["accuracy_all"]["coverage"] <= 1.0


def test_rerun_replaces_tables_and_reproduces_rows(tiny_world, tmp_path):
    settings = _settings(tmp_path)
    sql = "SELECT product_id, target_day, kind, revision, point, lower, upper FROM liftstream.forecasts FINAL ORDER BY 1, 2, 3, 4"
    run(settings, dataset=tiny_world, out_dir=tmp_path / "a", progress=False, report=False)
    first = _rows(tmp_path / "chdb", sql)
    run(settings, dataset=tiny_world, out_dir=tmp_path / "b", progress=False, report=False)
    assert _rows(tmp_path / "chdb", sql) == first and len(first) > 0


def test_event_file_with_bad_lines_dead_letters_them(tiny_world, tmp_path):
    events = tmp_path / "events.jsonl"
    write_events_jsonl(tiny_world, events, inline_features=True)
    lines = events.read_bytes().splitlines()
    bad = [b"{oops", b'{"type": "sales_daily", "event_id": "z"}', lines[-1]]  # broken, incomplete, duplicate
    events.write_bytes(b"\n".join(lines + bad) + b"\n")
    res = run(
        _settings(tmp_path),
        dataset=None,
        events=events,
        out_dir=tmp_path / "out",
        progress=False,
        report=False,
    )
    assert res.n_events == len(lines) + 3
    assert res.counts["dead_letter"] == 2 and res.counts["duplicate"] == 1
    assert res.counts["applied"] == len(lines)
    dl = _rows(tmp_path / "chdb", "SELECT error_type, raw FROM liftstream.dead_letters FINAL ORDER BY raw")
    assert dl == [
        ("ValidationError", '{"type": "sales_daily", "event_id": "z"}'),
        ("ValidationError", "{oops"),
    ]


def test_dataset_references_resolve_and_unsupported_media_is_dead_lettered(tiny_world):
    import asyncio

    import numpy as np

    from inference.client import AsyncInProcessClient, InProcessClient
    from inference.sim.events import iter_events
    from inference.standin import ConstantElasticityAdvisor, SeasonalNaiveForecaster
    from schemas.events import VideoPublished
    from schemas.outputs import DeadLetter
    from streams.processor import Processor, replay_clock
    from streams.scoring import FeatureResolver

    videos = [e for e in iter_events(tiny_world, inline_features=False) if isinstance(e, VideoPublished)][:5]
    bad = videos[1].model_copy(
        update={"media_uri": "s3://bucket/video.mp4", "event_id": "v:bad", "video_id": "bad"}
    )
    batch, errors = FeatureResolver().resolve([videos[0], bad, videos[2]])
    assert list(errors) == [1] and "extractors" in errors[1]
    assert not batch.seg_mask[1].any() and not batch.frame[1].any()  # the failed row is zero padding
    row = int(videos[2].media_uri.rsplit("=", 1)[1])
    feats = np.load(tiny_world / "features" / "frame.npy", mmap_mode="r")
    np.testing.assert_array_equal(batch.frame[2], feats[row].astype(np.float32))

    client = AsyncInProcessClient(InProcessClient(SeasonalNaiveForecaster(), ConstantElasticityAdvisor()))
    proc = asyncio.run(Processor.create(client, {}, clock=replay_clock))
    out = asyncio.run(proc.process([videos[0], bad, videos[2]]))
    assert out.counts["applied"] == 2 and out.counts["dead_letter"] == 1
    (dead,) = [r for r in out.rows if isinstance(r, DeadLetter)]
    assert dead.error_type == "UnsupportedMedia" and '"video_id":"bad"' in dead.raw


def test_embedded_run_serves_a_content_lamm(tiny_world, tmp_path):
    """forecaster auto on a world with annotations: LAMM with the content-lift channel is trained
    and served through the same Processor (encodings [h_v, q_v], the channel in x)."""
    settings = Settings(
        home=tmp_path / "home", store=f"chdb://{tmp_path / 'chdb'}", forecaster="auto", advisor="standin"
    )
    res = run(settings, dataset=tiny_world, out_dir=tmp_path / "out", progress=False)
    assert res.counts["dead_letter"] == 0 and res.counts["applied"] == res.n_events
    ckpts = list((tmp_path / "home" / "models" / "lamm").glob("lamm-*"))
    assert len(ckpts) == 1 and (ckpts[0] / "content.npz").exists()
    versions = _rows(tmp_path / "chdb", "SELECT DISTINCT model_version FROM liftstream.forecasts FINAL")
    assert len(versions) == 1 and versions[0][0].startswith("lamm-")

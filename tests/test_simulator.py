"""The synthetic ISA world: determinism, marginals, the FEI instrument, the event stream, the
dataset round trip and the cross-modal structure of the sales lift (tiny preset, seconds)."""

from __future__ import annotations

import dataclasses
import json
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inference.sim import PRESETS, SimConfig, simulate
from inference.sim import physics as PH
from inference.sim.events import iter_event_batches, iter_events, write_events_jsonl
from inference.sim.truth import CURVE_CODES, GRID, read_truth, true_fei, true_log_impressions
from schemas import dataset as DS
from schemas import limits as L
from schemas.events import EngagementDaily, SalesDaily, VideoPublished, parse_event


@pytest.fixture(scope="module")
def world():
    return simulate("tiny", seed=0)


@pytest.fixture(scope="module")
def big_tables():
    """A larger world without features: enough videos for the regression checks, still fast."""
    return simulate(dataclasses.replace(PRESETS["tiny"], n_products=150, features=False), seed=3)


@pytest.fixture(scope="module")
def dataset(world, tmp_path_factory):
    return world.write_dataset(tmp_path_factory.mktemp("tiny") / "ds")


def col(world, table, name):
    return np.asarray(world.tables[table].column(name))


# ---------------------------------------------------------------------------------------------
# determinism and config


def test_same_seed_same_world_different_seed_different_world(world):
    again = simulate("tiny", seed=0)
    for name in DS.TABLES:
        assert again.tables[name].equals(world.tables[name]), name
    for name in DS.FEATURES:
        np.testing.assert_array_equal(again.features[name], world.features[name], err_msg=name)
    assert again.truth["videos"].equals(world.truth["videos"])
    other = simulate("tiny", seed=1)
    assert not np.array_equal(col(other, "sales", "units"), col(world, "sales", "units"))
    assert other.features["frame"].shape[0] != world.features["frame"].shape[0] or not np.array_equal(
        other.features["frame"], world.features["frame"]
    )


def test_features_off_keeps_tables_identical(world):
    no_feat = simulate(dataclasses.replace(PRESETS["tiny"], features=False), seed=0)
    for name in DS.TABLES:
        assert no_feat.tables[name].equals(world.tables[name]), name
    assert not no_feat.features["frame"].any()
    np.testing.assert_array_equal(no_feat.features["seg_mask"], world.features["seg_mask"])


def test_presets_and_replace_scale():
    assert {"tiny", "small", "paper"} <= set(PRESETS)
    assert PRESETS["paper"].n_products == 1809 and PRESETS["small"].n_days == 28
    w = simulate(
        dataclasses.replace(PRESETS["tiny"], n_products=3, n_days=5, start_date="2025-03-02"), seed=7
    )
    assert w.tables["sales"].num_rows == 15
    assert set(col(w, "sales", "day")) == set(range(5))
    with pytest.raises(ValueError, match="n_products"):
        SimConfig(n_products=0)
    with pytest.raises(KeyError, match="unknown preset"):
        simulate("huge")


def test_quality_scale_makes_content_matter_more_and_leaves_the_rest():
    """quality_scale multiplies the content's log conversion: same latents and media, more lift
    from content, and the truth's quality columns and modality shares follow."""
    cfg = dataclasses.replace(PRESETS["tiny"], n_products=40, features=False)
    base, strong = simulate(cfg, seed=5), simulate(dataclasses.replace(cfg, quality_scale=2.0), seed=5)
    assert base.tables["videos"].equals(strong.tables["videos"])  # the same videos, influencers, media
    tv, ts = base.truth["videos"], strong.truth["videos"]
    for c in ("quality", "quality_pe", "quality_tp", "quality_af"):
        np.testing.assert_allclose(
            np.asarray(ts.column(c)), 2.0 * np.asarray(tv.column(c)), rtol=1e-6, atol=1e-9
        )
    assert not base.tables["sales"].equals(strong.tables["sales"])
    imp_b, imp_s = base.truth["modality_importance"], strong.truth["modality_importance"]
    assert imp_b["order"] == imp_s["order"]  # the quality shares are scale-free
    assert imp_s["log_lift"]["frame"] > imp_b["log_lift"]["frame"]  # content now moves lift more
    assert strong.truth["meta"]["quality_weights"]["pe"] == 2.0 * base.truth["meta"]["quality_weights"]["pe"]
    with pytest.raises(ValueError, match="quality_scale"):
        SimConfig(quality_scale=-1.0)


# ---------------------------------------------------------------------------------------------
# marginals (LAMM Table 1, loosely: ranges a real bug would break)


def test_marginals_in_range(world):
    units = col(world, "sales", "units")
    assert 35 < units.mean() < 90 and units.min() >= 0 and units.max() < 3000
    n_prod, n_days = world.config.n_products, world.config.n_days
    assert world.tables["sales"].num_rows == n_prod * n_days
    assert 2.0 < world.n_videos / (n_prod * n_days) < 4.5
    price, rating = col(world, "sales", "price"), col(world, "sales", "rating")
    assert price.min() >= 2.9 and price.max() <= 3499 and rating.min() >= 71 and rating.max() <= 100
    length = col(world, "videos", "length_s")
    assert 12 < length.mean() < 24 and length.min() >= 2.5
    nseg = col(world, "videos", "n_segments")
    np.testing.assert_array_equal(nseg, np.clip(np.ceil(length / L.SEGMENT_SECONDS), 1, L.MAX_SEGMENTS))
    f = col(world, "influencers", "followers")
    assert f.min() >= 65 and f.max() <= 2.5e7 and 3 < np.log10(np.median(f)) < 5
    assert set(world.tables["videos"].column("video_type").to_pylist()) <= set(L.VIDEO_TYPES)
    assert set(world.tables["products"].column("category").to_pylist()) <= set(L.PRODUCT_CATEGORIES)
    assert set(world.tables["influencers"].column("city_tier").to_pylist()) <= set(L.CITY_TIERS)
    likes = col(world, "engagement", "likes")
    assert 10 < likes.mean() < 200
    hour = col(world, "videos", "create_hour")
    assert 9 < hour.mean() < 14 and hour.min() >= 0 and hour.max() <= 23


def test_engagement_consistent_with_two_week_impressions(world):
    v, e = world.tables["videos"], world.tables["engagement"]
    imp14 = dict(zip(v.column("video_id").to_pylist(), v.column("impressions_14d").to_pylist(), strict=True))
    pub = dict(zip(v.column("video_id").to_pylist(), v.column("publish_day").to_pylist(), strict=True))
    total: dict[str, int] = {}
    for vid, day, imp, likes in zip(
        e.column("video_id").to_pylist(),
        e.column("day").to_pylist(),
        e.column("impressions").to_pylist(),
        e.column("likes").to_pylist(),
        strict=True,
    ):
        assert 0 <= day - pub[vid] < L.WINDOW_DAYS and likes <= imp
        total[vid] = total.get(vid, 0) + imp
    # a fully observed video's daily impressions add up to its two-week impressions exactly
    full = [vid for vid in total if pub[vid] + L.WINDOW_DAYS <= world.config.n_days]
    assert full and all(total[vid] == imp14[vid] for vid in full)
    assert all(total[vid] <= imp14[vid] for vid in total)


def test_engagement_rates_follow_content_not_only_product(big_tables):
    v, e, tv = big_tables.tables["videos"], big_tables.tables["engagement"], big_tables.truth["videos"]
    row = {vid: i for i, vid in enumerate(v.column("video_id").to_pylist())}
    idx = np.array([row[x] for x in e.column("video_id").to_pylist()])
    n = v.num_rows
    tot = {
        k: np.bincount(idx, weights=np.asarray(e.column(k), dtype=np.float64), minlength=n)
        for k in ("likes", "collects", "impressions")
    }
    ok = tot["impressions"] > 2000  # enough impressions for a stable rate
    like_rate, collect_rate = (
        tot["likes"][ok] / tot["impressions"][ok],
        tot["collects"][ok] / tot["impressions"][ok],
    )
    e_mean, pe = np.asarray(tv.column("e_mean"))[ok], np.asarray(tv.column("pe"))[ok]
    assert np.corrcoef(np.log(like_rate + 1e-6), e_mean)[0, 1] > 0.3  # saliency drives likes
    assert np.corrcoef(np.log(collect_rate + 1e-6), pe)[0, 1] > 0.3  # product engagement drives collects
    # the daily impressions decay with age
    age = np.asarray(e.column("day")) - np.asarray(v.column("publish_day"))[idx]
    by_age = np.bincount(age, weights=np.asarray(e.column("impressions"), dtype=np.float64)) / np.bincount(
        age
    )
    assert by_age[1] > by_age[5] > by_age[12]


def test_features_follow_the_masks(world):
    f = world.features
    for name in ("frame", "motion", "audio"):
        assert f[name].dtype == np.float16 and f[name].shape == (
            world.n_videos,
            L.MAX_SEGMENTS,
            L.FEATURE_DIM,
        )
        assert not f[name][~f["seg_mask"]].any(), f"{name}: padded segments must be zero"
        assert np.abs(f[name][f["seg_mask"]]).sum(axis=-1).min() > 0
    assert not f["title"][~f["title_mask"]].any()
    np.testing.assert_array_equal(f["seg_mask"].sum(1), col(world, "videos", "n_segments"))
    n_words = np.array([len(t.split()) for t in world.tables["videos"].column("title").to_pylist()])
    np.testing.assert_array_equal(f["title_mask"].sum(1), n_words)


# ---------------------------------------------------------------------------------------------
# popularity: instrument, confounder, the known response


def test_instrument_relevant_and_exogenous(big_tables):
    tv = big_tables.truth["videos"]
    ln_f = np.asarray(tv.column("log_followers"))
    z = np.log(col(big_tables, "videos", "past_avg_hearts"))
    u, eps = np.asarray(tv.column("confounder_u")), np.asarray(tv.column("impression_noise"))
    assert np.corrcoef(z, ln_f)[0, 1] > 0.5
    assert abs(np.corrcoef(z, eps)[0, 1]) < 0.05
    assert abs(np.corrcoef(z, u)[0, 1]) < 0.1  # per video, influencers repeat: looser
    assert np.corrcoef(u, ln_f)[0, 1] > 0.2  # the confounder does move followers


def test_naive_ols_biased_upward_iv_closer(big_tables):
    m = big_tables.truth["meta"]
    assert m["naive_ols_slope"] > m["true_linear_slope"] + 0.08
    assert m["naive_ols_slope"] > m["mean_true_fei"] + 0.08
    assert (
        abs(m["iv_2sls_slope"] - m["true_linear_slope"])
        < abs(m["naive_ols_slope"] - m["true_linear_slope"]) / 2
    )
    assert 0.15 < m["mean_true_fei"] < 0.8


def test_instrument_recovers_the_curve_shapes_naive_does_not(big_tables):
    """Within each curve shape, a cubic in ln F with the instrument's control function (the
    first-stage residual of ln F on a cubic in z) tracks the true mean FEI at 1k..1M followers;
    the same cubic by plain OLS is pulled up by the hidden confounder. (The S-shaped bump is not
    a cubic, so its floor is the basis error shared by both.)"""
    tv, v = big_tables.truth["videos"], big_tables.tables["videos"]
    ln_f = np.asarray(tv.column("log_followers"))
    y = (
        np.asarray(tv.column("g_actual"))
        + big_tables.config.confounder_impressions * np.asarray(tv.column("confounder_u"))
        + np.asarray(tv.column("impression_noise"))
    )
    z = np.log(np.asarray(v.column("past_avg_hearts")))
    controls = np.column_stack([np.ones(ln_f.size), np.asarray(tv.column("e_mean"))])
    shape = np.asarray(tv.column("curve_shape").to_pylist())
    at = np.log([1e3, 1e4, 1e5, 1e6])
    cubic = lambda x: np.column_stack([x, x**2, x**3])  # noqa: E731
    slope = lambda b, x: b[0] + 2 * b[1] * x + 3 * b[2] * x**2  # noqa: E731
    fit = lambda y_, x_: np.linalg.lstsq(x_, y_, rcond=None)[0]  # noqa: E731
    for name, max_ratio in (("s_shaped", 0.8), ("linear", 0.5), ("concave", 0.5)):
        m = shape == name
        params = {k: np.asarray(tv.column(k))[m] for k in ("curve", "intercept", "floor", "amp", "mu", "w")}
        truth = np.array([true_fei(np.full(m.sum(), a), params).mean() for a in at])
        naive = slope(fit(y[m], np.column_stack([cubic(ln_f[m]), controls[m]])), at)
        first = np.column_stack([cubic(z[m]), controls[m]])
        resid = ln_f[m] - first @ fit(ln_f[m], first)  # the part of ln F the instrument does not explain
        iv = slope(fit(y[m], np.column_stack([cubic(ln_f[m]), controls[m], resid])), at)
        err_naive, err_iv = np.abs(naive - truth).mean(), np.abs(iv - truth).mean()
        assert err_iv < max_ratio * err_naive, (name, truth.round(2), naive.round(2), iv.round(2))


def test_true_response_curves():
    params = {
        "curve": np.array([0, 1, 2]),
        "intercept": np.array([8.0, 8.0, 8.0]),
        "floor": np.array([0.04, 0.4, 0.03]),
        "amp": np.array([0.8, 0.0, 0.8]),
        "mu": np.log([2e4, 1e4, 3e3]),
        "w": np.array([1.5, 1.0, 1.3]),
    }
    g = true_log_impressions(GRID, params)  # (3, G)
    slope = true_fei(GRID, params)
    np.testing.assert_allclose(true_log_impressions(np.log(1e4), params), 8.0)  # intercept at 10k
    np.testing.assert_allclose(np.gradient(g, GRID, axis=1)[:, 1:-1], slope[:, 1:-1], atol=2e-3)  # g' = fei
    s, lin, conc = slope
    assert np.argmax(s) not in (0, GRID.size - 1) and s.max() > 3 * s[0] and s.max() > 3 * s[-1]  # inverted U
    np.testing.assert_allclose(lin, 0.4)  # constant
    assert np.all(np.diff(conc) < 0)  # decreasing
    assert slope.min() >= 0 and slope.max() <= 1.5
    with pytest.raises(KeyError, match="lacks"):
        true_fei(GRID, {"curve": np.array([0])})


def test_stored_truth_matches_functions(world, dataset):
    t = read_truth(dataset)
    tv = t["videos"]
    np.testing.assert_allclose(t["fei_grid"], GRID)
    np.testing.assert_allclose(t["fei_g"], true_log_impressions(GRID, tv), rtol=1e-5)
    np.testing.assert_allclose(t["fei_slope"], true_fei(GRID, tv), rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(tv.column("fei_actual")), true_fei(np.asarray(tv.column("log_followers")), tv)
    )
    curve = np.asarray(tv.column("curve"))
    names = tv.column("curve_shape").to_pylist()
    assert all(CURVE_CODES[n] == c for n, c in zip(names, curve, strict=True))
    assert set(names) == {"s_shaped", "linear", "concave"}
    # sales = base + sum of video lift, per product-day
    ts, lift = t["sales"], t["video_lift"]
    np.testing.assert_allclose(
        np.asarray(ts.column("expected_units")), np.asarray(ts.column("base")) + np.asarray(ts.column("lift"))
    )
    assert abs(
        float(np.asarray(lift.column("lift")).sum()) - float(np.asarray(ts.column("lift")).sum())
    ) < 1e-6 * max(1.0, float(np.asarray(ts.column("lift")).sum()))
    imp = t["modality_importance"]
    assert set(imp["quality"]) == set(L.MODALITIES)
    assert imp["order"][0] == "frame" and imp["order"][-1] == "audio"
    assert all(v > 0.005 for v in imp["quality"].values())


# ---------------------------------------------------------------------------------------------
# cross-modal structure


def _r2(y: np.ndarray, cols: list[np.ndarray]) -> float:
    x = np.column_stack([np.ones(y.size), *cols])
    resid = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    return 1.0 - resid.var() / y.var()


def test_lift_needs_per_segment_alignment(world):
    """Read product presence from the frame and saliency from the motion features of each segment:
    their per-segment product explains the PE-score (and the lift quality) far better than the
    same probes mean-pooled over the video, which is all a pooled-concatenation model keeps; and
    matching the title's brand token against the frame segments (what text-to-frame attention
    does) explains more again."""
    g = PH.geometry()
    f = world.features
    mask, tmask = f["seg_mask"], f["title_mask"]
    frame, title = f["frame"].astype(np.float32), f["title"].astype(np.float32)
    p_hat = np.clip(frame @ g.presence / 2.5, 0, 1) * mask  # (N, S)
    e_hat = np.clip(f["motion"].astype(np.float32) @ g.saliency / 2.5, 0, 1) * mask  # (N, S)
    n = mask.sum(1)
    per_segment = (p_hat * e_hat).sum(1) / np.maximum(e_hat.sum(1), 1e-6)  # (N,)
    pm, em = p_hat.sum(1) / n, e_hat.sum(1) / n
    name_w = np.clip(title @ g.name / 1.8, 0, 1) * tmask  # (N, T) which token is the brand word
    named = name_w.max(1)  # (N,) the title names a product: visible to a pooled model
    brand = (title * name_w[..., None]).sum(1)  # (N, D)
    match = (np.einsum("nd,nsd->ns", brand, frame) * mask).sum(1) / n  # (N,) brand token x frame segments
    pooled = [pm, em, pm * em, pm**2, named, named * pm]
    tv = world.truth["videos"]
    pe, q = np.asarray(tv.column("pe")), np.asarray(tv.column("quality"))
    assert _r2(pe, [per_segment]) > _r2(pe, pooled) + 0.25
    assert _r2(q, [*pooled, per_segment]) > _r2(q, pooled) + 0.05
    assert _r2(q, [*pooled, per_segment, match]) > _r2(q, [*pooled, per_segment]) + 0.03
    # and the lift of a video is its conversion times its impressions
    lift = np.asarray(tv.column("lift_14d"))
    conv = np.exp(np.asarray(tv.column("log_conversion")))
    np.testing.assert_allclose(lift, conv * col(world, "videos", "impressions_14d"), rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# dataset and events


def test_dataset_round_trip(world, dataset):
    meta = DS.validate_dataset(dataset)
    assert meta["start_date"] == world.config.start_date and meta["n_days"] == world.config.n_days
    assert meta["history_days"] == 10
    for name in DS.TABLES:
        assert DS.read_table(dataset, name).equals(world.tables[name]), name
    feats = DS.load_features(dataset)
    for name in DS.FEATURES:
        np.testing.assert_array_equal(feats[name], world.features[name])
    for name in ("videos", "video_lift", "sales", "products", "influencers"):
        assert pq.read_table(dataset / "truth" / f"{name}.parquet").num_rows > 0
    assert json.loads((dataset / "truth" / "modality_importance.json").read_text())["order"][0] == "frame"


def test_event_stream_order_and_validity(world, dataset):
    events = list(iter_events(dataset, inline_features=True))
    n = world.n_videos + world.tables["engagement"].num_rows + world.tables["sales"].num_rows
    assert len(events) == n and len({e.event_id for e in events}) == n
    start = date.fromisoformat(world.config.start_date)
    published: set[str] = set()
    day, phase = start, 0  # phase 0 videos, 1 engagement, 2 sales
    closed: set[str] = set()
    last_ts = None
    for ev in events:
        assert ev.day >= day
        if ev.day > day:
            assert len(closed) == world.config.n_products, "every product's sales close the day"
            day, phase, closed = ev.day, 0, set()
        rank = {VideoPublished: 0, EngagementDaily: 1, SalesDaily: 2}[type(ev)]
        assert rank >= phase
        phase = rank
        if isinstance(ev, VideoPublished):
            assert ev.ts.date() == ev.day and (last_ts is None or ev.ts >= last_ts)
            last_ts = ev.ts
            published.add(ev.video_id)
            assert ev.features is not None and ev.media_uri is None
        elif isinstance(ev, EngagementDaily):
            assert ev.video_id in published
        else:
            closed.add(ev.product_id)
        assert parse_event(ev.model_dump_json()) == ev
    assert len(closed) == world.config.n_products
    # inline features are the real segments of the stored arrays
    first = events[0]
    row = int(first.video_id[1:])
    arr = first.features.arrays()
    ns = int(world.features["seg_mask"][row].sum())
    np.testing.assert_array_equal(arr["frame"], world.features["frame"][row, :ns].astype(np.float32))


def test_media_uri_events_jsonl_and_batches(world, dataset, tmp_path):
    out = tmp_path / "ev.jsonl"
    n = write_events_jsonl(dataset, out, inline_features=False)
    lines = out.read_text().splitlines()
    assert len(lines) == n
    first = parse_event(lines[0])
    assert first.features is None and first.media_uri == f"dataset://{dataset.resolve()}#row=0"
    ref = [e for e in iter_events(dataset, inline_features=False)]
    assert [parse_event(x) for x in lines] == ref
    batches = list(iter_event_batches(dataset))
    assert len(batches) == world.config.n_days
    ids = [f"v:{v}" for b in batches for v in b.videos["video_id"]]
    assert ids == [e.event_id for e in ref if isinstance(e, VideoPublished)]
    assert sum(b.engagement["video_id"].size for b in batches) == world.tables["engagement"].num_rows
    assert all(b.sales["product_id"].size == world.config.n_products for b in batches)


def test_cli_writes_dataset_and_events(tmp_path, capsys):
    from inference.sim.cli import cli

    out = tmp_path / "w"
    assert (
        cli(
            [
                "--preset",
                "tiny",
                "--seed",
                "2",
                "--out",
                str(out),
                "--n-products",
                "4",
                "--n-days",
                "3",
                "--events",
                str(out / "events.jsonl"),
                "--media-uri",
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    meta = DS.validate_dataset(out)
    assert meta["n_days"] == 3 and meta["n_products"] == 4 and meta["seed"] == 2
    lines = (out / "events.jsonl").read_text().splitlines()
    assert len(lines) == summary["events"] == summary["videos"] + summary["engagement_rows"] + 4 * 3
    assert cli(["--preset", "tiny", "--out", str(out), "--n-days", "0", "--no-progress"]) == 2
    assert cli(["--preset", "tiny", "--out", str(out), "--quality-scale", "-2", "--no-progress"]) == 2
    over = ["--lift-share", "0.6", "--quality-scale", "2", "--no-features", "--no-progress"]
    assert cli(["--preset", "tiny", "--out", str(tmp_path / "c"), *over]) == 0
    config = json.loads((tmp_path / "c" / "truth" / "meta.json").read_text())["config"]
    assert (config["lift_share"], config["quality_scale"]) == (0.6, 2.0)


def test_empty_world_is_valid(tmp_path):
    w = simulate(SimConfig(n_products=1, n_days=1, videos_per_product_day=0.5), seed=1)
    assert w.n_videos == 0 and w.tables["sales"].num_rows == 1
    w.write_dataset(tmp_path / "e")
    events = list(iter_events(tmp_path / "e"))
    assert [type(e) for e in events] == [SalesDaily]


def test_bad_dataset_is_a_clear_error(world, tmp_path):
    with pytest.raises(DS.DatasetError, match="meta.json"):
        list(iter_events(tmp_path))
    bad = world.write_dataset(tmp_path / "bad")
    eng = world.tables["engagement"]
    day = np.asarray(eng.column("day")).copy()
    pub = dict(
        zip(
            world.tables["videos"].column("video_id").to_pylist(),
            world.tables["videos"].column("publish_day").to_pylist(),
            strict=True,
        )
    )
    i = next(j for j, v in enumerate(eng.column("video_id").to_pylist()) if pub[v] > 0)
    day[i] = pub[eng.column("video_id")[i].as_py()] - 1
    pq.write_table(
        eng.set_column(eng.column_names.index("day"), "day", pa.array(day, pa.int32())),
        bad / "engagement.parquet",
    )
    with pytest.raises(DS.DatasetError, match="before its publish day"):
        next(iter_events(bad))


def test_stale_world_names_worlds_of_another_simulator_version(tmp_path):
    """data/paper once stayed on an older simulator's world after the simulator changed; worlds
    now carry the version that wrote them."""
    from inference.sim import SIM_VERSION, stale_world

    w = tmp_path / "w"
    simulate(dataclasses.replace(PRESETS["tiny"], n_products=3, n_days=3), seed=1).write_dataset(w)
    meta = json.loads((w / "meta.json").read_text())
    assert meta["simulator_version"] == SIM_VERSION and stale_world(w) is None
    for old in ("0", None):
        if old is None:
            meta.pop("simulator_version")
        else:
            meta["simulator_version"] = old
        (w / "meta.json").write_text(json.dumps(meta))
        why = stale_world(w)
        assert (
            why and f"generates version {SIM_VERSION}" in why and "liftstream simulate --preset tiny" in why
        )
    (w / "meta.json").write_text(json.dumps({**meta, "simulator": "a shop's export"}))
    assert stale_world(w) is None  # not a simulated world: nothing to compare
    assert stale_world(tmp_path / "missing") is None

"""LAMM: shapes, the packed encoder, stepwise == full-sequence parity, the torch day input ==
inference.daily.day_input, conformal intervals, checkpoint round trip, train_or_load caching.

All on tiny random datasets written by ``write_random_dataset`` (a few seconds in all).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from inference.client import InProcessClient, VideoBatch
from inference.daily import SIDE_DIM, campaign_features, day_input, product_features, side_features
from inference.lamm import Conformal, Lamm, LammConfig, LammForecaster
from inference.lamm_data import build_day_inputs, load_lamm_data, make_batch, permute_modality
from inference.lamm_train import TrainConfig, _blend_z, predict_z, train_lamm, train_or_load
from inference.standin import ConstantElasticityAdvisor
from schemas import dataset as ds
from schemas import limits as L

S, T, D = L.MAX_SEGMENTS, L.MAX_TITLE_TOKENS, L.FEATURE_DIM


def write_random_dataset(root: Path, n_products: int = 6, n_days: int = 8, seed: int = 0) -> Path:
    """A small dataset folder in the schemas.dataset format with random content and a weak signal."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    pids = [f"p{i}" for i in range(n_products)]
    rows = []
    for p in range(n_products):
        for _ in range(rng.integers(0, 3 * n_days // 2 + 1)):
            rows.append((p, int(rng.integers(-2, n_days))))
    rows.append((0, 0))  # at least one video
    n_v = len(rows)
    vids = [f"v{i}" for i in range(n_v)]
    nseg = rng.integers(1, S + 1, n_v)
    ntok = rng.integers(0, T + 1, n_v)
    feats = {k: rng.standard_normal((n_v, S, D)).astype(np.float16) for k in ("frame", "motion", "audio")}
    seg_mask = np.arange(S)[None] < nseg[:, None]
    for k in ("frame", "motion", "audio"):
        feats[k][~seg_mask] = 0
    title_mask = np.arange(T)[None] < ntok[:, None]
    feats["title"] = (rng.standard_normal((n_v, T, D)) * title_mask[..., None]).astype(np.float16)
    feats["seg_mask"], feats["title_mask"] = seg_mask, title_mask
    (root / "features").mkdir(exist_ok=True)
    for k, a in feats.items():
        np.save(root / "features" / f"{k}.npy", a)
    tables = {
        "products": {
            "product_id": pids,
            "category": [L.PRODUCT_CATEGORIES[i % 13] for i in range(n_products)],
            "price": rng.uniform(5, 200, n_products),
            "rating": rng.uniform(70, 100, n_products),
            "history_sales": rng.integers(16, 5000, n_products),
            "history_videos": rng.integers(2, 100, n_products),
        },
        "influencers": {
            "influencer_id": ["i0"],
            "followers": [1000],
            "past_avg_hearts": [10.0],
            "verified": [False],
            "city_tier": ["first"],
            "age": [30],
        },
        "videos": {
            "video_id": vids,
            "product_id": [pids[p] for p, _ in rows],
            "influencer_id": ["i0"] * n_v,
            "publish_day": [d for _, d in rows],
            "create_hour": rng.integers(0, 24, n_v),
            "video_type": [L.VIDEO_TYPES[0]] * n_v,
            "length_s": nseg * 3.2,
            "width": [1080] * n_v,
            "height": [1920] * n_v,
            "size_mb": [1.0] * n_v,
            "title": ["t"] * n_v,
            "followers": rng.integers(100, 10**6, n_v),
            "past_avg_hearts": [1.0] * n_v,
            "n_segments": nseg,
            "feature_row": np.arange(n_v),
            "impressions_14d": [0] * n_v,
        },
    }
    eng = []
    for v, (p, d0) in enumerate(rows):
        for t in range(max(d0, 0), min(d0 + L.WINDOW_DAYS, n_days)):
            if rng.random() < 0.85:  # some days missing: the latest earlier day carries over
                eng.append((vids[v], pids[p], t, *rng.integers(0, 500, 5)))
    cols = ("video_id", "product_id", "day", "likes", "comments", "shares", "collects", "impressions")
    tables["engagement"] = {c: [r[i] for r in eng] for i, c in enumerate(cols)}
    sales = [
        (pids[p], t, int(rng.poisson(20 + 5 * p)), 50.0 + t, 90.0)
        for p in range(n_products)
        for t in range(n_days)
        if not (p == 1 and t == 3)
    ]  # one missing sales row
    tables["sales"] = {
        c: [r[i] for r in sales] for i, c in enumerate(("product_id", "day", "units", "price", "rating"))
    }
    for name, cols_ in tables.items():
        pq.write_table(pa.table(cols_).cast(ds.TABLES[name]), root / f"{name}.parquet")
    meta = {
        "format": ds.FORMAT,
        "version": ds.VERSION,
        "start_date": "2026-01-01",
        "n_days": n_days,
        "feature_dim": D,
        "max_segments": S,
        "max_title_tokens": T,
        "history_days": n_days - 2,
    }
    (root / "meta.json").write_text(json.dumps(meta))
    ds.validate_dataset(root)
    return root


def random_videos(n: int, seed: int = 0) -> VideoBatch:
    rng = np.random.default_rng(seed)
    b = VideoBatch.empty(n)
    ns, nt = rng.integers(1, S + 1, n), rng.integers(0, T + 1, n)
    for i in range(n):
        b.frame[i, : ns[i]] = rng.standard_normal((ns[i], D))
        b.motion[i, : ns[i]] = rng.standard_normal((ns[i], D))
        b.audio[i, : ns[i]] = rng.standard_normal((ns[i], D))
        b.seg_mask[i, : ns[i]] = True
        b.title[i, : nt[i]] = rng.standard_normal((nt[i], D))
        b.title_mask[i, : nt[i]] = True
    return b


def _t(b: VideoBatch):
    return [
        torch.from_numpy(getattr(b, k))
        for k in ("frame", "motion", "audio", "seg_mask", "title", "title_mask")
    ]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_random_dataset(tmp_path_factory.mktemp("ds") / "rand")


@pytest.mark.parametrize("reading", ["target_query", "aux_query"])
def test_encode_shapes_and_packed_equals_padded(reading):
    torch.manual_seed(0)
    m = Lamm(LammConfig(reading=reading)).eval()
    b = random_videos(37)
    with torch.inference_mode():
        h = m.encode(*_t(b))
        hp = m.encode_packed(*_t(b), chunk=8)
    assert h.shape == (37, 128)
    assert torch.isfinite(h).all()
    torch.testing.assert_close(hp, h, rtol=1e-4, atol=1e-5)


def test_encode_rejects_wrong_shapes():
    m = Lamm(LammConfig()).eval()
    b = _t(random_videos(2))
    b[0] = b[0][:, :, :64]
    with pytest.raises(AssertionError, match="expected frame"):
        m.encode(*b)


def test_padding_does_not_leak():
    """Changing padded segments / tokens leaves h_v unchanged."""
    torch.manual_seed(0)
    m = Lamm(LammConfig()).eval()
    b = random_videos(5, seed=3)
    b2 = random_videos(5, seed=3)
    b2.frame[~b2.seg_mask] = 7.0
    b2.title[~b2.title_mask] = -3.0
    with torch.inference_mode():
        torch.testing.assert_close(m.encode(*_t(b2)), m.encode(*_t(b)), rtol=1e-5, atol=1e-5)


def test_ablations_change_the_encoder():
    torch.manual_seed(0)
    b = _t(random_videos(4))
    outs = []
    for cfg in (LammConfig(), LammConfig(ladder=("audio", "motion")), LammConfig(use_frame=False)):
        torch.manual_seed(0)
        with torch.inference_mode():
            outs.append(Lamm(cfg).eval().encode(*b))
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])


def test_permute_modality_shuffles_one_modality_within_equal_lengths(dataset):
    """Only the named modality moves; every video gets another video's content of the same length."""
    data = load_lamm_data(dataset)
    b = make_batch(data, np.arange(data.n_products))
    fields = ("frame", "motion", "audio", "seg_mask", "title", "title_mask")
    for modality in ("frame", "text", "audio", "motion"):
        pb = permute_modality(b, modality, np.random.default_rng(1))
        moved = {"text": ("title", "title_mask")}.get(modality, (modality,))
        for k in fields:
            if k not in moved:
                assert torch.equal(getattr(pb, k), getattr(b, k)), (modality, k)
        a, src = getattr(pb, moved[0]), getattr(b, moved[0])
        assert not torch.equal(a, src), modality  # 6 products' videos: some swap happened
        # each row is some source row, and a row of the same segment count (text: any title)
        flat_a, flat_s = a.flatten(1), src.flatten(1)
        donor = [int(torch.nonzero((flat_s == row).all(1))[0]) for row in flat_a]
        assert sorted(donor) == list(range(len(donor)))  # a permutation
        if modality != "text":
            assert torch.equal(b.seg_mask.sum(1)[donor], b.seg_mask.sum(1))
        else:
            assert torch.equal(pb.title_mask, b.title_mask[donor])
    with pytest.raises(ValueError, match="unknown modality"):
        permute_modality(b, "smell", np.random.default_rng(0))


def test_permuting_a_modality_the_model_does_not_read_changes_nothing(dataset):
    """The permutation ablation measures use: shuffling frame moves LAMM's forecasts, but not those of
    the "w/o frame" model, and shuffling with the same seed twice gives the same forecasts."""
    data = load_lamm_data(dataset)
    p = np.arange(data.n_products)
    torch.manual_seed(0)
    full = Lamm(LammConfig()).eval()
    torch.manual_seed(0)
    no_frame = Lamm(LammConfig(use_frame=False)).eval()
    assert not np.allclose(predict_z(full, data, p, permute="frame"), predict_z(full, data, p))
    np.testing.assert_array_equal(predict_z(no_frame, data, p, permute="frame"), predict_z(no_frame, data, p))
    np.testing.assert_array_equal(
        predict_z(full, data, p, permute="audio", seed=4), predict_z(full, data, p, permute="audio", seed=4)
    )


SKIP_VARIANTS = [{"skip_hidden": 0, "tab_dropout": True}, {"skip_hidden": 64, "tab_dropout": False}]


@pytest.mark.parametrize("variant", SKIP_VARIANTS)
def test_step_parity_with_full_sequence(variant):
    """Stepwise streaming form == the training forward over the whole day sequence."""
    torch.manual_seed(0)
    cfg = LammConfig(**variant)
    m = Lamm(cfg).eval()
    m.x_mean.copy_(torch.randn_like(m.x_mean))  # trained-like standardisation
    m.x_std.copy_(torch.rand_like(m.x_std) + 0.5)
    x = torch.randn(5, 9, cfg.x_dim)  # (B, T, F)
    with torch.inference_mode():
        z_full, _ = m.forward_days(x)
        state = torch.zeros(5, 2 * cfg.hidden)
        zs = []
        for t in range(9):
            state, z = m.step(state, x[:, t])
            zs.append(z)
    torch.testing.assert_close(torch.stack(zs, 1), z_full, rtol=1e-5, atol=1e-5)


def test_tab_dropout_off_drops_only_the_video_part():
    torch.manual_seed(0)
    cfg = LammConfig(tab_dropout=False)
    m = Lamm(cfg).train()
    seen = []
    m.lstm.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
    x = torch.randn(4, 6, cfg.x_dim)
    m.forward_days(x)
    xn, _ = m._tab(x)
    d = cfg.d_model
    torch.testing.assert_close(seen[0][..., d:], xn[..., d:])  # side + product part intact
    assert (seen[0][..., :d] == 0).any() and not (xn[..., :d] == 0).any()  # the video part dropped


@pytest.mark.parametrize("variant", SKIP_VARIANTS)
def test_baseline_is_the_step_with_no_videos(variant):
    torch.manual_seed(0)
    cfg = LammConfig(**variant)
    m = Lamm(cfg).eval()
    # trained-like standardisation: a zeroed raw column is not a zero standardized one
    m.x_mean.copy_(torch.randn_like(m.x_mean))
    m.x_std.copy_(torch.rand_like(m.x_std) + 0.5)
    x = torch.randn(6, cfg.x_dim)
    s = torch.randn(6, 2 * cfg.hidden)
    x0 = x.clone()
    x0[:, : cfg.d_model + SIDE_DIM] = 0
    from inference.daily import NO_VIDEO_FEATURES, PRODUCT_FEATURES

    # n_active, n_new, has_videos, the five engagement sums, and today's followers / new impressions
    cols = [PRODUCT_FEATURES.index(k) for k in NO_VIDEO_FEATURES]
    assert cols == [3, 4, 5, 6, 7, 8, 9, 10] + [PRODUCT_FEATURES.index("sum_log_followers"), cols[-1]]
    for k in cols:
        x0[:, cfg.d_model + SIDE_DIM + k] = 0
    with torch.inference_mode():
        s1, z, z0 = m.step(s, x, baseline=True)
        _, z0_ref = m.step(s, x0)
        s1_ref, z_ref = m.step(s, x)
    torch.testing.assert_close(z0, z0_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(z, z_ref)
    torch.testing.assert_close(s1, s1_ref)


def test_torch_day_inputs_equal_daily_day_input(dataset):
    """Training's x (torch, batched) == the streaming definition inference.daily.day_input, day by day."""
    data = load_lamm_data(dataset)
    torch.manual_seed(0)
    m = Lamm(LammConfig()).eval()
    products = np.arange(data.n_products)
    b = make_batch(data, products)
    with torch.inference_mode():
        h = m.encode(*b.videos())
        x = build_day_inputs(h, b).numpy()  # (P, D, F)
    videos = ds.read_table(dataset, "videos").to_pandas()
    eng = ds.read_table(dataset, "engagement").to_pandas()
    sales = ds.read_table(dataset, "sales").to_pandas().set_index(["product_id", "day"])
    products = ds.read_table(dataset, "products").to_pandas().set_index("product_id")
    # h rows follow data's video order (product, publish day, id); map them back to video ids
    order = videos.assign(p=videos["product_id"].map({p: i for i, p in enumerate(data.product_ids)}))
    order = order.sort_values(["p", "publish_day", "video_id"], kind="stable")
    hv = dict(zip(order["video_id"], h.numpy(), strict=True))
    start = date.fromisoformat(ds.read_meta(dataset)["start_date"])  # day t is start + t in the stream
    checked = 0
    for pi, pid in enumerate(data.product_ids):
        pv = videos[videos["product_id"] == pid]
        seen: list[float] = []  # units of the days before t (0 on a missing day, like x's units column)
        first_sale = min(d for p_, d in sales.index if p_ == pid)  # the product's clock starts here
        list_price = sales.loc[(pid, first_sale)]["price"]
        category = L.PRODUCT_CATEGORIES.index(products.loc[pid, "category"])
        prev_n, prev_imp = 0, 0.0  # yesterday's active videos and impressions
        for t in range(data.n_days):
            act = pv[(pv["publish_day"] <= t) & (t - pv["publish_day"] < L.WINDOW_DAYS)]
            side, counts = [], []
            for _, v in act.iterrows():
                e = eng[(eng["video_id"] == v["video_id"]) & (eng["day"] <= t)].sort_values("day")
                c = (
                    e.iloc[-1]
                    if len(e)
                    else {k: 0 for k in ("likes", "shares", "comments", "collects", "impressions")}
                )
                counts.append(c)
                side.append(
                    side_features(
                        c["likes"],
                        c["shares"],
                        c["comments"],
                        c["collects"],
                        c["impressions"],
                        t - v["publish_day"],
                        v["followers"],
                    )
                )
            hk = np.stack([hv[v] for v in act["video_id"]]) if len(act) else np.zeros((0, 128), np.float32)
            sk = np.stack(side) if side else np.zeros((0, SIDE_DIM), np.float32)
            if (pid, t) in sales.index:
                r = sales.loc[(pid, t)]
                units, price, rating = r["units"], r["price"], r["rating"]
            else:  # a missing day: units 0, price / rating of the nearest day
                units, price, rating = 0, sales.loc[(pid, t - 1)]["price"], sales.loc[(pid, t - 1)]["rating"]
            n_new = int((act["publish_day"] == t).sum())
            sums = np.array(
                [
                    sum(c[k] for c in counts)
                    for k in ("likes", "shares", "comments", "collects", "impressions")
                ]
            )
            wd = (start + timedelta(days=t)).weekday()
            y = np.log1p(np.array([*seen, units], dtype=np.float64))  # log1p units, days 0..t
            trailing = [y[-2] if t >= 1 else 0.0, y[-3] if t >= 2 else 0.0, y[-3:].mean(), y[-7:].mean()]
            # history: known once the product's first video is out (the stream's rule)
            known = bool((pv["publish_day"].clip(lower=0) <= t).any())
            hist = products.loc[pid, ["history_sales", "history_videos"]].to_numpy(float)
            prod = product_features(
                units,
                price,
                rating,
                len(act),
                n_new,
                sums=sums,
                weekday=wd,
                trailing=trailing,
                history=hist if known else np.full(2, np.nan),
                campaign=campaign_features(
                    seen[t - 6] if t >= 6 else 0.0,
                    min(max(t - first_sale, 0), L.WINDOW_DAYS),
                    np.log(price / list_price),
                    float(np.log1p(act["followers"].to_numpy(float)).sum()),
                    sum(
                        c["impressions"]
                        for c, pub in zip(counts, act["publish_day"], strict=True)
                        if pub == t
                    ),
                    prev_n if t - 1 >= first_sale else 0,
                    prev_imp if t - 1 >= first_sale else 0.0,
                    category if known else -1,
                ),
            )
            seen.append(float(units))
            prev_n, prev_imp = len(act), float(sums[4])
            ref = day_input(hk, sk, prod)
            np.testing.assert_allclose(x[pi, t], ref, rtol=1e-5, atol=1e-5)
            checked += 1
    assert checked == data.n_products * data.n_days


def test_conformal_covers_its_level():
    rng = np.random.default_rng(0)
    c = Conformal.fit(rng.standard_normal(4000), level=0.8)
    test = rng.standard_normal(20000)
    cover = np.mean((test >= c.q_lo) & (test <= c.q_hi))
    assert 0.78 < cover < 0.82
    assert c.q_lo < 0 < c.q_hi


def test_conformal_by_bucket_covers_each_bucket():
    """Residuals whose spread falls with a column of x (as forecast errors fall with a product's
    active videos): one interval over-covers the quiet rows and under-covers the noisy ones; the
    interval per quantile bucket of that column covers each bucket at its level. Too few held-out
    rows for two buckets of min_rows give the one interval; the buckets survive a JSON round trip."""
    rng = np.random.default_rng(0)

    def draw(n):
        v = rng.uniform(0.0, 4.0, n)
        return v, rng.standard_normal(n) * (1.5 - 0.3 * v)

    v, r = draw(8000)
    one = Conformal.fit(r, level=0.8)
    by = Conformal.fit(r, level=0.8, by=v, column=2, buckets=4, min_rows=500)
    assert len(by.edges) == 3 and sum(by.n_by) == 8000 and min(by.n_by) >= 500
    assert (one.q_lo, one.q_hi) == (by.q_lo, by.q_hi)  # the all-rows quantiles are kept
    vt, rt = draw(40000)
    x = np.zeros((vt.size, 3))
    x[:, 2] = vt
    lo, hi = by.offsets(x)
    inside = (rt >= lo) & (rt <= hi)
    inside_one = (rt >= one.q_lo) & (rt <= one.q_hi)
    b = by.bucket(vt)
    cover = [inside[b == j].mean() for j in range(4)]
    cover_one = [inside_one[b == j].mean() for j in range(4)]
    assert all(0.77 < c < 0.83 for c in cover), cover
    assert cover_one[0] < 0.75 and cover_one[-1] > 0.88  # one interval misses by bucket
    assert 0.78 < inside.mean() < 0.82
    assert not Conformal.fit(r[:999], level=0.8, by=v[:999], column=2, min_rows=500).edges
    back = Conformal(**json.loads(json.dumps(asdict(by))))
    assert back == by
    with pytest.raises(ValueError, match="quantiles per bucket"):
        Conformal(edges=(1.0,), column=2, q_lo_by=(-1.0,), q_hi_by=(1.0,), n_by=(5,))


def test_step_takes_each_rows_bucket_interval():
    """The served step applies the interval of each row's bucket of active videos."""
    torch.manual_seed(0)
    cfg = LammConfig()
    col = cfg.x_column("n_active")
    conf = Conformal(
        q_lo=-1.0,
        q_hi=1.0,
        column=col,
        edges=(2.0,),
        q_lo_by=(-1.5, -0.5),
        q_hi_by=(1.5, 0.5),
        n_by=(600, 600),
    )
    fc = LammForecaster(Lamm(cfg), conf, with_baseline=False)
    fc.model.y_mean.fill_(5.0)  # units well above 0, so no bound is clipped
    x = np.zeros((4, cfg.x_dim), np.float32)
    x[:, col] = [0.5, 1.9, 2.0, 3.5]
    out = fc.step(fc.init_state(4), x)
    z_lo = np.log1p(out.lower) - np.log1p(out.point)
    z_hi = np.log1p(out.upper) - np.log1p(out.point)
    scale = fc.model.y_std.item()
    np.testing.assert_allclose(z_hi / scale, [1.5, 1.5, 0.5, 0.5], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(z_lo / scale, [-1.5, -1.5, -0.5, -0.5], rtol=1e-4, atol=1e-4)


def test_train_save_load_and_protocol(dataset, tmp_path):
    data = load_lamm_data(dataset)
    tc = TrainConfig(epochs=2, batch_products=4, bf16=False)
    fc, info = train_lamm(data, LammConfig(), tc, log=lambda *_: None)
    assert info["n_calib_products"] >= 1 and len(info["history"]) == 2
    fc.save(tmp_path / "ck")
    fc2 = LammForecaster.load(tmp_path / "ck")
    assert fc2.model_version == fc.model_version and fc.model_version.startswith("lamm-")
    client = InProcessClient(fc2, ConstantElasticityAdvisor(), max_batch=7)
    vb = random_videos(10)
    h = client.encode(vb)
    assert h.shape == (10, 128)
    np.testing.assert_allclose(h, fc.encode(vb), rtol=1e-5, atol=1e-5)
    x = np.concatenate(
        [h[:4], np.zeros((4, SIDE_DIM)), np.tile(product_features(20, 50, 90, 3, 1), (4, 1))], 1
    ).astype(np.float32)
    out = client.step(client.init_state(4), x)
    assert out.state.shape == (4, fc.state_dim) and out.point.shape == (4,) and out.level == 0.8
    assert np.all(out.lower <= out.point) and np.all(out.point <= out.upper) and np.all(out.lower >= 0)
    assert out.baseline is not None and out.baseline.shape == (4,)
    # the stepwise forecaster reproduces the training-time prediction for a real product sequence
    b = make_batch(data, np.array([0]))
    with torch.inference_mode():
        x_seq = build_day_inputs(fc.model.encode_packed(*b.videos()), b).numpy()[0]  # (D, F)
    st = fc.init_state(1)
    zs = []
    for t in range(data.n_days - 1):
        o = fc.step(st, x_seq[t : t + 1])
        st = o.state
        zs.append(np.log1p(o.point[0]))
    # ... the blend of LAMM and its GBM head included (training's _blend_z)
    assert fc.gbm is not None and fc2.gbm is not None and fc2.gbm.model_str == fc.gbm.model_str
    ref = _blend_z(fc.model, fc.gbm, data, np.array([0]))[0] * float(fc.model.y_std) + float(fc.model.y_mean)
    np.testing.assert_allclose(zs, np.clip(ref, 0, None), rtol=1e-4, atol=1e-4)


def test_fit_l1_loss_and_cosine_decay(dataset):
    """loss="l1" early-stops on held-out MAE (the kept epoch's), lr_decay="cosine" ends the budget at lr 0."""
    from inference.lamm_train import fit, masked_loss, norm_constants, split_calib, targets_z

    data = load_lamm_data(dataset)
    fit_p, cal_p = split_calib(np.arange(data.n_products), 0.34, 0)
    norm = norm_constants(data, fit_p)
    torch.manual_seed(0)
    m = Lamm(LammConfig())
    tc = TrainConfig(epochs=3, patience=3, batch_products=2, bf16=False, loss="l1", lr_decay="cosine")
    info = fit(m, data, fit_p, cal_p, norm, tc, log=lambda *_: None)
    hist = info["history"]
    assert len(hist) == 3 and hist[-1]["lr"] == pytest.approx(0.0, abs=1e-12) and hist[0]["lr"] > 0
    best = min(h["val_loss"] for h in hist)
    assert info["best_val_loss"] == pytest.approx(best)
    pred = predict_z(m, data, cal_p)  # the kept weights reproduce the kept epoch's held-out MAE
    tgt = targets_z(data, cal_p, norm)
    assert masked_loss(pred, tgt, "l1") == pytest.approx(best, rel=1e-5)
    ok = ~np.isnan(tgt)
    assert best == pytest.approx(float(np.mean(np.abs(pred[ok] - tgt[ok]))), rel=1e-5)


def test_load_reads_a_v2_day_model_and_refuses_another_x(tmp_path):
    """A checkpoint saved before tab_dropout / skip_hidden existed loads as the v2 day model (linear
    skip under its old name); one trained on a day input of another width fails with a clear error."""
    torch.manual_seed(0)
    fc = LammForecaster(Lamm(LammConfig(skip_hidden=0, tab_dropout=True)), Conformal())
    path = fc.save(tmp_path / "v2")
    cfg = json.loads((path / "config.json").read_text())
    del cfg["skip_hidden"], cfg["tab_dropout"]
    (path / "config.json").write_text(json.dumps(cfg))
    w = torch.load(path / "weights.pt", weights_only=True)
    w["skip.weight"], w["skip.bias"] = w.pop("skip.linear.weight"), w.pop("skip.linear.bias")
    torch.save(w, path / "weights.pt")
    back = LammForecaster.load(path)
    assert back.cfg.skip_hidden == 0 and back.cfg.tab_dropout
    x = torch.randn(3, back.cfg.x_dim)
    s0 = torch.zeros(3, 2 * back.cfg.hidden)
    with torch.inference_mode():
        torch.testing.assert_close(back.model.step(s0, x)[1], fc.model.step(s0, x)[1])
    w["lstm.weight_ih_l0"] = w["lstm.weight_ih_l0"][:, :-4]  # as if trained on the 4-column-narrower v2 x
    torch.save(w, path / "weights.pt")
    with pytest.raises(ValueError, match="retrain"):
        LammForecaster.load(path)


def test_train_or_load_caches(dataset, tmp_path):
    tc = TrainConfig(epochs=1, batch_products=4, bf16=False)
    a = train_or_load(dataset, tmp_path, train=tc, log=lambda *_: None)
    assert len(list(tmp_path.glob("lamm-*"))) == 1
    b = train_or_load(dataset, tmp_path, train=tc, log=lambda *_: None)
    assert a.model_version == b.model_version
    assert a.meta["n_days"] == 6  # meta history_days = 6: trained on days 0..5


def test_cli_train_and_evaluate(dataset, tmp_path, capsys):
    from inference.lamm_train import cli_evaluate, cli_train

    assert (
        cli_train(["--data", str(dataset), "--out", str(tmp_path / "ck"), "--epochs", "1", "--no-bf16"]) == 0
    )
    fc = LammForecaster.load(tmp_path / "ck")
    assert fc.model_version.startswith("lamm-") and fc.conformal.n_calib > 0
    args = ["--data", str(dataset), "--out", str(tmp_path / "ev"), "--epochs", "1", "--folds", "2"]
    assert cli_evaluate([*args, "--models", "LAMM,LAMM+GBM,SeasonalNaive", "--ablations", ""]) == 0
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "| LAMM |" in report and "| LAMM+GBM |" in report
    assert "## The served forecaster (LAMM+GBM" in report and "| SeasonalNaive | 2 |" in report
    assert "saved lamm-" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--gbm-weight", "1.5"], "1.5"),
        (["--gbm-weight", "half"], "half"),
        (["--permutation", "frame,smell"], "smell"),
        (["--content-scores"], "--ablations="),  # the removal ablations are on by default
    ],
)
def test_cli_evaluate_refuses_bad_flags(dataset, tmp_path, capsys, flags, named):
    """A bad blend weight or modality name is a usage error naming it, before any training."""
    from inference.lamm_train import _gbm_weight, cli_evaluate

    with pytest.raises(SystemExit) as exc:
        cli_evaluate(["--data", str(dataset), "--out", str(tmp_path / "ev"), *flags])
    assert exc.value.code == 2
    out = capsys.readouterr()
    assert named in out.err and "products x" not in out.out  # refused before the data is read
    assert not (tmp_path / "ev").exists()
    assert _gbm_weight("auto") is None and _gbm_weight("0") == 0.0 and _gbm_weight("0.3") == 0.3


def test_stream_build_x_equals_training_day_input(tmp_path):
    """Replaying the dataset's events through streams.state gives, at each day close, the x training builds
    (engagement sums, weekday and all): one definition for both sides."""
    from inference.sim import simulate
    from inference.sim.events import iter_events
    from streams.state import apply_event, day_ordinal

    dataset = tmp_path / "tiny"
    simulate("tiny", seed=3).write_dataset(dataset)  # a world the event replay accepts as is
    data = load_lamm_data(dataset)
    torch.manual_seed(0)
    m = Lamm(LammConfig()).eval()
    b = make_batch(data, np.arange(data.n_products))
    with torch.inference_mode():
        h = m.encode(*b.videos())
        x = build_day_inputs(h, b).numpy()  # (P, D, F)
    videos = ds.read_table(dataset, "videos").to_pandas()
    order = videos.assign(p=videos["product_id"].map({p: i for i, p in enumerate(data.product_ids)}))
    order = order.sort_values(["p", "publish_day", "video_id"], kind="stable")
    hv = dict(zip(order["video_id"], h.numpy(), strict=True))
    p_index = {p: i for i, p in enumerate(data.product_ids)}
    start = date.fromisoformat(ds.read_meta(dataset)["start_date"])
    states: dict = {}
    checked = 0
    for ev in iter_events(dataset, inline_features=False):
        vid = getattr(ev, "video_id", None)
        enc = hv[vid] if type(ev).__name__ == "VideoPublished" else None
        states[ev.product_id], res = apply_event(states.get(ev.product_id), ev, h=enc, h_dim=128)
        for req in res.forecasts:
            if req.kind != "day_close":
                continue
            t = (ev.day - start).days
            assert req.issued_day == day_ordinal(ev.day)
            np.testing.assert_allclose(req.xs[-1], x[p_index[ev.product_id], t], rtol=1e-5, atol=1e-5)
            checked += 1
    assert checked > data.n_products


def _ablation_res(increase: dict[str, float], noise: float = 0.0) -> dict:
    """Five folds of LAMM and its four ablations; ``increase[modality]`` is added to LAMM's MAE."""
    from inference.lamm_train import ABLATION_MODALITY

    rng = np.random.default_rng(0)
    folds = []
    for k in range(5):
        base = 0.42 + 0.002 * k
        metrics = lambda mae: {"mae": mae, "mse": mae * mae, "mape": mae}  # noqa: E731
        folds.append(
            {
                "models": {"LAMM": metrics(base)},
                "ablations": {
                    ab: metrics(base + increase[m] + noise * rng.standard_normal())
                    for ab, m in ABLATION_MODALITY.items()
                },
            }
        )
    return {"per_fold": folds, "truth_importance": {"order": ["frame", "text", "motion", "audio"]}}


def test_permutation_rows_are_ordered_and_tested_like_the_ablation():
    """The permutation group gets its own order, paired t-tests against LAMM and truth match."""
    from inference.lamm_train import summarize

    res = _ablation_res({"frame": 0.0, "text": 0.0, "motion": 0.0, "audio": 0.0})
    rng = np.random.default_rng(1)
    use = {"frame": 0.004, "text": 0.002, "motion": 0.001, "audio": 0.0005}
    for f in res["per_fold"]:
        base = f["models"]["LAMM"]["mae"]
        f["permutation"] = {
            m: {"mae": base + d + 1e-5 * rng.standard_normal(), "mse": 0, "mape": 0} for m, d in use.items()
        }
    s = summarize(res)
    assert s["permutation_order"] == ["frame", "text", "motion", "audio"]
    assert s["permutation_mae_increase"]["frame"] == pytest.approx(0.004, abs=1e-4)
    assert s["permutation"]["audio"]["mae_p"] < 0.05 and s["permutation_order_matches_truth"] is True
    assert s["ablation_order_matches_truth"] is False  # the removal rows show nothing here
    res["per_fold"][2]["permutation"]["audio"]["mae"] = res["per_fold"][2]["models"]["LAMM"]["mae"] + 0.02
    s = summarize(res)  # one fold's outlier puts audio first: order and match both fail
    assert s["permutation_order"][0] == "audio" and s["permutation_order_matches_truth"] is False


def test_ablation_match_needs_positive_significant_increases():
    from inference.lamm_train import summarize

    truth_like = {"frame": 0.02, "text": 0.01, "motion": 0.006, "audio": 0.003}
    s = summarize(_ablation_res(truth_like, noise=0.0005))
    assert s["ablation_order"] == ["frame", "text", "motion", "audio"]
    assert s["ablation_increases_positive"] and s["ablation_increases_significant"]
    assert s["ablation_order_matches_truth"] is True

    # the same order of four deltas below zero (no removal hurts) is not a match
    hurts_none = {m: -1e-4 * (5 - i) for i, m in enumerate(["audio", "motion", "text", "frame"])}
    s = summarize(_ablation_res(hurts_none, noise=0.00001))
    assert s["ablation_order"] == ["frame", "text", "motion", "audio"] and s["ablation_order_same_as_truth"]
    assert not s["ablation_increases_positive"]
    assert s["ablation_order_matches_truth"] is False


@pytest.mark.parametrize("command", ["train", "evaluate", "fit-fei"])
def test_cli_reports_a_bad_dataset_folder_in_one_line(tmp_path, capsys, command):
    """A folder that is not a dataset: exit 2 and a message naming what is missing, no traceback."""
    from streams.cli import main

    flag = "--dataset" if command == "fit-fei" else "--data"
    assert main([command, flag, str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr()
    assert "missing" in err.err + err.out and "Traceback" not in err.err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, says",
    [
        (["--only-folds", "9"], "only_folds [9]"),  # ran a whole fold on no test products, NaN row
        (["--only-folds", "1,1"], "each fold at most once"),
        (["--only-folds", "a"], "--only-folds"),
        (["--max-folds", "6"], "max_folds"),
        (["--folds", "1"], "folds must be >= 2"),
        (["--models", "LAMM,LGBM"], "['LGBM']"),  # found after a fold's LAMM before
        (["--ablations", "w/o smell"], "['w/o smell']"),
    ],
)
def test_evaluate_refuses_bad_arguments_before_training(tmp_path, capsys, monkeypatch, args, says):
    """Arguments evaluate cannot run are refused at once, with exit 2 and a message naming the
    argument, before the dataset is even read."""
    import inference.lamm_train as T
    from streams.cli import main

    def not_reached(*a, **k):
        raise AssertionError("read the dataset before checking the arguments")

    monkeypatch.setattr(T, "load_lamm_data", not_reached)
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "out"), *args])
    assert e.value.code == 2 and says in capsys.readouterr().err
    with pytest.raises(ValueError, match="only_folds"):  # the function checks too
        T.check_evaluate_args(5, ("LAMM",), (), only_folds=(5,))
    T.check_evaluate_args(5, ("LAMM", "LightGBM"), ("w/o frame",), max_folds=5, only_folds=(0, 4))


def test_training_refuses_fewer_than_two_products(dataset, tmp_path, capsys):
    """One product leaves none to hold out: it was a LightGBM 'no held-out targets' traceback."""
    from inference.lamm_train import train_lamm

    data = load_lamm_data(dataset)
    with pytest.raises(ValueError, match="training needs >= 2 products"):
        train_lamm(data, LammConfig(), TrainConfig(epochs=1, bf16=False), products=np.array([0]))


def test_evaluate_refuses_more_folds_than_products(dataset, tmp_path):
    from inference.lamm_train import evaluate

    data = load_lamm_data(dataset)
    with pytest.raises(ValueError, match=f"need at least {data.n_products + 1} products"):
        evaluate(
            data, tmp_path, folds=data.n_products + 1, models=("SeasonalNaive",), ablations=(), permutation=()
        )
    assert not any(tmp_path.iterdir())  # refused before writing anything


def test_model_folders_that_are_missing_or_incomplete_get_one_line(tmp_path, capsys):
    """A wrong --model / --forecaster path: ModelDirError naming the folder, what is missing and
    the command that writes it; through the CLI exit 2 and no traceback."""
    from inference.fei import FeiAdvisor
    from inference.model_dir import ModelDirError
    from streams.cli import main

    with pytest.raises(ModelDirError, match="no such model directory.*liftstream train"):
        LammForecaster.load(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ModelDirError, match="missing weights.pt, meta.json, conformal.json"):
        LammForecaster.load(tmp_path / "half")
    with pytest.raises(ModelDirError, match="written by `liftstream fit-fei` \\(missing weights.pt\\)"):
        FeiAdvisor.load(tmp_path / "half")
    argv = [
        "advise",
        "--model",
        str(tmp_path / "half"),
        "--dataset",
        str(tmp_path),
        "--value",
        "0.02",
        "--cost",
        "5",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "missing weights.pt" in err and "Traceback" not in err


@pytest.mark.parametrize("native", [False, True])
def test_training_uses_bf16_only_where_the_cpu_has_it(native, monkeypatch):
    """TrainConfig's default (bf16=None) autocasts the encoder to bf16 only on CPUs with native
    bf16: where oneDNN emulates it (AVX2) it ran 8-9x slower than fp32. An explicit True / False
    still forces either."""
    import inference.lamm_train as T

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert TrainConfig().bf16 is None and T.native_bf16() is native
    torch.manual_seed(0)
    m = Lamm(LammConfig()).eval()
    n, s, t = 3, L.MAX_SEGMENTS, L.MAX_TITLE_TOKENS
    feats = [torch.randn(n, s, L.FEATURE_DIM) for _ in range(3)]
    seg_mask = torch.arange(s)[None] < torch.tensor([[2], [5], [9]])
    title, title_mask = (
        torch.randn(n, t, L.FEATURE_DIM),
        torch.arange(t)[None] < torch.tensor([[3], [7], [4]]),
    )

    class _Batch:
        def videos(self):
            return (*feats, seg_mask, title, title_mask)

    with torch.inference_mode():
        auto, fp32, bf16 = (T._encode(m, _Batch(), b) for b in (None, False, True))
    assert not torch.equal(fp32, bf16)  # the two paths differ, so the check below can tell them apart
    torch.testing.assert_close(auto, bf16 if native else fp32, rtol=0, atol=0)

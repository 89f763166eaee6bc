"""Content scores (inference.content_scores): detectors, PE-score, the conversion fit, the channel,
the dataset's annotations/, and LAMM with the content-lift channel (train, save, load, refusals)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from inference import content_scores as CS
from inference.daily import SIDE_DIM
from inference.lamm import Lamm, LammConfig, LammForecaster
from inference.lamm_data import (
    build_day_inputs,
    content_channel,
    content_channel_torch,
    load_lamm_data,
    make_batch,
)
from inference.lamm_train import TrainConfig, _blend_z, evaluate, train_lamm, with_content
from inference.sim import simulate
from schemas import dataset as ds
from schemas import limits as L


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("cs") / "tiny"
    simulate("tiny", seed=5).write_dataset(root)
    return root


def _segments(n, s, f, rng):
    """Random segment features whose first direction carries a label in [0, 1]."""
    label = rng.random((n, s))
    x = rng.normal(0, 0.05, (n, s, f)).astype(np.float32)
    x[..., 0] += label
    return x, label


def test_detectors_learn_their_labels_and_pe_is_the_engagement_weighted_presence():
    rng = np.random.default_rng(0)
    n, s, f = 300, 6, 8
    (fr, p), (mo, e), (au, a) = (_segments(n, s, f, rng) for _ in range(3))
    mask = np.ones((n, s), bool)
    mask[:, 4:] = rng.random((n, 2)) < 0.5
    title = rng.normal(0, 0.05, (n, 3, f)).astype(np.float32)
    names = (rng.random(n) < 0.5).astype(np.float32)
    title[:, 0, 1] += names
    det = CS.fit_detectors(fr, mo, au, mask, title, {"frame": p, "motion": e, "audio": a}, names)
    sc = CS.scores(det, fr, mo, au, mask, title)
    assert sc.shape == (n, len(CS.SCORES)) and sc.dtype == np.float32
    m = mask.astype(float)
    pe = (p * e * m).sum(1) / (e * m).sum(1)
    assert np.corrcoef(sc[:, CS.SCORES.index("pe")], pe)[0, 1] > 0.95  # clipping to [0, 1] costs a little
    assert np.corrcoef(sc[:, CS.SCORES.index("names")], names)[0, 1] > 0.98
    # padded segments count for nothing
    fr2 = fr.copy()
    fr2[~mask] = 100.0
    np.testing.assert_allclose(CS.scores(det, fr2, mo, au, mask, title), sc, rtol=1e-5, atol=1e-5)


def test_match_finds_whether_the_frames_show_the_named_product():
    """Frames show a product identity (in proportion to presence) beside a style look and noise; the
    brand token carries the advertised product's identity. Without labels, the CCA finds the
    shared directions and the match separates "shows the named product" from "shows another"."""
    rng = np.random.default_rng(1)
    n, s, f, k = 3000, 8, 24, 4
    basis = rng.normal(0, 1, (k, f)) / np.sqrt(f)  # identity directions
    advertised = rng.normal(0, 1, (n, k))
    shows = rng.random(n) < 0.7
    shown = np.where(shows[:, None], advertised, rng.normal(0, 1, (n, k)))
    p = rng.random((n, s))
    style = rng.normal(0, 1, (n, f)) * 0.2
    frame = (p[..., None] * (shown @ basis)[:, None, :] + style[:, None, :]).astype(np.float32)
    frame += rng.normal(0, 0.1, frame.shape).astype(np.float32)
    brand = (advertised @ basis + rng.normal(0, 0.05, (n, f))).astype(np.float32)
    look = CS.product_look(frame, p)
    fit, held = slice(0, n // 2), slice(n // 2, n)
    det = CS.Detectors(None, None, None, None, None, **CS.fit_match(look[fit], brand[fit], k=k))
    m = CS.match_score(det, look[held], brand[held])
    assert m.shape == (n - n // 2,) and m.min() >= 0 and m.max() <= 1
    assert m[shows[held]].mean() > 0.8 and m[~shows[held]].mean() < 0.3
    # a shuffled brand token (the product is not the named one) reads as no match
    assert CS.match_score(det, look[held], brand[held][::-1]).mean() < 0.3
    # the brand token is the title token with the largest projection; padding never wins
    title = np.zeros((2, 3, f), np.float32)
    title[0, 1] = brand[0]
    title[0, 0] = -brand[0]
    direction = np.append(brand[0], 0.0)
    top, token = CS.title_reads(title, direction)
    np.testing.assert_array_equal(token[0], brand[0])
    np.testing.assert_array_equal(token[1], np.zeros(f))
    assert top[1] == 0.0 and np.isclose(top[0], brand[0] @ brand[0], rtol=1e-5)
    with pytest.raises(ValueError, match="fit_match"):
        CS.fit_match(look[:5], brand[:4])


def test_fit_detectors_refuses_mismatched_labels():
    x = np.zeros((4, 3, 2), np.float32)
    with pytest.raises(ValueError, match="labels"):
        CS.fit_detectors(
            x,
            x,
            x,
            np.ones((4, 3), bool),
            x,
            {"frame": np.zeros((4, 2)), "motion": 0, "audio": 0},
            np.zeros(4),
        )


def test_fit_conversion_recovers_known_weights():
    """Same-day Poisson sales = organic base + sum of exp(b + w . phi_v) x impressions."""
    rng = np.random.default_rng(1)
    n_p, d, per = 120, 10, 6
    w_true = np.array([0.8, -0.5, 0.0])
    phi = rng.normal(size=(n_p * per, 3))
    prod = np.repeat(np.arange(n_p), per)
    pairs = [(v, t) for v in range(n_p * per) for t in range(d) if rng.random() < 0.6]
    pv = np.array([v for v, _ in pairs])
    pt = np.array([t for _, t in pairs])
    imp = rng.gamma(2.0, 500.0, len(pv))
    base = np.exp(rng.normal(2.5, 0.3, n_p))[:, None] * np.ones((1, d))
    lift = np.zeros((n_p, d))
    np.add.at(lift, (prod[pv], pt), np.exp(-5.0 + phi[pv] @ w_true) * imp)
    units = rng.poisson(base + lift).astype(float)
    units[0, 3] = np.nan  # a missing sales row is skipped
    w = CS.fit_conversion(units, np.zeros((n_p, d)), prod[pv], pt, pv, imp, phi, steps=800)
    np.testing.assert_allclose(w, w_true, atol=0.12)


def test_lift_channel_numpy_equals_torch():
    rng = np.random.default_rng(2)
    q, imp = rng.normal(size=7), rng.integers(0, 5000, 7)
    slot = torch.tensor([0, 0, 0, 2, 2, 2, 2])
    ch = content_channel_torch(torch.tensor(q), torch.tensor(np.log1p(imp)), slot, 4).numpy()
    assert ch[1] == 0.0 and ch[3] == 0.0  # slots with no video
    np.testing.assert_allclose(ch[0], CS.lift_channel(q[:3], imp[:3]), rtol=1e-9)
    np.testing.assert_allclose(ch[2], CS.lift_channel(q[3:], imp[3:]), rtol=1e-9)
    assert CS.lift_channel(np.zeros(0), np.zeros(0)) == 0.0


def test_simulator_writes_annotations_that_read_back(world):
    table, seg = ds.read_annotations(world)
    n = table.num_rows
    assert n == min(2000, pq.read_metadata(world / "videos.parquet").num_rows) and n > 0
    assert seg.shape == (n, L.MAX_SEGMENTS, 3) and seg.min() >= 0 and seg.max() <= 1
    truth = pq.read_table(world / "truth" / "videos.parquet").to_pandas().set_index("video_id")
    ids = table.column("video_id").to_pylist()
    np.testing.assert_array_equal(
        table.column("title_names_product").to_numpy(zero_copy_only=False),
        truth.loc[ids, "title_names_product"],
    )
    rows = truth.loc[ids, "feature_row"].to_numpy()
    np.testing.assert_allclose(
        seg[..., 0], np.load(world / "truth" / "seg_product.npy")[rows].astype(np.float32)
    )


def test_read_annotations_refuses_bad_folders(tmp_path):
    assert ds.read_annotations(tmp_path) is None  # none is fine
    a = tmp_path / "annotations"
    a.mkdir()
    with pytest.raises(ds.DatasetError, match="missing"):
        ds.read_annotations(tmp_path)
    pq.write_table(
        pa.table({"video_id": ["v1", "v2"], "title_names_product": [True, False]}), a / "videos.parquet"
    )
    np.save(a / "segments.npy", np.zeros((3, L.MAX_SEGMENTS, 3), np.float16))
    with pytest.raises(ds.DatasetError, match="shape"):
        ds.read_annotations(tmp_path)
    np.save(a / "segments.npy", np.full((2, L.MAX_SEGMENTS, 3), 2.0, np.float16))
    with pytest.raises(ds.DatasetError, match=r"\[0, 1\]"):
        ds.read_annotations(tmp_path)
    pq.write_table(
        pa.table({"video_id": ["v1", "v1"], "title_names_product": [True, False]}), a / "videos.parquet"
    )
    np.save(a / "segments.npy", np.zeros((2, L.MAX_SEGMENTS, 3), np.float16))
    with pytest.raises(ds.DatasetError, match="unique"):
        ds.read_annotations(tmp_path)
    # an annotated video the dataset does not have
    pq.write_table(
        pa.table({"video_id": ["v1", "v2"], "title_names_product": [True, False]}), a / "videos.parquet"
    )
    pq.write_table(pa.table({"video_id": ["v1"]}), tmp_path / "videos.parquet")
    with pytest.raises(ds.DatasetError, match="not in videos.parquet"):
        ds.read_annotations(tmp_path)
    pq.write_table(pa.table({"video_id": ["v0", "v2", "v1"]}), tmp_path / "videos.parquet")
    pos, seg, names = ds.annotations_for(tmp_path, ["v2", "v1"])  # a caller's subset and order
    assert pos.tolist() == [1, 0] and seg.shape == (2, L.MAX_SEGMENTS, 3) and names.tolist() == [1.0, 0.0]
    pos, seg, names = ds.annotations_for(tmp_path, ["v0", "v2"])  # v1 left out
    assert pos.tolist() == [1] and names.tolist() == [0.0]


def test_step_parity_and_counterfactual_with_the_channel():
    torch.manual_seed(0)
    cfg = LammConfig(content_channel=True)
    assert cfg.x_dim == LammConfig().x_dim + 1
    m = Lamm(cfg).eval()
    x = torch.randn(3, 5, cfg.x_dim)
    with torch.inference_mode():
        z_full, _ = m.forward_days(x)
        state, zs = torch.zeros(3, 2 * cfg.hidden), []
        for t in range(5):
            state, z = m.step(state, x[:, t])
            zs.append(z)
        torch.testing.assert_close(torch.stack(zs, 1), z_full, rtol=1e-5, atol=1e-5)
        s = torch.randn(3, 2 * cfg.hidden)
        _, _, z0 = m.step(s, x[:, 0], baseline=True)
        x0 = x[:, 0].clone()
        x0[:, : cfg.d_model + SIDE_DIM] = 0
        x0[:, [cfg.d_model + c for c in m.no_video_cols]] = 0
        assert x0[:, -1].eq(0).all()  # the channel is a "there are videos" column too
        _, z0_ref = m.step(s, x0)
    torch.testing.assert_close(z0, z0_ref, rtol=1e-5, atol=1e-5)


def test_train_with_content_scores_save_load_and_refusals(world, tmp_path):
    data = load_lamm_data(world)
    assert data.annotations is not None
    tc = TrainConfig(epochs=1, batch_products=4, bf16=False, content_scores=True)
    fc, _ = train_lamm(data, LammConfig(), tc, log=lambda *_: None)
    assert fc.cfg.content_channel and fc.content is not None
    fc.save(tmp_path / "ck")
    fc2 = LammForecaster.load(tmp_path / "ck")
    assert fc2.model_version == fc.model_version
    np.testing.assert_allclose(fc2.content.w, fc.content.w)
    # the day input training builds carries the channel, and the numpy twin agrees with it
    view = with_content(data, np.arange(data.n_products), model=fc.content, log=lambda *_: None)
    b = make_batch(view, np.array([0, 1]))
    with torch.inference_mode():
        x = build_day_inputs(fc.model.encode_packed(*b.videos()), b)
    assert x.shape[-1] == fc.cfg.x_dim
    np.testing.assert_allclose(
        x[..., -1].numpy(), content_channel(view, np.array([0, 1]))[..., 0], rtol=1e-5, atol=1e-5
    )
    z = _blend_z(fc2.model, fc2.gbm, view, np.array([0, 1]))
    assert np.isfinite(z).all()
    # served: the encoding carries q_v after h_v, and the clients say the forecaster reads the channel
    from inference.client import AsyncInProcessClient, InProcessClient, VideoBatch
    from inference.standin import ConstantElasticityAdvisor

    client = InProcessClient(fc2, ConstantElasticityAdvisor())
    assert client.content_channel and AsyncInProcessClient(client).content_channel
    rows = data.video_row[:5]
    vb = VideoBatch(
        *(np.asarray(data.features[k][rows], dtype=np.float32) for k in ("frame", "motion", "audio")),
        np.asarray(data.features["seg_mask"][rows], dtype=bool),
        np.asarray(data.features["title"][rows], dtype=np.float32),
        np.asarray(data.features["title_mask"][rows], dtype=bool),
    )
    h = client.encode(vb)
    assert h.shape == (5, fc2.hidden_dim) and fc2.hidden_dim == fc2.cfg.d_model + 1
    np.testing.assert_allclose(h[:, -1], view.video_q[:5], rtol=1e-5, atol=1e-5)
    out = client.step(client.init_state(2), np.zeros((2, fc2.cfg.x_dim), np.float32))
    assert out.point.shape == (2,)


def test_stream_builds_the_training_x_with_the_channel(world):
    """Replaying the events through streams.state with encodings [h_v, q_v] gives, at each day
    close, the x that training builds with the content-lift channel."""
    from datetime import date

    from inference.content_scores import video_q
    from inference.sim.events import iter_events
    from streams.state import apply_event

    data = load_lamm_data(world)
    fc, _ = train_lamm(
        data,
        LammConfig(),
        TrainConfig(epochs=1, bf16=False, content_scores=True, gbm_weight=0),
        log=lambda *_: None,
    )
    view = with_content(data, np.arange(data.n_products), model=fc.content, log=lambda *_: None)
    b = make_batch(view, np.arange(data.n_products))
    with torch.inference_mode():
        h = fc.model.encode_packed(*b.videos())
        x = build_day_inputs(h, b).numpy()  # (P, D, F)
    enc = np.concatenate([h.numpy(), video_q(fc.content, data)[:, None]], axis=1)  # data's video order
    hv = dict(zip(data.video_ids, enc, strict=True))
    p_index = {p: i for i, p in enumerate(data.product_ids)}
    start = date.fromisoformat(ds.read_meta(world)["start_date"])
    states: dict = {}
    checked = 0
    for ev in iter_events(world, inline_features=False):
        e = hv[ev.video_id] if type(ev).__name__ == "VideoPublished" else None
        states[ev.product_id], res = apply_event(
            states.get(ev.product_id), ev, h=e, h_dim=enc.shape[1], content=True
        )
        for req in res.forecasts:
            if req.kind == "day_close":
                t = (ev.day - start).days
                np.testing.assert_allclose(req.xs[-1], x[p_index[ev.product_id], t], rtol=1e-5, atol=1e-5)
                checked += 1
    assert checked > data.n_products and np.abs(x[..., -1]).max() > 0  # the channel is there


def test_evaluate_with_content_scores_refuses_removal_ablations_and_missing_annotations(world, tmp_path):
    data = load_lamm_data(world)
    tc = TrainConfig(epochs=1, content_scores=True)
    with pytest.raises(ValueError, match="permutation ablation"):
        evaluate(data, tmp_path / "e", models=("LAMM",), ablations=("w/o frame",), tc=tc)
    from dataclasses import replace

    with pytest.raises(ValueError, match="annotations"):
        evaluate(replace(data, annotations=None), tmp_path / "e", models=("LAMM",), ablations=(), tc=tc)


def test_evaluate_gives_every_model_the_channel(world, tmp_path, monkeypatch):
    """With content scores the baselines read the same x (their LSTM / trees get the column too),
    and the permutation ablation rescores the shuffled videos."""
    import inference.baselines as B

    seen = {}
    for name in ("fit_predict_lr", "fit_predict_lightgbm"):
        real = getattr(B, name)

        def spy(data, *a, _real=real, _name=name, **kw):
            seen[_name] = data.video_q is not None
            return _real(data, *a, **kw)

        monkeypatch.setattr(B, name, spy)
    real_nb = B.NeuralBaseline

    def spy_nb(cfg):
        seen["NeuralBaseline"] = cfg.content_channel
        return real_nb(cfg)

    monkeypatch.setattr(B, "NeuralBaseline", spy_nb)
    data = load_lamm_data(world)
    tc = TrainConfig(epochs=1, batch_products=4, bf16=False, content_scores=True)
    res = evaluate(
        data,
        tmp_path / "e",
        models=("LAMM", "Concat_MLP", "LR", "LightGBM"),
        ablations=(),
        permutation=("frame",),
        tc=tc,
        max_folds=1,
        log=lambda *_: None,
    )
    fold = res["per_fold"][0]
    assert set(fold["models"]) == {"LAMM", "Concat_MLP", "LR", "LightGBM"}
    assert all(np.isfinite(m["mae"]) for m in fold["models"].values())
    assert res["train"]["content_scores"] and "frame" in fold["permutation"]
    assert seen == {"fit_predict_lr": True, "fit_predict_lightgbm": True, "NeuralBaseline": True}


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_cli_content_scores_without_annotations_is_one_line(world, tmp_path, capsys, command):
    import shutil

    from streams.cli import main

    bare = tmp_path / "bare"
    shutil.copytree(world, bare, ignore=shutil.ignore_patterns("annotations"))
    argv = [command, "--data", str(bare), "--out", str(tmp_path / "out"), "--content-scores", "--epochs", "1"]
    assert main(argv + (["--ablations="] if command == "evaluate" else [])) == 2
    err = capsys.readouterr()
    assert "annotations/" in err.err + err.out and "Traceback" not in err.err

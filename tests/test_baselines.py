"""Baselines: shapes, the numpy day input == the torch one, each baseline fits and predicts on a tiny
random dataset, the CV driver writes its report (a few seconds in all)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from inference import baselines as B
from inference.lamm import Lamm, LammConfig
from inference.lamm_data import build_day_inputs, load_lamm_data, make_batch
from inference.lamm_train import (
    TrainConfig,
    evaluate,
    fit,
    fold_assignment,
    merge_results,
    norm_constants,
    predict_z,
    targets_z,
)
from tests.test_lamm import _t, random_videos, write_random_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_lamm_data(
        write_random_dataset(tmp_path_factory.mktemp("ds") / "rand", n_products=10, n_days=9)
    )


@pytest.mark.parametrize("name", list(B.NEURAL))
def test_neural_baseline_shapes(name):
    torch.manual_seed(0)
    m = B.NeuralBaseline(B.NEURAL[name]).eval()
    vb = random_videos(9)
    with torch.inference_mode():
        h = m.encode(*_t(vb))
        hp = m.encode_packed(*_t(vb), chunk=4)
        z, _ = m.forward_days(torch.randn(3, 5, m.cfg.x_dim))
    assert h.shape == (9, 128) and z.shape == (3, 5)
    torch.testing.assert_close(hp, h, rtol=1e-4, atol=1e-5)


def test_numpy_day_inputs_match_torch(data):
    p = np.arange(data.n_products)
    h = np.random.default_rng(0).standard_normal((data.n_videos, 128)).astype(np.float32)
    b = make_batch(data, p)
    ref = build_day_inputs(torch.from_numpy(h), b).numpy()
    np.testing.assert_allclose(B.day_inputs_numpy(data, p, h), ref, rtol=1e-5, atol=1e-5)


def test_seasonal_naive_is_yesterday(data):
    p = np.arange(data.n_products)
    norm = norm_constants(data, p)
    pred = B.predict_seasonal_naive(data, p, norm)
    y = data.log_units()
    ok = ~np.isnan(y[:, :-1])
    np.testing.assert_allclose(pred[ok], ((y[:, :-1] - norm["y_mean"]) / norm["y_std"])[ok])


def test_lr_and_lightgbm_fit_and_predict(data):
    p = np.arange(data.n_products)
    norm = norm_constants(data, p[:7])
    lr = B.fit_predict_lr(data, p[:7], p[7:], norm)
    gb = B.fit_predict_lightgbm(data, p[:5], p[5:7], p[7:], norm)
    assert lr.shape == gb.shape == (3, data.n_days - 1)
    assert np.isfinite(lr).all() and np.isfinite(gb).all()
    table = B.lgbm_table(data, p)
    assert table.shape == (data.n_products, data.n_days, len(B.LGBM_FEATURES))


def test_neural_baseline_trains(data):
    p = np.arange(data.n_products)
    norm = norm_constants(data, p[:8])
    torch.manual_seed(0)
    m = B.NeuralBaseline(B.NEURAL["Gate_MLP"])
    info = fit(
        m, data, p[:8], p[8:], norm, TrainConfig(epochs=2, batch_products=4, bf16=False), log=lambda *_: None
    )
    assert len(info["history"]) == 2
    assert predict_z(m, data, p[8:]).shape == targets_z(data, p[8:], norm).shape


def test_fold_assignment_is_a_partition():
    f = fold_assignment(23, 5, seed=0)
    assert sorted(np.bincount(f).tolist()) == [4, 4, 5, 5, 5]
    assert np.array_equal(f, fold_assignment(23, 5, seed=0))


def test_evaluate_writes_report(data, tmp_path):
    tc = TrainConfig(epochs=1, batch_products=4, bf16=False)
    res = evaluate(
        data,
        tmp_path,
        folds=2,
        models=("LAMM", "Concat_MLP", "LR", "SeasonalNaive"),
        ablations=("w/o text",),
        tc=tc,
        log=lambda *_: None,
    )
    s = res["summary"]
    assert set(s["models"]) == {"LAMM", "Concat_MLP", "LR", "SeasonalNaive"}
    assert "mae_p" in s["models"]["LR"] and len(s["models"]["LAMM"]["mae"]) == 2
    assert 0.0 <= s["coverage"]["mean"] <= 1.0
    assert (tmp_path / "report.md").read_text().startswith("# LAMM evaluation")
    assert (tmp_path / "models.png").exists() and (tmp_path / "ablation.png").exists()
    # the permutation ablation ran on each fold's LAMM by default
    assert set(s["permutation"]) == {"frame", "text", "audio", "motion"}
    assert len(s["permutation"]["frame"]["mae"]) == 2 and "mae_p" in s["permutation"]["frame"]
    assert set(s["permutation_mae_increase"]) == set(s["permutation"])
    assert (tmp_path / "permutation.png").exists()
    assert "## Permutation ablation" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["folds"] == 2


def test_lamm_and_baselines_share_the_day_input(data):
    """Both encoders feed the same build_day_inputs; only h differs."""
    b = make_batch(data, np.arange(3))
    torch.manual_seed(0)
    with torch.inference_mode():
        x1 = build_day_inputs(Lamm(LammConfig()).eval().encode_packed(*b.videos()), b)
        x2 = build_day_inputs(B.NeuralBaseline(B.NEURAL["Concat_LSTM"]).eval().encode_packed(*b.videos()), b)
    torch.testing.assert_close(x1[..., 128:], x2[..., 128:])


def test_merge_partial_runs(data, tmp_path):
    """Model groups run apart (ablations on fewer folds) merge into one report with '-' where absent."""
    tc = TrainConfig(epochs=1, batch_products=4, bf16=False)
    quiet = lambda *_: None  # noqa: E731
    evaluate(
        data,
        tmp_path / "a",
        folds=2,
        models=("LAMM", "SeasonalNaive"),
        ablations=(),
        permutation=(),
        tc=tc,
        log=quiet,
    )
    evaluate(
        data, tmp_path / "b", folds=2, models=("LAMM",), ablations=(), permutation=("text",), tc=tc, log=quiet
    )
    evaluate(
        data, tmp_path / "c", folds=2, models=(), ablations=("w/o audio",), tc=tc, log=quiet, max_folds=1
    )
    res = merge_results([tmp_path / "a", tmp_path / "c", tmp_path / "b"], tmp_path / "m")
    assert res["summary"]["permutation"]["text"]["folds"] == [0, 1]
    row = res["summary"]["ablations"]["w/o audio"]
    assert row["folds"] == [0] and row["mae"][1] is None and "mae_p" not in row
    assert "mae_p" in res["summary"]["models"]["SeasonalNaive"]
    assert "audio" in res["summary"]["ablation_mae_increase"]
    assert "| w/o audio |" in (tmp_path / "m" / "report.md").read_text()
    # parts that cannot be one evaluation are refused, naming why
    with pytest.raises(ValueError, match="given twice"):
        merge_results([tmp_path / "a", tmp_path / "a"], tmp_path / "m2")
    with pytest.raises(ValueError, match="results.json missing"):
        merge_results([tmp_path / "a", tmp_path / "nothing"], tmp_path / "m2")
    evaluate(
        data,
        tmp_path / "d",
        folds=2,
        models=("LR",),
        ablations=(),
        permutation=(),
        tc=replace(tc, epochs=2),
        log=quiet,
    )
    with pytest.raises(ValueError, match="not the same evaluation"):  # another training config
        merge_results([tmp_path / "a", tmp_path / "d"], tmp_path / "m2")
    other = json.loads((tmp_path / "b" / "results.json").read_text())
    other["per_fold"][0]["models"]["LAMM"]["mae"] += 0.01
    (tmp_path / "b" / "results.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match=r"fold 1 has \['LAMM'\] in two parts with different results"):
        merge_results([tmp_path / "a", tmp_path / "b"], tmp_path / "m2")

"""FEI curves, tiers, shapes, optimum, and the FeiAdvisor end to end on a tiny simulated world."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference import fei as F
from inference import fei_train as FT
from inference import vsvae as V
from inference.client import InProcessClient, VideoBatch
from inference.deepiv import DeepIVConfig
from inference.sim import simulate
from inference.sim import truth as T
from schemas import limits as L

GRID = np.linspace(np.log(1e2), np.log(1e7), 64)


def sim_curves() -> tuple[np.ndarray, list[str]]:
    """True FEI curves of the simulator's three shapes (inference.sim.truth), with their names."""
    params = {
        "curve": np.array([0, 0, 1, 1, 2, 2]),
        "intercept": np.full(6, 9.0),
        "floor": np.array([0.04, 0.04, 0.25, 0.55, 0.03, 0.03]),
        "amp": np.array([0.45, 0.9, 0.0, 0.0, 0.5, 0.9]),
        "mu": np.array([8.5, 10.4, 9.2, 9.2, 6.9, 8.7]),
        "w": np.array([1.5, 1.5, 1.0, 1.0, 1.3, 1.3]),
    }
    names = [T.CURVE_NAMES[c] for c in params["curve"]]
    return T.true_fei(GRID, params), names


def test_classify_shape_names_the_simulator_shapes():
    curves, names = sim_curves()
    assert list(F.classify_shape(curves)) == names


def test_classify_shape_tolerates_small_wiggles():
    curves, names = sim_curves()
    wiggle = 0.03 * np.sin(np.linspace(0, 12, GRID.shape[0]))[None, :]
    assert list(F.classify_shape(curves + wiggle)) == names


def test_tier_means_average_inside_each_table4_tier():
    curve = np.log(np.exp(GRID))[None, :]  # FEI = ln F, so a tier mean is the mean ln F of its grid points
    tiers = F.tier_means(curve, GRID)
    assert list(tiers) == [name for name, _, _ in L.FOLLOWER_TIERS]
    f = np.exp(GRID)
    sel = (f >= 1_000) & (f < 10_000)
    assert tiers["nano"][0] == pytest.approx(GRID[sel].mean())
    assert tiers["mega"][0] == pytest.approx(GRID[f >= 1_000_000].mean())


def test_optimum_matches_the_power_law_closed_form():
    # E[imp] = a F^b: profit v a F^b - c F / 1000 peaks at F* = (1000 v a b / c)^(1 / (1 - b))
    a, b, v, c = 50.0, 0.6, 0.02, 10.0
    grid = np.exp(np.linspace(np.log(1e2), np.log(1e7), 2001))
    best, p = F.optimal_followers(a * grid[None, :] ** b, grid, v, c)
    f_star = (1000 * v * a * b / c) ** (1 / (1 - b))
    assert grid[best[0]] == pytest.approx(f_star, rel=0.01)
    assert p[0] == pytest.approx(v * a * f_star**b - c * f_star / 1000, rel=1e-4)


def test_near_optimal_range_is_the_run_of_sizes_within_the_share_of_the_optimum():
    # profit v a F^b - c F / 1000 on a fine grid: the range's ends are where profit = 95% of the
    # best, one on each side of F*; a flat curve (b = 1, profit linear in F) has no interior optimum
    a, b, v, c = 50.0, 0.6, 0.02, 10.0
    grid = np.exp(np.linspace(np.log(1e2), np.log(1e7), 4001))
    curves = np.stack([a * grid**b, a * grid**b * 0.0 + 1.0, 2.0 * grid])  # (3, G)
    lo, hi = F.near_optimal_range(curves, grid, v, c)
    best, p = F.optimal_followers(curves, grid, v, c)
    prof = F.profit(v, c, curves, grid[None, :])
    assert lo[0] < best[0] < hi[0]
    assert prof[0, lo[0]] >= 0.95 * p[0] > prof[0, lo[0] - 1]
    assert prof[0, hi[0]] >= 0.95 * p[0] > prof[0, hi[0] + 1]
    f_star = grid[best[0]]
    assert 0.3 * f_star < grid[lo[0]] < f_star < grid[hi[0]] < 3 * f_star
    # no size pays (constant impressions, cost grows): the range is the optimum alone
    assert p[1] <= 0 and lo[1] == hi[1] == best[1] == 0
    # profit rises to the grid's end (0.04 F - 0.01 F): the range ends there
    assert best[2] == hi[2] == len(grid) - 1 and lo[2] < hi[2]
    assert np.all(prof[2, lo[2] : hi[2] + 1] >= 0.95 * p[2])
    with pytest.raises(ValueError, match="share"):
        F.near_optimal_range(curves, grid, v, c, share=0.0)


def test_level_score_picks_the_block_that_carries_the_level():
    """Log impressions = a content direction in one block (motion means) + follower effect +
    controls + noise: the score chooses that block alone, its direction matches, and the
    out-of-fold MSE falls; a block of pure noise is not taken."""
    r = np.random.default_rng(3)
    n, d = 6000, 8
    zs = r.normal(size=(n, 7 * d))
    t = r.normal(9.0, 1.5, size=n)
    controls = np.column_stack([r.integers(0, 2, n), np.ones(n)])  # collinear with the intercept
    true_w = np.zeros(7 * d)
    k = F.POOLED_STATS.index("motion_mean")
    true_w[k * d : (k + 1) * d] = r.normal(size=d) / np.sqrt(d)
    y = zs @ true_w + 0.4 * t + 0.3 * controls[:, 0] + r.normal(0, 0.8, n)
    ls = F.LevelScore.fit(zs, t, controls, y)
    assert ls.blocks == ["motion_mean"]
    assert ls.cv_mse["+motion_mean"] < 0.8 * ls.cv_mse["none"]
    assert np.corrcoef(ls.weights, true_w)[0, 1] > 0.95
    assert np.all(ls.weights[: k * d] == 0) and np.all(ls.weights[(k + 1) * d :] == 0)
    # no content signal: no block is taken and the score is zero
    empty = F.LevelScore.fit(zs, t, controls, 0.4 * t + r.normal(0, 0.8, n))
    assert empty.blocks == [] and not empty.weights.any()


def test_advisor_with_the_level_score_gives_it_to_h_as_a_level_only_column(world, tmp_path):
    from dataclasses import replace

    fit = FT.fit_advisor(world, replace(TINY, level_score=True, members=1), progress=False)
    adv = fit.advisor
    assert len(adv.pooled.comp_scale) == FT.FitConfig.pooled_dim + 1  # the score is the last output
    assert fit.r.shape[1] == FT.FitConfig.pooled_dim + 1
    assert adv.estimator.cfg.level_only == (FT.FitConfig.pooled_dim,)
    assert set(adv.report["level_score"]) == {"blocks", "cv_mse"}
    back = F.FeiAdvisor.load(adv.save(tmp_path / "a"))  # the score travels in the PooledPCA state
    vb, meta = _batch(world, 10)
    assert np.allclose(back.covariates(vb, meta), adv.covariates(vb, meta))


def test_saliency_level_reads_the_videos_mean_saliency_from_the_annotations(world, tmp_path):
    import shutil
    from dataclasses import replace

    import pyarrow.parquet as pq

    from schemas import dataset as DS

    fit = FT.fit_advisor(world, replace(TINY, saliency_level=True, members=1), progress=False)
    adv = fit.advisor
    k = FT.FitConfig.pooled_dim
    assert fit.r.shape[1] == k + 1 and adv.estimator.cfg.level_only == (k,)
    assert adv.report["saliency_level"]["annotated_videos"] > 0
    # the column is the detector's mean saliency: it follows the simulator's true e_mean
    truth = pq.read_table(world / "truth" / "videos.parquet").to_pandas().set_index("video_id")
    videos = pq.read_table(world / "videos.parquet").column("video_id").to_pylist()
    e_mean = truth.loc[videos, "e_mean"].to_numpy()
    assert np.corrcoef(fit.r[:, k], e_mean)[0, 1] > 0.75  # 0.82 here (tiny world, short videos)
    assert abs(fit.r[:, k].std() - 1.0) < 0.01
    back = F.FeiAdvisor.load(adv.save(tmp_path / "a"))
    vb, meta = _batch(world, 10)
    assert np.allclose(back.covariates(vb, meta), adv.covariates(vb, meta))
    # a dataset without annotations: a clear error, before any fit
    bare = tmp_path / "bare"
    shutil.copytree(world, bare)
    shutil.rmtree(bare / "annotations")
    with pytest.raises(DS.DatasetError, match="annotations"):
        FT.fit_advisor(bare, replace(TINY, saliency_level=True, members=1), progress=False)


def test_heatmap_optimum_falls_with_cost_and_rises_with_value(tmp_path):
    grid = np.exp(np.linspace(np.log(1e2), np.log(1e7), 400))
    values, costs = np.array([0.02, 0.1, 0.2]), np.array([5.0, 20.0, 100.0])
    opt = F.optimum_heatmap(50.0 * grid**0.6, grid, values, costs)
    assert opt.shape == (3, 3)
    assert np.all(np.diff(opt, axis=1) < 0) and np.all(np.diff(opt, axis=0) > 0)
    F.plot_heatmap(opt, values, costs, tmp_path / "h.png", "test")
    assert (tmp_path / "h.png").stat().st_size > 1000


def test_group_mean_band_brackets_the_mean():
    curves = np.random.default_rng(0).normal(0.3, 0.1, size=(400, 10))
    band = F.group_mean_band(curves, n_boot=100)
    assert np.all(band["lower"] <= band["mean"]) and np.all(band["mean"] <= band["upper"])
    assert np.all(band["upper"] - band["lower"] < 0.05)


# ------------------------------------------------------------------------------- advisor end to end

TINY = FT.FitConfig(
    vsvae=V.VSVAEConfig(max_epochs=2, max_train_videos=400, progress=False, latent_dim=4),
    control=DeepIVConfig(
        first_hidden=(32, 16), second_hidden=(32, 16), max_epochs=5, n_components=3, dropout=0.0
    ),
    validity_rows=2000,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    path = tmp_path_factory.mktemp("fei") / "tiny"
    simulate("tiny", seed=3).write_dataset(path)
    return path


@pytest.fixture(scope="module")
def advisor(world, tmp_path_factory):
    return FT.fit_or_load_advisor(world, tmp_path_factory.mktemp("cache"), TINY, progress=False)


def _batch(world, n=40):
    videos, meta, rows = FT.read_video_meta(world)
    from schemas import dataset as DS

    feats = DS.load_features(world)
    r = rows[:n]
    vb = VideoBatch(
        *(
            np.asarray(feats[k][r], dtype=bool if "mask" in k else np.float32)
            for k in ("frame", "motion", "audio", "seg_mask", "title", "title_mask")
        )
    )
    return vb, F._meta_slice(meta, slice(0, n))


def test_advisor_advises_through_the_client_interface(world, advisor):
    vb, meta = _batch(world)
    client = InProcessClient(forecaster=type("Fc", (), {"model_version": "x"})(), advisor=advisor)
    out = client.advise(vb, meta, 0.02, 10.0)
    assert client.advice_version == advisor.model_version and advisor.model_version.startswith("fei-")
    n = len(vb)
    for name in (
        "fei",
        "expected_impressions",
        "optimal_followers",
        "expected_impressions_optimal",
        "profit_actual",
        "profit_optimal",
    ):
        arr = getattr(out, name)
        assert arr.shape == (n,) and np.all(np.isfinite(arr)), name
    assert set(out.curve_shape) <= set(F.SHAPES) and len(out.curve_shape) == n
    assert np.all(
        (out.optimal_followers >= advisor.grid_followers.min() - 1)
        & (out.optimal_followers <= advisor.grid_followers.max() + 1)
    )
    # the advised size, its impressions and its profit agree, and no grid point is more profitable
    assert np.allclose(
        out.profit_optimal, F.profit(0.02, 10.0, out.expected_impressions_optimal, out.optimal_followers)
    )
    x = advisor.covariates(vb, meta)
    grid_imp = np.exp(F.impression_curves(advisor.estimator, x, advisor.log_grid)) * advisor.smearing
    grid_profit = F.profit(0.02, 10.0, grid_imp, advisor.grid_followers[None, :])
    assert np.allclose(out.profit_optimal, grid_profit.max(1))
    # the near-optimal range holds the optimum and only sizes within 95% of its profit
    assert np.all(
        (out.optimal_followers_low <= out.optimal_followers)
        & (out.optimal_followers <= out.optimal_followers_high)
    )
    g = advisor.grid_followers
    inside = (g[None, :] >= out.optimal_followers_low[:, None] - 1e-6) & (
        g[None, :] <= out.optimal_followers_high[:, None] + 1e-6
    )
    pays = out.profit_optimal > 0
    assert np.all(
        np.where(inside[pays], grid_profit[pays] >= 0.95 * out.profit_optimal[pays, None] - 1e-9, True)
    )


def test_advise_is_batch_invariant(world, advisor):
    vb, meta = _batch(world, 30)
    whole = advisor.advise(vb, meta, 0.05, 20.0)
    parts = [
        advisor.advise(vb.take(slice(i, i + 7)), F._meta_slice(meta, slice(i, i + 7)), 0.05, 20.0)
        for i in range(0, 30, 7)
    ]
    assert np.allclose(whole.fei, np.concatenate([p.fei for p in parts]), atol=1e-5)
    assert whole.curve_shape == [s for p in parts for s in p.curve_shape]


def test_fit_or_load_reuses_the_cache_and_save_load_round_trips(world, advisor, tmp_path):
    assert advisor.pooled is not None and advisor.vsvae is None  # the default content: pooled + PCA
    vb, meta = _batch(world, 20)
    advisor.save(tmp_path / "m")
    again = F.FeiAdvisor.load(tmp_path / "m")
    assert again.model_version == advisor.model_version
    a, b = advisor.advise(vb, meta, 0.02, 10.0), again.advise(vb, meta, 0.02, 10.0)
    assert np.allclose(a.fei, b.fei) and np.array_equal(a.optimal_followers, b.optimal_followers)


def test_pooled_pca_whitens_and_round_trips():
    rng = np.random.default_rng(0)
    n, s, d = 300, 6, 8
    mask = rng.random((n, s)) < 0.7
    mask[:, 0] = True
    frame, motion, audio = (rng.normal(size=(n, s, d)) * mask[..., None] for _ in range(3))
    title, tmask = rng.normal(size=(n, 5, d)), rng.random((n, 5)) < 0.8
    stats = F.pooled_statistics(frame, motion, audio, mask, title, tmask)
    assert stats.shape == (n, 7 * d) and np.all(np.isfinite(stats))
    # the segment mean ignores padded segments
    m = mask[0]
    assert np.allclose(stats[0, :d], frame[0][m].mean(0), atol=1e-5)
    pca = F.PooledPCA.fit(stats, k=5)
    sc = pca.transform(stats)
    assert sc.shape == (n, 5) and np.allclose(sc.std(0, ddof=1), 1.0, atol=1e-6)
    again = F.PooledPCA.from_state(pca.state())
    assert np.allclose(again.transform(stats[:7]), sc[:7])


def test_noise_whitened_components_find_a_weak_video_level_signal_that_pca_misses():
    """A look that every segment of a video shows weakly (variance 0.04 between videos) beside
    segment-level clutter along another axis (variance 4 per segment): plain PCA's first component is
    the clutter, the noise-whitened one the look, and the map keeps PooledPCA's form."""
    rng = np.random.default_rng(1)
    n, s, d = 2000, 8, 6
    mask = np.ones((n, s), bool)
    mask[: n // 2, 5:] = False  # short videos: fewer segments, noisier means
    look = 0.2 * rng.normal(size=n)
    frame = 0.3 * rng.normal(size=(n, s, d))
    frame[..., 0] += look[:, None]
    frame[..., 1] += 2.0 * rng.normal(size=(n, s))  # clutter: moves single segments
    motion, audio = (0.3 * rng.normal(size=(n, s, d)) for _ in range(2))
    frame, motion, audio = (a * mask[..., None] for a in (frame, motion, audio))
    title, tmask = rng.normal(size=(n, 3, d)), np.ones((n, 3), bool)
    stats = F.pooled_statistics(frame, motion, audio, mask, title, tmask)

    total, dof = F.segment_noise_moments(frame, motion, audio, mask)
    x = np.concatenate([frame, motion, audio], axis=2)
    dev = np.concatenate([x[i][mask[i]] - x[i][mask[i]].mean(0) for i in range(n)])
    assert dof == mask.sum() - n and np.allclose(total, dev.T @ dev, rtol=1e-4)

    def r2(scores):
        return np.corrcoef(scores, look)[0, 1] ** 2

    plain = F.PooledPCA.fit(stats, k=1).transform(stats)[:, 0]
    snr = F.PooledPCA.fit(stats, k=3, noise=total / dof, snr_dim=1)
    sc = snr.transform(stats)
    best = r2(stats[:, 0])  # the segment mean along the look itself: what its noise allows
    assert r2(plain) < 0.1 and r2(sc[:, 0]) > 0.95 * best, (r2(plain), r2(sc[:, 0]), best)
    assert sc.shape == (n, 3) and np.allclose(sc.std(0, ddof=1), 1.0, atol=1e-6)
    assert np.allclose(F.PooledPCA.from_state(snr.state()).transform(stats[:5]), sc[:5])
    assert F.PooledPCA.fit(stats, k=2, noise=total / dof, snr_dim=5).transform(stats).shape == (n, 2)
    with pytest.raises(ValueError, match="noise"):
        F.PooledPCA.fit(stats, k=2, noise=np.eye(4), snr_dim=1)


def test_vsvae_content_option_still_fits_saves_and_advises(world, tmp_path):
    cfg = FT.FitConfig(
        content="vsvae",
        vsvae=V.VSVAEConfig(max_epochs=1, max_train_videos=300, progress=False, latent_dim=4),
        estimator="deepiv",
        members=1,
        deepiv=DeepIVConfig(first_hidden=(16,), second_hidden=(16,), max_epochs=2, n_components=2),
        validity_rows=1000,
    )
    adv = FT.fit_advisor(world, cfg, progress=False).advisor
    assert adv.pooled is None and adv.vsvae is not None and adv.report["content"] == "vsvae"
    assert type(adv.estimator).__name__ == "DeepIV" and adv.report["estimator"] == "deepiv"
    adv.save(tmp_path / "v")
    again = F.FeiAdvisor.load(tmp_path / "v")
    vb, meta = _batch(world, 10)
    assert np.allclose(adv.advise(vb, meta, 0.02, 10.0).fei, again.advise(vb, meta, 0.02, 10.0).fei)
    with pytest.raises(ValueError, match="content"):
        FT.fit_advisor(world, FT.FitConfig(content="nope"), progress=False)


def test_cli_fit_and_advise(world, tmp_path, capsys):
    out = tmp_path / "model"
    argv = [
        "--dataset",
        str(world),
        "--out",
        str(out),
        "--vae-train-videos",
        "300",
        "--vae-epochs",
        "1",
        "--iv-epochs",
        "3",
    ]
    assert FT.cli_fit(argv) == 0
    assert (out / "config.json").exists() and (out / "weights.pt").exists()
    csv_path = tmp_path / "advice.csv"
    assert (
        FT.cli_advise(
            [
                "--model",
                str(out),
                "--dataset",
                str(world),
                "--value",
                "0.02",
                "--cost",
                "10",
                "--out",
                str(csv_path),
            ]
        )
        == 0
    )
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",") == list(FT.ADVICE_COLUMNS)
    assert len(lines) == 1 + FT.read_video_meta(world)[0].num_rows
    assert (
        FT.cli_advise(
            ["--model", str(out), "--dataset", str(tmp_path / "nope"), "--value", "0.02", "--cost", "10"]
        )
        == 2
    )
    # economics no size can be optimal under, and a chunk of 0 rows: refused before any work
    for value, cost, chunk, says in (
        ("-1", "10", "4096", "value per impression > 0"),
        ("0.02", "-5", "4096", ">= 0"),
        ("0.02", "10", "0", "--chunk"),
    ):
        with pytest.raises(SystemExit):
            FT.cli_advise(
                [
                    "--model",
                    str(tmp_path / "nope"),
                    "--dataset",
                    str(world),
                    "--value",
                    value,
                    "--cost",
                    cost,
                    "--chunk",
                    chunk,
                ]
            )
        assert says in capsys.readouterr().err
    with pytest.raises(ValueError, match="value per impression > 0"):
        F.optimal_followers(np.ones((2, 3)), np.arange(1.0, 4.0), float("nan"), 10.0)


def test_default_advisor_uses_the_control_function_without_verified_in_its_first_stage(advisor, tmp_path):
    # the default: three control-function fits with consecutive seeds, averaged, on whitened content
    assert type(advisor.estimator).__name__ == "IVEnsemble"
    members = advisor.estimator.members
    assert [type(m).__name__ for m in members] == ["ControlFunctionIV"] * 3
    assert [m.cfg.seed for m in members] == [TINY.control.seed + i for i in range(3)]
    assert advisor.report["estimator"] == "control_function" and advisor.report["content"] == "pooled"
    assert advisor.pooled is not None and len(advisor.pooled.comp_scale) == FT.FitConfig.pooled_dim
    n_cov = members[0].n_covariates
    r_dim = n_cov - len(F.COVARIATE_POST_STATS)
    for m in members:
        assert m.cfg.first_stage_exclude == (r_dim + F.COVARIATE_POST_STATS.index("verified"),)
        assert m.cfg.level_only == ()
    # advisors saved before the control function kept the estimator under "deepiv"
    advisor.save(tmp_path / "a")
    w = torch.load(tmp_path / "a" / "weights.pt", weights_only=False)
    w["deepiv"] = w.pop("iv")
    torch.save(w, tmp_path / "a" / "weights.pt")
    again = F.FeiAdvisor.load(tmp_path / "a")
    x = np.random.default_rng(0).normal(size=(5, n_cov))
    t = np.full(5, 9.0)
    assert np.array_equal(
        again.estimator.marginal_effect(treatment=t, covariates=x),
        advisor.estimator.marginal_effect(treatment=t, covariates=x),
    )


def test_validity_gamma_leaves_out_the_columns_the_first_stage_left_out():
    """A covariate the treatment causes may predict the residual (verified carries the confounder);
    the instrument check is about z given the exogenous covariates."""
    r = np.random.default_rng(0)
    n = 4000
    x = r.normal(size=(n, 2))
    z = r.normal(size=n)
    resid = 0.8 * x[:, 1] + 0.3 * r.normal(size=n)

    class Est:
        cfg = DeepIVConfig(first_stage_exclude=(1,))

    assert FT.validity_gamma(Est(), resid, x, z) < 0.02
    assert FT.instrument_validity(resid, x, z) > 0.5


def test_intensity_bound_matches_the_simulators_features():
    """tests/bench/fei_intensity_bound models how the simulator writes a video's intensity k into
    its frame and motion vectors: one segment carries Fisher information J = g' S^-1 g about k.
    Synthesised by inference.sim.features itself (presence, saliency and speech off, so only the
    scene draws and the noise stay), the GLS estimate of k from one segment must be unbiased with
    variance 1 / J; the posterior then concentrates where the statistic is sharp."""
    from inference.sim import physics as PH
    from inference.sim.features import synthesize
    from tests.bench import fei_intensity_bound as IB

    rng = np.random.default_rng(0)
    n, s, vtype = 6000, 1, 2
    k = rng.uniform(0.05, 0.95, n)
    zeros = np.zeros((n, L.MAX_SEGMENTS))
    content = {
        "p": zeros,
        "e": zeros,
        "a": zeros,
        "music": np.zeros(n),
        "style": np.full(n, s),
        "intensity": k,
        "video_type": np.full(n, vtype),
        "frame_product_latent": np.zeros((n, PH.PRODUCT_LATENT_DIM)),
        "title_product_latent": np.zeros((n, PH.PRODUCT_LATENT_DIM)),
        "tokens": np.full((n, L.MAX_TITLE_TOKENS), -1),
    }
    f = synthesize(rng, np.ones(n, dtype=np.int32), content)
    g = PH.geometry()
    frame = f["frame"][:, 0].astype(np.float64) - 0.6 * g.style_frame[s] - 0.6 * g.type_frame[vtype]
    motion = f["motion"][:, 0].astype(np.float64) - 0.5 * g.style_motion[s]
    d = g.scene.shape[1]
    ss = IB.SCENE_SCALE**2 * g.scene.T.astype(np.float64) @ g.scene
    eye = IB.NOISE**2 * np.eye(d)
    cov = np.block([[ss + eye, IB.MOTION_SCENE * ss], [IB.MOTION_SCENE * ss, IB.MOTION_SCENE**2 * ss + eye]])
    grad = IB.SLOPE * np.concatenate([g.style_frame[s], g.style_motion[s]])
    j = IB.segment_information(s)
    t_hat = np.concatenate([frame, motion], 1) @ np.linalg.solve(cov, grad) / j
    err = t_hat - k
    assert abs(err.mean()) < 4 / np.sqrt(j * n)  # unbiased
    assert np.var(err) == pytest.approx(1 / j, rel=0.08)  # the information the bound assumes
    # a sharp statistic pins the posterior mean; no information leaves the prior mean 0.5
    grid = np.linspace(0.0, 1.0, 401)[1:-1]
    sharp = IB.posterior(np.array([0.3]), np.array([0]), np.array([1e6]), np.array([0]), grid) @ grid
    flat = IB.posterior(np.array([0.3]), np.array([0]), np.array([0.0]), np.array([0]), grid) @ grid
    assert sharp[0] == pytest.approx(0.3, abs=2e-3) and flat[0] == pytest.approx(0.5, abs=1e-6)

"""VS-VAE on self-contained synthetic features driven by a few latents."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference import vsvae as V
from schemas import limits as L

S, T, D = L.MAX_SEGMENTS, L.MAX_TITLE_TOKENS, L.FEATURE_DIM


def synthetic(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Features whose every modality shows 3 latents through fixed directions, plus noise."""
    r = np.random.default_rng(seed)
    lat = r.normal(size=(n, 3)).astype(np.float32)
    w = r.normal(size=(4, 3, D)).astype(np.float32)
    n_seg = r.integers(3, S + 1, n)
    seg = np.arange(S)[None] < n_seg[:, None]
    tit = np.arange(T)[None] < r.integers(4, T + 1, n)[:, None]

    def seq(k, length, mask):
        a = (lat @ w[k])[:, None, :] + 0.5 * r.normal(size=(n, length, D))
        return (a * mask[..., None]).astype(np.float16)

    feats = {
        "frame": seq(0, S, seg),
        "motion": seq(1, S, seg),
        "audio": seq(2, S, seg),
        "seg_mask": seg,
        "title": seq(3, T, tit),
        "title_mask": tit,
    }
    length = n_seg * L.SEGMENT_SECONDS
    return feats, V.editing_features(feats["frame"], feats["motion"], feats["audio"], seg, length), lat


CFG = V.VSVAEConfig(
    max_epochs=4, patience=4, max_train_videos=None, progress=False, latent_dim=6, batch_size=64
)


@pytest.fixture(scope="module")
def fitted():
    feats, ed, lat = synthetic(800)
    src = V.FeatureSource(feats, ed)
    return V.fit_vsvae(src, CFG), src, lat


def test_reconstruction_beats_the_no_information_rate(fitted):
    fit, _, _ = fitted
    rep = fit.test_report
    assert set(rep) == {"text", "image", "audio", "editing"}
    for k in ("text", "image", "audio"):
        assert rep[k]["vsvae_mse"] < 0.8 * rep[k]["nir_mse"], (k, rep[k])
    assert fit.history["val_loss"][-1] < fit.history["val_loss"][0]


def test_representation_carries_the_latents(fitted):
    fit, src, lat = fitted
    r = V.encode(fit.model, src)
    assert r.shape == (len(src), CFG.latent_dim) and r.dtype == np.float32
    coef, *_ = np.linalg.lstsq(np.hstack([r, np.ones((len(r), 1))]), lat, rcond=None)
    resid = lat - np.hstack([r, np.ones((len(r), 1))]) @ coef
    assert np.all(1 - resid.var(0) / lat.var(0) > 0.7)


def test_padding_does_not_change_the_representation(fitted):
    fit, src, _ = fitted
    idx = np.arange(8)
    feats = {k: np.array(v[idx]) for k, v in src.feats.items()}
    junk = {k: v.copy() for k, v in feats.items()}
    for k, mk in (("frame", "seg_mask"), ("audio", "seg_mask"), ("title", "title_mask")):
        junk[k][~junk[mk]] = 7.0  # garbage where the mask says "no segment"
    a = V.encode(fit.model, V.FeatureSource(feats, src.editing[idx], src.scale))
    b = V.encode(fit.model, V.FeatureSource(junk, src.editing[idx], src.scale))
    assert np.allclose(a, b, atol=1e-5)


def test_state_round_trip(fitted):
    fit, src, _ = fitted
    model, scale = V.load_state(V.save_state(fit.model, fit.scale))
    sub = V.FeatureSource({k: v[:16] for k, v in src.feats.items()}, src.editing[:16], scale)
    assert np.array_equal(V.encode(model, sub), V.encode(fit.model, sub))


def test_encoder_asserts_shapes():
    model = V.VSVAE(V.VSVAEConfig())
    bad = {"frame": torch.zeros(2, S - 1, D)}
    with pytest.raises(AssertionError, match="expected frame"):
        model.encode(bad)


def test_editing_features_of_a_known_video():
    frame = np.zeros((1, S, D), np.float32)
    frame[0, 1] = 1.0  # one jump up and one back down across three real segments
    seg = np.zeros((1, S), bool)
    seg[0, :3] = True
    ed = V.editing_features(frame, np.zeros_like(frame), np.ones_like(frame), seg, np.array([9.6]))
    assert ed.shape == (1, len(V.EDITING_FEATURES))
    got = dict(zip(V.EDITING_FEATURES, ed[0], strict=True))
    assert got["log_length_s"] == pytest.approx(np.log1p(9.6))
    assert got["seg_fraction"] == pytest.approx(3 / S)
    assert got["frame_change"] == pytest.approx(1.0)  # both consecutive pairs differ by 1 in every dim
    assert got["motion_energy"] == 0.0 and got["audio_energy"] == pytest.approx(1.0)

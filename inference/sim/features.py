"""Multimodal segment features from content latents: what a feature extractor would have seen.

Each modality shows its own latents through fixed directions of ``physics.geometry()``:

    frame_s  = p_s * (PRES * presence + product identity)      product on screen (and which one)
               + style and video-type looks + scene clutter + noise
    motion_s = SAL * e_s * saliency + style motion (special effects move) + scene clutter + noise
    audio_s  = SPEECH * a_s * speech + music energy + style audio + noise
    title_t  = word embedding (+ NAME * name + product identity for the brand token) + noise

so a model can only find "product x saliency in the same segment" by relating the frame and the
motion of each segment, and "the title names the product that is on screen" by attending from
the title's brand token into the frame segments. Padded segments / tokens are exactly zero.
Features are synthesised in float32 chunks and stored float16 (schemas.dataset.FEATURES).
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from inference.sim import physics as PH
from schemas import limits as L

PRES, SAL, SPEECH, NAME = 2.5, 2.5, 2.5, 1.8  # signal scales of the owned latents
NOISE, TITLE_NOISE = 0.45, 0.25  # per-dimension noise


def empty_features(n: int) -> dict[str, np.ndarray]:
    s, t, d = L.MAX_SEGMENTS, L.MAX_TITLE_TOKENS, L.FEATURE_DIM
    return {
        "frame": np.zeros((n, s, d), np.float16),
        "motion": np.zeros((n, s, d), np.float16),
        "audio": np.zeros((n, s, d), np.float16),
        "seg_mask": np.zeros((n, s), np.bool_),
        "title": np.zeros((n, t, d), np.float16),
        "title_mask": np.zeros((n, t), np.bool_),
    }


def synthesize(
    rng: np.random.Generator,
    n_segments: np.ndarray,
    content: dict[str, np.ndarray],
    chunk: int = 4096,
    enabled: bool = True,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Feature arrays of N videos. ``content`` holds p, e, a (N, S), music, style, intensity,
    video_type (N,), frame_product_latent (N, K) (the product on screen), title_product_latent
    (N, K) (the advertised product, named by the brand word) and tokens (N, T) (-1 pad, -2 brand).
    With ``enabled=False`` only the masks are filled (tables-only worlds)."""
    n = n_segments.shape[0]
    out = empty_features(n)
    out["seg_mask"][:] = np.arange(L.MAX_SEGMENTS)[None, :] < n_segments[:, None]
    out["title_mask"][:] = content["tokens"] != -1
    if not enabled or n == 0:
        return out
    g = PH.geometry()
    d = L.FEATURE_DIM
    f32 = np.float32
    # only real segments / tokens are synthesised (~28% of the padded arrays): rows are gathered
    # flat, computed, and scattered back into the zero-padded float16 output
    for lo in tqdm(range(0, n, chunk), desc="features", unit="chunk", disable=not progress):
        hi = min(n, lo + chunk)
        c = {k: v[lo:hi] for k, v in content.items()}
        vi, si = np.nonzero(out["seg_mask"][lo:hi])  # (M,) video-in-chunk and segment of each real segment
        m = vi.size
        style, k = c["style"][vi], c["intensity"].astype(f32)[vi, None]  # (M,), (M, 1)
        ident = c["frame_product_latent"].astype(f32) @ g.product_id  # (B, D) which product is on screen
        named = c["title_product_latent"].astype(f32) @ g.product_id  # (B, D) the advertised product
        scene = rng.standard_normal((m, PH.SCENE_RANK), dtype=f32) @ g.scene * 2.0  # (M, D)

        frame = c["p"][vi, si].astype(f32)[:, None] * (PRES * g.presence + ident[vi])  # (M, D)
        frame += (0.6 + 0.8 * k) * g.style_frame[style] + 0.6 * g.type_frame[c["video_type"][vi]]
        frame += scene
        frame += NOISE * rng.standard_normal((m, d), dtype=f32)
        out["frame"][lo:hi][vi, si] = frame

        motion = SAL * c["e"][vi, si].astype(f32)[:, None] * g.saliency  # (M, D)
        motion += (0.5 + 0.8 * k) * g.style_motion[style]
        motion += 0.7 * scene
        motion += NOISE * rng.standard_normal((m, d), dtype=f32)
        out["motion"][lo:hi][vi, si] = motion

        audio = SPEECH * c["a"][vi, si].astype(f32)[:, None] * g.speech  # (M, D)
        audio += 1.5 * c["music"].astype(f32)[vi, None] * g.music + 0.5 * g.style_audio[style]
        audio += NOISE * rng.standard_normal((m, d), dtype=f32)
        out["audio"][lo:hi][vi, si] = audio

        tv, ti = np.nonzero(out["title_mask"][lo:hi])  # (T_real,) real title tokens
        tok = c["tokens"][tv, ti]
        title = g.words[np.maximum(tok, 0)]  # (T_real, D)
        brand = tok == -2
        title[brand] = NAME * g.name + named[tv[brand]]
        title += TITLE_NOISE * rng.standard_normal(title.shape, dtype=f32)
        out["title"][lo:hi][tv, ti] = title
    return out

"""VS-VAE: the "very structured" multimodal VAE of the FEI paper (section 3.1, Web Appendices B, F).

It condenses a video's segment features into a dense content vector r (the posterior mean), which
Deep IV uses as covariates. Four modality encoders, a joint encoder to (mu, log sigma^2) of r, and
mirrored decoders; loss = reconstruction per modality + KL (the ELBO), Adam, L2, early stopping.

    text     Bi-LSTM over the title token embeddings, masked mean of its states -> dense 64
    image    per segment [frame, motion] -> dense -> LSTM over segments, masked mean of its
             states and the masked mean frame -> dense 128 -> 64
    audio    masked mean and std of the audio segments -> dense 64 -> 32
    editing  length, number of segments, scene statistics (frame-to-frame change, spread of frame
             features over segments, motion energy) -> dense 16
    joint    concat -> dense 128 -> (mu, logvar) of r (``latent_dim``)

Decoders mirror them: joint dense -> per-modality heads; the image head runs an LSTM over the
segments and reconstructs every real segment's [frame, motion]; text, audio and editing heads
reconstruct the masked mean title embedding, the mean audio vector and the editing features.

Deviations from the paper, said plainly: the title arrives as 128-d token embeddings, not word ids,
so the text decoder reconstructs the mean title embedding with MSE instead of a per-word softmax
(Table 2's "text accuracy" becomes a text MSE); layer sizes are scaled down for a 2-core CPU (the
paper's image LSTM is 4096 wide); each modality's reconstruction MSE is divided by its
no-information MSE (predicting the feature mean, the paper's NIR) so modalities weigh alike.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from schemas import limits as L

EDITING_FEATURES = (
    "log_length_s",
    "seg_fraction",
    "frame_change",
    "frame_spread",
    "motion_energy",
    "audio_energy",
)


@dataclass
class VSVAEConfig:
    feature_dim: int = L.FEATURE_DIM
    max_segments: int = L.MAX_SEGMENTS
    max_title_tokens: int = L.MAX_TITLE_TOKENS
    text_hidden: int = 32  # per direction of the Bi-LSTM
    text_dim: int = 64
    image_hidden: int = 64
    image_dim: int = 64
    audio_dim: int = 32
    editing_dim: int = 16
    joint_dim: int = 128
    latent_dim: int = 16
    kl_weight: float = 0.01  # on the per-dimension mean KL; the reconstruction terms are ~1 at the NIR
    lr: float = 2e-3
    weight_decay: float = 1e-5  # L2
    batch_size: int = 256
    max_epochs: int = 30
    patience: int = 3
    max_train_videos: int | None = 30_000  # subsample for speed; encoding covers every video
    seed: int = 0
    threads: int = 2
    progress: bool = True


# ------------------------------------------------------------------------------------------ features


def editing_features(
    frame: np.ndarray, motion: np.ndarray, audio: np.ndarray, seg_mask: np.ndarray, length_s: np.ndarray
) -> np.ndarray:
    """(N, 6) editing features (``EDITING_FEATURES``) from the segment arrays and the video length."""
    n, s, d = frame.shape
    assert seg_mask.shape == (n, s), f"expected seg_mask {(n, s)}, got {seg_mask.shape}"
    m = seg_mask.astype(np.float32)[..., None]  # (N, S, 1)
    cnt = np.maximum(m.sum(1), 1.0)  # (N, 1)
    f = frame.astype(np.float32)
    mean_f = (f * m).sum(1) / cnt  # (N, D)
    spread = np.sqrt((((f - mean_f[:, None]) ** 2) * m).sum(1).mean(1, keepdims=True) / cnt)  # (N, 1)
    pair = m[:, 1:] * m[:, :-1]  # (N, S-1, 1) both segments real
    change = np.sqrt(
        (((f[:, 1:] - f[:, :-1]) ** 2) * pair).mean(2).sum(1) / np.maximum(pair.sum((1, 2)), 1.0)
    )  # (N,)
    motion_e = np.sqrt(((motion.astype(np.float32) ** 2) * m).mean(2).sum(1) / cnt[:, 0])  # (N,)
    audio_e = np.sqrt(((audio.astype(np.float32) ** 2) * m).mean(2).sum(1) / cnt[:, 0])  # (N,)
    out = np.stack(
        [
            np.log1p(np.asarray(length_s, dtype=np.float32)),
            m[:, :, 0].sum(1) / s,
            change,
            spread[:, 0],
            motion_e,
            audio_e,
        ],
        1,
    )
    return out.astype(np.float32)


def _masked_mean(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """a (B, S, D), m (B, S) -> (B, D)."""
    w = m.float().unsqueeze(-1)
    return (a * w).sum(1) / w.sum(1).clamp_min(1.0)


# --------------------------------------------------------------------------------------------- model


class VSVAE(nn.Module):
    def __init__(self, cfg: VSVAEConfig, n_editing: int = len(EDITING_FEATURES)):
        super().__init__()
        self.cfg = cfg
        d, c = cfg.feature_dim, cfg
        # encoders
        self.text_rnn = nn.LSTM(d, c.text_hidden, batch_first=True, bidirectional=True)
        self.text_enc = nn.Sequential(nn.Linear(2 * c.text_hidden, c.text_dim), nn.ReLU())
        self.image_in = nn.Sequential(nn.Linear(2 * d, c.image_hidden), nn.ReLU())
        self.image_rnn = nn.LSTM(c.image_hidden, c.image_hidden, batch_first=True)
        self.image_enc = nn.Sequential(
            nn.Linear(c.image_hidden + d, 128), nn.ReLU(), nn.Linear(128, c.image_dim), nn.ReLU()
        )
        self.audio_enc = nn.Sequential(nn.Linear(2 * d, 64), nn.ReLU(), nn.Linear(64, c.audio_dim), nn.ReLU())
        self.edit_enc = nn.Sequential(nn.Linear(n_editing, c.editing_dim), nn.ReLU())
        cat = c.text_dim + c.image_dim + c.audio_dim + c.editing_dim
        self.joint_enc = nn.Sequential(
            nn.Linear(cat, c.joint_dim), nn.ReLU(), nn.Linear(c.joint_dim, 2 * c.latent_dim)
        )
        # decoders (mirrored)
        self.joint_dec = nn.Sequential(
            nn.Linear(c.latent_dim, c.joint_dim), nn.ReLU(), nn.Linear(c.joint_dim, cat), nn.ReLU()
        )
        self.splits = (c.text_dim, c.image_dim, c.audio_dim, c.editing_dim)
        self.text_dec = nn.Sequential(nn.Linear(c.text_dim, 64), nn.ReLU(), nn.Linear(64, d))
        self.image_dec_in = nn.Sequential(nn.Linear(c.image_dim, c.image_hidden), nn.ReLU())
        self.image_dec_rnn = nn.LSTM(c.image_hidden, c.image_hidden, batch_first=True)
        self.image_dec_out = nn.Linear(c.image_hidden, 2 * d)
        self.audio_dec = nn.Sequential(nn.Linear(c.audio_dim, 64), nn.ReLU(), nn.Linear(64, d))
        self.edit_dec = nn.Linear(c.editing_dim, n_editing)

    def encode(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior (mu, logvar), each (B, latent_dim)."""
        c = self.cfg
        n, s, d = b["frame"].shape
        assert (s, d) == (c.max_segments, c.feature_dim), (
            f"expected frame (B, {c.max_segments}, {c.feature_dim}), got {tuple(b['frame'].shape)}"
        )
        assert b["title"].shape == (n, c.max_title_tokens, d), (
            f"expected title (B, {c.max_title_tokens}, {d}), got {tuple(b['title'].shape)}"
        )
        text_states, _ = self.text_rnn(b["title"])  # (B, T, 2H)
        h_text = self.text_enc(_masked_mean(text_states, b["title_mask"]))  # (B, text_dim)
        seg = self.image_in(torch.cat([b["frame"], b["motion"]], -1))  # (B, S, H)
        img_states, _ = self.image_rnn(seg)  # (B, S, H)
        h_img = self.image_enc(
            torch.cat([_masked_mean(img_states, b["seg_mask"]), _masked_mean(b["frame"], b["seg_mask"])], -1)
        )  # (B, image_dim)
        a_mean = _masked_mean(b["audio"], b["seg_mask"])  # (B, D)
        a_std = (_masked_mean((b["audio"] - a_mean[:, None]) ** 2, b["seg_mask"]) + 1e-6).sqrt()  # (B, D)
        h_audio = self.audio_enc(torch.cat([a_mean, a_std], -1))  # (B, audio_dim)
        h_edit = self.edit_enc(b["editing"])  # (B, editing_dim)
        mu, logvar = self.joint_enc(torch.cat([h_text, h_img, h_audio, h_edit], -1)).chunk(
            2, -1
        )  # (B, R) each
        return mu, logvar.clamp(-10.0, 6.0)

    def decode(self, r: torch.Tensor) -> dict[str, torch.Tensor]:
        h_text, h_img, h_audio, h_edit = self.joint_dec(r).split(self.splits, -1)
        s = self.cfg.max_segments
        seq_in = self.image_dec_in(h_img)[:, None].expand(-1, s, -1)  # (B, S, H)
        seq, _ = self.image_dec_rnn(seq_in.contiguous())  # (B, S, H)
        return {
            "text": self.text_dec(h_text),  # (B, D) mean title embedding
            "image": self.image_dec_out(seq),  # (B, S, 2D) [frame, motion] per segment
            "audio": self.audio_dec(h_audio),  # (B, D) mean audio
            "editing": self.edit_dec(h_edit),  # (B, E)
        }

    @staticmethod
    def targets(b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            "text": _masked_mean(b["title"], b["title_mask"]),
            "image": torch.cat([b["frame"], b["motion"]], -1),
            "audio": _masked_mean(b["audio"], b["seg_mask"]),
            "editing": b["editing"],
        }


def modality_sq_errors(pred: dict, target: dict, seg_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-video mean squared error of each modality, each (B,) (image: over real segments only)."""
    out = {k: ((pred[k] - target[k]) ** 2).mean(-1) for k in ("text", "audio", "editing")}
    m = seg_mask.float()
    out["image"] = (((pred["image"] - target["image"]) ** 2).mean(-1) * m).sum(1) / m.sum(1).clamp_min(1.0)
    return out


# ----------------------------------------------------------------------------------- data plumbing


class FeatureSource:
    """Standardized float32 batches from float16 feature arrays (memory-mapped dataset or a VideoBatch)."""

    def __init__(self, feats: dict[str, np.ndarray], editing: np.ndarray, scale: dict | None = None):
        self.feats, self.editing = feats, editing.astype(np.float32)
        self.scale = scale or self._fit_scale()

    def _fit_scale(self, n: int = 4000) -> dict:
        idx = np.sort(np.random.default_rng(0).choice(len(self), min(n, len(self)), replace=False))
        sc = {}
        for k, mk in (
            ("frame", "seg_mask"),
            ("motion", "seg_mask"),
            ("audio", "seg_mask"),
            ("title", "title_mask"),
        ):
            a = np.asarray(self.feats[k][idx], dtype=np.float32)[
                np.asarray(self.feats[mk][idx])
            ]  # (M, D) real rows
            sc[k] = (
                (a.mean(0).tolist(), np.maximum(a.std(0), 1e-6).tolist())
                if len(a)
                else ([0.0] * a.shape[-1], [1.0] * a.shape[-1])
            )
        e = self.editing[idx]
        sc["editing"] = (e.mean(0).tolist(), np.maximum(e.std(0), 1e-6).tolist())
        return sc

    def __len__(self) -> int:
        return self.editing.shape[0]

    def subset(self, idx: np.ndarray) -> FeatureSource:
        """The rows ``idx`` copied into memory (one ordered pass over memory-mapped arrays), same scale."""
        order = np.argsort(idx)
        inv = np.empty_like(order)
        inv[order] = np.arange(len(idx))
        feats = {
            k: np.asarray(self.feats[k][idx[order]])[inv]
            for k in ("frame", "motion", "audio", "seg_mask", "title", "title_mask")
        }
        return FeatureSource(feats, self.editing[idx], self.scale)

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        out = {}
        for k, mk in (
            ("frame", "seg_mask"),
            ("motion", "seg_mask"),
            ("audio", "seg_mask"),
            ("title", "title_mask"),
        ):
            m = np.asarray(self.feats[mk][idx])
            mean, std = (np.asarray(v, dtype=np.float32) for v in self.scale[k])
            a = (np.asarray(self.feats[k][idx], dtype=np.float32) - mean) / std
            out[k] = torch.from_numpy(a * m[..., None])  # padding stays exactly zero
            out[mk] = torch.from_numpy(m)
        mean, std = (np.asarray(v, dtype=np.float32) for v in self.scale["editing"])
        out["editing"] = torch.from_numpy((self.editing[idx] - mean) / std)
        return out


@dataclass
class VSVAEFit:
    model: VSVAE
    scale: dict
    history: dict
    test_report: dict


def _nir(src: FeatureSource, idx: np.ndarray, bs: int = 1024) -> dict[str, float]:
    """No-information rate: MSE of predicting each feature's mean (means from ``idx`` itself)."""
    sums, sq, cnt = {}, {}, {}
    for i in range(0, len(idx), bs):
        t = VSVAE.targets(src.batch(idx[i : i + bs]))
        m = src.batch(idx[i : i + bs])["seg_mask"].float()
        for k, v in t.items():
            w = m[..., None] if k == "image" else torch.ones(v.shape[:-1] + (1,))
            sums[k] = sums.get(k, 0) + (v * w).reshape(-1, v.shape[-1]).sum(0)
            sq[k] = sq.get(k, 0) + (v**2 * w).reshape(-1, v.shape[-1]).sum(0)
            cnt[k] = cnt.get(k, 0) + w.sum()
    return {k: float(((sq[k] / cnt[k]) - (sums[k] / cnt[k]) ** 2).mean()) for k in sums}


@torch.no_grad()
def reconstruction_report(model: VSVAE, src: FeatureSource, idx: np.ndarray, bs: int = 512) -> dict:
    """Out-of-sample MSE per modality (standardized features) against the NIR, like Table 2."""
    model.eval()
    tot, n = {}, 0
    for i in range(0, len(idx), bs):
        b = src.batch(idx[i : i + bs])
        mu, _ = model.encode(b)
        err = modality_sq_errors(model.decode(mu), VSVAE.targets(b), b["seg_mask"])
        for k, v in err.items():
            tot[k] = tot.get(k, 0.0) + float(v.sum())
        n += len(b["editing"])
    nir = _nir(src, idx)
    return {
        k: {"vsvae_mse": tot[k] / n, "nir_mse": nir[k], "r2": 1 - (tot[k] / n) / nir[k]}
        for k in ("text", "image", "audio", "editing")
    }


def fit_vsvae(src: FeatureSource, cfg: VSVAEConfig) -> VSVAEFit:
    """Train on an 8:1:1 random split (train / early-stopping validation / test)."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(len(src))
    n_va = max(1, len(perm) // 10)
    te, va, tr = perm[:n_va], perm[n_va : 2 * n_va], perm[2 * n_va :]
    if cfg.max_train_videos is not None:
        tr = tr[: cfg.max_train_videos]
        va, te = va[: max(1, cfg.max_train_videos // 8)], te[: max(1, cfg.max_train_videos // 8)]
    # train from memory: random reads of memory-mapped features thrash when page cache is short
    keep = np.concatenate([tr, va, te])
    src = src.subset(keep)
    tr, va, te = np.arange(len(tr)), len(tr) + np.arange(len(va)), len(tr) + len(va) + np.arange(len(te))
    nir = _nir(src, tr[:5000])
    model = VSVAE(cfg, src.editing.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def loss_of(b) -> tuple[torch.Tensor, dict]:
        mu, logvar = model.encode(b)
        r = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterization
        err = modality_sq_errors(model.decode(r), VSVAE.targets(b), b["seg_mask"])
        rec = sum(err[k].mean() / nir[k] for k in err)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).mean()
        return rec + cfg.kl_weight * kl, {"rec": float(rec.detach()), "kl": float(kl.detach())}

    best, bad, best_state, hist = math.inf, 0, None, []
    for epoch in range(cfg.max_epochs):
        model.train()
        order = rng.permutation(tr)
        bar = tqdm(
            range(0, len(order), cfg.batch_size),
            desc=f"vs-vae epoch {epoch}",
            disable=not cfg.progress,
            leave=False,
        )
        for i in bar:
            loss, parts = loss_of(src.batch(order[i : i + cfg.batch_size]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.set_postfix(parts)
        model.eval()
        with torch.no_grad():
            val = float(
                np.mean([float(loss_of(src.batch(va[i : i + 512]))[0]) for i in range(0, len(va), 512)])
            )
        hist.append(val)
        if val < best - 1e-4:
            best, bad, best_state = val, 0, copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    report = reconstruction_report(model, src, te)
    return VSVAEFit(
        model,
        src.scale,
        {"val_loss": hist, "n_train": int(len(tr)), "n_val": int(len(va)), "n_test": int(len(te))},
        report,
    )


@torch.no_grad()
def encode(model: VSVAE, src: FeatureSource, bs: int = 1024, progress: bool = False) -> np.ndarray:
    """(N, latent_dim) posterior means r of every video of ``src``, in order."""
    model.eval()
    parts = []
    for i in tqdm(range(0, len(src), bs), desc="vs-vae encode", disable=not progress):
        mu, _ = model.encode(src.batch(np.arange(i, min(i + bs, len(src)))))
        parts.append(mu.numpy())
    return np.concatenate(parts) if parts else np.zeros((0, model.cfg.latent_dim), np.float32)


def save_state(fit_model: VSVAE, scale: dict) -> dict:
    return {
        "config": asdict(fit_model.cfg),
        "n_editing": fit_model.edit_dec.out_features,
        "scale": scale,
        "weights": fit_model.state_dict(),
    }


def load_state(state: dict) -> tuple[VSVAE, dict]:
    model = VSVAE(VSVAEConfig(**state["config"]), state["n_editing"])
    model.load_state_dict(state["weights"])
    model.eval()
    return model, state["scale"]

"""Deep IV (Hartford et al. 2017; FEI paper section 3.2 and Web Appendix C), two baselines and the
instrument validity check of Li et al. (2022).

The public API is scikit-learn-like, numpy in and numpy out, and is what external evaluations call:

    est = DeepIV(DeepIVConfig())
    est.fit(treatment=t, covariates=x, instruments=z, outcome=y)    # t (N,), x (N, P), z (N, Q), y (N,)
    est.predict(treatment=t, covariates=x)            # (N,)  h(t, x): counterfactual prediction
    est.marginal_effect(treatment=t, covariates=x)    # (N,)  dh/dt by autograd

``NaiveNeuralRegression`` (y on (t, x), no instrument) and ``TwoStageLeastSquares`` (linear 2SLS)
speak the same API (their ``fit`` accepts and ignores / uses ``instruments``), and
``instrument_validity`` returns gamma = 1 - loss / loss_zero on the residuals.

``ControlFunctionIV`` (Newey, Powell & Vella 1999; Imbens & Newey 2009) shares Deep IV's first
stage and response network and replaces Deep IV's second stage by a regression with the first
stage's control variable; it is the FEI advisor's default (docs/fei.md has the comparison).

Model (paper Eq. 1-5): y = g(t, x) + e with E[e | x, z] = E[e | x].  Stage 1 is a mixture density
network F(t | x, z) (10 Gaussians, 128-64-32); stage 2 a response network h(t, x) (128-64-32-1,
dropout 0.2) trained on  (y - E_{t~F}[h(t, x)])^2  with the unbiased gradient: two independent
groups of treatment samples, loss = (y - mean_A h)(y - mean_B h), whose gradient is unbiased for the
gradient of the squared loss. Both stages stop early on held-out loss. All inputs are standardized
inside; outputs are in the caller's units.

Deviations from the paper, on purpose: the default activation is ELU rather than ReLU, because the
FEI is a derivative of h and a ReLU network's derivative in t is piecewise constant (jagged FEI
curves); ``activation="relu"`` restores the paper's choice. The default response head is
``response="basis"``: the same 128-64-32 network, fed x only, outputs the coefficients of a fixed
smooth basis in t (see ``ResponseNet``), so dh/dt is smooth and one network pass serves every
treatment draw of a row; ``response="mlp"`` is the paper's 128-64-32-1 network over [t, x]. The learning rate is 1e-3 with batches
of 512 (the paper: 1e-5, batches of 256, 100 epochs), which reaches the same early-stopping point
in far fewer epochs on a 2-core CPU.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


@dataclass
class DeepIVConfig:
    n_components: int = 10  # Gaussians in the stage-1 mixture density network
    first_hidden: tuple[int, ...] = (128, 64, 32)
    second_hidden: tuple[int, ...] = (128, 64, 32)  # then a linear layer to 1
    dropout: float = 0.2  # both stages (paper: 0.2)
    activation: str = "elu"
    response: str = "basis"  # "mlp": the paper's 128-64-32-1 over [t, x]; "basis": see ResponseNet
    n_knots: int = 13  # basis response: softplus ramps in standardized t
    knot_range: float = 3.0
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 512
    max_epochs: int = 60  # per stage, early stopping usually ends far sooner
    patience: int = 4  # epochs without held-out improvement before stopping
    min_delta: float = 1e-4  # relative improvement that counts
    val_fraction: float = 0.1
    n_samples: int = 4  # treatment samples per group; two independent groups per row
    val_samples: int = 32  # treatment samples per held-out row for the stage-2 held-out loss
    max_rows_per_epoch: int | None = None  # subsample each epoch (large n): None = all rows
    # ControlFunctionIV only: covariate columns left out of stage 1, for covariates the treatment
    # itself causes (h holds them fixed; see ControlFunctionIV)
    first_stage_exclude: tuple[int, ...] = ()
    control_hidden: tuple[int, ...] = ()  # ControlFunctionIV's k(V): () linear, else an MLP of V
    # covariate columns that move only h's level, linearly (ResponseNet), not the shape of h in t:
    # e.g. content components that say how many impressions a video gets but not how they grow
    level_only: tuple[int, ...] = ()
    seed: int = 0
    threads: int = 2
    progress: bool = False


# --------------------------------------------------------------------------------------- validation


def _as_1d(name: str, a, n: int | None = None) -> np.ndarray:
    if a is None:
        raise ValueError(f"{name} is required")
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name}: expected shape (N,) or (N, 1), got {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name}: expected {n} rows (as treatment), got {a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: {int((~np.isfinite(a)).sum())} NaN/inf values")
    return a


def _as_2d(name: str, a, n: int, p: int | None = None) -> np.ndarray:
    if a is None:
        raise ValueError(f"{name} is required")
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected shape (N, P), got {a.shape}")
    if a.shape[0] != n:
        raise ValueError(f"{name}: expected {n} rows (as treatment), got {a.shape[0]}")
    if p is not None and a.shape[1] != p:
        raise ValueError(f"{name}: expected {p} columns (as at fit), got {a.shape[1]}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: {int((~np.isfinite(a)).sum())} NaN/inf values")
    return a


@dataclass
class _Scaler:
    """Column means and standard deviations of one input (standardize in, unstandardize out)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, a: np.ndarray) -> _Scaler:
        a = a.reshape(a.shape[0], -1)
        std = a.std(0)
        return cls(a.mean(0), np.where(std > 1e-12, std, 1.0))

    def __call__(self, a: np.ndarray) -> np.ndarray:
        return ((a.reshape(a.shape[0], -1) - self.mean) / self.std).astype(np.float32)


def _mlp(d_in: int, hidden: tuple[int, ...], d_out: int, act: str, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(d_in, h), ACTIVATIONS[act](), nn.Dropout(dropout)]
        d_in = h
    layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


def _split(n: int, frac: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    n_val = max(1, int(round(frac * n))) if n >= 10 else 0
    return perm[n_val:], perm[:n_val]


class _EarlyStop:
    def __init__(self, patience: int, min_delta: float):
        self.patience, self.min_delta = patience, min_delta
        self.best, self.bad, self.state = math.inf, 0, None

    def update(self, loss: float, model: nn.Module) -> bool:
        """Record a held-out loss; True when training should stop."""
        if loss < self.best - self.min_delta * abs(self.best if math.isfinite(self.best) else 1.0):
            self.best, self.bad, self.state = loss, 0, copy.deepcopy(model.state_dict())
        else:
            self.bad += 1
        return self.bad >= self.patience


# ------------------------------------------------------------------------------------------- stage 1


class MixtureDensityNet(nn.Module):
    """F(t | x, z): a mixture of K Gaussians over standardized t, parameters from an MLP."""

    def __init__(self, d_in: int, cfg: DeepIVConfig):
        super().__init__()
        self.k = cfg.n_components
        self.body = _mlp(d_in, cfg.first_hidden, 3 * self.k, cfg.activation, cfg.dropout)

    def forward(self, xz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        assert xz.ndim == 2, f"expected (B, P+Q), got {tuple(xz.shape)}"
        out = self.body(xz)  # (B, 3K)
        logit, mu, log_sigma = out.split(self.k, dim=1)  # each (B, K)
        return torch.log_softmax(logit, 1), mu, log_sigma.clamp(-7.0, 3.0)

    def nll(self, xz: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        log_pi, mu, log_sigma = self(xz)  # (B, K)
        z = (t[:, None] - mu) / log_sigma.exp()  # (B, K)
        log_p = log_pi - 0.5 * z**2 - log_sigma - 0.5 * math.log(2 * math.pi)
        return -torch.logsumexp(log_p, 1).mean()

    @torch.no_grad()
    def normal_score(self, xz: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B,) Phi^-1(F(t | x, z)): the mixture CDF at the observed t as a standard-normal score
        (the control variable of ControlFunctionIV)."""
        log_pi, mu, log_sigma = self(xz)
        cdf = (log_pi.exp() * torch.special.ndtr((t[:, None] - mu) / log_sigma.exp())).sum(1)
        return torch.special.ndtri(cdf.clamp(1e-6, 1 - 1e-6))

    @torch.no_grad()
    def sample(self, xz: torch.Tensor, n: int, gen: torch.Generator | None = None) -> torch.Tensor:
        """(B, n) treatment samples per row."""
        log_pi, mu, log_sigma = self(xz)  # (B, K)
        comp = torch.multinomial(log_pi.exp(), n, replacement=True, generator=gen)  # (B, n)
        eps = torch.randn(comp.shape, generator=gen)
        return mu.gather(1, comp) + log_sigma.exp().gather(1, comp) * eps  # (B, n)


class ResponseNet(nn.Module):
    """h(t, x) on standardized inputs and outputs.

    ``response="mlp"`` (the paper): an MLP over [t, x] to one number. ``response="basis"``: the MLP
    over x alone outputs coefficients of a fixed smooth basis in t,
        h(t, x) = c0(x) + c1(x) t + sum_k ck(x) s softplus((t - m_k) / s),
    knots m_k evenly over [-knot_range, knot_range] (t is standardized), so dh/dt is a smooth sum
    of sigmoids whose weights depend on the content. The network runs once per row however many
    treatment samples are scored, which makes stage 2 several times cheaper.

    ``cfg.level_only`` columns of x skip the MLP and add a linear term to h (a partially linear
    model): they can set how many impressions a video gets, not how they grow with t, so many such
    columns cost few parameters and cannot add noise to dh/dt.
    """

    def __init__(self, d_x: int, cfg: DeepIVConfig):
        super().__init__()
        self.kind = cfg.response
        level = sorted(set(int(i) for i in cfg.level_only))
        if level and (level[0] < 0 or level[-1] >= d_x):
            raise ValueError(f"level_only: columns {level} outside 0..{d_x - 1}")
        shape = [i for i in range(d_x) if i not in set(level)]
        # derived from cfg, not saved: states from before level_only load unchanged
        self.register_buffer("shape_cols", torch.tensor(shape, dtype=torch.long), persistent=False)
        self.register_buffer("level_cols", torch.tensor(level, dtype=torch.long), persistent=False)
        self.level = nn.Linear(len(level), 1, bias=False) if level else None
        if self.level is not None:
            nn.init.zeros_(self.level.weight)  # no level effect until the data show one
        d_x = len(shape)
        if self.kind == "mlp":
            self.body = _mlp(1 + d_x, cfg.second_hidden, 1, cfg.activation, cfg.dropout)
        elif self.kind == "basis":
            self.body = _mlp(d_x, cfg.second_hidden, 2 + cfg.n_knots, cfg.activation, cfg.dropout)
            self.register_buffer("knots", torch.linspace(-cfg.knot_range, cfg.knot_range, cfg.n_knots))
            self.scale = 2 * cfg.knot_range / max(cfg.n_knots - 1, 1)
        else:
            raise ValueError(f"response must be 'mlp' or 'basis', got {cfg.response!r}")

    def _basis(self, t: torch.Tensor) -> torch.Tensor:
        """(..., M) -> (..., M, 2 + K)."""
        ramps = self.scale * nn.functional.softplus((t[..., None] - self.knots) / self.scale)  # (..., M, K)
        return torch.cat([torch.ones_like(t)[..., None], t[..., None], ramps], -1)

    def multi(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """t (B, M) treatment values per row, x (B, P) -> h (B, M)."""
        assert t.ndim == 2 and x.ndim == 2 and t.shape[0] == x.shape[0], (
            f"expected t (B, M), x (B, P), got {tuple(t.shape)}, {tuple(x.shape)}"
        )
        b, m = t.shape
        level = 0.0
        if self.level is not None:
            level = self.level(x[:, self.level_cols])  # (B, 1)
            x = x[:, self.shape_cols]
        if self.kind == "mlp":
            h = self.body(torch.cat([t.reshape(-1, 1), x.repeat_interleave(m, 0)], 1)).reshape(b, m)
        else:
            coef = self.body(x)  # (B, 2+K)
            h = (self._basis(t) * coef[:, None, :]).sum(-1)  # (B, M)
        return h + level

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        assert t.ndim == 1 and x.ndim == 2 and t.shape[0] == x.shape[0], (
            f"expected t (B,), x (B, P), got {tuple(t.shape)}, {tuple(x.shape)}"
        )
        return self.multi(t[:, None], x)[:, 0]  # (B,)


# ------------------------------------------------------------------------------------ shared plumbing


class _NeuralResponse:
    """What DeepIV and the naive regression share: scalers, h, predict and marginal_effect."""

    cfg: DeepIVConfig
    h: ResponseNet | None = None

    def __init__(self, config: DeepIVConfig | None = None, **overrides):
        self.cfg = config or DeepIVConfig()
        if overrides:
            self.cfg = DeepIVConfig(**{**asdict(self.cfg), **overrides})
        self.h, self.history = None, {}

    def _check_fitted(self) -> None:
        if self.h is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")

    def _t_x(self, treatment, covariates) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_fitted()
        t = _as_1d("treatment", treatment)
        x = _as_2d("covariates", covariates, t.shape[0], self.n_covariates)
        return torch.from_numpy(self.t_scaler(t[:, None])[:, 0]), torch.from_numpy(self.x_scaler(x))

    def predict(self, treatment, covariates, batch_size: int = 65536) -> np.ndarray:
        """h(t, x) in outcome units, (N,)."""
        t, x = self._t_x(treatment, covariates)
        self.h.eval()
        with torch.no_grad():
            out = (
                torch.cat(
                    [
                        self.h(t[i : i + batch_size], x[i : i + batch_size])
                        for i in range(0, len(t), batch_size)
                    ]
                )
                if len(t)
                else torch.zeros(0)
            )
        return out.double().numpy() * self.y_scaler.std[0] + self.y_scaler.mean[0]

    def marginal_effect(self, treatment, covariates, batch_size: int = 65536) -> np.ndarray:
        """dh/dt in outcome units per treatment unit (autograd), (N,)."""
        t, x = self._t_x(treatment, covariates)
        self.h.eval()
        parts = []
        for i in range(0, len(t), batch_size):
            tb = t[i : i + batch_size].clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.h(tb, x[i : i + batch_size]).sum(), tb)
            parts.append(grad.detach())
        d = torch.cat(parts).double().numpy() if parts else np.zeros(0)
        return d * self.y_scaler.std[0] / self.t_scaler.std[0]

    def _start_fit(self, treatment, covariates, outcome):
        """Checked (t, x, y) arrays, torch seeded and threaded from the config, scalers fitted;
        returns them with n and the split's random generator."""
        cfg = self.cfg
        t = _as_1d("treatment", treatment)
        n = t.shape[0]
        x = _as_2d("covariates", covariates, n)
        y = _as_1d("outcome", outcome, n)
        if n < 20:
            raise ValueError(f"need at least 20 rows to fit with a held-out split, got {n}")
        torch.manual_seed(cfg.seed)
        torch.set_num_threads(cfg.threads)
        self.t_scaler, self.x_scaler, self.y_scaler = (
            _Scaler.fit(t[:, None]),
            _Scaler.fit(x),
            _Scaler.fit(y[:, None]),
        )
        self.n_covariates = x.shape[1]
        return t, x, y, n, np.random.default_rng(cfg.seed)

    def response_state(self) -> dict:
        """Everything predict()/marginal_effect() need, as tensors and plain values (for saving)."""
        self._check_fitted()
        return {
            "kind": type(self).__name__,
            "config": asdict(self.cfg),
            "n_covariates": self.n_covariates,
            "scalers": {
                k: (s.mean.tolist(), s.std.tolist())
                for k, s in (("t", self.t_scaler), ("x", self.x_scaler), ("y", self.y_scaler))
            },
            "h": self.h.state_dict(),
            "history": self.history,
        }

    @classmethod
    def from_response_state(cls, state: dict):
        saved = {"response": "mlp", **state["config"]}  # states saved before the basis response were MLPs
        cfg = DeepIVConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
        est = cls(cfg)
        est.n_covariates = state["n_covariates"]
        sc = {k: _Scaler(np.asarray(m), np.asarray(s)) for k, (m, s) in state["scalers"].items()}
        est.t_scaler, est.x_scaler, est.y_scaler = sc["t"], sc["x"], sc["y"]
        est.h = ResponseNet(est.n_covariates, cfg)
        est.h.load_state_dict(state["h"])
        est.h.eval()
        est.history = state.get("history", {})
        return est


def _batches(idx: np.ndarray, bs: int, rng: np.random.Generator, cap: int | None):
    idx = rng.permutation(idx)
    if cap is not None and len(idx) > cap:
        idx = idx[:cap]
    for i in range(0, len(idx), bs):
        yield idx[i : i + bs]


def _fit_loop(
    module: nn.Module, batch_loss, val_loss, tr: np.ndarray, cfg: DeepIVConfig, rng, desc: str, on_val=None
) -> list[float]:
    """Adam on ``batch_loss(rows)`` over shuffled training rows, one held-out ``val_loss()`` per
    epoch (``on_val(epoch, val)`` after each), early stopping; ``module`` ends in its best state,
    in eval mode. Returns the held-out losses."""
    opt = torch.optim.Adam(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    stop, hist = _EarlyStop(cfg.patience, cfg.min_delta), []
    for _ in tqdm(range(cfg.max_epochs), desc=desc, disable=not cfg.progress):
        module.train()
        for b in _batches(tr, cfg.batch_size, rng, cfg.max_rows_per_epoch):
            loss = batch_loss(torch.from_numpy(b))
            opt.zero_grad()
            loss.backward()
            opt.step()
        module.eval()
        with torch.no_grad():
            val = float(val_loss())
        hist.append(val)
        if on_val is not None:
            on_val(len(hist), val)
        if stop.update(val, module):
            break
    module.load_state_dict(stop.state)
    module.eval()
    return hist


def _stage_callback(on_epoch, stage: int):
    """``on_epoch(stage, epoch, val)`` as _fit_loop's ``on_val(epoch, val)``, or None."""
    return None if on_epoch is None else (lambda epoch, val: on_epoch(stage, epoch, val))


def _fit_mdn(xz, ts, tr, va, cfg: DeepIVConfig, rng, on_epoch=None) -> tuple[MixtureDensityNet, list[float]]:
    """Stage 1 of both IV estimators: F(t | x, z) by maximum likelihood, early stop on held-out NLL."""
    mdn = MixtureDensityNet(xz.shape[1], cfg)
    hist = _fit_loop(
        mdn,
        lambda bt: mdn.nll(xz[bt], ts[bt]),
        lambda: mdn.nll(xz[va], ts[va]),
        tr,
        cfg,
        rng,
        "iv stage 1",
        _stage_callback(on_epoch, 1),
    )
    return mdn, hist


# --------------------------------------------------------------------------------------------- Deep IV


class _InstrumentedResponse(_NeuralResponse):
    """What the two IV estimators share: the stage-1 mixture density network F(t | x, z), its
    inputs, the relevance diagnostic and (de)serialisation."""

    def __init__(self, config: DeepIVConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.mdn = None

    def _fit_stage1(self, treatment, covariates, instruments, outcome, on_epoch):
        """Checked, standardized tensors, the train / held-out split and a fitted self.mdn."""
        cfg = self.cfg
        t, x, y, n, rng = self._start_fit(treatment, covariates, outcome)
        z = _as_2d("instruments", instruments, n)
        bad = [j for j in cfg.first_stage_exclude if not 0 <= j < x.shape[1]]
        if bad:
            raise ValueError(
                f"first_stage_exclude: columns {bad} are not covariate columns 0..{x.shape[1] - 1}"
            )
        self.z_scaler = _Scaler.fit(z)
        ts = torch.from_numpy(self.t_scaler(t[:, None])[:, 0])  # (N,)
        xs = torch.from_numpy(self.x_scaler(x))  # (N, P)
        xz = self._stage1_inputs(xs, torch.from_numpy(self.z_scaler(z)))  # (N, P'+Q)
        ys = torch.from_numpy(self.y_scaler(y[:, None])[:, 0])  # (N,)
        tr, va = _split(n, cfg.val_fraction, rng)
        self.mdn, hist1 = _fit_mdn(xz, ts, tr, va, cfg, rng, on_epoch)
        return ts, xs, xz, ys, tr, va, rng, hist1

    def _stage1_inputs(self, xs: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
        """[x without cfg.first_stage_exclude, z], standardized: the inputs of F(t | x, z)."""
        keep = [j for j in range(xs.shape[1]) if j not in set(self.cfg.first_stage_exclude)]
        return torch.cat([xs[:, keep], zs], 1)

    def first_stage_r2(self, *, treatment, covariates, instruments) -> float:
        """Held-in R^2 of the mixture mean for t: a relevance diagnostic of the instrument."""
        t = _as_1d("treatment", treatment)
        x = _as_2d("covariates", covariates, t.shape[0], self.n_covariates)
        z = _as_2d("instruments", instruments, t.shape[0])
        xz = self._stage1_inputs(torch.from_numpy(self.x_scaler(x)), torch.from_numpy(self.z_scaler(z)))
        with torch.no_grad():
            log_pi, mu, _ = self.mdn(xz)
            m = (log_pi.exp() * mu).sum(1).double().numpy() * self.t_scaler.std[0] + self.t_scaler.mean[0]
        return float(1 - np.mean((t - m) ** 2) / np.var(t))

    def state(self) -> dict:
        s = self.response_state()
        s["mdn"] = self.mdn.state_dict()
        s["z_scaler"] = (self.z_scaler.mean.tolist(), self.z_scaler.std.tolist())
        return s

    @classmethod
    def from_state(cls, state: dict):
        est = cls.from_response_state(state)
        m, s = state["z_scaler"]
        est.z_scaler = _Scaler(np.asarray(m), np.asarray(s))
        n_x = est.n_covariates - len(set(est.cfg.first_stage_exclude))
        est.mdn = MixtureDensityNet(n_x + len(m), est.cfg)
        est.mdn.load_state_dict(state["mdn"])
        est.mdn.eval()
        return est


class DeepIV(_InstrumentedResponse):
    """Deep IV with a mixture-density first stage and an unbiased-gradient second stage."""

    def fit(self, *, treatment, covariates, instruments, outcome, on_epoch=None) -> DeepIV:
        """Fit both stages. ``on_epoch(stage, epoch, val_loss)``, if given, is called after every epoch
        (diagnostics: e.g. track a truth-based error while training)."""
        cfg = self.cfg
        if cfg.first_stage_exclude:
            raise ValueError(
                "first_stage_exclude is for ControlFunctionIV: Deep IV integrates h(t, x) over F(t | x, z), "
                "so its first stage must see every covariate of h"
            )
        ts, xs, xz, ys, tr, va, rng, hist1 = self._fit_stage1(
            treatment, covariates, instruments, outcome, on_epoch
        )

        # stage 2: h(t, x) on the sampled-treatment objective, unbiased gradient
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.h = ResponseNet(xs.shape[1], cfg)
        va_t = torch.from_numpy(va)
        va_samples = self.mdn.sample(xz[va_t], cfg.val_samples, gen)  # (V, S) fixed held-out draws
        k = cfg.n_samples

        def batch_loss(bt: torch.Tensor) -> torch.Tensor:
            xb, yb = xs[bt], ys[bt]  # (B, P), (B,)
            tt = self.mdn.sample(xz[bt], 2 * k, gen)  # (B, 2K)
            hb = self.h.multi(tt, xb)  # (B, 2K)
            return ((yb - hb[:, :k].mean(1)) * (yb - hb[:, k:].mean(1))).mean()

        hist2 = _fit_loop(
            self.h,
            batch_loss,
            lambda: self._stage2_heldout(xs[va_t], ys[va_t], va_samples),
            tr,
            cfg,
            rng,
            "deep iv stage 2",
            _stage_callback(on_epoch, 2),
        )
        self.history = {
            "stage1_val_nll": hist1,
            "stage2_val_loss": hist2,
            "n_train": int(len(tr)),
            "n_val": int(len(va)),
        }
        return self

    @torch.no_grad()
    def _stage2_heldout(self, x: torch.Tensor, y: torch.Tensor, samples: torch.Tensor) -> float:
        """(y - mean_s h(t_s, x))^2 on held-out rows, with the treatment draws fixed across epochs."""
        self.h.eval()
        hb = self.h.multi(samples, x)  # (V, S)
        return float(((y - hb.mean(1)) ** 2).mean())


class ControlFunctionIV(_InstrumentedResponse):
    """Control-function IV (Newey, Powell & Vella 1999; Imbens & Newey 2009) on Deep IV's networks.

    Stage 1 is Deep IV's mixture density network F(t | x, z). Its CDF at the observed treatment,
    as a normal score V = Phi^-1(F(t | x, z)), is the part of t the instrument does not explain.
    If t is monotone in one unobserved disturbance and (e, that disturbance) is independent of
    (x, z), then E[y | t, x, V] = h(t, x) + k(V): conditioning on V removes the confounding.
    Stage 2 fits h (the same ResponseNet as Deep IV) and k (linear in V by default, an MLP of V
    with ``cfg.control_hidden``) by least squares on y, early stopped on held-out MSE. That is a regression, not Deep IV's integral equation: the
    counterfactual h is not obtained by inverting E[h(t, x) | x, z], which is what makes Deep IV's
    curve noisy where the instrument moves t little (the ends of the follower range).

    ``cfg.first_stage_exclude`` names covariate columns that the treatment itself causes (on the
    FEI data: ``verified``, which follows follower count). They stay in h, which holds them fixed,
    but are left out of F(t | x, z): conditioning the first stage on them would make V depend on
    them and k(V) could no longer absorb the confounding (measured in docs/fei.md). That is right
    when, given t, such a column says nothing more about the disturbance.

    The price is the stronger assumption (a scalar, monotone first-stage disturbance independent
    of the instrument); Deep IV needs only E[e | x, z] = 0. ``predict`` returns h(t, x) + E[k(V)],
    the mean outcome had t been set (the constant is folded into h's intercept after the fit, so
    the saved h alone serves predict, marginal_effect and the Triton export).
    """

    def fit(self, *, treatment, covariates, instruments, outcome, on_epoch=None) -> ControlFunctionIV:
        """Fit both stages. ``on_epoch(stage, epoch, val_loss)`` as in DeepIV.fit."""
        cfg = self.cfg
        ts, xs, xz, ys, tr, va, rng, hist1 = self._fit_stage1(
            treatment, covariates, instruments, outcome, on_epoch
        )
        v = torch.cat(
            [self.mdn.normal_score(xz[i : i + 65536], ts[i : i + 65536]) for i in range(0, len(ts), 65536)]
        )
        self.h = ResponseNet(xs.shape[1], cfg)
        # k(V): linear by default, profiled out of every batch's loss (least squares of the
        # residual on V; optimising the slope jointly with h by gradient steps converges slowly,
        # as t and V are correlated); cfg.control_hidden makes it an MLP trained with h
        control = _mlp(1, cfg.control_hidden, 1, cfg.activation, 0.0) if cfg.control_hidden else None

        def residual(bt: torch.Tensor) -> torch.Tensor:
            """(B,) y - h(t, x) - k(V) for rows bt."""
            r, vb = ys[bt] - self.h(ts[bt], xs[bt]), v[bt]
            if control is None:
                return r - (r * vb).sum() / (vb * vb).sum() * vb
            return r - control(vb[:, None])[:, 0]

        modules = nn.ModuleDict({"h": self.h, **({"k": control} if control is not None else {})})
        va_t = torch.from_numpy(va)
        hist2 = _fit_loop(
            modules,
            lambda bt: (residual(bt) ** 2).mean(),
            lambda: (residual(va_t) ** 2).mean(),  # (a linear k's one slope is refit on these rows too)
            tr,
            cfg,
            rng,
            "control function stage 2",
            _stage_callback(on_epoch, 2),
        )
        with torch.no_grad():
            tr_t = torch.from_numpy(tr)
            if control is None:
                r, vt = ys[tr_t] - self.h(ts[tr_t], xs[tr_t]), v[tr_t]
                k = (r * vt).sum() / (vt * vt).sum() * v  # (N,)
            else:
                k = control(v[:, None])[:, 0]
            k_mean = float(k.mean())
            self.h.body[-1].bias[0] += k_mean  # h's constant term: basis column 0, or the MLP's output
        self.history = {
            "stage1_val_nll": hist1,
            "stage2_val_mse": hist2,
            "control_mean": k_mean,
            "control_slope": float(np.polyfit(v.numpy(), k.numpy(), 1)[0]),  # standardized y per unit V
            "n_train": int(len(tr)),
            "n_val": int(len(va)),
        }
        return self


IV_ESTIMATORS = {"deepiv": DeepIV, "control_function": ControlFunctionIV}


class IVEnsemble:
    """The average of several fits of one IV estimator that differ only in their seed (network
    initialisation, held-out split, batch order). ``predict`` and ``marginal_effect`` are the
    members' means, so the FEI is the derivative of the averaged h. Same numpy API as the
    estimators; it lowers the variance of h, not its bias (docs/fei.md, "Ensemble")."""

    def __init__(self, members: list[_InstrumentedResponse]):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = list(members)

    @classmethod
    def of(cls, estimator: type[_InstrumentedResponse], config: DeepIVConfig, n: int) -> IVEnsemble:
        """n unfitted ``estimator``s with seeds config.seed, config.seed + 1, ..."""
        if n < 1:
            raise ValueError(f"n: need at least one member, got {n}")
        return cls([estimator(replace(config, seed=config.seed + i)) for i in range(n)])

    @property
    def cfg(self) -> DeepIVConfig:
        return self.members[0].cfg

    @property
    def history(self) -> dict:
        return {"members": [m.history for m in self.members]}

    def fit(self, *, treatment, covariates, instruments, outcome, on_epoch=None) -> IVEnsemble:
        for m in self.members:
            m.fit(
                treatment=treatment,
                covariates=covariates,
                instruments=instruments,
                outcome=outcome,
                on_epoch=on_epoch,
            )
        return self

    def predict(self, treatment, covariates, batch_size: int = 65536) -> np.ndarray:
        """Mean of the members' h(t, x), (N,)."""
        return np.mean([m.predict(treatment, covariates, batch_size) for m in self.members], axis=0)

    def marginal_effect(self, treatment, covariates, batch_size: int = 65536) -> np.ndarray:
        """Mean of the members' dh/dt, (N,)."""
        return np.mean([m.marginal_effect(treatment, covariates, batch_size) for m in self.members], axis=0)

    def first_stage_r2(self, *, treatment, covariates, instruments) -> float:
        """Mean of the members' first-stage R^2."""
        return float(
            np.mean(
                [
                    m.first_stage_r2(treatment=treatment, covariates=covariates, instruments=instruments)
                    for m in self.members
                ]
            )
        )

    def state(self) -> dict:
        return {"kind": type(self).__name__, "members": [m.state() for m in self.members]}

    @classmethod
    def from_state(cls, state: dict) -> IVEnsemble:
        return cls([load_iv_estimator(m) for m in state["members"]])


def load_iv_estimator(state: dict) -> _InstrumentedResponse | IVEnsemble:
    """An IV estimator from its ``state()``, of the class that saved it (states without a kind,
    saved before the control function existed, are Deep IV)."""
    kind = state.get("kind", "DeepIV")
    if kind == IVEnsemble.__name__:
        return IVEnsemble.from_state(state)
    for cls in IV_ESTIMATORS.values():
        if cls.__name__ == kind:
            return cls.from_state(state)
    raise ValueError(
        f"unknown IV estimator kind {kind!r}; expected one of {[c.__name__ for c in IV_ESTIMATORS.values()]}"
    )


# ------------------------------------------------------------------------------------------ baselines


class NaiveNeuralRegression(_NeuralResponse):
    """E[y | t, x] by the same response network, ignoring the instrument (biased under confounding)."""

    def fit(self, *, treatment, covariates, outcome, instruments=None) -> NaiveNeuralRegression:
        cfg = self.cfg
        t, x, y, n, rng = self._start_fit(treatment, covariates, outcome)
        ts = torch.from_numpy(self.t_scaler(t[:, None])[:, 0])
        xs = torch.from_numpy(self.x_scaler(x))
        ys = torch.from_numpy(self.y_scaler(y[:, None])[:, 0])
        tr, va = _split(n, cfg.val_fraction, rng)
        va_t = torch.from_numpy(va)
        self.h = ResponseNet(xs.shape[1], cfg)
        hist = _fit_loop(
            self.h,
            lambda bt: ((ys[bt] - self.h(ts[bt], xs[bt])) ** 2).mean(),
            lambda: ((ys[va_t] - self.h(ts[va_t], xs[va_t])) ** 2).mean(),
            tr,
            cfg,
            rng,
            "naive regression",
        )
        self.history = {"val_mse": hist}
        return self


@dataclass
class TwoStageLeastSquares:
    """Linear 2SLS: t on [1, x, z], then y on [1, t_hat, x]; h(t, x) = a + b t + c'x, dh/dt = b."""

    coef_: np.ndarray | None = field(default=None)  # (1 + 1 + P,) intercept, treatment, covariates
    first_stage_r2_: float | None = None

    def fit(self, *, treatment, covariates, instruments, outcome) -> TwoStageLeastSquares:
        t = _as_1d("treatment", treatment)
        n = t.shape[0]
        x = _as_2d("covariates", covariates, n)
        z = _as_2d("instruments", instruments, n)
        y = _as_1d("outcome", outcome, n)
        one = np.ones((n, 1))
        w1 = np.hstack([one, x, z])  # (N, 1+P+Q)
        b1, *_ = np.linalg.lstsq(w1, t, rcond=None)
        t_hat = w1 @ b1
        self.first_stage_r2_ = float(1 - np.mean((t - t_hat) ** 2) / np.var(t))
        w2 = np.hstack([one, t_hat[:, None], x])  # (N, 2+P)
        self.coef_, *_ = np.linalg.lstsq(w2, y, rcond=None)
        return self

    def _check(self, treatment, covariates):
        if self.coef_ is None:
            raise RuntimeError("TwoStageLeastSquares is not fitted: call fit() first")
        t = _as_1d("treatment", treatment)
        return t, _as_2d("covariates", covariates, t.shape[0], self.coef_.shape[0] - 2)

    def predict(self, treatment, covariates) -> np.ndarray:
        t, x = self._check(treatment, covariates)
        return self.coef_[0] + self.coef_[1] * t + x @ self.coef_[2:]

    def marginal_effect(self, treatment, covariates) -> np.ndarray:
        t, _ = self._check(treatment, covariates)
        return np.full(t.shape[0], self.coef_[1])


# ---------------------------------------------------------------------------------- validity check


def instrument_validity(
    residual, covariates, instruments, *, n_folds: int = 2, seed: int = 0, max_rows: int = 200_000
) -> float:
    """Li et al. (2022): gamma = 1 - loss / loss_zero (paper Eq. 7).

    loss is the out-of-fold MSE of a gradient-boosting model predicting the residual y - h(t, x)
    from (x, z); loss_zero the MSE of predicting zero. gamma ~ 0 for a valid instrument (the
    residual is unpredictable from x and z), clearly > 0 when z enters the outcome directly.
    Cross-fitted over ``n_folds`` so every row is scored out of sample.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    e = _as_1d("residual", residual)
    n = e.shape[0]
    x = _as_2d("covariates", covariates, n)
    z = _as_2d("instruments", instruments, n)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(n)[:max_rows]
    w, e = np.hstack([x, z])[idx], e[idx]
    folds = np.array_split(np.arange(len(idx)), n_folds)
    pred = np.zeros(len(idx))
    for k, te in enumerate(folds):
        tr = np.concatenate([f for j, f in enumerate(folds) if j != k])
        m = HistGradientBoostingRegressor(
            max_iter=200, learning_rate=0.05, early_stopping=True, random_state=seed
        )
        pred[te] = m.fit(w[tr], e[tr]).predict(w[te])
    loss, loss_zero = float(np.mean((e - pred) ** 2)), float(np.mean(e**2))
    return 1.0 - loss / loss_zero

"""LAMM on a GPU: the forecaster moved with ``.to("cuda")`` (what Triton's GPU instance does)
gives the CPU's encodings, states and forecasts. Runs only where torch sees a GPU (the device
check script in docs/lamm.md); everywhere else the CPU tests cover the same code path with
device "cpu"."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from inference.lamm import Conformal, Lamm, LammConfig, LammForecaster
from tests.bench.bench_lamm import realistic_videos

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_gpu_forecaster_matches_the_cpu_one():
    torch.manual_seed(0)
    cpu = LammForecaster(Lamm(LammConfig()), Conformal(q_lo=-0.5, q_hi=0.6))
    gpu = copy.deepcopy(cpu).to("cuda")
    assert gpu.device.type == "cuda" and cpu.device.type == "cpu"
    vb = realistic_videos(300, seed=1)
    np.testing.assert_allclose(gpu.encode(vb), cpu.encode(vb), rtol=1e-4, atol=1e-4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, cpu.cfg.x_dim)).astype(np.float32)
    s_cpu, s_gpu = cpu.init_state(5000), gpu.init_state(5000)
    for _ in range(3):  # three days: the recurrent state carries over
        a, b = cpu.step(s_cpu, x), gpu.step(s_gpu, x)
        for k in ("state", "point", "lower", "upper", "baseline"):
            np.testing.assert_allclose(getattr(b, k), getattr(a, k), rtol=1e-3, atol=1e-4)
        s_cpu, s_gpu = a.state, b.state

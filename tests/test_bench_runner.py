"""`make bench` runs tests.bench.run_all: every benchmark it lists must name a module that exists
(the Makefile once pointed at a runner that did not). Also the benchmarks' own arithmetic where
a figure in the docs rests on it."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

from tests.bench import run_all


def test_every_listed_benchmark_module_exists():
    for b in run_all.BENCHES:
        modules = re.findall(r"-m (\S+)", " ".join(b.argv))  # also the steps of a `bash -c` chain
        assert modules, b
        for m in modules:
            assert importlib.util.find_spec(m) is not None, f"{b.name}: no module {m}"


def test_list_and_unknown_names(capsys):
    assert run_all.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(b.name in out for b in run_all.BENCHES)
    with pytest.raises(SystemExit) as e:
        run_all.main(["--only", "nope"])
    assert e.value.code == 2


def test_live_recalibration_offsets_use_only_earlier_days():
    from tests.bench.live_recalibration import rolling_offsets

    day = np.array([0, 0, 0, 0, 1, 1, 2])
    score = np.array([0.1, 0.2, 0.3, 0.4, 5.0, 6.0, 9.0])
    off = rolling_offsets(day, score, window=1, level=0.5)
    assert 0 not in off  # nothing before the first day
    assert off[1] == 0.3  # day 0's four scores, rank ceil(0.5 * 5) = 3; day 1's own never enter
    assert off[2] == 6.0  # window 1: day 1 only, rank ceil(0.5 * 3) = 2
    wide = rolling_offsets(day, score, window=2, level=0.8)
    assert wide[2] == 6.0  # days 0-1, six scores, rank ceil(0.8 * 7) = 6


def test_repeated_cv_corrected_t_test():
    """With no training overlap the corrected resampled t-test is the one-sample t-test of the
    differences; the overlap term (n_test / n_train) shrinks t by sqrt((1/n) / (1/n + ratio)).
    compare() pairs the served model with each other model fold by fold, per repetition."""
    from scipy import stats

    from tests.bench.repeated_cv import compare, corrected_resampled_t

    rng = np.random.default_rng(0)
    d = rng.normal(-0.001, 0.001, 15)
    t0, p0 = corrected_resampled_t(d, 0.0)
    ref = stats.ttest_1samp(d, 0.0)
    assert t0 == pytest.approx(ref.statistic) and p0 == pytest.approx(ref.pvalue)
    t1, p1 = corrected_resampled_t(d, 0.25)
    assert t1 == pytest.approx(t0 * np.sqrt((1 / 15) / (1 / 15 + 0.25))) and p1 > p0

    def run(seed, served, other):
        per_fold = [
            {"fold": i, "models": {"LAMM+GBM": {"mae": s}, "LightGBM": {"mae": o}}}
            for i, (s, o) in enumerate(zip(served, other, strict=True))
        ]
        return {"folds": 5, "train": {"seed": seed}, "per_fold": per_fold[::-1]}  # order restored by fold

    a = run(0, [0.40, 0.41, 0.42, 0.43, 0.44], [0.41, 0.41, 0.43, 0.44, 0.43])
    b = run(1, [0.40, 0.40, 0.40, 0.40, 0.40], [0.41, 0.42, 0.41, 0.42, 0.41])
    c = compare([a, b])["against"]["LightGBM"]
    assert c["folds"] == 10 and c["folds_lower"] == 8  # a: 3 lower, 1 tie, 1 higher; b: all 5
    assert c["diff"] == pytest.approx(
        np.mean([-0.01, 0, -0.01, -0.01, 0.01, -0.01, -0.02, -0.01, -0.02, -0.01])
    )
    assert [r["folds_lower"] for r in c["per_repetition"]] == [3, 5]

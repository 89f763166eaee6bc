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

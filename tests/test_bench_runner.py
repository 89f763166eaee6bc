"""`make bench` runs tests.bench.run_all: every benchmark it lists must name a module that exists
(the Makefile once pointed at a runner that did not)."""

from __future__ import annotations

import importlib.util
import re

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

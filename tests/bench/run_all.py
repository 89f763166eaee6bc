"""Run the project's benchmarks, one after another (``make bench``).

    .venv/bin/python -m tests.bench.run_all --list              # what runs, in order, and roughly how long
    .venv/bin/python -m tests.bench.run_all                     # the quick ones (default set, ~7 min)
    .venv/bin/python -m tests.bench.run_all --only fei,lamm_cv  # these, by name
    .venv/bin/python -m tests.bench.run_all --all               # every benchmark (about two and a half hours on 2 cores)

Each benchmark is the command its model card documents (docs/*.md), run as a subprocess with
its own output; this runner only sequences them, prints each one's wall time and exit status, and
exits non-zero if any failed. The stream, sink and Triton benchmarks need the local services
(``make services`` installs them; the benchmarks start them).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Bench:
    name: str
    argv: tuple[str, ...]
    doc: str  # where its figures are explained
    minutes: float  # rough wall time on the 2-core reference machine
    quick: bool = False  # in the default set


PY = sys.executable
BENCHES = (
    Bench("simulator", (PY, "-m", "tests.bench.bench_simulator"), "docs/simulator.md", 2, quick=True),
    Bench("embedded", (PY, "-m", "tests.bench.bench_embedded"), "README.md", 2, quick=True),
    Bench("coverage_drift", (PY, "-m", "tests.bench.coverage_drift"), "docs/lamm.md", 2),
    Bench(  # reads the store `make demo` fills
        "live_recalibration",
        ("bash", "-c", f"make demo && {PY} -m tests.bench.live_recalibration"),
        "docs/lamm.md",
        2,
    ),
    Bench(
        "lamm_throughput",
        (PY, "-m", "tests.bench.bench_lamm", "--threads", "1"),
        "docs/lamm.md",
        2,
        quick=True,
    ),
    Bench(
        "fei",
        (PY, "-m", "tests.bench.bench_fei", "--dataset", "data/fei_paper", "--parts", "fit,eval,scale"),
        "docs/fei.md",
        12,
    ),
    Bench(
        "fei_econml",  # after "fei": it reads that run's advisor and rows
        (
            "bash",
            "-c",
            "make compare-env"
            f" && {PY} -m tests.bench.fei_econml export --bench runs/bench/fei"
            " && .venv-compare/bin/python -m tests.bench.fei_econml fit --bench runs/bench/fei"
            f" && {PY} -m tests.bench.fei_econml score --bench runs/bench/fei --dataset data/fei_paper",
        ),
        "docs/fei.md",
        4,
    ),
    Bench(  # the FEI paper's size: 12 GB of features on disk, about 15 GB of memory to simulate
        "fei_500k",
        (
            "bash",
            "-c",
            f"( test -f data/fei_500k/meta.json || {PY} -m streams.cli simulate --preset paper"
            " --n-products 11700 --seed 0 --out data/fei_500k --no-progress )"
            f" && {PY} -m tests.bench.bench_fei --dataset data/fei_500k --parts fit,eval --refit --skip-deepiv"
            " --skip-invalid --baseline-epochs 25 --threads 2 --saliency-level --out runs/bench/fei500k_sal",
        ),
        "docs/fei.md",
        15,
    ),
    Bench(  # what the features allow about the S-curves' intensity, and what that is worth in profit
        "fei_intensity_bound",
        (
            "bash",
            "-c",
            f"( test -f data/paper/meta.json || {PY} -m streams.cli simulate --preset paper --seed 0"
            " --out data/paper --no-progress )"
            f" && {PY} -m tests.bench.fei_intensity_bound --dataset data/paper",
        ),
        "docs/fei.md",
        1,
    ),
    Bench(
        "lamm_cv",
        (
            PY,
            "-m",
            "streams.cli",
            "evaluate",
            "--data",
            "data/paper",
            "--threads",
            "1",
            "--ablations=",
            "--out",
            "runs/eval-paper",
        ),
        "docs/lamm.md",
        35,
    ),
    Bench(  # the served blend against the tuned LightGBM over three product partitions
        "lamm_repeated_cv",
        (
            "bash",
            "-c",
            "for s in 0 1 2; do"
            f" {PY} -m streams.cli evaluate --data data/paper --threads 1 --models LAMM,LAMM+GBM,LightGBM"
            " --ablations= --permutation= --content-scores --seed $s --out runs/eval-v10-seed$s || exit 1; done"
            f" && {PY} -m tests.bench.repeated_cv runs/eval-v10-seed0 runs/eval-v10-seed1 runs/eval-v10-seed2",
        ),
        "docs/lamm.md",
        60,
    ),
    Bench("content_ceiling", (PY, "-m", "tests.bench.content_ceiling"), "docs/lamm.md", 3),
    Bench(
        "encoder_probe", (PY, "-m", "tests.bench.encoder_probe", "--data", "data/paper"), "docs/lamm.md", 3
    ),
    Bench("sinks", (PY, "-m", "tests.bench.bench_sinks"), "docs/streaming.md", 3),
    Bench(
        "stream_throughput",
        (PY, "-m", "tests.bench.bench_stream", "throughput", "--events", "300000"),
        "docs/streaming.md",
        1,
        quick=True,
    ),
    Bench(
        "stream_latency",
        (PY, "-m", "tests.bench.bench_stream", "latency", "--rate", "2000", "--seconds", "30"),
        "docs/streaming.md",
        2,
    ),
    Bench("triton", (PY, "-m", "tests.bench.bench_triton"), "README.md", 5),
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--list", action="store_true", help="print the benchmarks and exit")
    ap.add_argument("--only", default="", help="comma-separated names to run")
    ap.add_argument("--all", action="store_true", help="run every benchmark, not only the quick set")
    a = ap.parse_args(argv)
    names = {b.name for b in BENCHES}
    only = [n for n in a.only.split(",") if n]
    unknown = sorted(set(only) - names)
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; known: {sorted(names)}")
    chosen = [b for b in BENCHES if (b.name in only if only else (a.all or b.quick))]
    if a.list:
        for b in BENCHES:
            mark = "*" if b in chosen else " "
            print(f"{mark} {b.name:20s} ~{b.minutes:>4.0f} min  {b.doc:18s}  {' '.join(b.argv[1:])}")
        print("(* = would run with these options)")
        return 0
    failed = []
    for i, b in enumerate(chosen, 1):
        print(
            f"\n=== [{i}/{len(chosen)}] {b.name} (~{b.minutes:.0f} min; figures explained in {b.doc}) ===",
            flush=True,
        )
        t0 = time.time()
        rc = subprocess.call(list(b.argv))
        print(f"=== {b.name}: exit {rc} after {time.time() - t0:.0f} s ===", flush=True)
        if rc != 0:
            failed.append(b.name)
    print(
        f"\n{len(chosen) - len(failed)} of {len(chosen)} benchmarks passed"
        + (f"; failed: {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

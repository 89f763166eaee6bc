"""Embedded-run throughput: input events/s through the pure state logic plus batched chdb writes.

    .venv/bin/python -m tests.bench.bench_embedded [--preset paper] [--seed 0] [--models standin]

Simulates (or reuses) the world, then replays all its events through the same Processor as
``liftstream run`` on one core (torch and BLAS limited to one thread) with the stand-in models by
default, so the figure is the stream machinery's: parsing/validation of the event objects, state
updates, forecast/advice batching and ClickHouse inserts. Writes runs/bench/embedded.json.
Target (issue 2): >= 20,000 events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from streams.embedded import _event_source, load_models, replay, world_dataset
    from streams.settings import Settings
    from streams.sinks import ChdbSink

    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="paper")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", type=Path, help="an existing dataset folder instead of simulating the preset")
    p.add_argument("--models", default="standin", help="standin | auto (LAMM + FEI)")
    p.add_argument(
        "--materialize",
        action="store_true",
        help="build every event object first and time only the replay (state logic + chdb writes)",
    )
    a = p.parse_args()

    settings = Settings(forecaster=a.models, advisor=a.models)
    dataset = a.dataset or world_dataset(a.preset, a.seed, settings.home)
    client = load_models(settings, dataset)
    source, total = _event_source(dataset, None)
    build_s = None
    if a.materialize:
        t0 = time.perf_counter()
        source = list(source)
        build_s = time.perf_counter() - t0
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    with tempfile.TemporaryDirectory() as tmp:
        sink = ChdbSink(Path(tmp) / "chdb", database="bench", batch_rows=settings.sink_batch_rows)
        counts, n, secs = replay(client, source, sink, settings, total=total)
        rows = {
            t: sink.store().query(f"SELECT count() FROM bench.{t}")[0][0]
            for t in ("videos", "engagement_daily", "sales_daily", "forecasts", "advice")
        }
        sink.close()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    res = {
        "preset": a.preset,
        "models": client.model_version + " / " + client.advice_version,
        "events": n,
        "seconds": round(secs, 2),
        "events_per_s": round(n / secs),
        "cpu_seconds": round(cpu_s, 2),
        "events_per_cpu_s": round(n / cpu_s),  # robust to other load on a shared machine
        "timed": "replay only (events prebuilt)" if a.materialize else "event construction + replay",
        "event_build_seconds": None if build_s is None else round(build_s, 2),
        "load_average_1m": round(os.getloadavg()[0], 1),
        "counts": dict(counts),
        "rows_written": rows,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    out = Path("runs/bench")
    out.mkdir(parents=True, exist_ok=True)
    (
        out
        / f"embedded_{a.preset if a.dataset is None else a.dataset.name}{'_replay' if a.materialize else ''}.json"
    ).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

"""The embedded run: a whole campaign replayed in one process, no servers.

``liftstream run`` (the README's first command) simulates a world (or reads a dataset folder or
an event file), trains or loads the models, replays every event in stream order through the
same ``Processor`` the Faust agents use, writes every input and output row to embedded
ClickHouse (chdb), then prints a summary and writes an HTML report with plots.

    liftstream run                                  # the small demo world, seed 0
    liftstream run --preset tiny --forecaster standin --advisor standin
    liftstream run --dataset data/mine              # a dataset folder in the documented format
    liftstream run --events events.jsonl --dataset data/mine   # raw JSON lines (bad ones -> dead letters)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from inference.cli_types import non_negative_int
from inference.client import AsyncInProcessClient, InProcessClient
from streams.processor import Processor, replay_clock
from streams.settings import Settings


@dataclass
class RunResult:
    counts: Counter
    n_events: int
    seconds: float
    store_url: str
    database: str
    out_dir: Path
    model_version: str
    advice_version: str
    dataset: Path | None

    @property
    def events_per_s(self) -> float:
        return self.n_events / self.seconds if self.seconds else float("nan")


# ----------------------------------------------------------------------------------------------
# inputs


def world_dataset(preset: str, seed: int, home: Path, progress: bool = True) -> Path:
    """Simulate (or reuse) a world and return its dataset folder."""
    from inference.sim import simulate, stale_world
    from schemas.dataset import validate_dataset

    path = home / "worlds" / f"{preset}-seed{seed}"
    if (path / "meta.json").exists() and not stale_world(path):
        try:
            validate_dataset(path)
            return path
        except ValueError:
            pass  # partial: rebuild
    print(f"simulating the {preset!r} world (seed {seed}) into {path} ...", flush=True)
    simulate(preset, seed=seed, progress=progress).write_dataset(path, progress=progress)
    return path


def _chunks(items: Iterable, n: int) -> Iterator[list]:
    buf: list = []
    for it in items:
        buf.append(it)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def _event_source(dataset: Path | None, events: Path | None) -> tuple[Iterable, int | None]:
    if events is not None:
        total = _count_lines(events)
        return (line.rstrip(b"\n") for line in events.open("rb") if line.strip()), total
    import pyarrow.parquet as pq

    from inference.sim.events import iter_events
    from schemas.dataset import DatasetError

    paths = [dataset / f"{t}.parquet" for t in ("videos", "engagement", "sales")]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"{dataset}: missing {', '.join(missing)}")
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    return iter_events(dataset, inline_features=False), total


# ----------------------------------------------------------------------------------------------
# models


def load_models(settings: Settings, dataset: Path | None, progress: bool = True) -> InProcessClient:
    """The in-process client: LAMM and FEI when asked for (trained or loaded from cache), else stand-ins."""
    from inference.standin import ConstantElasticityAdvisor, SeasonalNaiveForecaster

    cache = settings.home / "models"
    if settings.forecaster == "standin" or dataset is None and settings.forecaster == "auto":
        forecaster = SeasonalNaiveForecaster()
    elif settings.forecaster == "auto":
        from inference.lamm_train import TrainConfig, train_or_load

        # the content-lift channel (docs/lamm.md, item 10) when the dataset has annotations to train it on
        train = TrainConfig(content_scores=(Path(dataset) / "annotations").exists())
        forecaster = train_or_load(
            dataset, cache / "lamm", train=train, log=print if progress else (lambda *a, **k: None)
        )
    else:
        from inference.lamm import LammForecaster

        forecaster = LammForecaster.load(settings.forecaster)
    if settings.advisor == "standin" or dataset is None and settings.advisor == "auto":
        advisor = ConstantElasticityAdvisor()
    elif settings.advisor == "auto":
        from inference.fei_train import fit_or_load_advisor

        advisor = fit_or_load_advisor(dataset, cache / "fei", progress=progress)
    else:
        from inference.fei import FeiAdvisor

        advisor = FeiAdvisor.load(settings.advisor)
    return InProcessClient(forecaster, advisor)


# ----------------------------------------------------------------------------------------------
# the run


def replay(
    client: InProcessClient,
    events: Iterable,
    sink,
    settings: Settings,
    *,
    total: int | None = None,
    batch: int = 20_000,
    progress: bool = True,
) -> tuple[Counter, int, float]:
    """Push ``events`` through a Processor into ``sink``; returns (counts, n_events, seconds)."""

    async def go() -> tuple[Counter, int]:
        proc = await Processor.create(
            AsyncInProcessClient(client),
            {},
            source="replay",
            value_per_impression=settings.value_per_impression,
            cost_per_1k_followers=settings.cost_per_1k_followers,
            alerts=settings.alert_config(),
            clock=replay_clock,
        )
        n = 0
        bar = tqdm(total=total, unit="ev", unit_scale=True, desc="replay", disable=not progress)
        for chunk in _chunks(events, batch):
            res = await proc.process(chunk)
            sink.write(res.rows)
            n += len(chunk)
            bar.update(len(chunk))
        bar.close()
        sink.flush()
        return proc.totals, n

    t0 = time.perf_counter()
    counts, n = asyncio.run(go())
    return counts, n, time.perf_counter() - t0


def run(
    settings: Settings,
    *,
    preset: str = "small",
    seed: int = 0,
    dataset: Path | None = None,
    events: Path | None = None,
    out_dir: Path = Path("runs/demo"),
    progress: bool = True,
    report: bool = True,
) -> RunResult:
    from streams.sinks import ChdbSink

    if dataset is None and events is None:
        dataset = world_dataset(preset, seed, settings.home, progress)
    client = load_models(settings, dataset, progress)
    source, total = _event_source(dataset, events)
    store_dir = Path(settings.store.removeprefix("chdb://")) if settings.store.startswith("chdb://") else None
    if store_dir is None:
        raise SystemExit(f"liftstream run writes to embedded chdb; got store {settings.store!r}")
    sink = ChdbSink(store_dir, database=settings.database, batch_rows=settings.sink_batch_rows)
    try:
        sink.reset()  # a run replaces the previous run's tables
        counts, n, secs = replay(client, source, sink, settings, total=total, progress=progress)
        result = RunResult(
            counts,
            n,
            secs,
            f"chdb://{store_dir}",
            settings.database,
            out_dir,
            client.model_version,
            client.advice_version,
            dataset,
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        if report:
            from streams.report import write_report

            summary = write_report(sink.store(), settings.database, out_dir, result)
            print(summary)
        (out_dir / "run.json").write_text(
            json.dumps(
                {
                    "events": n,
                    "seconds": round(secs, 3),
                    "events_per_s": round(result.events_per_s),
                    "counts": dict(counts),
                    "model_version": client.model_version,
                    "advice_version": client.advice_version,
                    "store": result.store_url,
                    "database": settings.database,
                    "dataset": str(dataset) if dataset else None,
                },
                indent=2,
            )
        )
    finally:
        sink.close()
    return result


def cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="liftstream run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from inference.sim import PRESETS

    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="simulated world preset")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument(
        "--dataset", type=Path, help="a dataset folder (schemas/dataset.py format) instead of simulating"
    )
    p.add_argument("--events", type=Path, help="a JSON-lines event file to replay (raw payloads)")
    p.add_argument("--store", help="chdb:///dir for the embedded ClickHouse (default LIFTSTREAM_STORE)")
    p.add_argument("--forecaster", help="auto | standin | checkpoint dir")
    p.add_argument("--advisor", help="auto | standin | model dir")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="report folder")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.events is not None and not a.events.is_file():
        p.error(f"--events {a.events}: no such file")
    if a.dataset is not None:  # before any model is trained on it: DatasetError is one line from main
        from schemas.dataset import read_meta

        read_meta(a.dataset)
    overrides = {
        k: v for k, v in {"store": a.store, "forecaster": a.forecaster, "advisor": a.advisor}.items() if v
    }
    settings = Settings(**overrides)
    res = run(
        settings,
        preset=a.preset,
        seed=a.seed,
        dataset=a.dataset,
        events=a.events,
        out_dir=a.out,
        progress=not a.no_progress,
    )
    print(
        f"\n{res.n_events:,} events in {res.seconds:.1f} s ({res.events_per_s:,.0f} events/s); "
        f"report: {res.out_dir / 'report.html'}"
    )
    return 0

"""Triton on CPU: gRPC round-trip latency and throughput per served model, batched.

    nice -n 10 .venv/bin/python -m tests.bench.bench_triton [--models standin|tiny_torch|lamm_fei]
        [--forecaster DIR --advisor DIR] [--iters 50] [--concurrency 8] [--seconds 5]

Exports the chosen models into a temp repository, starts tritonserver (inference.triton_server),
then per model and batch size:

- latency: sequential sync gRPC calls (``TritonModelClient``), after warm-up: p50 / p95 / mean ms
  per call and rows/s at that rate;
- eager: the same calls on the same objects in this process (``InProcessClient``), p50 ms: the
  difference to the served p50 is the serving overhead (gRPC, serialization, the stub hop);
- throughput: ``concurrency`` aio clients' calls in flight for ``seconds`` (the dynamic batcher
  merges them): calls/s and rows/s.

``--models lamm_fei`` serves a random-initialised LAMM and a barely fitted FEI (the real classes,
meaningless numbers; cost is what is measured); ``--forecaster/--advisor DIR`` serve checkpoints.
Prints a table and writes runs/bench/triton.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import tritonclient.grpc as grpcclient

from inference import triton_names as N
from inference.client import InProcessClient
from inference.export import STANDIN_ADVISOR, STANDIN_FORECASTER, Source, export_repository, resolve
from inference.triton_client import AsyncTritonModelClient, TritonModelClient
from inference.triton_server import TritonServer
from tests.triton_fixtures import lamm_fei_checkpoints, random_meta, random_videos, random_x

ROOT = Path(__file__).resolve().parents[2]
BATCHES = {N.ENCODER: (1, 16, 64), N.STEP: (1, 64, 1024), N.ADVISOR: (1, 16, 64)}


def sources(args, tmp: Path) -> tuple[Source, Source]:
    if args.forecaster or args.advisor:
        return resolve(args.forecaster or "standin", "forecaster"), resolve(
            args.advisor or "standin", "advisor"
        )
    if args.models == "standin":
        return Source(STANDIN_FORECASTER, None), Source(STANDIN_ADVISOR, None)
    if args.models == "tiny_torch":
        from tests.triton_fixtures import TinyTorchAdvisor, TinyTorchForecaster

        return (
            Source("tests.triton_fixtures:TinyTorchForecaster", TinyTorchForecaster().save(tmp / "tf")),
            Source("tests.triton_fixtures:TinyTorchAdvisor", TinyTorchAdvisor().save(tmp / "ta")),
        )
    if args.models == "lamm_fei":
        f, a = lamm_fei_checkpoints(tmp)
        return Source("inference.lamm:LammForecaster", f), Source("inference.fei:FeiAdvisor", a)
    raise SystemExit(f"unknown --models {args.models!r}")


def calls(client, model: str, n: int, hidden: int):
    """A zero-argument coroutine-or-function factory for one call of ``model`` with ``n`` rows."""
    if model == N.ENCODER:
        v = random_videos(n, seed=n)
        return lambda: client.encode(v)
    if model == N.STEP:
        x = random_x(n, hidden, seed=n)
        s = np.repeat(client.info.init_row[None, :], n, axis=0)
        return lambda: client.step(s, x)
    v, m = random_videos(n, seed=n), random_meta(n, seed=n)
    return lambda: client.advise(v, m, 0.01, 5.0)


def latency(client: TritonModelClient, model: str, n: int, hidden: int, iters: int) -> dict:
    f = calls(client, model, n, hidden)
    for _ in range(3):
        f()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    ms = np.array(ts) * 1e3
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "rows_per_s": round(n * iters / float(np.sum(ts)), 1),
    }


async def throughput(url: str, model: str, n: int, hidden: int, concurrency: int, seconds: float) -> dict:
    client = AsyncTritonModelClient(url, timeout_s=60)
    f = calls(client, model, n, hidden)
    await f()
    done = 0
    stop = time.perf_counter() + seconds

    async def worker():
        nonlocal done
        while time.perf_counter() < stop:
            await f()
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    dt = time.perf_counter() - t0
    await client.close()
    return {"calls_per_s": round(done / dt, 1), "rows_per_s": round(done * n / dt, 1), "calls": done}


def triton_stats(url: str) -> dict:
    """Triton's own per-model statistics over the whole run: ms per execution spent queued, copying
    inputs, in model.py (``compute_infer``: the model itself) and copying outputs, and the mean
    requests / rows per execution (what the dynamic batcher merged). Served p50 minus these is
    the client and gRPC share."""
    out = {}
    with grpcclient.InferenceServerClient(url) as c:
        for model in N.MODELS:
            st = c.get_inference_statistics(model, as_json=True)["model_stats"][0]
            ex = max(int(st.get("execution_count", 0)), 1)
            inf = st["inference_stats"]
            out[model] = {
                f"{k}_ms_per_execution": round(int(inf[k].get("ns", 0)) / ex / 1e6, 3)
                for k in ("queue", "compute_input", "compute_infer", "compute_output")
            }
            out[model]["executions"] = ex
            out[model]["requests_per_execution"] = round(int(inf["success"].get("count", 0)) / ex, 2)
            out[model]["rows_per_execution"] = round(int(st.get("inference_count", 0)) / ex, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.bench_triton", description=__doc__.split("\n")[0])
    p.add_argument("--models", default="standin", help="standin | tiny_torch | lamm_fei")
    p.add_argument("--forecaster", default=None, help="checkpoint DIR (overrides --models)")
    p.add_argument("--advisor", default=None, help="checkpoint DIR (overrides --models)")
    p.add_argument("--iters", type=int, default=50, help="sequential calls per latency point")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput point")
    p.add_argument("--torch-threads", type=int, default=1, help="per served model instance, and for eager")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench" / "triton.json"))
    args = p.parse_args(argv)

    results = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_triton_") as tmp:
        tmp = Path(tmp)
        fsrc, asrc = sources(args, tmp)
        summary = export_repository(tmp / "repo", fsrc, asrc, torch_threads=args.torch_threads)
        if args.torch_threads > 0:  # eager runs with the same intra-op threads as one served instance
            import torch

            torch.set_num_threads(args.torch_threads)
        hidden = summary["sizes"]["H"]
        # the same objects in this process: what the model costs without the server
        eager = InProcessClient(fsrc.build(), asrc.build())
        eager.info = SimpleNamespace(init_row=eager.init_state(1)[0])
        t0 = time.perf_counter()
        with TritonServer(tmp / "repo", log_path=tmp / "tritonserver.log").start() as server:
            ready_s = time.perf_counter() - t0
            with TritonModelClient(server.grpc_url, timeout_s=60) as client:
                for model in N.MODELS:
                    for n in BATCHES[model]:
                        row = {"model": model, "batch": n, **latency(client, model, n, hidden, args.iters)}
                        eager_lat = latency(eager, model, n, hidden, args.iters)
                        row["eager_p50_ms"] = eager_lat["p50_ms"]
                        tp = asyncio.run(
                            throughput(server.grpc_url, model, n, hidden, args.concurrency, args.seconds)
                        )
                        row.update({f"concurrent_{k}": v for k, v in tp.items()})
                        results.append(row)
                        print(
                            f"{model:<13} batch {n:>5}  p50 {row['p50_ms']:>8.2f} ms  p95 {row['p95_ms']:>8.2f} ms  "
                            f"(eager p50 {row['eager_p50_ms']:>8.2f} ms)  "
                            f"seq {row['rows_per_s']:>10.0f} rows/s  x{args.concurrency} "
                            f"{tp['calls_per_s']:>7.1f} calls/s {tp['rows_per_s']:>10.0f} rows/s",
                            flush=True,
                        )
                server_stats = triton_stats(server.grpc_url)
    report = {
        "server_stats": server_stats,
        "bench": "triton",
        "models": args.models if not (args.forecaster or args.advisor) else "checkpoints",
        "model_version": summary["model_version"],
        "advice_version": summary["advice_version"],
        "server_ready_s": round(ready_s, 2),
        "iters": args.iters,
        "concurrency": args.concurrency,
        "torch_threads": args.torch_threads,
        "seconds_per_throughput_point": args.seconds,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            # other work on the machine skews the figures: the 1-minute load before and after
            "loadavg_1m_before": round(load_before[0], 2),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
        },
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for model, st in server_stats.items():
        print(f"{model:<13} server side: {st}")
    print(f"server ready in {ready_s:.2f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

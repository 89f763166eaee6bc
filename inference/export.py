"""Export the models to a Triton model repository, and the code Triton runs to serve them.

    liftstream export-triton --forecaster DIR|standin --advisor DIR|standin --out triton_models/
    liftstream export-triton ... --device gpu    # the GPU container's config (KIND_GPU)

writes, per served model (names, tensors, dims: ``inference.triton_names``)::

    OUT/lamm_encoder/config.pbtxt   VideoBatch tensors -> H                      (encode)
    OUT/lamm_step/config.pbtxt      STATE, X -> STATE_OUT, POINT, LOWER, UPPER, BASELINE  (step)
    OUT/fei_advisor/config.pbtxt    VideoBatch + VideoMeta + prices -> AdviceBatch (advise)
    OUT/<model>/1/model.py          generated; builds ``served_model(args)`` below
    OUT/<model>/1/checkpoint/       a copy of DIR (absent for a stand-in)

A forecaster DIR is loaded with ``inference.lamm:LammForecaster.load(DIR)`` and an advisor DIR with
``inference.fei:FeiAdvisor.load(DIR)`` unless ``--forecaster-class`` / ``--advisor-class`` name
another ``module:Class`` with the same ``load``; ``standin`` means the classes of
``inference.standin``. The served side loads the *same class* from the copied checkpoint and calls
the same ``encode`` / ``step`` / ``advise`` as ``InProcessClient`` does, so eager and served agree.

Served side: the python backend hands ``execute`` every request the dynamic batcher collected;
``_Served`` validates each request alone (a bad one gets its own error response), concatenates the
good ones (grouped by price for the advisor), runs the model once, and splits the result back.
Tensors cross the stub boundary with DLPack via torch only: the bundled stub's pybind11 predates
numpy 2, and ``as_numpy()`` / ``Tensor(ndarray)`` return zeros / empty arrays under numpy 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import site
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference import triton_names as N
from inference.client import AdviceBatch, VideoBatch, VideoMeta
from inference.model_dir import ModelDirError

ROOT = Path(__file__).resolve().parents[1]
STANDIN_FORECASTER = "inference.standin:SeasonalNaiveForecaster"
STANDIN_ADVISOR = "inference.standin:ConstantElasticityAdvisor"
DEFAULT_FORECASTER_CLASS = "inference.lamm:LammForecaster"
DEFAULT_ADVISOR_CLASS = "inference.fei:FeiAdvisor"
MAX_BATCH = {N.ENCODER: 256, N.STEP: 4096, N.ADVISOR: 256}


def import_class(spec: str):
    module, _, name = spec.partition(":")
    assert name, f"expected 'module:Class', got {spec!r}"
    return getattr(importlib.import_module(module), name)


@dataclass
class Source:
    """Where a served model object comes from: ``Class()`` or ``Class.load(checkpoint)``."""

    loader: str  # "module:Class"
    checkpoint: Path | None  # None: Class() (stand-ins)

    def build(self):
        cls = import_class(self.loader)
        return cls.load(self.checkpoint) if self.checkpoint is not None else cls()


def resolve(arg: str, kind: str, cls: str | None = None) -> Source:
    """``standin`` or a checkpoint DIR (+ optional ``module:Class``) for kind forecaster|advisor."""
    if arg == "standin":
        return Source(cls or (STANDIN_FORECASTER if kind == "forecaster" else STANDIN_ADVISOR), None)
    path = Path(arg)
    if not path.is_dir():
        raise ModelDirError(f"--{kind} {arg!r}: not 'standin' and not a checkpoint folder")
    return Source(cls or (DEFAULT_FORECASTER_CLASS if kind == "forecaster" else DEFAULT_ADVISOR_CLASS), path)


def probe_forecaster(f) -> dict:
    """The sizes and constants of a forecaster object that the repository records."""
    h = np.asarray(f.encode(VideoBatch.empty(2)))
    assert h.ndim == 2 and h.shape[0] == 2, f"expected encode -> (N, H), got {h.shape}"
    s = np.asarray(f.init_state(3), dtype=np.float32)
    assert s.ndim == 2 and s.shape[0] == 3, f"expected init_state(n) -> (n, R), got {s.shape}"
    # the server never sees init_state: the client repeats this row (it must not depend on n)
    assert np.array_equal(s, np.repeat(s[:1], 3, axis=0)), (
        "init_state rows differ: cannot export a constant row"
    )
    sizes = {"H": int(h.shape[1]), "R": int(s.shape[1]), "X": N.x_dim(int(h.shape[1]))}
    out = f.step(s[:2], np.zeros((2, sizes["X"]), dtype=np.float32))
    return {
        "sizes": sizes,
        "level": float(out.level),
        "has_baseline": out.baseline is not None,
        "init_state": s[0],
    }


def _fmt_dims(dims: tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def config_pbtxt(
    name: str,
    sizes: dict[str, int],
    params: dict[str, str],
    *,
    device: str,
    max_batch: int,
    instances: int,
    queue_delay_us: int,
) -> str:
    """config.pbtxt text for one model (deterministic: same inputs, same bytes)."""
    inputs, outputs = N.SPECS[name]

    def tensors(specs) -> str:
        rows = [
            f'  {{ name: "{s.name}" data_type: {s.data_type} dims: {_fmt_dims(s.resolve(sizes))} }}'
            for s in specs
        ]
        return ",\n".join(rows)

    kind = "KIND_GPU" if device == "gpu" else "KIND_CPU"
    gpus = " gpus: [ 0 ]" if device == "gpu" else ""
    lines = [
        f'name: "{name}"',
        'backend: "python"',
        f"max_batch_size: {max_batch}",
        "input [",
        tensors(inputs),
        "]",
        "output [",
        tensors(outputs),
        "]",
        f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}",
        f"instance_group [ {{ kind: {kind} count: {instances}{gpus} }} ]",
    ]
    for key in sorted(params):
        lines.append(f'parameters {{ key: "{key}" value: {{ string_value: {json.dumps(params[key])} }} }}')
    return "\n".join(lines) + "\n"


MODEL_PY = '''"""Generated by `liftstream export-triton` (inference/export.py); do not edit.

Triton's python backend runs this in its stub process, which ignores virtualenvs: the config's
python_path parameter puts the project's source and site-packages on sys.path first, then the
served model is built by inference.export.served_model from this model's config parameters.
"""

import json
import os
import site
import sys


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        paths = params.get("python_path", {}).get("string_value", "").split(os.pathsep)
        for p in reversed([p for p in paths if p]):
            site.addsitedir(p)  # also runs its .pth files (an editable install's path hooks)
            sys.path.remove(p)
            sys.path.insert(0, p)
        from inference.export import served_model

        self.model = served_model(args)

    def execute(self, requests):
        return self.model.execute(requests)

    def finalize(self):
        self.model = None
'''


def default_python_path() -> str:
    """The project root (for modules outside the installed packages) and this venv's site-packages."""
    return os.pathsep.join([str(ROOT), *site.getsitepackages()])


def export_repository(
    out: str | Path,
    forecaster: Source,
    advisor: Source,
    *,
    device: str = "cpu",
    instances: int = 1,
    queue_delay_us: int = 200,
    python_path: str | None = None,
    max_batch: dict[str, int] | None = None,
    torch_threads: int | None = None,
) -> dict:
    """Write the three models into ``out`` (replacing only those three folders); return a summary."""
    assert device in ("cpu", "gpu"), f"expected device cpu|gpu, got {device!r}"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    max_batch = {**MAX_BATCH, **(max_batch or {})}
    python_path = default_python_path() if python_path is None else python_path
    f, a = forecaster.build(), advisor.build()
    probe = probe_forecaster(f)
    # one intra-op thread per instance on CPU: each model is its own stub process, and several
    # multi-threaded stubs on a few shared cores spin against each other (measured: LAMM step,
    # batch 64, p50 120-180 ms with torch's default threads vs 2.0-2.5 ms with one, 2 loaded cores);
    # scale with --instances instead. GPU: torch's default.
    if torch_threads is None:
        torch_threads = 1 if device == "cpu" else 0
    common = {
        N.P_PYTHON_PATH: python_path,
        N.P_DEVICE: "cuda" if device == "gpu" else "cpu",
        N.P_TORCH_THREADS: str(int(torch_threads)),
    }
    fc = {
        N.P_LOADER: forecaster.loader,
        N.P_CHECKPOINT: "checkpoint" if forecaster.checkpoint else "",
        N.P_MODEL_VERSION: str(f.model_version),
    }
    ac = {
        N.P_LOADER: advisor.loader,
        N.P_CHECKPOINT: "checkpoint" if advisor.checkpoint else "",
        N.P_MODEL_VERSION: str(a.model_version),
    }
    step_extra = {
        N.P_LEVEL: repr(probe["level"]),
        N.P_HAS_BASELINE: "1" if probe["has_baseline"] else "0",
        N.P_INIT_STATE: json.dumps([float(v) for v in probe["init_state"]]),
        N.P_CONTENT: "1" if getattr(f, "content_channel", False) else "0",
    }
    plan = {
        N.ENCODER: (fc, forecaster.checkpoint),
        N.STEP: ({**fc, **step_extra}, forecaster.checkpoint),
        N.ADVISOR: (ac, advisor.checkpoint),
    }
    for name, (params, ckpt) in plan.items():
        params = {**common, **params, N.P_ROLE: N.ROLES[name]}
        mdir = out / name
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
        (tmp / "1").mkdir()
        (tmp / "config.pbtxt").write_text(
            config_pbtxt(
                name,
                probe["sizes"],
                params,
                device=device,
                max_batch=max_batch[name],
                instances=instances,
                queue_delay_us=queue_delay_us,
            )
        )
        (tmp / "1" / "model.py").write_text(MODEL_PY)
        if ckpt is not None:
            shutil.copytree(ckpt, tmp / "1" / "checkpoint")
        shutil.rmtree(mdir, ignore_errors=True)
        tmp.rename(mdir)
    return {
        "out": str(out),
        "device": device,
        "sizes": probe["sizes"],
        "model_version": str(f.model_version),
        "advice_version": str(a.model_version),
        "models": list(plan),
    }


# ----------------------------------------------------------------------------------------------
# Served side: runs inside Triton's python stub (imported by the generated model.py)


def _to_numpy(pb_tensor):
    import torch

    return torch.from_dlpack(pb_tensor.to_dlpack()).numpy()


def _to_pb(pb_utils, name: str, arr: np.ndarray):
    import torch

    return pb_utils.Tensor.from_dlpack(
        name, torch.utils.dlpack.to_dlpack(torch.from_numpy(np.ascontiguousarray(arr)))
    )


class _Served:
    """One served model: per-request validation, one batched call, per-request responses."""

    def __init__(self, args: dict):
        cfg = json.loads(args["model_config"])
        self.params = {k: v["string_value"] for k, v in cfg.get("parameters", {}).items()}
        self.name = cfg["name"]
        self.role = self.params[N.P_ROLE]
        ckpt = self.params.get(N.P_CHECKPOINT, "")
        version_dir = Path(args["model_repository"]) / args["model_version"]
        src = Source(self.params[N.P_LOADER], version_dir / ckpt if ckpt else None)
        import torch

        threads = int(self.params.get(N.P_TORCH_THREADS, "0"))
        if threads > 0:
            torch.set_num_threads(threads)
        self.obj = src.build()
        device = self.params.get(N.P_DEVICE, "cpu")
        if device != "cpu" and hasattr(self.obj, "to"):
            self.obj.to(device)
        self.inputs, self.outputs = N.SPECS[self.name]
        import triton_python_backend_utils as pb_utils

        # where the stub's packages came from: the tests check numpy is the venv's (numpy 2), not
        # the base interpreter's (see inference/triton_server.py on PATH and pyvenv.cfg)
        pb_utils.Logger.log_info(
            f"liftstream {self.name}: {self.params[N.P_LOADER]} version {getattr(self.obj, 'model_version', '?')}; "
            f"sys.prefix {sys.prefix}; numpy {np.__version__} at {np.__file__}; torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)"
        )

    # --- one function per role: dict of batched numpy inputs -> dict of batched numpy outputs
    def _run(self, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.role == "encoder":
            h = self.obj.encode(VideoBatch(*(x[s.name] for s in N.VIDEO_INPUTS)))
            return {"H": np.asarray(h, dtype=np.float32)}
        if self.role == "step":
            o = self.obj.step(x["STATE"], x["X"])
            n = x["X"].shape[0]
            col = lambda v: np.asarray(v, dtype=np.float64).reshape(n, 1)  # noqa: E731
            base = col(o.baseline) if o.baseline is not None else np.full((n, 1), np.nan)
            return {
                "STATE_OUT": np.asarray(o.state, dtype=np.float32),
                "POINT": col(o.point),
                "LOWER": col(o.lower),
                "UPPER": col(o.upper),
                "BASELINE": base,
            }
        if self.role == "advisor":
            videos = VideoBatch(*(x[s.name] for s in N.VIDEO_INPUTS))
            meta = VideoMeta(**{field: x[s.name][:, 0] for s, field in N.META_INPUTS})
            value, cost = float(x["VALUE_PER_IMPRESSION"][0, 0]), float(x["COST_PER_1K_FOLLOWERS"][0, 0])
            adv: AdviceBatch = self.obj.advise(videos, meta, value, cost)
            n = len(videos)
            out = {}
            for spec, field in N.ADVISOR_OUTPUTS_FIELDS:
                v = getattr(adv, field)
                if field == "curve_shape":
                    v = [N.CURVE_SHAPES.index(c) for c in v]
                out[spec.name] = np.asarray(v).astype(spec.np_dtype).reshape(n, 1)
            return out
        raise ValueError(f"unknown role {self.role!r}")

    def _check(self, x: dict[str, np.ndarray]):
        """Per-request checks Triton cannot do from config.pbtxt; returns the batching group key."""
        if self.role != "advisor":
            return None
        key = []
        for name in ("VALUE_PER_IMPRESSION", "COST_PER_1K_FOLLOWERS"):
            v = x[name]
            if not (np.all(v == v[0, 0]) and np.isfinite(v[0, 0])):
                raise ValueError(f"{name} must be one finite value for every row of a request")
            key.append(float(v[0, 0]))
        return tuple(key)

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        responses = [None] * len(requests)
        groups: dict[object, list[tuple[int, dict[str, np.ndarray]]]] = {}
        for i, req in enumerate(requests):
            try:
                x = {s.name: _to_numpy(pb_utils.get_input_tensor_by_name(req, s.name)) for s in self.inputs}
                groups.setdefault(self._check(x), []).append((i, x))
            except Exception as e:  # this request alone fails
                responses[i] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"{self.name}: bad request: {e}")
                )
        for members in groups.values():
            rows = lambda x: len(next(iter(x.values())))  # noqa: E731
            parts = []  # (request index, outputs, first row, end row)
            try:
                if len(members) == 1:  # nothing to merge: no copy
                    batched = members[0][1]
                else:
                    batched = {k: np.concatenate([x[k] for _, x in members]) for k in members[0][1]}
                res = self._run(batched)
                start = 0
                for i, x in members:
                    parts.append((i, res, start, start + rows(x)))
                    start += rows(x)
            except Exception:  # a request that breaks the batch: run each alone so only it fails
                for i, x in members:
                    try:
                        parts.append((i, self._run(x), 0, rows(x)))
                    except Exception as e:
                        msg = f"{self.name}: {type(e).__name__}: {e}"
                        responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(msg))
            for i, res, lo, hi in parts:
                responses[i] = self._respond(pb_utils, res, lo, hi)
        return responses

    def _respond(self, pb_utils, res: dict[str, np.ndarray], lo: int, hi: int):
        return pb_utils.InferenceResponse(
            output_tensors=[_to_pb(pb_utils, s.name, res[s.name][lo:hi]) for s in self.outputs]
        )


def served_model(args: dict) -> _Served:
    """Entry point of the generated model.py (``args`` as Triton passes them to ``initialize``)."""
    return _Served(args)


# ----------------------------------------------------------------------------------------------
# CLI


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="liftstream export-triton", description=__doc__.split("\n")[0])
    ap.add_argument("--forecaster", default="standin", help="LAMM checkpoint folder, or 'standin'")
    ap.add_argument(
        "--forecaster-class",
        default=None,
        help=f"module:Class with .load(DIR) (default {DEFAULT_FORECASTER_CLASS})",
    )
    ap.add_argument("--advisor", default="standin", help="FEI checkpoint folder, or 'standin'")
    ap.add_argument(
        "--advisor-class",
        default=None,
        help=f"module:Class with .load(DIR) (default {DEFAULT_ADVISOR_CLASS})",
    )
    ap.add_argument("--out", default="triton_models", help="model repository folder (default triton_models/)")
    ap.add_argument(
        "--device", choices=("cpu", "gpu"), default="cpu", help="instance_group KIND_CPU or KIND_GPU"
    )
    ap.add_argument("--instances", type=int, default=1, help="model instances per model")
    ap.add_argument("--queue-delay-us", type=int, default=200, help="dynamic batching max queue delay")
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch intra-op threads per model instance (default: 1 on cpu, torch's default on gpu)",
    )
    ap.add_argument(
        "--python-path",
        default=None,
        help="os.pathsep-joined dirs model.py puts on sys.path (default: this checkout and its venv's "
        "site-packages; in a container: where the liftstream package and its dependencies live)",
    )
    args = ap.parse_args(argv)
    summary = export_repository(
        args.out,
        resolve(args.forecaster, "forecaster", args.forecaster_class),
        resolve(args.advisor, "advisor", args.advisor_class),
        device=args.device,
        instances=args.instances,
        queue_delay_us=args.queue_delay_us,
        python_path=args.python_path,
        torch_threads=args.torch_threads,
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(cli())

"""The Triton contract in one place: model names, tensor names, dtypes and dims.

``inference.export`` writes ``config.pbtxt`` from these specs, ``inference.triton_client`` builds
its requests from them, and ``tests/test_triton.py`` checks every exported ``config.pbtxt``
against them. Dims are per row (every model has ``max_batch_size`` > 0, so Triton prepends the
batch dim). A dim given as a string is a size of the exported model, resolved at export time:

- ``"H"``: the encoder's output size (``encode(videos) -> (N, H)``)
- ``"R"``: the recurrent state size (``init_state(n) -> (n, R)``)
- ``"X"``: the day-input size, ``H + SIDE_DIM + PRODUCT_DIM`` (``inference.daily.day_input``)

Masks travel as BOOL; per-row scalars as dims ``[1]``; ``curve_shape`` as an INT32 index into
``CURVE_SHAPES`` (string tensors cannot take the DLPack path the python backend needs, see
triton_models/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.daily import PRODUCT_DIM, SIDE_DIM
from schemas import limits as L

ENCODER = "lamm_encoder"
STEP = "lamm_step"
ADVISOR = "fei_advisor"
MODELS = (ENCODER, STEP, ADVISOR)

CURVE_SHAPES = ("s_shaped", "linear", "concave")

# model-config `parameters` keys (string values) the exporter writes and the client reads
P_ROLE = "role"  # "encoder" | "step" | "advisor": which served class model.py builds
P_LOADER = "loader"  # "module:Class" of the in-process model object
P_CHECKPOINT = "checkpoint"  # folder inside the version dir passed to Class.load, "" = Class()
P_PYTHON_PATH = "python_path"  # os.pathsep-joined site dirs the stub adds (it ignores virtualenvs)
P_MODEL_VERSION = "model_version"  # the model object's model_version
P_LEVEL = "level"  # nominal interval coverage of lamm_step
P_HAS_BASELINE = "has_baseline"  # "1" if lamm_step's BASELINE output is meaningful, "0" = NaN
P_INIT_STATE = "init_state"  # JSON list: the (R,) row init_state(n) repeats
P_CONTENT = "content_channel"  # "1": H's last column is q_v, x ends with the content-lift channel
P_DEVICE = "device"  # "cpu" | "cuda": where model.py puts the model object if it can move
P_TORCH_THREADS = "torch_threads"  # torch intra-op threads per model instance, "0" = torch's default

# Triton data types and the numpy dtype each one travels as
NUMPY_DTYPE = {
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_BOOL": np.bool_,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
}


def client_dtype(config_type: str) -> str:
    """'TYPE_FP32' (config.pbtxt) -> 'FP32' (tritonclient's InferInput)."""
    return config_type.removeprefix("TYPE_")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # config.pbtxt spelling, e.g. "TYPE_FP32"
    dims: tuple[int | str, ...]  # per row, without the batch dim

    def resolve(self, sizes: dict[str, int]) -> tuple[int, ...]:
        return tuple(sizes[d] if isinstance(d, str) else d for d in self.dims)

    @property
    def np_dtype(self):
        return NUMPY_DTYPE[self.data_type]


S, T, D = L.MAX_SEGMENTS, L.MAX_TITLE_TOKENS, L.FEATURE_DIM

# VideoBatch fields, in VideoBatch's order (encoder and advisor inputs)
VIDEO_INPUTS = (
    TensorSpec("FRAME", "TYPE_FP32", (S, D)),
    TensorSpec("MOTION", "TYPE_FP32", (S, D)),
    TensorSpec("AUDIO", "TYPE_FP32", (S, D)),
    TensorSpec("SEG_MASK", "TYPE_BOOL", (S,)),
    TensorSpec("TITLE", "TYPE_FP32", (T, D)),
    TensorSpec("TITLE_MASK", "TYPE_BOOL", (T,)),
)
VIDEO_FIELDS = ("frame", "motion", "audio", "seg_mask", "title", "title_mask")

ENCODER_INPUTS = VIDEO_INPUTS
ENCODER_OUTPUTS = (TensorSpec("H", "TYPE_FP32", ("H",)),)

STEP_INPUTS = (
    TensorSpec("STATE", "TYPE_FP32", ("R",)),
    TensorSpec("X", "TYPE_FP32", ("X",)),
)
STEP_OUTPUTS = (
    TensorSpec("STATE_OUT", "TYPE_FP32", ("R",)),
    TensorSpec("POINT", "TYPE_FP64", (1,)),
    TensorSpec("LOWER", "TYPE_FP64", (1,)),
    TensorSpec("UPPER", "TYPE_FP64", (1,)),
    TensorSpec("BASELINE", "TYPE_FP64", (1,)),
)

# VideoMeta fields (name on the wire, field of inference.client.VideoMeta)
META_INPUTS = (
    (TensorSpec("FOLLOWERS", "TYPE_FP64", (1,)), "followers"),
    (TensorSpec("PAST_AVG_HEARTS", "TYPE_FP64", (1,)), "past_avg_hearts"),
    (TensorSpec("VERIFIED", "TYPE_BOOL", (1,)), "verified"),
    (TensorSpec("VIDEO_TYPE", "TYPE_INT64", (1,)), "video_type"),
    (TensorSpec("LENGTH_S", "TYPE_FP64", (1,)), "length_s"),
    (TensorSpec("CREATE_HOUR", "TYPE_FP64", (1,)), "create_hour"),
    (TensorSpec("N_SEGMENTS", "TYPE_INT64", (1,)), "n_segments"),
)
# advise()'s two scalars travel per row (dynamic batching may merge requests with different
# values; model.py groups rows by value before calling advise)
PRICE_INPUTS = (
    TensorSpec("VALUE_PER_IMPRESSION", "TYPE_FP64", (1,)),
    TensorSpec("COST_PER_1K_FOLLOWERS", "TYPE_FP64", (1,)),
)
ADVISOR_INPUTS = VIDEO_INPUTS + tuple(spec for spec, _ in META_INPUTS) + PRICE_INPUTS
# AdviceBatch fields (name on the wire, field of inference.client.AdviceBatch)
ADVISOR_OUTPUTS_FIELDS = (
    (TensorSpec("FEI", "TYPE_FP64", (1,)), "fei"),
    (TensorSpec("CURVE_SHAPE", "TYPE_INT32", (1,)), "curve_shape"),
    (TensorSpec("EXPECTED_IMPRESSIONS", "TYPE_FP64", (1,)), "expected_impressions"),
    (TensorSpec("OPTIMAL_FOLLOWERS", "TYPE_FP64", (1,)), "optimal_followers"),
    (TensorSpec("OPTIMAL_FOLLOWERS_LOW", "TYPE_FP64", (1,)), "optimal_followers_low"),
    (TensorSpec("OPTIMAL_FOLLOWERS_HIGH", "TYPE_FP64", (1,)), "optimal_followers_high"),
    (TensorSpec("EXPECTED_IMPRESSIONS_OPTIMAL", "TYPE_FP64", (1,)), "expected_impressions_optimal"),
    (TensorSpec("PROFIT_ACTUAL", "TYPE_FP64", (1,)), "profit_actual"),
    (TensorSpec("PROFIT_OPTIMAL", "TYPE_FP64", (1,)), "profit_optimal"),
)
ADVISOR_OUTPUTS = tuple(spec for spec, _ in ADVISOR_OUTPUTS_FIELDS)

SPECS: dict[str, tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]] = {
    ENCODER: (ENCODER_INPUTS, ENCODER_OUTPUTS),
    STEP: (STEP_INPUTS, STEP_OUTPUTS),
    ADVISOR: (ADVISOR_INPUTS, ADVISOR_OUTPUTS),
}
ROLES = {ENCODER: "encoder", STEP: "step", ADVISOR: "advisor"}


def x_dim(hidden_dim: int) -> int:
    """Day-input size for an encoder of ``hidden_dim`` (see ``inference.daily.day_input``)."""
    return hidden_dim + SIDE_DIM + PRODUCT_DIM

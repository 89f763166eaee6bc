"""Input events: what arrives on the ``liftstream.events`` topic.

Three event types share one topic keyed by ``product_id`` (see ``schemas.topics``), so every
event of a product lands on one partition, in order. Parse any of them with :func:`parse_event`
(a tagged union on ``type``); every validation failure raises ``pydantic.ValidationError`` with
a message that names the field, which the stream turns into a dead letter.

Run ``python -m schemas.events`` to print the JSON Schema of the union.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date, datetime
from typing import Annotated, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

from schemas import limits as L

Id = Annotated[
    str, StringConstraints(min_length=1, max_length=L.MAX_ID_CHARS, pattern=r"^[A-Za-z0-9_.:\-]+$")
]
Count = Annotated[int, Field(ge=0, le=L.MAX_COUNT)]
VideoType = Literal[L.VIDEO_TYPES]  # type: ignore[valid-type]
ProductCategory = Literal[L.PRODUCT_CATEGORIES]  # type: ignore[valid-type]
CityTier = Literal[L.CITY_TIERS]  # type: ignore[valid-type]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    event_id: Id = Field(description="Producer-assigned unique id; redelivered duplicates share it.")
    schema_version: Literal[1] = L.SCHEMA_VERSION


# ----------------------------------------------------------------------------------------------
# Segment features


_DTYPES = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}


def _decode(b64: str, dtype: np.dtype, rows: int, field: str) -> np.ndarray:
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{field}: not valid base64 ({exc})") from exc
    want = rows * L.FEATURE_DIM * dtype.itemsize
    if len(raw) != want:
        raise ValueError(
            f"{field}: expected {rows} x {L.FEATURE_DIM} {dtype.name} values ({want} bytes), got {len(raw)} bytes"
        )
    arr = np.frombuffer(raw, dtype=dtype).reshape(rows, L.FEATURE_DIM).astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{field}: contains NaN or infinity")
    return arr


class SegmentFeatures(BaseModel):
    """Pre-extracted multimodal features, base64 of little-endian arrays, row-major.

    frame / motion / audio: (n_segments, 128), one row per 3.2 s segment (no padding);
    title: (n_title_tokens, 128), one row per title token.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: Literal["float16", "float32"] = "float16"
    n_segments: int = Field(ge=1, le=L.MAX_SEGMENTS)
    n_title_tokens: int = Field(ge=0, le=L.MAX_TITLE_TOKENS)
    frame: str
    motion: str
    audio: str
    title: str = ""

    @model_validator(mode="after")
    def _check_shapes(self) -> SegmentFeatures:
        dt = _DTYPES[self.dtype]
        for name in ("frame", "motion", "audio"):
            _decode(getattr(self, name), dt, self.n_segments, name)
        _decode(self.title, dt, self.n_title_tokens, "title")
        return self

    def arrays(self) -> dict[str, np.ndarray]:
        """Decoded float32 arrays: frame/motion/audio (n_segments, 128), title (n_title_tokens, 128)."""
        dt = _DTYPES[self.dtype]
        out = {m: _decode(getattr(self, m), dt, self.n_segments, m) for m in ("frame", "motion", "audio")}
        out["title"] = _decode(self.title, dt, self.n_title_tokens, "title")
        return out

    @classmethod
    def from_arrays(
        cls,
        frame: np.ndarray,
        motion: np.ndarray,
        audio: np.ndarray,
        title: np.ndarray,
        dtype: Literal["float16", "float32"] = "float16",
    ) -> SegmentFeatures:
        dt = _DTYPES[dtype]
        enc = lambda a: base64.b64encode(np.ascontiguousarray(a, dtype=dt).tobytes()).decode("ascii")  # noqa: E731
        return cls(
            dtype=dtype,
            n_segments=int(frame.shape[0]),
            n_title_tokens=int(title.shape[0]),
            frame=enc(frame),
            motion=enc(motion),
            audio=enc(audio),
            title=enc(title),
        )


# ----------------------------------------------------------------------------------------------
# Events


class InfluencerSnapshot(BaseModel):
    """The creator as seen when the video is published (LAMM Table 1, FEI post statistics)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    influencer_id: Id
    followers: int = Field(ge=0, le=L.MAX_FOLLOWERS, description="Follower count at publish time.")
    past_avg_hearts: float = Field(
        ge=0,
        le=1e10,
        description="Creator's average hearts (likes) per video before this one: the FEI instrument.",
    )
    verified: bool = False
    city_tier: CityTier = "other"
    age: int | None = Field(default=None, ge=1, le=120)


class ProductSnapshot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    category: ProductCategory
    price: float = Field(gt=0, le=1e7)
    # the product's shop record before the campaign (LAMM's day input uses them from the product's
    # first video on; None = unknown, which the model sees as such)
    history_sales: int | None = Field(default=None, ge=0, le=10**12, description="Units sold before.")
    history_videos: int | None = Field(
        default=None, ge=0, le=10**9, description="Videos that promoted it before."
    )


class VideoPublished(_Event):
    """A new influencer short-video ad linked to a product."""

    type: Literal["video_published"] = "video_published"
    ts: datetime = Field(description="Publish time.")
    day: date = Field(description="Campaign day the video went live (the publish date).")
    video_id: Id
    product_id: Id
    influencer: InfluencerSnapshot
    product: ProductSnapshot | None = None
    video_type: VideoType
    length_s: float = Field(gt=0, le=L.MAX_VIDEO_SECONDS)
    width: int = Field(ge=16, le=8192)
    height: int = Field(ge=16, le=8192)
    size_mb: float = Field(ge=0, le=10_000)
    create_hour: int = Field(ge=0, le=23)
    title: str = Field(default="", max_length=L.MAX_TITLE_CHARS)
    media_uri: str | None = Field(default=None, max_length=L.MAX_URI_CHARS)
    features: SegmentFeatures | None = None

    @model_validator(mode="after")
    def _one_content_source(self) -> VideoPublished:
        if (self.media_uri is None) == (self.features is None):
            raise ValueError(
                "exactly one of media_uri (to extract) or features (pre-extracted) must be given"
            )
        return self


class EngagementDaily(_Event):
    """One video's engagement on one day (daily increments, not running totals)."""

    type: Literal["engagement_daily"] = "engagement_daily"
    day: date
    video_id: Id
    product_id: Id = Field(description="Partition key: the product the video promotes.")
    likes: Count
    comments: Count
    shares: Count
    collects: Count
    impressions: Count


class SalesDaily(_Event):
    """A product's sales on one day; closes that day for the product."""

    type: Literal["sales_daily"] = "sales_daily"
    day: date
    product_id: Id
    units: Count
    price: float = Field(gt=0, le=1e7)
    rating: float = Field(ge=0, le=100)


InputEvent = Annotated[VideoPublished | EngagementDaily | SalesDaily, Field(discriminator="type")]
INPUT_EVENT = TypeAdapter(InputEvent)


class PayloadTooLarge(ValueError):
    """The raw payload is over ``limits.MAX_RAW_PAYLOAD_BYTES`` and was not parsed."""


def parse_event(raw: bytes | str) -> VideoPublished | EngagementDaily | SalesDaily:
    """Validate one JSON payload into an input event.

    Raises ``pydantic.ValidationError`` for malformed JSON or schema violations and
    :class:`PayloadTooLarge` for payloads over the size limit.
    """
    size = len(raw)
    if size > L.MAX_RAW_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"payload of {size} bytes is over the {L.MAX_RAW_PAYLOAD_BYTES}-byte limit")
    return INPUT_EVENT.validate_json(raw)


def event_json(event: VideoPublished | EngagementDaily | SalesDaily) -> str:
    return event.model_dump_json(exclude_none=True)


if __name__ == "__main__":
    print(json.dumps(INPUT_EVENT.json_schema(), indent=2))

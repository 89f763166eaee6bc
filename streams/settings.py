"""The one configuration object. Nothing else reads ``os.environ``.

Every field can be set by an environment variable ``LIFTSTREAM_<FIELD>`` (upper case), e.g.
``LIFTSTREAM_KAFKA_BOOTSTRAP=kafka:9092``, or by the command-line flags of the commands that
take them. Defaults run the embedded demo with nothing installed.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "LIFTSTREAM_"


class SettingsError(ValueError):
    """A setting out of range or of the wrong type; the message names each by its environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    def __init__(self, **values) -> None:
        try:
            super().__init__(**values)
        except ValidationError as e:
            bad = "; ".join(
                f"{ENV_PREFIX}{'_'.join(map(str, err['loc'])).upper()}: {err['msg']}"
                if err["loc"]
                else err["msg"]
                for err in e.errors()
            )
            raise SettingsError(f"invalid configuration: {bad}") from e

    # where things live
    home: Path = Field(Path(".liftstream"), description="Local state: caches, embedded ClickHouse, stack.")

    # Kafka / Faust
    kafka_bootstrap: str = "127.0.0.1:9092"
    app_id: str = "liftstream"
    topic_prefix: str = ""
    topic_partitions: int = Field(4, ge=1)
    worker_web_port: int = Field(6066, ge=0, le=65535, description="0 disables the worker's web server")
    data_dir: Path | None = Field(
        None, description="Faust's local data folder (table metadata); default <home>/faust/<app_id>."
    )
    batch_max: int = Field(
        20_000,
        ge=1,
        description="Most events per micro-batch of the worker (a batch also closes batch_within_s after its "
        "first event, so batches are small at low rates; large ones amortise the ClickHouse inserts and state "
        "writes under load: bench_stream throughput 9.4k events/s at 5000, 10.0k at 20000, one run each, measured "
        "on Faust's stream path before the batch lane; 16.6k at 20000 with the lane).",
    )
    batch_within_s: float = Field(0.2, ge=0, description="Longest wait to fill a micro-batch (0: no wait).")
    broker_session_timeout_s: float = Field(60.0, gt=0)
    broker_rebalance_timeout_s: float = Field(60.0, gt=0)
    broker_heartbeat_interval_s: float = Field(3.0, gt=0)
    day_close_timeout_s: float = Field(
        0.0,
        ge=0,
        description="Close a product's day without sales after this many seconds (0 = only on SalesDaily).",
    )

    # ClickHouse
    store: str = Field(
        "chdb://.liftstream/chdb", description="chdb:///dir (embedded) or clickhouse://host:port/db"
    )
    database: str = "liftstream"
    sink_batch_rows: int = Field(10_000, ge=1)
    sink_flush_interval_s: float = Field(1.0, ge=0)

    # models
    models: str = Field(
        "inprocess",
        pattern=r"^(inprocess|triton://[^/\s]+/?)$",
        description="'inprocess' or 'triton://host:port'",
    )
    forecaster: str = Field("auto", description="'auto' (train or load LAMM), 'standin', or a checkpoint dir")
    advisor: str = Field("auto", description="'auto' (fit or load FEI), 'standin', or a model dir")
    model_timeout_s: float = Field(10.0, gt=0, description="Deadline of one Triton call (models=triton://).")

    # advice economics (per impression value and cost per 1k followers, in the shop's currency)
    value_per_impression: float = Field(0.02, gt=0, allow_inf_nan=False)
    cost_per_1k_followers: float = Field(5.0, ge=0, allow_inf_nan=False)

    # alerts
    alert_window: int = Field(3, ge=1)
    alert_pct_drop: float = Field(0.30, gt=0, lt=1)
    alert_critical_pct: float = Field(0.50, gt=0, le=1)
    alert_min_reference_units: float = Field(5.0, ge=0)
    alert_cooldown_days: int = Field(3, ge=0)

    @model_validator(mode="after")
    def _alert_rule_is_valid(self) -> Settings:
        try:  # AlertConfig holds the rule's checks (e.g. a critical drop below the warning drop)
            self.alert_config()
        except ValueError as e:
            raise ValueError(f"{ENV_PREFIX}ALERT_*: {e}") from e
        return self

    def alert_config(self):
        from streams.state import AlertConfig

        return AlertConfig(
            window=self.alert_window,
            pct_drop=self.alert_pct_drop,
            critical_pct=self.alert_critical_pct,
            min_reference_units=self.alert_min_reference_units,
            cooldown_days=self.alert_cooldown_days,
        )

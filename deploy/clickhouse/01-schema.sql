-- LiftStream schema: schemas.ddl.create_all('liftstream'); tests/test_deploy_manifests.py keeps it equal.
-- Run once by the ClickHouse image's /docker-entrypoint-initdb.d on an empty data volume.

CREATE DATABASE IF NOT EXISTS liftstream;

CREATE TABLE IF NOT EXISTS liftstream.videos (
  event_id String,
  video_id String,
  product_id String,
  influencer_id String,
  day Date,
  ts DateTime,
  followers UInt64,
  past_avg_hearts Float64,
  verified UInt8,
  city_tier String,
  age Nullable(UInt8),
  category String,
  price Nullable(Float64),
  video_type String,
  length_s Float64,
  width UInt16,
  height UInt16,
  size_mb Float64,
  create_hour UInt8,
  title String,
  media_uri String,
  n_segments UInt8
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (product_id, video_id);

CREATE TABLE IF NOT EXISTS liftstream.engagement_daily (
  event_id String,
  product_id String,
  video_id String,
  day Date,
  likes UInt64,
  comments UInt64,
  shares UInt64,
  collects UInt64,
  impressions UInt64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (product_id, video_id, day);

CREATE TABLE IF NOT EXISTS liftstream.sales_daily (
  event_id String,
  product_id String,
  day Date,
  units UInt64,
  price Float64,
  rating Float64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (product_id, day);

CREATE TABLE IF NOT EXISTS liftstream.forecasts (
  product_id String,
  issued_day Date,
  target_day Date,
  kind String,
  revision UInt64,
  point Float64,
  lower Float64,
  upper Float64,
  level Float64,
  baseline Nullable(Float64),
  active_videos UInt32,
  model_version String,
  emitted_at DateTime
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(target_day)
ORDER BY (product_id, target_day, kind, revision, model_version);

CREATE TABLE IF NOT EXISTS liftstream.alerts (
  product_id String,
  issued_day Date,
  target_day Date,
  rule String,
  severity String,
  reference Float64,
  current Float64,
  drop_pct Float64,
  message String,
  model_version String,
  emitted_at DateTime
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(target_day)
ORDER BY (product_id, target_day, rule, model_version);

CREATE TABLE IF NOT EXISTS liftstream.advice (
  video_id String,
  product_id String,
  influencer_id String,
  day Date,
  followers UInt64,
  tier String,
  fei Float64,
  curve_shape String,
  expected_impressions Float64,
  optimal_followers UInt64,
  optimal_tier String,
  optimal_followers_low UInt64 DEFAULT optimal_followers,
  optimal_followers_high UInt64 DEFAULT optimal_followers,
  expected_impressions_optimal Float64,
  profit_actual Float64,
  profit_optimal Float64,
  value_per_impression Float64,
  cost_per_1k_followers Float64,
  model_version String,
  emitted_at DateTime
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (product_id, video_id, model_version);

CREATE TABLE IF NOT EXISTS liftstream.dead_letters (
  dlq_id String,
  source String,
  received_at DateTime,
  error_type String,
  error String,
  raw String,
  raw_size UInt64,
  raw_sha256 String
)
ENGINE = ReplacingMergeTree()
ORDER BY dlq_id;

"""Sizes every component agrees on: feature dims, segment counts, field bounds.

The LAMM paper extracts 128-d features per 3.2 s segment for the first 20 segments (64 s) of
each video and 128-d title-token embeddings; the simulator, the models, Triton's config.pbtxt
and the event validators all read these constants.
"""

SCHEMA_VERSION = 1

FEATURE_DIM = 128  # per-segment frame / motion / audio features and per-token title embeddings
MAX_SEGMENTS = 20  # 20 x 3.2 s = 64 s; 97% of ISAD videos are shorter
SEGMENT_SECONDS = 3.2
MAX_TITLE_TOKENS = 32
MODALITIES = ("frame", "motion", "audio", "text")

WINDOW_DAYS = 14  # a video counts as active for its product for two weeks after publishing

MAX_TITLE_CHARS = 512
MAX_ID_CHARS = 64
MAX_URI_CHARS = 2048
MAX_COUNT = 10**12  # daily engagement counters
MAX_FOLLOWERS = 10**10
MAX_VIDEO_SECONDS = 3600.0
MAX_RAW_PAYLOAD_BYTES = 4 * 1024 * 1024  # larger input payloads go to the dead letters unparsed
DEAD_LETTER_RAW_KEEP_BYTES = 1024 * 1024  # raw payload kept verbatim in a dead letter, sha256 of all

# 13 product categories (LAMM Table 1 note lists 12 by name; "Other" completes the 13)
PRODUCT_CATEGORIES = (
    "toys_games",
    "sports_outdoor",
    "home_textiles",
    "shoes_bags",
    "kitchen_appliances",
    "clothing_underwear",
    "fresh_produce",
    "beauty_skincare",
    "maternity_baby",
    "daily_necessities",
    "electronics_3c",
    "jewelry_accessories",
    "other",
)

# 14 video types (LAMM Table 1 note)
VIDEO_TYPES = (
    "home_life",
    "food",
    "fashion",
    "parent_child",
    "fitness",
    "random_clips",
    "technology",
    "sports",
    "automotive",
    "humanities_social",
    "agriculture_rural",
    "entertainment",
    "music_dance",
    "medical_health",
)

# city tiers of the influencer (LAMM Table 1)
CITY_TIERS = ("first", "new_first", "second", "third", "fourth", "fifth", "other")

# influencer tiers of the FEI paper's Table 4, by follower count [lower, upper)
FOLLOWER_TIERS = (
    ("sub_nano", 0, 1_000),
    ("nano", 1_000, 10_000),
    ("micro", 10_000, 50_000),
    ("mid_tier", 50_000, 500_000),
    ("macro", 500_000, 1_000_000),
    ("mega", 1_000_000, None),
)


def follower_tier(followers: float) -> str:
    """Tier name of the FEI paper's Table 4 for a follower count."""
    for name, lo, hi in FOLLOWER_TIERS:
        if followers >= lo and (hi is None or followers < hi):
            return name
    return FOLLOWER_TIERS[0][0]

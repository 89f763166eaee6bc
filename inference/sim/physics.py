"""The fixed "physics" of the simulated ISA world: what every world shares, whatever its seed.

Marginal distributions transcribed from the LAMM paper's Table 1 (category / video-type / city
counts, resolutions), the mapping from video type to content style (the FEI paper's Table 5:
special effects -> S-shaped impressions, self-expression -> linear, product demonstration ->
concave), and the feature geometry (the directions through which segment latents show up in the
frame / motion / audio / title features). The geometry comes from ``PHYSICS_SEED``, not from the
world's seed, so a model trained on one world reads any other world with the same eyes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from schemas import limits as L

PHYSICS_SEED = 20230302  # ISAD's first collection day

# ---------------------------------------------------------------------------------------------
# Marginals (LAMM Table 1 and its note)

# products per category in ISAD (12 named; "other" gets the remainder up to 1,809)
CATEGORY_COUNTS = np.array([212, 207, 180, 147, 141, 168, 169, 129, 105, 104, 82, 81, 284], dtype=np.float64)
# median list price per category (yuan); overall mean lands near Table 1's 59.7
CATEGORY_PRICE = np.array([39, 52, 48, 61, 65, 43, 22, 56, 48, 16, 104, 35, 30], dtype=np.float64)
# category demand level (log units/day, relative) and conversion level (log, relative)
CATEGORY_DEMAND = np.array([0.0, -0.1, 0.1, -0.05, -0.1, 0.15, 0.25, 0.2, 0.0, 0.3, -0.35, -0.15, 0.0])
CATEGORY_CONVERSION = np.array([0.0, -0.1, 0.0, 0.05, -0.1, 0.1, 0.3, 0.2, 0.05, 0.25, -0.4, 0.0, 0.0])

# videos per type in ISAD (the note's counts; they count all videos of the products' history)
VIDEO_TYPE_COUNTS = np.array(
    [158769, 92679, 146818, 114166, 13429, 11319, 10808, 7502, 7214, 5855, 5614, 9761, 687, 2185],
    dtype=np.float64,
)
# influencers per city tier (Table 1)
CITY_COUNTS = np.array([2885, 4310, 6937, 7916, 5565, 2885, 4900], dtype=np.float64)
# (width, height) pairs; their marginals follow Table 1's width / height categories
RESOLUTIONS = np.array(
    [(1080, 1920), (720, 1280), (1920, 1080), (1080, 1080), (540, 960), (1440, 2560), (960, 1280)]
)
RESOLUTION_P = np.array([0.795, 0.075, 0.027, 0.035, 0.035, 0.018, 0.015])
# create hour: morning, lunch and evening peaks, a small-hours trough; mean about 11.5 like Table 1
_H = np.arange(24)
HOUR_P = (
    1.0
    + 1.2 * np.exp(-((_H - 9) ** 2) / 4)
    + 0.8 * np.exp(-((_H - 12) ** 2) / 6)
    + 0.6 * np.exp(-((_H - 19) ** 2) / 5)
)
HOUR_P[3:7] *= 0.4
HOUR_P[21:] *= 0.6
HOUR_P /= HOUR_P.sum()
# weekly demand pattern (Monday first)
WEEKDAY = np.array([0.95, 0.94, 0.96, 1.0, 1.05, 1.1, 1.0])

# affinity of product category (rows) to video type (columns): >1 where they go together
_AFF = {
    "toys_games": {"parent_child": 4, "entertainment": 2},
    "sports_outdoor": {"sports": 5, "fitness": 4},
    "home_textiles": {"home_life": 3},
    "shoes_bags": {"fashion": 4},
    "kitchen_appliances": {"food": 3, "home_life": 2, "technology": 2},
    "clothing_underwear": {"fashion": 4},
    "fresh_produce": {"food": 4, "agriculture_rural": 8},
    "beauty_skincare": {"fashion": 2, "medical_health": 3},
    "maternity_baby": {"parent_child": 5},
    "daily_necessities": {"home_life": 3},
    "electronics_3c": {"technology": 10, "automotive": 2},
    "jewelry_accessories": {"fashion": 4},
    "other": {},
}
CATEGORY_TYPE_AFFINITY = np.ones((len(L.PRODUCT_CATEGORIES), len(L.VIDEO_TYPES)))
for _c, _row in _AFF.items():
    for _t, _w in _row.items():
        CATEGORY_TYPE_AFFINITY[L.PRODUCT_CATEGORIES.index(_c), L.VIDEO_TYPES.index(_t)] = _w

# ---------------------------------------------------------------------------------------------
# Content style -> curve shape (FEI paper Table 4 / 5)

STYLES = ("special_effects", "self_expression", "product_demo")
CURVES = ("s_shaped", "linear", "concave")  # CURVES[i] is the impressions curve of STYLES[i]
# P(style | video type), rows in limits.VIDEO_TYPES order
STYLE_GIVEN_TYPE = np.array(
    [
        [0.20, 0.35, 0.45],  # home_life
        [0.20, 0.25, 0.55],  # food
        [0.20, 0.60, 0.20],  # fashion
        [0.45, 0.30, 0.25],  # parent_child
        [0.15, 0.55, 0.30],  # fitness
        [0.60, 0.25, 0.15],  # random_clips
        [0.15, 0.15, 0.70],  # technology
        [0.30, 0.50, 0.20],  # sports
        [0.20, 0.20, 0.60],  # automotive
        [0.45, 0.35, 0.20],  # humanities_social
        [0.20, 0.30, 0.50],  # agriculture_rural
        [0.60, 0.30, 0.10],  # entertainment
        [0.40, 0.55, 0.05],  # music_dance
        [0.10, 0.30, 0.60],  # medical_health
    ]
)
# effect of the video type on log impressions (fixed, small)
TYPE_IMPRESSION_EFFECT = np.array(
    [0.0, 0.1, 0.05, 0.1, -0.1, -0.2, -0.15, 0.0, -0.1, -0.15, 0.05, 0.2, 0.25, -0.2]
)
# engagement half-life-ish decay (days) per style: effects burn fast, demos last
STYLE_DECAY_DAYS = np.array([1.6, 2.4, 3.4])

# ---------------------------------------------------------------------------------------------
# Titles: small vocabularies per category, style words, brand syllables

CATEGORY_WORDS = {
    "toys_games": "toy puzzle blocks doll robot game kids fun gift building",
    "sports_outdoor": "camping tent bottle yoga mat running hiking bike gear outdoor",
    "home_textiles": "pillow blanket sheets towel cushion cozy soft bedding cotton curtain",
    "shoes_bags": "sneakers boots backpack handbag sandals tote leather shoes wallet heels",
    "kitchen_appliances": "blender airfryer kettle pan cooker knife mixer pot toaster steamer",
    "clothing_underwear": "dress hoodie jeans shirt socks bra jacket skirt tee coat",
    "fresh_produce": "mango cherries oranges grapes beef shrimp apples tea honey rice",
    "beauty_skincare": "serum cream lipstick mask sunscreen toner cleanser foundation perfume lotion",
    "maternity_baby": "diapers bottle stroller wipes formula onesie crib teether carrier bib",
    "daily_necessities": "tissue detergent toothpaste shampoo soap wipes bags sponge brush cleaner",
    "electronics_3c": "earbuds charger phone cable speaker watch tablet keyboard mouse camera",
    "jewelry_accessories": "necklace ring earrings bracelet hairclip sunglasses pendant silver gold pearl",
    "other": "stuff gadget item thing pack set kit bundle tool piece",
}
STYLE_WORDS = {
    "special_effects": "wow magic transform effect filter glow sparkle challenge trend",
    "self_expression": "dance outfit vibe mood style look me daily ootd",
    "product_demo": "review unboxing test howto tutorial compare worth honest demo",
}
FILLER_WORDS = "best new must have today so good love deal price buy now try this my top real"
_SYLLABLES = ("ka", "lo", "mi", "ra", "zu", "ve", "po", "ni", "ta", "se", "ru", "do", "fi", "la", "mo")


@dataclass(frozen=True)
class Geometry:
    """Directions in the 128-d feature spaces through which latents become features."""

    presence: np.ndarray  # (D,) frame: product on screen
    product_id: np.ndarray  # (K, D) frame + title: product identity latent -> features
    saliency: np.ndarray  # (D,) motion: engagement saliency
    speech: np.ndarray  # (D,) audio: the voice talks about the product
    music: np.ndarray  # (D,) audio: music energy (drives likes, not sales)
    style_frame: np.ndarray  # (3, D) content style seen in the frame
    style_motion: np.ndarray  # (3, D) content style seen in motion (special effects move)
    style_audio: np.ndarray  # (3, D)
    type_frame: np.ndarray  # (14, D) video type seen in the frame
    scene: np.ndarray  # (R, D) low-rank scene clutter shared by frame and motion
    name: np.ndarray  # (D,) title: "this token names the product"
    words: np.ndarray  # (V, D) title word embeddings
    vocab: tuple[str, ...]  # V words
    category_word_ids: tuple[np.ndarray, ...]  # per category: word ids of its vocabulary
    style_word_ids: tuple[np.ndarray, ...]  # per style
    filler_word_ids: np.ndarray


PRODUCT_LATENT_DIM = 8
SCENE_RANK = 8


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@cache
def geometry() -> Geometry:
    """The fixed feature geometry (same for every world)."""
    rng = np.random.default_rng(PHYSICS_SEED)
    d = L.FEATURE_DIM
    # the named directions are made orthonormal so that probing one latent does not read another
    q, _ = np.linalg.qr(rng.standard_normal((d, 8)))
    presence, saliency, speech, music, name = q[:, 0], q[:, 1], q[:, 2], q[:, 3], q[:, 4]
    vocab: list[str] = []
    cat_ids, style_ids = [], []
    for c in L.PRODUCT_CATEGORIES:
        words = CATEGORY_WORDS[c].split()
        cat_ids.append(np.arange(len(vocab), len(vocab) + len(words)))
        vocab += words
    for s in STYLES:
        words = STYLE_WORDS[s].split()
        style_ids.append(np.arange(len(vocab), len(vocab) + len(words)))
        vocab += words
    fill = FILLER_WORDS.split()
    filler = np.arange(len(vocab), len(vocab) + len(fill))
    vocab += fill
    words = rng.standard_normal((len(vocab), d)) / np.sqrt(d) * 1.5
    # words of one category / style share a component so that the title carries category / style
    for ids in cat_ids + style_ids:
        words[ids] += _unit(rng.standard_normal(d)) * 1.0
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return Geometry(
        presence=f32(presence),
        product_id=f32(rng.standard_normal((PRODUCT_LATENT_DIM, d)) / np.sqrt(d)),
        saliency=f32(saliency),
        speech=f32(speech),
        music=f32(music),
        style_frame=f32(_unit(rng.standard_normal((3, d)))),
        style_motion=f32(_unit(rng.standard_normal((3, d)))),
        style_audio=f32(_unit(rng.standard_normal((3, d)))),
        type_frame=f32(_unit(rng.standard_normal((len(L.VIDEO_TYPES), d)))),
        scene=f32(rng.standard_normal((SCENE_RANK, d)) / np.sqrt(d)),
        name=f32(name),
        words=f32(words),
        vocab=tuple(vocab),
        category_word_ids=tuple(cat_ids),
        style_word_ids=tuple(style_ids),
        filler_word_ids=filler,
    )


def brand_names(rng: np.random.Generator, n: int) -> list[str]:
    """n pronounceable brand words (not necessarily unique)."""
    k = rng.integers(2, 4, size=n)
    syl = rng.integers(0, len(_SYLLABLES), size=(n, 3))
    return ["".join(_SYLLABLES[j] for j in syl[i, : k[i]]) for i in range(n)]

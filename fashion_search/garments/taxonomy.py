"""The garment classes shoppers search by, and how source data sets' labels map onto them.

The parser predicts one of ``PARSER_CLASSES`` per pixel. Three of them are not garments
(``background``, ``skin``, ``hair``) and are never returned as search targets; the rest are.

Mapping decisions (Clothing Co-Parsing's 59 labels), and why:

- ``vest`` and ``suit`` -> ``outerwear``: in CCP both mark a tailored layer worn over a top
  (waistcoats, suit jackets), and a shopper who photographs one wants jackets back, not T-shirts.
- ``sweatshirt`` and ``hoodie`` -> ``knitwear`` rather than ``top``: they are bought as warm
  layers and look like jumpers at photo resolution; ``cardigan`` likewise, not ``outerwear``.
- ``romper`` (and jumpsuits) -> ``dress``: one-piece garments covering top and bottom; the class is
  named after its most common member.
- ``leggings`` -> ``trousers``; ``stockings``, ``tights``, ``socks`` -> ``legwear`` (sheer or
  knitted, sold apart from trousers).
- ``wallet`` and ``purse`` -> ``bag``; ``tie`` -> ``scarf`` (both worn around the neck).
- Jewellery, watches, gloves, the catch-all ``accessories`` and underwear/swimwear (2 images of
  800 in CCP, too few to learn) are *ignored* in training: their pixels count neither for nor
  against any class, because calling a bracelet ``skin`` or ``background`` would be equally wrong.
"""

from __future__ import annotations

from typing import Optional

PARSER_CLASSES: tuple[str, ...] = (
    "background",
    "skin",
    "hair",
    "top",
    "knitwear",
    "outerwear",
    "dress",
    "skirt",
    "trousers",
    "shorts",
    "legwear",
    "footwear",
    "bag",
    "hat",
    "scarf",
    "belt",
    "eyewear",
)
NOT_GARMENTS = frozenset({"background", "skin", "hair"})
GARMENT_CLASSES: tuple[str, ...] = tuple(c for c in PARSER_CLASSES if c not in NOT_GARMENTS)
IGNORE = 255

# Garments worn in pairs, made of separate pieces, or on two legs (trouser legs apart, with the
# crotch hidden or missed, read as two regions): their parts merge more readily.
PAIRED_CLASSES = frozenset({"footwear", "legwear", "eyewear", "trousers", "shorts"})

# Classes one garment is often given in different photos, so that class-aware search lets them
# meet (within the catalog categories that hold the query's class). Measured on CCP validation
# photos with the parser of 2026-11-26, share of pixels predicted as the first class that truly are
# the second: knitwear -> top 0.40, top -> outerwear 0.22, outerwear -> top 0.13, dress -> outerwear
# 0.15, skirt -> dress 0.54, shorts -> dress 0.35 (rompers are dresses here) and -> trousers
# 0.25, legwear -> trousers 0.66. The parser of 2026-12-02 makes the same kinds of confusion
# (its `confusions` in docs/results/garment_parser.json), and the pairs are kept for both, since
# an index may be built with either. In Zalora's catalog a fifth of the photos of tops, and a fifth
# of those of knitwear, are parsed as dresses. Upper-body layers and one-pieces blur into each
# other at photo resolution; a skirt and a top do not, and neither do accessories, so a skirt
# still never meets blouses and a bag never meets shoes. Spill-overs at garment borders (a dress predicted over
# the trousers below it, 0.16) are not confusions of the garment and are left out.
LOOKALIKE_PAIRS = frozenset(
    {
        frozenset(pair)
        for pair in (
            ("top", "knitwear"),
            ("top", "outerwear"),
            ("knitwear", "outerwear"),
            ("top", "dress"),
            ("knitwear", "dress"),
            ("outerwear", "dress"),
            ("dress", "skirt"),
            ("dress", "shorts"),
            ("shorts", "trousers"),
            ("legwear", "trousers"),
        )
    }
)


def lookalikes(name: str) -> frozenset[str]:
    """The classes a garment of class ``name`` may be given in another photo (``name`` included)."""
    return frozenset({name}).union(*(pair for pair in LOOKALIKE_PAIRS if name in pair))


CCP_TO_CLASS: dict[str, Optional[str]] = {
    "null": "background",
    "skin": "skin",
    "hair": "hair",
    **{n: "top" for n in ("blouse", "shirt", "t-shirt", "top", "bodysuit")},
    **{n: "knitwear" for n in ("sweater", "cardigan", "jumper", "sweatshirt", "hoodie")},
    **{n: "outerwear" for n in ("coat", "jacket", "blazer", "cape", "vest", "suit")},
    **{n: "dress" for n in ("dress", "romper")},
    "skirt": "skirt",
    **{n: "trousers" for n in ("pants", "jeans", "leggings")},
    "shorts": "shorts",
    **{n: "legwear" for n in ("stockings", "tights", "socks")},
    **{
        n: "footwear"
        for n in ("shoes", "boots", "sandals", "loafers", "heels", "pumps", "sneakers", "flats", "wedges", "clogs")
    },
    **{n: "bag" for n in ("bag", "purse", "wallet")},
    "hat": "hat",
    **{n: "scarf" for n in ("scarf", "tie")},
    "belt": "belt",
    **{n: "eyewear" for n in ("sunglasses", "glasses")},
    **{
        n: None
        for n in (
            "accessories",
            "bracelet",
            "watch",
            "necklace",
            "ring",
            "earrings",
            "gloves",
            "bra",
            "panties",
            "intimate",
            "swimwear",
        )
    },
}

# LIP's 20 labels (VITON's parse maps, made by a LIP-trained parsing model), by label id.
LIP_LABELS: tuple[str, ...] = (
    "background",
    "hat",
    "hair",
    "glove",
    "sunglasses",
    "upper-clothes",
    "dress",
    "coat",
    "socks",
    "pants",
    "jumpsuit",
    "scarf",
    "skirt",
    "face",
    "left-arm",
    "right-arm",
    "left-leg",
    "right-leg",
    "left-shoe",
    "right-shoe",
)

# LIP label -> the parser classes its pixels may be (more than one where LIP does not tell them
# apart: its upper-clothes are T-shirts and jumpers alike, its pants trousers and shorts alike;
# training accepts any of them there rather than teach a wrong hard label). Jumpsuits are
# one-pieces, ``dress`` here as in CCP. Gloves have no class and are ignored. LIP has no bag or
# belt label, so a bag in a VITON photo is labelled background: rare in studio shots of tops.
LIP_TO_CLASSES: dict[str, Optional[tuple[str, ...]]] = {
    "background": ("background",),
    "hat": ("hat",),
    "hair": ("hair",),
    "glove": None,
    "sunglasses": ("eyewear",),
    "upper-clothes": ("top", "knitwear"),
    "dress": ("dress",),
    "coat": ("outerwear",),
    "socks": ("legwear",),
    "pants": ("trousers", "shorts"),
    "jumpsuit": ("dress",),
    "scarf": ("scarf",),
    "skirt": ("skirt",),
    **{n: ("skin",) for n in ("face", "left-arm", "right-arm", "left-leg", "right-leg")},
    **{n: ("footwear",) for n in ("left-shoe", "right-shoe")},
}

# Kaggle (Myntra) article types -> parser class; used to add product shots to training and to
# judge street-to-shop results. Article types that are no garment class (watches, perfume,
# underwear) are absent.
ARTICLE_TYPE_TO_CLASS: dict[str, str] = {
    **{n: "top" for n in ("Tshirts", "Shirts", "Tops", "Kurtas", "Kurtis", "Tunics", "Innerwear Vests")},
    **{n: "knitwear" for n in ("Sweaters", "Sweatshirts", "Shrug")},
    **{n: "outerwear" for n in ("Jackets", "Blazers", "Waistcoat", "Rain Jacket", "Tracksuits")},
    **{n: "dress" for n in ("Dresses", "Jumpsuit", "Nightdress")},
    "Skirts": "skirt",
    **{n: "trousers" for n in ("Trousers", "Jeans", "Track Pants", "Leggings", "Capris", "Lounge Pants", "Churidar")},
    **{n: "shorts" for n in ("Shorts", "Lounge Shorts")},
    **{n: "legwear" for n in ("Socks", "Stockings", "Tights")},
    **{
        n: "footwear"
        for n in (
            "Casual Shoes",
            "Sports Shoes",
            "Heels",
            "Flip Flops",
            "Sandals",
            "Formal Shoes",
            "Flats",
            "Sports Sandals",
        )
    },
    **{
        n: "bag"
        for n in (
            "Handbags",
            "Wallets",
            "Backpacks",
            "Clutches",
            "Laptop Bag",
            "Duffel Bag",
            "Messenger Bag",
            "Mobile Pouch",
            "Rucksacks",
            "Waist Pouch",
        )
    },
    **{n: "hat" for n in ("Caps", "Hat")},
    **{n: "scarf" for n in ("Scarves", "Mufflers", "Stoles", "Ties", "Dupatta")},
    "Belts": "belt",
    "Sunglasses": "eyewear",
}


# Basic colour terms (Berlin and Kay's eleven, with beige, which fashion names as its own): the
# vocabulary colours are judged and tagged by. Kaggle's 44 base colours map onto them by hue;
# "Multi" and unnamed colours map to none. Metallic finishes go to the colour they look:
# silver and steel grey, gold yellow, bronze and copper brown.
BASIC_COLOURS = (
    "black",
    "white",
    "grey",
    "red",
    "pink",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "brown",
    "beige",
)
KAGGLE_BASIC_COLOUR: dict[str, str] = {
    **{n: "black" for n in ("Black",)},
    **{n: "white" for n in ("White", "Off White", "Cream")},
    **{n: "grey" for n in ("Grey", "Charcoal", "Grey Melange", "Steel", "Silver", "Metallic")},
    **{n: "red" for n in ("Red", "Maroon", "Burgundy")},
    **{n: "pink" for n in ("Pink", "Magenta", "Peach")},
    **{n: "orange" for n in ("Orange", "Rust")},
    **{n: "yellow" for n in ("Yellow", "Mustard", "Gold")},
    **{n: "green" for n in ("Green", "Olive", "Sea Green", "Fluorescent Green")},
    **{n: "blue" for n in ("Blue", "Navy Blue", "Teal", "Turquoise Blue")},
    **{n: "purple" for n in ("Purple", "Lavender", "Mauve")},
    **{n: "brown" for n in ("Brown", "Coffee Brown", "Tan", "Taupe", "Bronze", "Copper")},
    **{n: "beige" for n in ("Beige", "Khaki", "Nude", "Skin")},
}


def class_index(name: str) -> int:
    return PARSER_CLASSES.index(name)


def ccp_lookup_table(ccp_names: dict[int, str]) -> list[int]:
    """A 256-entry table from CCP label ids to parser class ids (``IGNORE`` where unmapped)."""
    table = [IGNORE] * 256
    for label_id, name in ccp_names.items():
        target = CCP_TO_CLASS.get(name)
        table[label_id] = IGNORE if target is None else class_index(target)
    return table

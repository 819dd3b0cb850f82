"""Garment category without labels: the backbone's ImageNet head, summed into a small taxonomy.

ImageNet has about fifty garment and accessory classes (`jean`, `cardigan`, `running shoe`,
`purse`, ...). Summing their probabilities per category of `TAXONOMY` gives a fallback category
for catalogs that have no labels of their own; when too little of the probability lies on
garment classes at all, the answer is "unknown". The table and its measured accuracy are in
docs/taxonomy.md.

Example:
    >>> import numpy as np
    >>> probs = np.zeros(1000, np.float32)
    >>> probs[imagenet_index("jean")] = 0.9
    >>> predict_garment(probs)
    [('trousers/jeans', 1.0)]
"""

from __future__ import annotations

from functools import cache

import numpy as np

from stylefinder.embed.registry import imagenet_labels

#: The garment categories, in a fixed order (the columns of `category_matrix`).
TAXONOMY: tuple[str, ...] = (
    "top",
    "shirt",
    "sweater",
    "coat/jacket",
    "dress",
    "skirt",
    "trousers/jeans",
    "shorts",
    "swimwear",
    "shoes",
    "boots",
    "sandals",
    "bag",
    "hat",
    "accessory",
)
UNKNOWN = "unknown"

#: ImageNet class names (exactly as `imagenet_labels()` spells them) summed into each category.
#: A name that occurs twice in ImageNet (`maillot`) contributes every class of that name.
#: ImageNet has no shirt or shorts class: `pajama` (a collared, buttoned top, usually shown with
#: its trousers) stands in for shirts and `swimming trunks` for shorts.
IMAGENET_CLASSES: dict[str, tuple[str, ...]] = {
    "top": ("jersey",),
    "shirt": ("pajama",),
    "sweater": ("cardigan", "sweatshirt"),
    "coat/jacket": (
        "trench coat",
        "fur coat",
        "lab coat",
        "suit",
        "military uniform",
        "cloak",
        "poncho",
        "bulletproof vest",
    ),
    "dress": ("gown", "abaya", "kimono"),
    "skirt": ("miniskirt", "overskirt", "hoopskirt", "sarong"),
    "trousers/jeans": ("jean",),
    "shorts": ("swimming trunks",),
    "swimwear": ("bikini", "maillot", "brassiere"),
    "shoes": ("running shoe", "Loafer", "clog"),
    "boots": ("cowboy boot",),
    "sandals": ("sandal",),
    "bag": ("purse", "backpack", "mailbag", "plastic bag"),
    "hat": (
        "cowboy hat",
        "sombrero",
        "bonnet",
        "mortarboard",
        "bearskin",
        "bathing cap",
        "ski mask",
    ),
    "accessory": (
        "sunglasses",
        "sunglass",
        "necklace",
        "bow tie",
        "Windsor tie",
        "bolo tie",
        "stole",
        "feather boa",
        "mitten",
        "sock",
        "wallet",
        "buckle",
        "hair slide",
        "handkerchief",
        "digital watch",
    ),
}

#: Garment-like ImageNet classes deliberately left out (armour, protective or sports gear,
#: costumes, scenes, household textiles); the reasons are in docs/taxonomy.md.
UNMAPPED_GARMENT_LIKE: tuple[str, ...] = (
    "academic gown",
    "vestment",
    "apron",
    "bib",
    "diaper",
    "Christmas stocking",
    "chain mail",
    "breastplate",
    "cuirass",
    "knee pad",
    "crash helmet",
    "football helmet",
    "pickelhaube",
    "shower cap",
    "wig",
    "mask",
    "umbrella",
    "shoe shop",
)

#: Below this much garment probability (summed over all mapped classes) the answer is
#: "unknown". Chosen from benchmarks/imagenet_fallback.py (see docs/taxonomy.md).
DEFAULT_MIN_MASS = 0.2


def imagenet_index(name: str) -> int:
    """The first ImageNet class index called `name` (KeyError if there is none).

    Example:
        >>> imagenet_index("jean")
        608
    """
    try:
        return _labels().index(name)
    except ValueError:
        raise KeyError(f"no ImageNet class is called {name!r}") from None


@cache
def _labels() -> tuple[str, ...]:
    return tuple(imagenet_labels())


@cache
def imagenet_mapping() -> dict[int, str]:
    """ImageNet class index -> taxonomy category, for every mapped class.

    Example:
        >>> imagenet_mapping()[608]
        'trousers/jeans'
    """
    labels = _labels()
    mapping: dict[int, str] = {}
    for category, names in IMAGENET_CLASSES.items():
        for name in names:
            indices = [i for i, label in enumerate(labels) if label == name]
            if not indices:
                raise KeyError(f"no ImageNet class is called {name!r}")
            for index in indices:
                if index in mapping:
                    raise ValueError(f"ImageNet class {name!r} is mapped twice")
                mapping[index] = category
    return mapping


@cache
def category_matrix() -> np.ndarray:
    """A (1000, len(TAXONOMY)) 0/1 matrix: `probs @ category_matrix()` sums each category.

    Example:
        >>> category_matrix().shape
        (1000, 15)
    """
    matrix = np.zeros((len(_labels()), len(TAXONOMY)), np.float64)
    for index, category in imagenet_mapping().items():
        matrix[index, TAXONOMY.index(category)] = 1.0
    matrix.setflags(write=False)
    return matrix


def category_mass(imagenet_probs: np.ndarray) -> np.ndarray:
    """ImageNet probabilities (1000,) or (N, 1000) -> summed per category, (15,) or (N, 15).

    Example:
        >>> category_mass(np.full((2, 1000), 0.001, np.float32)).shape
        (2, 15)
    """
    probs = np.asarray(imagenet_probs, np.float64)
    if probs.shape[-1] != len(_labels()):
        raise ValueError(f"expected 1000 ImageNet probabilities, got shape {probs.shape}")
    return probs @ category_matrix()


def garment_probabilities(imagenet_probs: np.ndarray) -> dict[str, float]:
    """The summed ImageNet probability of each taxonomy category (not renormalised).

    Example:
        >>> probs = np.zeros(1000, np.float32)
        >>> probs[imagenet_index("sandal")] = 0.5
        >>> garment_probabilities(probs)["sandals"]
        0.5
    """
    mass = category_mass(np.asarray(imagenet_probs).reshape(-1))
    return {category: float(p) for category, p in zip(TAXONOMY, mass, strict=True)}


def predict_garment(
    imagenet_probs: np.ndarray, *, top: int = 3, min_mass: float = DEFAULT_MIN_MASS
) -> list[tuple[str, float]]:
    """The `top` likeliest categories with probabilities renormalised over the garment mass,
    or `[("unknown", 1 - mass)]` when the garment mass is below `min_mass`.

    Categories with no probability at all are left out, so fewer than `top` may come back.

    Example:
        >>> probs = np.zeros(1000, np.float32)
        >>> probs[imagenet_index("tabby")] = 0.95
        >>> predict_garment(probs)
        [('unknown', 1.0)]
    """
    return predict_garments(np.asarray(imagenet_probs)[None], top=top, min_mass=min_mass)[0]


def predict_garments(
    imagenet_probs: np.ndarray, *, top: int = 3, min_mass: float = DEFAULT_MIN_MASS
) -> list[list[tuple[str, float]]]:
    """`predict_garment` for a batch (N, 1000) of ImageNet probabilities.

    Example:
        >>> probs = np.zeros((2, 1000), np.float32)
        >>> probs[0, imagenet_index("purse")] = 0.6
        >>> [p[0][0] for p in predict_garments(probs)]
        ['bag', 'unknown']
    """
    mass = category_mass(imagenet_probs)
    total = mass.sum(axis=1)
    order = np.argsort(-mass, axis=1, kind="stable")[:, :top]
    out: list[list[tuple[str, float]]] = []
    for row, garment, best in zip(mass, total, order, strict=True):
        if garment < min_mass or garment <= 0:
            out.append([(UNKNOWN, float(max(0.0, 1.0 - garment)))])
            continue
        out.append([(TAXONOMY[j], float(row[j] / garment)) for j in best if row[j] > 0])
    return out

"""The words shops use for colours, mapped onto the names stylefinder gives.

stylefinder names a garment's colours from a palette of 15 (`recognize.colours.COLOUR_NAMES`)
plus "multi". Shops write colours in their own words: the Kaggle "Fashion Product Images"
`baseColour` values (Navy Blue, Off White, Charcoal, Maroon, Mustard, Turquoise Blue, ...), and
shoppers filter by a family ("blue" for navy and light blue alike). `colour_terms` turns a
filter word into the palette names it allows, so `colours=blue` finds navy items and
`colours=navy blue` finds navy ones.

Example:
    >>> sorted(colour_terms("blue"))
    ['blue', 'navy', 'turquoise']
    >>> sorted(colour_terms("Navy Blue"))
    ['navy']
    >>> colour_terms("plaid") is None
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

#: Families on top of the palette: a family word allows every name in it.
FAMILIES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "blue": frozenset({"blue", "navy", "turquoise"}),
        "green": frozenset({"green", "olive", "turquoise"}),
        "brown": frozenset({"brown", "beige"}),
        "red": frozenset({"red"}),
        "pink": frozenset({"pink"}),
        "purple": frozenset({"purple"}),
        "yellow": frozenset({"yellow"}),
        "orange": frozenset({"orange"}),
        "black": frozenset({"black"}),
        "white": frozenset({"white"}),
        "grey": frozenset({"grey"}),
    }
)

#: Shop words (lower case) for palette names: the Kaggle baseColour values and common variants.
SYNONYMS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        word: frozenset(names.split())
        for word, names in {
            "navy": "navy",
            "navy blue": "navy",
            "dark blue": "navy",
            "light blue": "blue",
            "sky blue": "blue",
            "royal blue": "blue",
            "denim": "blue navy",
            "turquoise": "turquoise",
            "turquoise blue": "turquoise",
            "teal": "turquoise",
            "sea green": "turquoise green",
            "off white": "white",
            "cream": "white beige",
            "ivory": "white",
            "gray": "grey",
            "charcoal": "grey",
            "grey melange": "grey",
            "silver": "grey",
            "steel": "grey",
            "beige": "beige",
            "tan": "beige brown",
            "khaki": "beige olive",
            "skin": "beige",
            "nude": "beige",
            "taupe": "beige grey",
            "coffee brown": "brown",
            "mushroom brown": "brown",
            "bronze": "brown",
            "copper": "brown orange",
            "rust": "brown orange",
            "maroon": "red",
            "burgundy": "red",
            "rose": "pink",
            "magenta": "pink purple",
            "peach": "orange pink",
            "mustard": "yellow",
            "gold": "yellow",
            "olive": "olive",
            "lime green": "green",
            "fluorescent green": "green",
            "lavender": "purple",
            "mauve": "purple pink",
            "violet": "purple",
            "multi": "multi",
            "multicolour": "multi",
            "multicolor": "multi",
        }.items()
    }
)


def colour_terms(word: str) -> frozenset[str] | None:
    """The palette names that the colour word `word` allows (a family, a shop word or a name
    itself), without regard to case and spacing; None for a word this vocabulary lacks.

    Example:
        >>> sorted(colour_terms(" Off  White "))
        ['white']
    """
    key = " ".join(word.casefold().replace("-", " ").split())
    if key in FAMILIES:
        return FAMILIES[key]
    return SYNONYMS.get(key)

"""A shopper's words, read for full-text search: the words themselves and the colours they name.

Any word may match (items that match more of them rank higher), so "navy linen shirt" finds
the navy linen shirt first, then other linen shirts and navy items. A colour word or phrase
("red", "navy blue", "off white") also matches the palette names it stands for
(`colour_words.colour_terms`), so "blue" finds items whose `colours` were named navy.

Example:
    >>> query = TextQuery.parse("Navy linen shirts")
    >>> query.words
    ('navy', 'linen', 'shirts')
    >>> query.fts_expression()
    '"navy" OR "linen" OR "shirts"'
    >>> sorted(TextQuery.parse("like this, but in light blue").colour_names)
    ['blue']
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stylefinder.colour_words import colour_terms

MAX_WORDS = 32  # more are ignored
MAX_CHARS = 500  # the longest query text taken
_LONGEST_COLOUR_PHRASE = 3  # words ("turquoise blue", "grey melange", "lime green")
# words that carry no meaning for a shop's search
STOP_WORDS = frozenset(
    {
        *("a", "an", "and", "the", "in", "on", "of", "for", "with", "without", "to", "this"),
        *("that", "like", "but", "or", "is", "it", "its", "as", "by", "at", "from", "some"),
        *("any", "me", "my", "i", "want", "show", "find"),
    }
)


@dataclass(frozen=True)
class TextQuery:
    """The words of a text query (folded, without stop words) and the palette colour names its
    colour words stand for."""

    text: str
    words: tuple[str, ...]
    colour_names: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> TextQuery:
        """Read a query text; `ValueError` when it holds no word to search for.

        Example:
            >>> TextQuery.parse("the, and").words  # doctest: +SKIP
            ValueError: the text query has no word to search for
        """
        if not isinstance(text, str):
            raise ValueError("the text query must be a string")
        tokens = re.findall(r"\w+", text[:MAX_CHARS].casefold())
        colours = _colour_names(tokens)
        words = tuple(dict.fromkeys(t for t in tokens if t not in STOP_WORDS))[:MAX_WORDS]
        if not words:
            raise ValueError(f"the text query {text[:80]!r} has no word to search for")
        return cls(text, words, colours)

    def terms(self) -> list[str]:
        """The words, then the palette names of the colours named (without repeats)."""
        return list(dict.fromkeys([*self.words, *sorted(self.colour_names)]))

    def fts_expression(self) -> str:
        """The query as an SQLite FTS5 expression: any of the terms, each quoted."""
        return " OR ".join(f'"{term}"' for term in self.terms())

    def tsquery(self) -> str:
        """The query as PostgreSQL `to_tsquery` text: any of the terms (letters, digits and
        underscores only, so no operator can slip in)."""
        return " | ".join(self.terms())


def _colour_names(tokens: list[str]) -> frozenset[str]:
    """The palette names of the colour phrases among `tokens`, longest phrases first."""
    names: set[str] = set()
    start = 0
    while start < len(tokens):
        for length in range(_LONGEST_COLOUR_PHRASE, 0, -1):
            found = colour_terms(" ".join(tokens[start : start + length]))
            if found is not None and start + length <= len(tokens):
                names |= found
                start += length
                break
        else:
            start += 1
    return frozenset(names)

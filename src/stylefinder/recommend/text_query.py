"""A shopper's words, read for full-text search: the words themselves and the colours they name.

Items that match every word come first, then items that match some of them, each by relevance;
so "navy linen shirt" finds the navy linen shirts first, then other shirts, linen and navy
items. A colour word or phrase ("red", "navy blue", "off white") also matches the palette names
it stands for (`colour_words.colour_terms`), so "blue" finds items whose `colours` were named
navy.

Example:
    >>> query = TextQuery.parse("Navy linen shirts")
    >>> query.fts_expression(every=True)
    '("navy") AND ("linen") AND ("shirts")'
    >>> query.fts_expression()
    '"navy" OR "linen" OR "shirts"'
    >>> TextQuery.parse("like this, but in light blue").groups
    (('light blue', 'blue'),)
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
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
    """The groups of a text query: each a word, or a colour phrase and the palette names it
    stands for (alternatives: any one matches the group). Words are folded (case) and stop
    words left out."""

    text: str
    groups: tuple[tuple[str, ...], ...]

    @classmethod
    def parse(cls, text: str) -> TextQuery:
        """Read a query text; `ValueError` when it holds no word to search for.

        Example:
            >>> TextQuery.parse("Off-white dress").groups
            (('off white', 'white'), ('dress',))
        """
        if not isinstance(text, str):
            raise ValueError("the text query must be a string")
        tokens = re.findall(r"\w+", text[:MAX_CHARS].casefold())
        groups = tuple(dict.fromkeys(_groups(tokens)))[:MAX_WORDS]
        if not groups:
            raise ValueError(f"the text query {text[:80]!r} has no word to search for")
        return cls(text, groups)

    def fts_expression(self, *, every: bool = False) -> str:
        """The query as an SQLite FTS5 expression: any term, or (`every`) every group."""
        if not every:
            return " OR ".join(f'"{term}"' for term in self._terms())
        return " AND ".join(
            "(" + " OR ".join(f'"{term}"' for term in group) + ")" for group in self.groups
        )

    def tsquery(self, *, every: bool = False) -> str:
        """The query as PostgreSQL `to_tsquery` text (letters, digits and underscores only, so
        no operator can slip in; a phrase's words joined by `<->`)."""
        if not every:
            return " | ".join(_ts_term(term) for term in self._terms())
        return " & ".join(
            "(" + " | ".join(_ts_term(term) for term in group) + ")" for group in self.groups
        )

    def _terms(self) -> list[str]:
        return list(dict.fromkeys(term for group in self.groups for term in group))


def tiered(
    every: Sequence[tuple[Hashable, float]], some: Sequence[tuple[Hashable, float]], limit: int
) -> list[tuple[Hashable, float]]:
    """Matches of every group first (scores 0.5..1), then matches of some (0..0.5), each list
    given best first with its relevance (the best 1.0).

    Example:
        >>> tiered([("a", 1.0)], [("b", 1.0), ("a", 0.9)], limit=5)
        [('a', 1.0), ('b', 0.5)]
    """
    first = [(key, round(0.5 + score / 2, 6)) for key, score in every[:limit]]
    seen = {key for key, _ in first}
    rest = [(key, round(score / 2, 6)) for key, score in some if key not in seen]
    return [*first, *rest][:limit]


def _groups(tokens: list[str]) -> list[tuple[str, ...]]:
    """The query's groups: colour phrases (longest first) with their palette names, and the
    other words that are not stop words."""
    groups: list[tuple[str, ...]] = []
    start = 0
    while start < len(tokens):
        for length in range(min(_LONGEST_COLOUR_PHRASE, len(tokens) - start), 0, -1):
            phrase = " ".join(tokens[start : start + length])
            names = colour_terms(phrase)
            if names is not None:
                groups.append(tuple(dict.fromkeys((phrase, *sorted(names)))))
                start += length
                break
        else:
            if tokens[start] not in STOP_WORDS:
                groups.append((tokens[start],))
            start += 1
    return groups


def _ts_term(term: str) -> str:
    return " <-> ".join(term.split()) if " " in term else term

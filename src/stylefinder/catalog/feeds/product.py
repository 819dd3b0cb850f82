"""A product read from a shop's feed, and the small cleaners every feed format shares.

Example:
    >>> html_to_text("<p>Soft <b>cotton</b> tee &amp; more</p><p>Machine wash</p>")
    'Soft cotton tee & more\\nMachine wash'
    >>> split_price("49.90 EUR")
    ('49.90', 'EUR')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

#: Feed spellings of availability, mapped to the four values stylefinder keeps.
AVAILABILITY = {
    "in stock": "in stock",
    "instock": "in stock",
    "in_stock": "in stock",
    "available": "in stock",
    "1": "in stock",
    "out of stock": "out of stock",
    "outofstock": "out of stock",
    "out_of_stock": "out of stock",
    "sold out": "out of stock",
    "0": "out of stock",
    "preorder": "preorder",
    "pre-order": "preorder",
    "backorder": "backorder",
    "onbackorder": "backorder",
}
_BLOCK_TAGS = frozenset(
    {"p", "br", "div", "li", "ul", "ol", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section"}
)
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_PRICE = re.compile(r"^\s*([A-Z]{3})?\s*([0-9][0-9.,\s]*)\s*([A-Z]{3})?\s*$")


@dataclass(frozen=True)
class Product:
    """One product of a feed: its fields as text (empty when the feed has none) and its image
    URLs in the feed's order (the first is the main photo). `line` is where it starts in the
    feed (an item number for JSON).

    Example:
        >>> Product("sku-1", images=("https://shop.example/a.jpg",)).images[0]
        'https://shop.example/a.jpg'
    """

    id: str
    title: str = ""
    description: str = ""
    price: str = ""
    currency: str = ""
    link: str = ""
    availability: str = ""
    brand: str = ""
    colour: str = ""
    category: str = ""
    tags: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    line: int = 0


class _TextParser(HTMLParser):
    """Collects the text of an HTML fragment; block tags become line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML fragment (tags dropped, entities decoded, blank lines and
    runs of spaces collapsed); plain text comes back with its spaces tidied.

    Example:
        >>> html_to_text("Red <i>linen</i>&nbsp;dress")
        'Red linen dress'
    """
    if "<" not in html and "&" not in html:
        return "\n".join(
            line for line in (_SPACES.sub(" ", s).strip() for s in html.splitlines()) if line
        )
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def split_price(text: str) -> tuple[str, str]:
    """(amount, currency) of a feed price such as "49.90 EUR", "USD 12", "1,299.00" or
    "12,50 EUR" (a decimal comma); the amount is plain digits with a dot, or the text as written
    when it is not a price.

    Example:
        >>> split_price("1,299.00 USD"), split_price("12,50 EUR"), split_price("ask us")
        (('1299.00', 'USD'), ('12.50', 'EUR'), ('ask us', ''))
    """
    match = _PRICE.match(text.strip())
    if match is None:
        return text.strip(), ""
    amount = match.group(2).replace(" ", "")
    currency = match.group(1) or match.group(3) or ""
    if "," in amount and "." in amount:  # the last mark is the decimal one
        decimal = "." if amount.rfind(".") > amount.rfind(",") else ","
        thousands = "," if decimal == "." else "."
        amount = amount.replace(thousands, "").replace(decimal, ".")
    elif "," in amount:
        head, _, tail = amount.rpartition(",")
        amount = f"{head.replace(',', '')}.{tail}" if len(tail) != 3 else amount.replace(",", "")
    return amount, currency


def normalize_availability(text: str) -> str:
    """One of "in stock", "out of stock", "preorder", "backorder", or the text as written
    (lower case) when the feed uses another word.

    Example:
        >>> normalize_availability("in_stock"), normalize_availability("OutOfStock")
        ('in stock', 'out of stock')
    """
    key = text.strip().lower()
    return AVAILABILITY.get(key, AVAILABILITY.get(key.replace(" ", ""), key))


def split_list(text: str, separators: str = ",") -> tuple[str, ...]:
    """The non-empty, stripped parts of `text` split at any of `separators`, duplicates dropped.

    Example:
        >>> split_list("summer, linen,,summer")
        ('summer', 'linen')
    """
    parts = re.split("|".join(re.escape(s) for s in separators), text) if text else []
    return tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))


_SPACE = re.compile(r"\s")


def is_web_url(url: str) -> bool:
    """Whether `url` is an absolute http(s) address with a host.

    Example:
        >>> is_web_url("https://cdn.shop.example/a.jpg"), is_web_url("/a.jpg")
        (True, False)
    """
    lower = url.lower()
    if not lower.startswith(("http://", "https://")):
        return False
    host = url.split("://", 1)[1].split("/", 1)[0]
    return bool(host) and _SPACE.search(url) is None

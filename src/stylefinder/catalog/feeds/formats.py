"""Read a shop's product feed into products: the format is told from the header (or the first
character), or named.

Formats:
- "shopify": a Shopify product export CSV, several rows per product (by `Handle`): the first
  row carries Title, Body (HTML), Vendor, Type, Tags and Variant Price; each row may add an
  `Image Src` with its `Image Position` (and a `Variant Image`).
- "google": a Google Merchant Center feed, as TSV/CSV or XML (RSS 2.0 or Atom with the `g:`
  namespace): id, title, description, link, image_link, additional_image_link, price,
  availability, brand, color, gender, product_type.
- "woocommerce": a WooCommerce product export CSV, with `Images` as comma-separated URLs
  (a variation's images go to its parent product).
- "csv": any CSV or TSV with an image URL column (`image_url`, `image`, `images`, ...) and,
  preferably, an `id` column; rows with the same id are one product.
- "json": a list of product objects, or `{"products": [...]}` (Shopify's products.json too).

Bad rows are listed in `problems` with their line number and left out; they never stop the
read. Descriptions are HTML stripped to text; prices are split into amount and currency.

Example:
    >>> reading = read_feed("products_export.csv")  # doctest: +SKIP
    >>> reading.format, len(reading.products), reading.problems  # doctest: +SKIP
    ('shopify', 120, ['products_export.csv line 17: empty Handle; row skipped'])
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stylefinder.catalog.feeds.product import (
    Product,
    html_to_text,
    is_web_url,
    normalize_availability,
    split_list,
    split_price,
)
from stylefinder.catalog.feeds.xml_feed import read_xml_items
from stylefinder.catalog.metadata import PARSER_FIELD_LIMIT, csv_field_limit
from stylefinder.errors import StylefinderError

#: What `--feed-format` accepts.
FEED_FORMATS = ("auto", "shopify", "google", "woocommerce", "csv", "json")
#: Images kept per product (Google allows 1 + 10; Shopify exports rarely have more).
MAX_IMAGES_PER_PRODUCT = 50
#: Descriptions are cut to this many characters (the metadata CSV's fields stay small).
MAX_DESCRIPTION_CHARS = 5000
#: The csv module's field limit while reading a feed (a long HTML body is one field).

#: Column names (normalized: lower case, `g:` dropped, "_" as " ") of the generic formats.
ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "sku", "product id", "item id", "handle", "variant sku"),
    "title": ("title", "name", "product name"),
    "description": ("description", "body (html)", "body html", "body", "short description"),
    "price": ("sale price", "price", "variant price", "regular price"),
    "link": ("link", "product url", "product link", "url", "permalink"),
    "availability": ("availability", "stock status", "in stock?"),
    "brand": ("brand", "vendor", "manufacturer"),
    "colour": ("color", "colour"),
    "category": ("product type", "category", "categories", "type", "google product category"),
    "tags": ("tags", "keywords", "labels"),
}
#: Image URL columns of a generic CSV, the main photo's first.
IMAGE_COLUMNS = (
    "image url",
    "image link",
    "image src",
    "image",
    "images",
    "image urls",
    "photo",
    "photo url",
    "picture",
    "additional image link",
    "additional image links",
)


class FeedFormatError(StylefinderError, ValueError):
    """A feed cannot be read at all (unknown format, unreadable file); the message says what
    to do. Bad rows are not errors: they are listed in `FeedReading.problems`."""


@dataclass
class FeedReading:
    """What `read_feed` found: the format ("shopify", "google", "woocommerce", "csv",
    "json"), its syntax ("csv", "tsv", "xml", "json"), the products in feed order, and the
    problems (bad rows, with their line numbers)."""

    format: str
    syntax: str
    products: list[Product] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    encoding: str = "utf-8"


def read_feed(
    source: str | Path | bytes, *, feed_format: str = "auto", name: str | None = None
) -> FeedReading:
    """Read the feed at `source` (a path, or the feed's bytes, named `name` in problems).

    Example:
        >>> data = b"id,title,image_url\\nsku-1,Red dress,https://shop.example/1.jpg\\n"
        >>> reading = read_feed(data, name="shop.csv")
        >>> reading.format, reading.products[0].title, reading.products[0].images
        ('csv', 'Red dress', ('https://shop.example/1.jpg',))
    """
    if feed_format not in FEED_FORMATS:
        raise FeedFormatError(
            f"unknown feed format {feed_format!r}; choose one of {', '.join(FEED_FORMATS)}"
        )
    if isinstance(source, (bytes, bytearray)):
        data, where = bytes(source), name or "feed"
    else:
        path = Path(source)
        if not path.is_file():
            raise FeedFormatError(f"feed {path} does not exist or is not a file")
        data, where = path.read_bytes(), name or path.name
    text, encoding, note = decode_feed(data)
    detected, syntax = detect_format(text, where)
    if feed_format != "auto":
        detected = feed_format
        if feed_format == "json":
            syntax = "json"
        elif syntax in ("xml", "json") and feed_format != "google":
            raise FeedFormatError(
                f"{where} is {syntax.upper()}, not a {feed_format} CSV; try --feed-format auto"
            )
    reading = FeedReading(detected, syntax, encoding=encoding)
    if note:
        reading.problems.append(f"{where}: {note}")
    if syntax == "xml":
        items = read_xml_items(data, where, reading.problems)
        raw = [_google(line, fields) for line, fields in items]
        reading.products = _finish(raw, where, reading.problems, "line", group=False)
    elif syntax == "json":
        reading.products = _read_json(text, where, reading.problems)
    else:
        rows = _rows(text, "\t" if syntax == "tsv" else _delimiter(text), where, reading.problems)
        reader = _TABULAR[detected]
        reading.products = reader(rows, where, reading.problems)
    return reading


def decode_feed(data: bytes) -> tuple[str, str, str | None]:
    """(text, codec, note): UTF-8 (a byte-order mark skipped), UTF-16 with a mark, else
    Windows-1252 or Latin-1 with a note saying so.

    Example:
        >>> decode_feed("café".encode("cp1252"))[:2]
        ('café', 'cp1252')
    """
    for mark, codec in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(mark):
            try:
                return data.decode(codec), codec, None
            except UnicodeDecodeError as error:
                raise FeedFormatError(
                    f"the feed starts with a {codec} mark but is not {codec} "
                    f"({error}); save it as UTF-8"
                ) from None
    try:
        return data.decode("utf-8"), "utf-8", None
    except UnicodeDecodeError:
        pass
    try:
        text, codec = data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        text, codec = data.decode("latin-1"), "latin-1"
    return text, codec, f"not UTF-8; read as {codec} (if accents look wrong, save it as UTF-8)"


def detect_format(text: str, where: str = "feed") -> tuple[str, str]:
    """(format, syntax) of a feed from its first character (XML, JSON) or its header row.

    Example:
        >>> detect_format("Handle,Title,Body (HTML),Image Src,Image Position\\n")
        ('shopify', 'csv')
        >>> detect_format("id\\ttitle\\timage_link\\n")
        ('google', 'tsv')
    """
    head = text.lstrip()
    if head.startswith("<"):
        return "google", "xml"
    if head.startswith(("[", "{")):
        return "json", "json"
    first = head.split("\n", 1)[0]
    syntax = "tsv" if "\t" in first else "csv"
    header = next(csv.reader([first], delimiter="\t" if syntax == "tsv" else _delimiter(first)), [])
    keys = {_key(name) for name in header}
    if {"handle", "image src"} <= keys:
        return "shopify", syntax
    if "image link" in keys and "id" in keys:
        return "google", syntax
    if "images" in keys and keys & {"sku", "name", "regular price", "in stock?"}:
        return "woocommerce", syntax
    if keys & set(IMAGE_COLUMNS):
        return "csv", syntax
    raise FeedFormatError(
        f"{where}: cannot tell the feed format from its header {header[:12]}: expected a "
        "Shopify export (Handle, Image Src), a Google Merchant feed (id, image_link), a "
        "WooCommerce export (Images) or a CSV with an image URL column (image_url, image, "
        "images, ...); name the format with --feed-format"
    )


# --- tabular feeds -------------------------------------------------------------------------

Rows = Iterator[tuple[int, dict[str, str]]]


def _key(name: str) -> str:
    """A column name as the readers look it up: lower case, `g:` dropped, "_" as a space."""
    key = re.sub(r"[\s_]+", " ", name.strip().lower().lstrip("\ufeff"))
    return key[2:].strip() if key.startswith("g:") else key


def _delimiter(text: str) -> str:
    first = text.split("\n", 1)[0]
    return ";" if first.count(";") > first.count(",") else ","


def _rows(text: str, delimiter: str, where: str, problems: list[str]) -> Rows:
    """(line, {normalized column: value}) of each good record; bad ones become problems."""
    lines = iter(text.splitlines(keepends=True))
    reader = csv.reader(lines, delimiter=delimiter)
    with csv_field_limit(PARSER_FIELD_LIMIT):
        header = [_key(name) for name in next(reader, [])]
        line = reader.line_num
        while True:
            start = line + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                problems.append(f"{where} line {reader.line_num}: unreadable ({error}); stopped")
                return
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                problems.append(
                    f"{where} line {start}: {len(values)} fields, the header has {len(header)};"
                    " row skipped"
                )
                continue
            yield start, {k: v.strip() for k, v in zip(header, values, strict=True) if k}


def _pick(row: dict[str, str], name: str) -> str:
    return next((row[c] for c in ALIASES[name] if row.get(c)), "")


@dataclass
class _Draft:
    """A product being assembled from its rows."""

    id: str
    line: int
    fields: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    images: list[tuple[float, int, str]] = field(default_factory=list)  # (position, order, url)

    def add_image(self, url: str, position: float = float("inf")) -> None:
        self.images.append((position, len(self.images), url))


def _shopify(rows: Rows, where: str, problems: list[str]) -> list[Product]:
    drafts: dict[str, _Draft] = {}
    colour_option: dict[str, str] = {}  # handle -> the "OptionN Value" column of its colour
    stock: dict[str, list[bool]] = {}
    for line, row in rows:
        handle = row.get("handle", "")
        if not handle:
            problems.append(f"{where} line {line}: empty Handle; row skipped")
            continue
        draft = drafts.get(handle)
        if draft is None:
            draft = drafts[handle] = _Draft(handle, line)
        if row.get("title") and "title" not in draft.fields:
            price, currency = split_price(row.get("variant price", ""))
            draft.fields.update(
                title=row["title"],
                description=row.get("body (html)", ""),
                brand=row.get("vendor", ""),
                category=row.get("type", "") or row.get("product category", "").split(">")[-1],
                price=price,
                currency=currency,
                link=row.get("product url", ""),
            )
            draft.tags = split_list(row.get("tags", ""))
            for n in (1, 2, 3):
                if row.get(f"option{n} name", "").lower() in ("color", "colour"):
                    colour_option[handle] = f"option{n} value"
        if handle in colour_option and row.get(colour_option[handle]):
            colours = draft.fields.get("colour", "")
            value = row[colour_option[handle]]
            if value.lower() not in colours.lower().split("/"):
                draft.fields["colour"] = f"{colours}/{value}" if colours else value
        if row.get("variant inventory qty"):
            try:
                quantity = int(float(row["variant inventory qty"]))
            except ValueError:
                quantity = 0
            policy = row.get("variant inventory policy", "").lower()
            stock.setdefault(handle, []).append(quantity > 0 or policy == "continue")
        if row.get("image src"):
            position = row.get("image position", "")
            if position and not position.isdigit():
                problems.append(
                    f"{where} line {line}: Image Position {position!r} is not a number; "
                    "the image goes last"
                )
            draft.add_image(row["image src"], int(position) if position.isdigit() else 1e9)
        if row.get("variant image"):
            draft.add_image(row["variant image"])
    for handle, in_stock in stock.items():
        drafts[handle].fields["availability"] = "in stock" if any(in_stock) else "out of stock"
    return _finish(list(drafts.values()), where, problems, "line", group=True)


def _google_rows(rows: Rows, where: str, problems: list[str]) -> list[Product]:
    return _finish(
        [_google(line, {k: [v] for k, v in row.items() if v}) for line, row in rows],
        where,
        problems,
        "line",
        group=False,
    )


def _google(line: int, fields: dict[str, list[str]]) -> _Draft:
    """A Google Merchant item (from XML, or one TSV row) as a draft."""
    names = {_key(k): v for k, v in fields.items()}

    def one(*keys: str) -> str:
        return next((names[k][0] for k in keys if names.get(k)), "")

    draft = _Draft(one("id"), line)
    price, currency = split_price(one("sale price", "price"))
    product_type = one("product type", "google product category")
    draft.fields.update(
        title=one("title"),
        description=one("description"),
        link=one("link", "mobile link"),
        price=price,
        currency=currency,
        availability=one("availability"),
        brand=one("brand"),
        colour=one("color", "colour"),
        category=product_type.split(">")[-1].strip(),
    )
    labels = [one(f"custom label {n}") for n in range(5)] + [one("gender"), one("age group")]
    draft.tags = tuple(dict.fromkeys(t for t in labels if t))
    for url in names.get("image link", [])[:1]:
        draft.add_image(url)
    for value in names.get("additional image link", []):
        for url in split_list(value):
            draft.add_image(url)
    return draft


def _woocommerce(rows: Rows, where: str, problems: list[str]) -> list[Product]:
    drafts: list[_Draft] = []
    by_ref: dict[str, _Draft] = {}
    for line, row in rows:
        if row.get("type", "").lower() == "variation":
            parent = by_ref.get(row.get("parent", ""))
            if parent is None and row.get("images"):
                problems.append(
                    f"{where} line {line}: variation of unknown parent {row.get('parent')!r};"
                    " its images are left out"
                )
            for url in split_list(row.get("images", "")) if parent else ():
                parent.add_image(url)
            continue
        draft = _Draft(row.get("sku") or row.get("id", ""), line)
        price, currency = split_price(row.get("sale price") or row.get("regular price", ""))
        stock = row.get("in stock?", "") or row.get("stock status", "")
        category = split_list(row.get("categories", ""))
        draft.fields.update(
            title=row.get("name", ""),
            description=row.get("description") or row.get("short description", ""),
            price=price,
            currency=currency,
            availability=stock,
            brand=row.get("brands", "") or row.get("brand", ""),
            category=category[0].split(">")[-1].strip() if category else "",
            link=row.get("permalink", "") or row.get("external url", ""),
        )
        for n in range(1, 6):
            if row.get(f"attribute {n} name", "").lower() in ("color", "colour"):
                draft.fields["colour"] = "/".join(
                    split_list(row.get(f"attribute {n} value(s)", ""))
                )
        draft.tags = split_list(row.get("tags", ""))
        for url in split_list(row.get("images", "")):
            draft.add_image(url)
        drafts.append(draft)
        for ref in (row.get("id"), row.get("sku")):
            if ref:
                by_ref[ref] = by_ref[f"id:{ref}"] = draft
    return _finish(drafts, where, problems, "line", group=False)


def _generic(rows: Rows, where: str, problems: list[str]) -> list[Product]:
    drafts: dict[str, _Draft] = {}
    for line, row in rows:
        urls = [u for column in IMAGE_COLUMNS for u in split_list(row.get(column, ""), ",|")]
        item_id = _pick(row, "id") or (_url_id(urls[0]) if urls else "")
        if not item_id:
            problems.append(f"{where} line {line}: no id and no image URL; row skipped")
            continue
        draft = drafts.get(item_id)
        if draft is None:
            draft = drafts[item_id] = _Draft(item_id, line)
        for name in ALIASES:
            if name not in ("id", "tags") and name not in draft.fields and _pick(row, name):
                draft.fields[name] = _pick(row, name)
        if "price" in draft.fields and "currency" not in draft.fields:
            draft.fields["price"], draft.fields["currency"] = split_price(draft.fields["price"])
            draft.fields["currency"] = draft.fields["currency"] or row.get("currency", "")
        draft.tags = tuple(dict.fromkeys((*draft.tags, *split_list(_pick(row, "tags")))))
        for url in urls:
            draft.add_image(url)
    return _finish(list(drafts.values()), where, problems, "line", group=True)


def _url_id(url: str) -> str:
    """A stable id for a product that the feed gives no id: from its first image URL."""
    return "url-" + hashlib.sha256(url.encode()).hexdigest()[:16]


_TABULAR: dict[str, Callable[[Rows, str, list[str]], list[Product]]] = {
    "shopify": _shopify,
    "google": _google_rows,
    "woocommerce": _woocommerce,
    "csv": _generic,
}


# --- JSON ----------------------------------------------------------------------------------


def _read_json(text: str, where: str, problems: list[str]) -> list[Product]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise FeedFormatError(
            f"{where} line {error.lineno}: not valid JSON ({error.msg})"
        ) from None
    if isinstance(document, dict):
        document = next((document[k] for k in ("products", "items") if k in document), None)
    if not isinstance(document, list):
        raise FeedFormatError(
            f'{where}: a JSON feed is a list of products, or {{"products": [...]}}'
        )
    drafts = []
    for number, entry in enumerate(document, start=1):
        if not isinstance(entry, dict):
            problems.append(f"{where} item {number}: not an object; left out")
            continue
        drafts.append(_json_draft(number, {_key(str(k)): v for k, v in entry.items()}))
    return _finish(drafts, where, problems, "item", group=False)


def _json_draft(number: int, entry: dict[str, Any]) -> _Draft:
    def text(name: str) -> str:
        value = next((entry[c] for c in ALIASES[name] if entry.get(c) not in (None, "")), "")
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return str(value).strip()

    draft = _Draft(text("id"), number)
    price = text("price")
    variants = entry.get("variants")
    if not price and isinstance(variants, list) and variants and isinstance(variants[0], dict):
        price = str(variants[0].get("price") or "")
    amount, currency = split_price(price)
    draft.fields.update({name: text(name) for name in ALIASES if name not in ("id", "tags")})
    draft.fields.update(
        price=amount,
        currency=currency or str(entry.get("currency") or ""),
        description=str(entry.get("body html") or draft.fields["description"]),
        category=draft.fields["category"] or str(entry.get("product type") or ""),
    )
    tags = entry.get("tags")
    draft.tags = (
        tuple(str(t) for t in tags) if isinstance(tags, list) else split_list(str(tags or ""))
    )
    for key in (
        "image",
        "image url",
        "image link",
        "images",
        "additional image link",
        "additional image links",
    ):
        values = entry.get(key)
        values = values if isinstance(values, list) else [values] if values else []
        for value in values:
            if isinstance(value, dict):
                url, position = value.get("src") or value.get("url"), value.get("position")
                if isinstance(url, str):
                    draft.add_image(url, position if isinstance(position, int) else 1e9)
            elif isinstance(value, str):
                for url in split_list(value):
                    draft.add_image(url)
    return draft


# --- shared --------------------------------------------------------------------------------


def _finish(
    drafts: list[_Draft], where: str, problems: list[str], unit: str, *, group: bool
) -> list[Product]:
    """Products from drafts: ids checked (a repeated id is a problem unless rows are `group`ed
    by id), image URLs checked, ordered and de-duplicated, text fields cleaned."""
    products: list[Product] = []
    seen: dict[str, int] = {}
    for draft in drafts:
        at = f"{where} {unit} {draft.line}"
        if not draft.id:
            problems.append(f"{at}: no id; left out")
            continue
        if draft.id in seen and not group:
            problems.append(
                f"{at}: id {draft.id!r} already used at {unit} {seen[draft.id]}; left out"
            )
            continue
        seen[draft.id] = draft.line
        urls: list[str] = []
        for _, _, url in sorted(draft.images, key=lambda image: image[:2]):
            if not is_web_url(url):
                problems.append(f"{at}: image {url[:200]!r} is not an http(s) address; left out")
            elif url not in urls:
                urls.append(url)
        if not urls:
            problems.append(f"{at}: product {draft.id!r} has no image URL; left out")
            continue
        if len(urls) > MAX_IMAGES_PER_PRODUCT:
            problems.append(
                f"{at}: {len(urls)} images, only the first {MAX_IMAGES_PER_PRODUCT} are kept"
            )
        values = draft.fields
        products.append(
            Product(
                id=draft.id,
                title=html_to_text(values.get("title", "")),
                description=html_to_text(values.get("description", ""))[:MAX_DESCRIPTION_CHARS],
                price=values.get("price", ""),
                currency=values.get("currency", ""),
                link=values.get("link", "") if is_web_url(values.get("link", "")) else "",
                availability=normalize_availability(values.get("availability", "")),
                brand=values.get("brand", ""),
                colour=values.get("colour", ""),
                category=values.get("category", ""),
                tags=draft.tags,
                images=tuple(urls[:MAX_IMAGES_PER_PRODUCT]),
                line=draft.line,
            )
        )
    return products

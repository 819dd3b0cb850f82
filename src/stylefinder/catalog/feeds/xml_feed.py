"""Read the items of an XML product feed (Google Merchant Center RSS 2.0 or Atom, with the
`g:` namespace) safely: entity declarations and external entities are refused, nothing is
fetched, and a document that breaks off keeps the items read before the break.

Parsed with the standard library's expat directly (the `defusedxml` approach, without the
dependency): a handler that refuses every entity declaration stops "billion laughs" and
external-entity (XXE) documents before any expansion.

Example:
    >>> data = b'''<rss xmlns:g="http://base.google.com/ns/1.0"><channel>
    ... <item><g:id>sku-1</g:id><g:image_link>https://shop.example/1.jpg</g:image_link></item>
    ... </channel></rss>'''
    >>> problems = []
    >>> read_xml_items(data, "feed.xml", problems)
    [(2, {'id': ['sku-1'], 'image_link': ['https://shop.example/1.jpg']})]
"""

from __future__ import annotations

from xml.parsers import expat

#: Elements that hold one product: RSS 2.0 `<item>`, Atom `<entry>`.
ITEM_ELEMENTS = frozenset({"item", "entry"})
_SEPARATOR = "\x1f"  # between a namespace URI and a local name in expat's element names


class _RefusedError(Exception):
    """Raised from an expat handler to stop a document that declares entities."""


def read_xml_items(
    data: bytes, where: str, problems: list[str]
) -> list[tuple[int, dict[str, list[str]]]]:
    """(line, fields) for each `<item>` or `<entry>`: each child element's local name (the
    `g:` prefix dropped) with the texts it has, in order (an Atom `<link href=...>` gives its
    href). Problems (a refused or broken document) are appended to `problems`.

    Example:
        >>> read_xml_items(b"<!DOCTYPE r [<!ENTITY a 'x'>]><r/>", "f.xml", problems := [])
        []
        >>> problems[0]  # doctest: +ELLIPSIS
        'f.xml line 1: the XML declares entities ...'
    """
    parser = expat.ParserCreate(namespace_separator=_SEPARATOR)
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    items: list[tuple[int, dict[str, list[str]]]] = []
    stack: list[str] = []
    current: dict[str, list[str]] | None = None
    item_depth = 0
    field: list[str] = []
    field_name: str | None = None

    def refuse(*_args: object) -> None:
        raise _RefusedError

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal current, item_depth, field_name, field
        local = name.rsplit(_SEPARATOR, 1)[-1]
        stack.append(local)
        if current is None and local in ITEM_ELEMENTS:
            current, item_depth = {}, len(stack)
            items.append((parser.CurrentLineNumber, current))
        elif current is not None and len(stack) == item_depth + 1:
            field_name, field = local, []
            if local == "link" and "href" in attrs:
                current.setdefault("link", []).append(attrs["href"].strip())
                field_name = None

    def end(_name: str) -> None:
        nonlocal current, field_name
        if current is not None and len(stack) == item_depth + 1 and field_name is not None:
            text = "".join(field).strip()
            if text:
                current.setdefault(field_name, []).append(text)
            field_name = None
        if current is not None and len(stack) == item_depth:
            current = None
        stack.pop()

    def text(data: str) -> None:
        if field_name is not None:
            field.append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    try:
        parser.Parse(data, True)
    except _RefusedError:
        problems.append(
            f"{where} line {parser.CurrentLineNumber}: the XML declares entities (a DTD with "
            "<!ENTITY>), which a product feed never needs; refused, nothing read"
        )
        return []
    except expat.ExpatError as error:
        problems.append(
            f"{where} line {error.lineno}: not well-formed XML ({expat.ErrorString(error.code)});"
            f" stopped there, {len(items)} items read before"
        )
        if current is not None and items:  # the item cut off by the error is not complete
            items.pop()
    return items

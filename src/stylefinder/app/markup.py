"""Text from the catalog, the shopper or the model, made safe for Streamlit's Markdown and HTML,
and the recognition panel's Markdown and colour chips made with it.

Streamlit renders captions, errors, widget labels and tooltips as Markdown: a metadata value
`![x](http://host/pixel.png)` would make every shopper's browser fetch a remote image (a
tracking pixel) and `[Click](http://evil)` would be a live link. `plain` escapes such text so it
shows exactly as written; `html_text` does the same for text inside HTML written with
`unsafe_allow_html=True`.

Example:
    >>> plain("[Click](http://evil)")
    '\\\\[Click\\\\]\\\\(http\\\\:\\u2060\\\\/\\\\/evil\\\\)'
    >>> html_text('<b>"x"</b>')
    '&#60;b&#62;&#34;x&#34;&#60;&#47;b&#62;'
"""

from __future__ import annotations

import re

from stylefinder.recognize.recognition import Recognition
from stylefinder.recognize.taxonomy import UNKNOWN

# Every ASCII punctuation character: CommonMark lets a backslash escape any of them, and one so
# escaped is never markup (links, images, emphasis, HTML, math, Streamlit's :colour[...]).
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# In HTML: everything but letters, digits and spaces, as numeric references, which Markdown
# shows as literal text (never as markup) and HTML decodes in text and attributes alike.
_NOT_WORD = re.compile(r"[^0-9A-Za-z \u00a0-\U0010ffff]")
# GFM also makes links of URLs and e-mail addresses found in the text once escapes are read
# ("http://a.b", "www.a.b", "x@a.b"); an invisible word joiner after ":", "@" and "www" stops it.
WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"[:@]|(?i:www)(?=\.)")
MAX_CHARS = 300


def plain(value: object, max_chars: int | None = None) -> str:
    """`value` as Markdown that shows its text as written, on one line (line breaks and tabs
    become spaces), cut to `max_chars` characters with an ellipsis; URLs in it are not links.

    Example:
        >>> plain("**50% off**\\nnow")
        '\\\\*\\\\*50\\\\% off\\\\*\\\\* now'
    """
    text = " ".join(str(value).split())
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return _PUNCTUATION.sub(r"\\\1", _break_autolinks(text))


def unescape(markdown: str) -> str:
    """The text that `plain` escaped (backslash escapes and word joiners removed).

    Example:
        >>> unescape(plain("[x](y)"))
        '[x](y)'
    """
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace(WORD_JOINER, "")


def html_text(value: object) -> str:
    """`value` for HTML that Streamlit renders through Markdown (`unsafe_allow_html=True`),
    in text or in a quoted attribute: only letters, digits, spaces and non-ASCII characters
    are left as they are.

    Example:
        >>> html_text("navy & [x](y)")
        'navy &#38; &#91;x&#93;&#40;y&#41;'
    """
    text = _break_autolinks(" ".join(str(value).split()))
    return _NOT_WORD.sub(lambda m: f"&#{ord(m.group())};", text)


def _break_autolinks(text: str) -> str:
    """`text` with a word joiner after each ":", "@" and "www" (see `WORD_JOINER`)."""
    return _AUTOLINK.sub(lambda m: m.group() + WORD_JOINER, text)


def category_markdown(recognition: Recognition) -> str:
    """The top categories as markdown: the first in bold, each with its probability (the labels
    come from the shop's classifier, so from its metadata: escaped)."""
    if recognition.category == UNKNOWN:
        return "**Category unknown**"
    parts = [
        f"{plain(label)} {_percent(probability)}" for label, probability in recognition.categories
    ]
    return "  \n".join([f"**{parts[0]}**", *parts[1:]])


def _percent(share: float) -> str:
    """A share as a whole percentage, "<1%" and ">99%" rather than a misleading 0% or 100%."""
    if 0 < share < 0.005:
        return "<1%"
    if 0.995 <= share < 1:
        return ">99%"
    return f"{share:.0%}"


def colour_chips(recognition: Recognition) -> str:
    """HTML badges for the colours: a swatch of the measured colour, the name and its share (the
    name as character references: never HTML or Markdown)."""
    chips = []
    for colour in recognition.colours:
        rgb = ",".join(str(int(c)) for c in colour.rgb)
        name = html_text(colour.name)
        chips.append(
            f'<span class="colour-chip" title="{name}: rgb({rgb})" style="display:inline-flex;'
            "align-items:center;gap:0.3em;margin:0 0.3em 0.3em 0;padding:0.05em 0.55em 0.05em "
            "0.3em;border:1px solid rgba(49,51,63,0.2);border-radius:1em;font-size:0.85em;"
            f'white-space:nowrap"><span style="width:0.9em;height:0.9em;border-radius:50%;'
            f'background:rgb({rgb});border:1px solid rgba(49,51,63,0.3)"></span>'
            f"{name} {_percent(colour.share)}</span>"
        )
    return f'<div class="colour-chips">{"".join(chips)}</div>'

"""Catalog text made safe for Streamlit's Markdown and HTML: escaped text shows as written, and
the recognition panel's Markdown and colour chips never carry markup from their labels."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from stylefinder.app.markup import (
    WORD_JOINER,
    category_markdown,
    colour_chips,
    html_text,
    plain,
    unescape,
)
from stylefinder.recognize.colours import ColourShare
from stylefinder.recognize.recognition import Recognition

# What GFM (remark-gfm, in Streamlit's browser code) turns into links in text once escapes and
# character references are read: URLs, www. addresses and e-mail addresses.
AUTOLINKS = re.compile(r"(?i:https?://|www(?=\.))[-.\w]+|[-.\w+]+@[-\w]+(?:\.[-\w]+)+")


def unescaped_markup(markdown: str) -> str:
    """`markdown` without its backslash escapes (each with the character it escapes)."""
    return re.sub(r"\\.", "", markdown)


def as_read(markdown: str) -> str:
    """The text Markdown reads from `markdown`: escapes and character references resolved."""
    text = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)
    return re.sub(r"&#(\d+);", lambda m: chr(int(m.group(1))), text)


EVIL = "[Click](http://evil.example) ![x](http://host/pixel.png) <img src=x> :red[boo] $x$ **b**"


@given(st.text().map(lambda text: text.replace(WORD_JOINER, "")))
def test_plain_shows_the_text_as_written(text: str):
    escaped = plain(text)
    assert unescape(escaped) == " ".join(text.split())
    assert "\n" not in escaped
    # Every ASCII punctuation character is escaped: none can start markup.
    assert not re.search(r"[!-/:-@\[-`{-~]", unescaped_markup(escaped))


def test_urls_in_text_are_not_autolinks():
    for text in ("http://evil.example/x", "see WWW.evil.example", "me@evil.example", EVIL):
        assert AUTOLINKS.search(text)
        assert not AUTOLINKS.search(as_read(plain(text))), plain(text)
        assert not AUTOLINKS.search(as_read(html_text(text))), html_text(text)
        assert unescape(plain(text)) == text


def test_plain_cuts_long_text():
    assert plain("a" * 500, 300) == "a" * 299 + "…"
    assert plain("a" * 300, 300) == "a" * 300


@given(st.text())
def test_html_text_leaves_no_markup(text: str):
    escaped = html_text(text)
    assert not re.search(r"[\[\]()!<>&\"'`*_\\:]", re.sub(r"&#\d+;", "", escaped))


def test_recognition_labels_and_colour_names_are_not_markup():
    recognition = Recognition(
        categories=[(EVIL, 0.7), ("Coat", 0.2)],
        source="classifier",
        colours=[ColourShare(EVIL, 0.6, (10, 20, 30)), ColourShare("navy", 0.4, (0, 0, 90))],
    )
    markdown = category_markdown(recognition)
    assert not re.search(r"[\[\]()!<>:$]", unescaped_markup(markdown))
    assert unescape(markdown) == f"**{' '.join(EVIL.split())} 70%**  \nCoat 20%"
    chips = colour_chips(recognition)
    assert "<img" not in chips and "](" not in chips and "[Click" not in chips
    assert "&#91;Click&#93;&#40;http&#58;" in chips  # shows as the text
    assert not AUTOLINKS.search(as_read(chips))
    assert chips.count("<span") == 4 and "navy 40%" in chips

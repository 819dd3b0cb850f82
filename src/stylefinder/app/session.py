"""The web app's session state: the query, the anonymous shopper, and the widget callbacks
that change them (Streamlit runs a callback before it draws the page again).

Each browser session is an anonymous shopper (`web-` + random hex): the like and dislike buttons
store its events in the index's event store.

Example:
    >>> too_large_message("photo.jpg", 12_300_000)  # doctest: +SKIP
    'photo.jpg is 12.3 MB; the limit is 10 MB. Choose a smaller photo, or save it as a JPEG.'
"""

from __future__ import annotations

import os
import random
import secrets
from dataclasses import dataclass

import streamlit as st

from stylefinder.app import upload_ceiling_mb
from stylefinder.engine import Engine
from stylefinder.errors import StylefinderError

MAX_UPLOAD_ENV = "STYLEFINDER_MAX_UPLOAD_MB"


@dataclass(frozen=True)
class Query:
    """What the user asked with: uploaded bytes, or a catalog item id."""

    label: str
    data: bytes | None = None
    item_id: str | None = None


def max_upload_mb() -> float:
    """The largest upload (MB) the app takes: $STYLEFINDER_MAX_UPLOAD_MB (set by `stylefinder
    app --max-upload-mb`), else 10; read on every run of the page."""
    return float(os.environ.get(MAX_UPLOAD_ENV, "10"))


def upload_ceiling() -> int:
    """The largest upload (MB) Streamlit passes to the app: above the limit, so that a file over
    the limit reaches `on_upload` and its message (never above the server's own cap)."""
    return min(upload_ceiling_mb(max_upload_mb()), int(st.get_option("server.maxUploadSize")))


def too_large_message(name: str, size: int) -> str:
    """What a shopper reads when an upload is over the limit, e.g. "photo.jpg is 12.3 MB; the
    limit is 10 MB." """
    return (
        f"{name} is {size / 1e6:.1f} MB; the limit is {max_upload_mb():g} MB. "
        "Choose a smaller photo, or save it as a JPEG."
    )


def shopper_id() -> str:
    """This browser session's anonymous shopper id (`web-` + random hex), made on first use."""
    if "user_id" not in st.session_state:
        st.session_state.user_id = f"web-{secrets.token_hex(8)}"
    return st.session_state.user_id


def shopper_opinions(engine: Engine) -> dict[str, str]:
    """The session shopper's latest like or dislike of each item."""
    events = engine.events.events(shopper_id())  # oldest first: later events overwrite
    return {e.item_id: e.kind for e in events if e.kind in ("like", "dislike")}


def set_item_query(item_id: str) -> None:
    """Make catalog item `item_id` the query, on the "Find similar" page."""
    st.session_state.upload_error = None  # a new query: an earlier upload's error is old news
    st.session_state.query = Query(label=f"catalog item {item_id}", item_id=item_id)
    st.session_state.page = "Find similar"


def on_upload(key: str) -> None:
    """A new upload (or photo) becomes the query; one over the size limit gets a message
    naming its size and the limit instead. Streamlit passes files up to `upload_ceiling_mb`
    to the app, so that files over the limit reach this check."""
    uploaded = st.session_state.get(key)
    st.session_state.upload_error = None
    if uploaded is None:  # the file was removed from the uploader
        return
    if uploaded.size > max_upload_mb() * 1_000_000:
        st.session_state.query = None
        st.session_state.upload_error = too_large_message(uploaded.name, uploaded.size)
        return
    st.session_state.query = Query(label=uploaded.name, data=uploaded.getvalue())


def on_item_id() -> None:
    """The item id typed in the "Pick a catalog item" tab becomes the query."""
    item_id = st.session_state.item_id.strip()
    if item_id:
        set_item_query(item_id)


def on_random_item(engine: Engine) -> None:
    """A random catalog item becomes the query."""
    total = len(engine)
    if total:
        page, _ = engine.browse(offset=random.randrange(total), limit=1)
        if page:
            set_item_query(page[0].id)


def on_same_category() -> None:
    """Keep the "Same category only" toggle's value while the toggle is not shown."""
    st.session_state.same_category = st.session_state.same_category_toggle


def on_feedback(engine: Engine, item_id: str, kind: str, current: str | None) -> None:
    """Store a like or dislike of the session shopper (nothing when it is already their
    latest opinion of the item)."""
    if kind == current:
        return
    try:
        engine.record_event(shopper_id(), item_id, kind)
    except StylefinderError as exc:  # the item went from the index since the page was drawn
        st.session_state.feedback_error = str(exc)


def on_forget(engine: Engine) -> None:
    """Erase the session shopper's events ("Forget me")."""
    removed = engine.events.delete_user(shopper_id())["events"]
    st.toast(f"Forgot this session's {plural(removed, 'event')}.", icon=":material/check:")


def plural(n: int, word: str) -> str:
    """`n` and `word`, plural unless `n` is 1.

    Example:
        >>> plural(1, "like"), plural(3, "like")
        ('1 like', '3 likes')
    """
    return f"{n} {word}" + ("" if n == 1 else "s")

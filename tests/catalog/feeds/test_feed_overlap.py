"""A feed's photos are embedded while the others still download (`stylefinder.jobs.embed_ahead`),
with the vectors and colours a local build gives, against the loopback server."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from stylefinder.catalog.scan import file_hash
from stylefinder.index.store import IndexStore
from stylefinder.jobs.build import build_index
from stylefinder.jobs.embed_ahead import EmbedAhead
from stylefinder.jobs.feed import sync_feed


class RecordingEmbedder:
    """The real embedder, calling `on_batch` as each batch of vectors comes out."""

    def __init__(self, real, on_batch) -> None:
        self.real = real
        self.on_batch = on_batch

    def __getattr__(self, name: str):
        return getattr(self.real, name)

    def embed_stream(self, sources, **options):
        for batch in self.real.embed_stream(sources, **options):
            self.on_batch(batch)
            yield batch


def gated_route(data: bytes, gate: threading.Event, wait_s: float):
    """An image answered only once `gate` is set (or after `wait_s`)."""

    def route(handler) -> None:
        gate.wait(timeout=wait_s)
        handler.image(data)

    return route


def csv_feed(server, rows: list[tuple[str, str]]) -> str:
    lines = ["id,title,image_url"] + [f"{pid},{pid} title,{url}" for pid, url in rows]
    return server.serve_feed("/feed.csv", "\n".join(lines) + "\n")


def vectors_of(index_dir) -> dict[str, np.ndarray]:
    snapshot = IndexStore.open(index_dir).snapshot()
    return {item.id: snapshot.vector_of(item.id) for item in snapshot.items}


def test_the_last_photo_comes_only_once_the_first_ones_are_embedded(
    feed_server, fast_options, embedder, tmp_path
):
    # the server holds one photo back until a batch of the others is embedded (one comes out
    # once a few more are on their way): run one after the other, that photo would time out
    # (read timeout 3 s, held up to 8 s)
    gate = threading.Event()
    feed_server.routes["/late.png"] = gated_route(feed_server.image_bytes(40), gate, 8.0)
    rows = [(f"p{n}", feed_server.image_url(n)) for n in range(60)]
    url = csv_feed(feed_server, [*rows, ("late", feed_server.url("/late.png"))])
    options = dataclasses.replace(fast_options, read_timeout=3.0, deadline=30.0, retries=0)
    recording = RecordingEmbedder(embedder, lambda batch: gate.set())
    summary = sync_feed(
        url, tmp_path / "index", download=options, embedder=recording, recognize=False
    )
    assert summary.failed == {}
    assert summary.downloaded == 61
    assert summary.index.embedded == 61 and summary.index.embedded_ahead == 61
    assert "late#1" in vectors_of(tmp_path / "index")


def test_vectors_and_colours_embedded_ahead_are_a_local_builds(
    feed_server, fast_options, embedder, tmp_path
):
    url = csv_feed(feed_server, [(f"p{n}", feed_server.image_url(n)) for n in range(20)])
    summary = sync_feed(url, tmp_path / "index", download=fast_options, embedder=embedder)
    assert summary.index.embedded_ahead == 20 and summary.index.recognized == 20
    local = build_index(
        summary.fetch.catalog_dir,
        tmp_path / "local",
        metadata_csv=summary.fetch.metadata_csv,
        embedder=embedder,
    )
    assert local.embedded == 20 and local.embedded_ahead == 0
    ahead, built = vectors_of(tmp_path / "index"), vectors_of(tmp_path / "local")
    assert ahead.keys() == built.keys()
    for item_id, vector in ahead.items():
        np.testing.assert_allclose(vector, built[item_id], atol=1e-5)
    colours = {
        i.id: i.metadata["colours"] for i in IndexStore.open(tmp_path / "index").snapshot().items
    }
    local_colours = {
        i.id: i.metadata["colours"] for i in IndexStore.open(tmp_path / "local").snapshot().items
    }
    assert colours == local_colours
    again = sync_feed(url, tmp_path / "index", download=fast_options, embedder=embedder)
    assert again.downloaded == 0 and again.index.embedded == 0  # nothing new: nothing embedded


class BrokenModel(RecordingEmbedder):
    """An embedder whose model fails after its first batch."""

    def embed_stream(self, sources, **options):
        for n, batch in enumerate(self.real.embed_stream(sources, **options)):
            if n:
                raise RuntimeError("the model broke")
            yield batch


def test_a_model_that_fails_while_downloading_leaves_no_index(
    feed_server, fast_options, embedder, tmp_path
):
    url = csv_feed(feed_server, [(f"p{n}", feed_server.image_url(n)) for n in range(40)])
    broken = BrokenModel(embedder, None)
    with pytest.raises(RuntimeError, match="the model broke"):
        sync_feed(url, tmp_path / "index", download=fast_options, embedder=broken, recognize=False)
    assert not IndexStore.exists(tmp_path / "index")
    feed_server.reset()
    summary = sync_feed(url, tmp_path / "index", download=fast_options, embedder=embedder)
    assert summary.index.embedded == 40 and summary.downloaded == 0  # the photos were kept


def test_only_what_fits_is_embedded_ahead_and_the_build_embeds_the_rest(demo, embedder, tmp_path):
    files = sorted((demo.root / "images").glob("*.png"))[:10]
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    for path in files:
        (catalog / path.name).write_bytes(path.read_bytes())
    room = 3 * 4 * embedder.space.dim  # three vectors
    with EmbedAhead(embedder, recognize=False, max_bytes=room) as ahead:
        for path in sorted(catalog.iterdir()):
            ahead.add(file_hash(path), path)
        prepared = ahead.finish()
    assert len(prepared) == 3
    summary = build_index(
        catalog, tmp_path / "index", embedder=embedder, recognize=False, prepared=prepared
    )
    assert summary.embedded == 10 and summary.embedded_ahead == 3

"""Concurrent writers and readers leave a consistent index; fuzzed requests never get a 500."""

from __future__ import annotations

import threading
from urllib.parse import quote

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serve.conftest import ADMIN, png
from stylefinder import Engine

HEADERS = {"X-API-Key": ADMIN}


def test_concurrent_writers_and_readers(client, api_index, demo):
    writers, readers, rounds = 8, 8, 4
    errors: list[str] = []
    kept: set[str] = set()
    deleted: set[str] = set()
    lock = threading.Lock()
    query = demo.queries[0][0].read_bytes()

    def write(worker: int) -> None:
        for n in range(rounds):
            colour = (30 * worker % 255, 20 * n % 255, 120)
            for item_id in (f"w{worker}-{n}-keep", f"w{worker}-{n}-drop"):
                r = client.post(
                    "/v1/items",
                    headers=HEADERS,
                    files={"image": ("a.png", png(colour))},
                    data={"id": item_id, "metadata": '{"category": "Swatch"}'},
                )
                if r.status_code not in (200, 201):
                    errors.append(f"add {item_id}: {r.status_code} {r.text}")
            r = client.delete(f"/v1/items/w{worker}-{n}-drop", headers=HEADERS)
            if r.status_code != 204:
                errors.append(f"delete: {r.status_code} {r.text}")
            with lock:
                kept.add(f"w{worker}-{n}-keep")
                deleted.add(f"w{worker}-{n}-drop")

    def read() -> None:
        for _ in range(rounds * 2):
            with lock:
                deleted_before = set(deleted)
            r = client.post(
                "/v1/search",
                files={"image": ("q.png", query)},
                data={"k": "20", "filters": '{"category": ["Swatch"]}'},
            )
            if r.status_code != 200:
                errors.append(f"search: {r.status_code} {r.text}")
                continue
            gone = deleted_before & {x["id"] for x in r.json()["results"]}
            if gone:  # deleted before this search began, yet returned
                errors.append(f"search returned deleted items {gone}")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    threads += [threading.Thread(target=read) for _ in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    for item_id in sorted(kept)[:5]:
        assert client.get(f"/v1/items/{item_id}").status_code == 200
    listed = client.get("/v1/items", params={"filter": "category:Swatch", "limit": 500}).json()
    assert {i["id"] for i in listed["items"]} == kept
    reopened = Engine.open(api_index)  # the index reloads cleanly
    snap = reopened.snapshot
    assert set(snap.row_of) >= kept and not set(snap.row_of) & deleted
    assert len(snap) == 1000 + len(kept) and snap.vectors.shape == (snap.size, snap.header.dim)
    assert snap.index.live_rows().tolist() == snap.items.rows().tolist()  # empty rows skipped
    assert np.allclose(np.linalg.norm(np.asarray(snap.vectors), axis=1), 1.0, atol=1e-4)
    stored = {p.name for p in (api_index / "images").iterdir()}
    assert stored == {reopened.item(i).path.split("/")[-1] for i in kept}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: __import__("json").dumps(v).encode()),
    st.fixed_dictionaries(
        {"image_base64": st.text(max_size=40), "k": json_values, "filters": json_values}
    ).map(lambda v: __import__("json").dumps(v).encode()),
)
content_types = st.sampled_from(
    [
        "application/json",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "text/plain",
        "image/png",
        "",
    ]
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, content_type=content_types, route=st.sampled_from(["/v1/search", "/v1/items"]))
def test_fuzzed_bodies_never_get_a_500(client, body, content_type, route):
    response = client.post(route, content=body, headers={"content-type": content_type, **HEADERS})
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert "error" in response.json()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    image=st.binary(max_size=200),
    fields=st.dictionaries(
        st.sampled_from(["k", "filters", "id", "metadata", "x"]), st.text(max_size=30), max_size=4
    ),
    route=st.sampled_from(["/v1/search", "/v1/items"]),
)
def test_fuzzed_multipart_never_gets_a_500(client, image, fields, route):
    response = client.post(route, files={"image": ("f.bin", image)}, data=fields, headers=HEADERS)
    assert response.status_code < 500, (response.status_code, response.text)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(item_id=st.text(min_size=1, max_size=40), k=st.integers(-5, 200))
def test_fuzzed_item_routes_never_get_a_500(client, item_id, k):
    quoted = quote(item_id, safe="")
    for response in (
        client.get(f"/v1/items/{quoted}"),
        client.get(f"/v1/items/{quoted}/similar", params={"k": k}),
        client.get("/v1/items", params={"offset": k, "limit": k, "filter": item_id}),
    ):
        assert response.status_code < 500, (response.status_code, response.text)

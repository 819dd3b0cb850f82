"""The HTTP API through FastAPI's TestClient: every route, every error, the auth rules."""

from __future__ import annotations

import base64
import json

from imagefactory import bomb_png
from serve.conftest import ADMIN, READER, png

ADMIN_HEADERS = {"X-API-Key": ADMIN}


def _file(demo, index: int = 0) -> bytes:
    path, _ = demo.queries[index]
    return path.read_bytes()


# -- operations ------------------------------------------------------------------------------------


def test_health_ready_and_metrics(client, demo):
    assert client.get("/healthz").json() == {"status": "ok", "items": None, "backbone": None}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["items"] == 1000
    client.post("/v1/search", files={"image": ("q.png", _file(demo), "image/png")})
    client.get("/v1/items/nope")
    text = client.get("/metrics").text
    assert (
        'stylefinder_http_requests_total{method="POST",route="/v1/search",status="200"} 1.0' in text
    )
    assert 'route="/v1/items/{item_id:path}",status="404"' in text
    assert "stylefinder_http_request_duration_seconds_bucket" in text
    assert "stylefinder_index_items 1000.0" in text


def test_openapi_documents_every_route(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for route in (
        "/v1/search",
        "/v1/items",
        "/v1/items/{item_id}",
        "/v1/items/{item_id}/similar",
        "/v1/items/{item_id}/image",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert route in paths, route
    body = paths["/v1/search"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert "delete" in paths["/v1/items/{item_id}"]


# -- search ----------------------------------------------------------------------------------------


def test_search_multipart_and_json_agree(client, demo):
    data = _file(demo, 3)
    multipart = client.post(
        "/v1/search", files={"image": ("q.png", data, "image/png")}, data={"k": "7"}
    )
    assert multipart.status_code == 200
    results = multipart.json()["results"]
    assert len(results) == 7
    assert set(results[0]) == {"id", "score", "metadata", "display", "image_url"}
    as_json = client.post(
        "/v1/search", json={"image_base64": base64.b64encode(data).decode(), "k": 7}
    )
    assert as_json.status_code == 200
    assert [r["id"] for r in as_json.json()["results"]] == [r["id"] for r in results]
    image = client.get(results[0]["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"


def test_search_filters(client, demo):
    response = client.post(
        "/v1/search",
        files={"image": ("q.png", _file(demo), "image/png")},
        data={"filters": json.dumps({"category": ["Bag", "Sandal"]})},
    )
    categories = {r["metadata"]["category"] for r in response.json()["results"]}
    assert response.status_code == 200 and categories <= {"Bag", "Sandal"}
    response = client.post(
        "/v1/search",
        json={
            "image_base64": base64.b64encode(_file(demo)).decode(),
            "filters": {"category": "Bag"},
        },
    )
    assert {r["metadata"]["category"] for r in response.json()["results"]} == {"Bag"}


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    return body


def test_search_errors_are_4xx_json(make_client, demo):
    client = make_client(max_upload_bytes=50_000)
    url = "/v1/search"
    good = _file(demo)
    for k in ("0", "101", "many"):
        _error(client.post(url, files={"image": ("q.png", good)}, data={"k": k}), 422, "invalid_k")
    _error(client.post(url, files={"image": ("q.jpg", b"not an image")}), 422, "bad_image")
    _error(
        client.post(url, files={"image": ("q.jpg", b"\xff\xd8\xff\xe0broken")}), 422, "bad_image"
    )
    _error(client.post(url, files={"image": ("q.png", b"")}), 422, "bad_image")
    _error(
        client.post(url, files={"image": ("b.png", bomb_png(30_000, 30_000))}),
        413,
        "image_too_large",
    )
    _error(client.post(url, files={"image": ("big.png", bytes(60_000))}), 413, "upload_too_large")
    _error(
        client.post(url, content=bytes(200_000), headers={"content-type": "image/png"}),
        413,
        "upload_too_large",
    )
    _error(client.post(url, data={"k": "5"}, files={"other": ("x", b"1")}), 422, "missing_query")
    _error(
        client.post(url, content=b"{not json", headers={"content-type": "application/json"}),
        422,
        "invalid_request",
    )
    _error(client.post(url, json={"image_base64": "!!!"}), 422, "invalid_base64")
    _error(client.post(url, json={"image_base64": "AAAA", "k": 500}), 422, "invalid_request")
    _error(client.post(url, json={"image_base64": "AAAA", "colour": 1}), 422, "invalid_request")
    _error(
        client.post(url, content=b"hello", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    _error(
        client.post(url, files={"image": ("q.png", good)}, data={"filters": "[1]"}),
        422,
        "invalid_filters",
    )
    _error(
        client.post(url, files={"image": ("q.png", good)}, data={"filters": "{"}),
        422,
        "invalid_filters",
    )
    _error(client.get("/v1/nothing"), 404, "not_found")
    _error(client.put(url), 405, "method_not_allowed")


def test_request_timeout_answers_504(make_client, demo):
    client = make_client(request_timeout=0.000_001)
    _error(client.post("/v1/search", files={"image": ("q.png", _file(demo))}), 504, "timeout")


# -- items -----------------------------------------------------------------------------------------


def test_items_read_routes(client):
    item = client.get("/v1/items/fmnist-test-00017").json()["item"]
    assert item["metadata"]["category"] and item["source"] == "catalog" and len(item["hash"]) == 64
    _error(client.get("/v1/items/nope"), 404, "unknown_item")
    similar = client.get("/v1/items/fmnist-test-00017/similar", params={"k": 3}).json()
    assert len(similar["results"]) == 3
    assert "fmnist-test-00017" not in [r["id"] for r in similar["results"]]
    _error(
        client.get("/v1/items/fmnist-test-00017/similar", params={"k": 0}), 422, "invalid_request"
    )
    _error(client.get("/v1/items/nope/similar"), 404, "unknown_item")
    own = item["metadata"]["category"]
    same = client.get(
        "/v1/items/fmnist-test-00017/similar", params={"k": 4, "filter": f"category:{own}"}
    ).json()["results"]
    nearest = client.get("/v1/items/fmnist-test-00017/similar", params={"k": 100}).json()
    # the unfiltered order, less the other categories
    assert [r["id"] for r in same] == [
        r["id"] for r in nearest["results"] if r["metadata"]["category"] == own
    ][:4]
    other = "Bag" if own != "Bag" else "Coat"
    others = client.get(
        "/v1/items/fmnist-test-00017/similar", params={"k": 4, "filter": f"category:{other}"}
    ).json()["results"]
    assert [r["metadata"]["category"] for r in others] == [other] * 4
    _error(
        client.get("/v1/items/fmnist-test-00017/similar", params={"filter": "category"}),
        422,
        "invalid_filter",
    )
    _error(client.get("/v1/items/nope/image"), 404, "unknown_item")

    page = client.get("/v1/items", params={"offset": 990, "limit": 50}).json()
    assert page["total"] == 1000 and len(page["items"]) == 10
    bags = client.get("/v1/items", params={"filter": "category:Bag", "limit": 500}).json()
    assert bags["total"] == 100 and {i["metadata"]["category"] for i in bags["items"]} == {"Bag"}
    _error(client.get("/v1/items", params={"filter": "category"}), 422, "invalid_filter")
    _error(client.get("/v1/items", params={"limit": 0}), 422, "invalid_request")


def test_add_replace_delete_with_the_admin_key(client):
    red, red_again = png((220, 20, 20)), png((225, 25, 20), size=(44, 62))
    created = client.post(
        "/v1/items",
        headers=ADMIN_HEADERS,
        files={"image": ("whatever-name.png", red, "image/png")},
        data={"id": "sku/red-1", "metadata": json.dumps({"category": "Swatch", "price": 10})},
    )
    assert created.status_code == 201, created.text
    metadata = created.json()["item"]["metadata"]
    assert metadata["category"] == "Swatch" and metadata["price"] == 10  # numbers stay numbers
    search = client.post("/v1/search", files={"image": ("r.png", red_again)}).json()["results"]
    assert search[0]["id"] == "sku/red-1"  # visible to the next search, no restart
    assert client.get("/v1/items/sku/red-1/image").content == red

    replaced = client.post(
        "/v1/items",
        headers={"Authorization": f"Bearer {ADMIN}"},
        json={
            "id": "sku/red-1",
            "image_base64": base64.b64encode(red).decode(),
            "metadata": {"category": "Scarf"},
        },
    )
    assert replaced.status_code == 200 and replaced.json()["created"] is False
    assert client.get("/v1/items/sku/red-1").json()["item"]["metadata"]["category"] == "Scarf"

    assert client.delete("/v1/items/sku/red-1", headers=ADMIN_HEADERS).status_code == 204
    _error(client.get("/v1/items/sku/red-1"), 404, "unknown_item")
    search = client.post("/v1/search", files={"image": ("r.png", red_again)}).json()["results"]
    assert "sku/red-1" not in [r["id"] for r in search]
    _error(client.delete("/v1/items/sku/red-1", headers=ADMIN_HEADERS), 404, "unknown_item")


def test_writes_persist_in_the_index_directory(client, api_index):
    from stylefinder import Engine

    client.post(
        "/v1/items", headers=ADMIN_HEADERS, files={"image": ("a.png", png())}, data={"id": "kept"}
    )
    client.delete("/v1/items/fmnist-test-00000", headers=ADMIN_HEADERS)
    reopened = Engine.open(api_index)
    assert (
        "kept" in reopened.snapshot.row_of and "fmnist-test-00000" not in reopened.snapshot.row_of
    )
    assert len(reopened) == 1000
    stored = list((api_index / "images").iterdir())
    assert len(stored) == 1 and stored[0].name.endswith(".png") and "a.png" not in stored[0].name


def test_bad_writes_change_nothing(client):
    before = client.get("/v1/items", params={"limit": 1}).json()["total"]
    url = "/v1/items"
    for headers in (
        {},
        {"X-API-Key": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": READER},
    ):
        _error(
            client.post(url, headers=headers, files={"image": ("a.png", png())}, data={"id": "x"}),
            401,
            "unauthorized",
        )
        _error(client.delete("/v1/items/fmnist-test-00001", headers=headers), 401, "unauthorized")
    _error(
        client.post(
            url, headers=ADMIN_HEADERS, files={"image": ("a.png", b"junk")}, data={"id": "x"}
        ),
        422,
        "bad_image",
    )
    _error(
        client.post(url, headers=ADMIN_HEADERS, files={"image": ("a.png", png())}),
        422,
        "missing_id",
    )
    _error(
        client.post(
            url,
            headers=ADMIN_HEADERS,
            files={"image": ("a.png", png())},
            data={"id": "x", "metadata": "[1, 2]"},
        ),
        422,
        "invalid_request",
    )
    _error(
        client.post(
            url,
            headers=ADMIN_HEADERS,
            files={"image": ("a.png", png())},
            data={"id": "x", "metadata": json.dumps({"k": {"nested": 1}})},
        ),
        422,
        "invalid_request",
    )
    _error(
        client.post(url, headers=ADMIN_HEADERS, json={"id": "", "image_base64": "AAAA"}),
        422,
        "invalid_request",
    )
    assert client.get("/v1/items", params={"limit": 1}).json()["total"] == before
    _error(client.get("/v1/items/x"), 404, "unknown_item")
    assert client.get("/v1/items/fmnist-test-00001").status_code == 200


def test_writes_are_disabled_without_an_admin_key(make_client):
    client = make_client(admin_key=None)
    _error(
        client.post(
            "/v1/items", headers=ADMIN_HEADERS, files={"image": ("a.png", png())}, data={"id": "x"}
        ),
        403,
        "writes_disabled",
    )


def test_a_read_key_protects_reads(make_client, demo):
    client = make_client(read_key=READER)
    _error(client.get("/v1/items/fmnist-test-00017"), 401, "unauthorized")
    _error(client.post("/v1/search", files={"image": ("q.png", _file(demo))}), 401, "unauthorized")
    _error(
        client.get("/v1/items/fmnist-test-00017", headers={"X-API-Key": "nope"}),
        401,
        "unauthorized",
    )
    assert (
        client.get("/v1/items/fmnist-test-00017", headers={"X-API-Key": READER}).status_code == 200
    )
    assert client.get("/v1/items/fmnist-test-00017", headers=ADMIN_HEADERS).status_code == 200
    assert client.get("/healthz").status_code == 200  # operations stay open


def test_items_and_results_carry_the_display_settings(make_client, api_index, demo):
    from stylefinder.recommend.display import write_display

    write_display(api_index, {"title": "category", "hidden": ("colours",)})
    client = make_client()
    item = client.get("/v1/items/fmnist-test-00017").json()["item"]
    assert item["display"]["title"] == item["metadata"]["category"]
    assert "colours" not in item["display"]["details"] and "colours" in item["metadata"]
    assert item["display"].get("price") is None and item["display"].get("link") is None
    with open(demo.queries[0][0], "rb") as f:
        results = client.post("/v1/search", files={"image": f}, data={"k": "3"}).json()
    assert all(r["display"]["title"] == r["metadata"]["category"] for r in results["results"])


def test_an_image_on_object_storage_is_served_from_there(make_client, tmp_path):
    """An item indexed from a `file://` URI (read through pyarrow, as `s3://` is) is served by
    `GET /v1/items/{id}/image` from its store."""
    import pytest

    pytest.importorskip("pyarrow")
    from fakes import FakeEmbedder
    from stylefinder.jobs.build import build_index

    (tmp_path / "photos").mkdir()
    picture = tmp_path / "photos" / "red.png"
    picture.write_bytes(png())
    listing = tmp_path / "remote.txt"
    listing.write_text(picture.as_uri() + "\n")
    build_index(listing, tmp_path / "ix", embedder=FakeEmbedder())
    client = make_client(tmp_path / "ix")
    answer = client.get(f"/v1/items/{picture.as_uri()}/image", headers={"X-API-Key": READER})
    assert answer.status_code == 200 and answer.content == picture.read_bytes()
    picture.unlink()
    gone = client.get(f"/v1/items/{picture.as_uri()}/image", headers={"X-API-Key": READER})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "image_missing"

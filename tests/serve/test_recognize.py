"""Recognition over HTTP (issue 7): POST /v1/recognize, same-category search, colour filters."""

from __future__ import annotations

import base64
import json

import pytest

from imagefactory import bomb_png
from serve.conftest import READER


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    return body


@pytest.fixture
def client(make_client, recognized_index):
    """A client on the small annotated index (every item has colours and category_pred)."""
    return make_client(recognized_index)


def _items(client) -> list[dict]:
    return client.get("/v1/items", params={"limit": 500}).json()["items"]


def _query_with_a_known_category(client, demo) -> tuple[bytes, dict]:
    """A held-out demo photo whose recognized category several indexed items share."""
    predicted = [item["metadata"]["category_pred"] for item in _items(client)]
    for path, _ in demo.queries:
        data = path.read_bytes()
        recognition = client.post("/v1/recognize", files={"image": ("q.png", data)}).json()
        if predicted.count(recognition["category"]) >= 3:
            return data, recognition
    pytest.fail("no demo query is recognized as a category of the index")


def test_recognize_multipart_and_json_agree(client, demo):
    data = demo.queries[0][0].read_bytes()
    response = client.post("/v1/recognize", files={"image": ("q.png", data, "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"category", "categories", "source", "colours"}
    assert body["source"] == "imagenet"  # the demo index is not tuned
    probabilities = [c["probability"] for c in body["categories"]]
    assert 1 <= len(probabilities) <= 3 and probabilities == sorted(probabilities, reverse=True)
    assert body["category"] in {c["label"] for c in body["categories"]} | {"unknown"}
    assert body["colours"] and {c["name"] for c in body["colours"]} <= {"black", "grey", "white"}
    assert all(len(c["rgb"]) == 3 and 0 < c["share"] <= 1 for c in body["colours"])
    as_json = client.post("/v1/recognize", json={"image_base64": base64.b64encode(data).decode()})
    assert as_json.status_code == 200 and as_json.json() == body
    metrics = client.get("/metrics").text
    assert 'route="/v1/recognize",status="200"} 2.0' in metrics


def test_recognize_errors(make_client, recognized_index):
    client = make_client(recognized_index, max_upload_bytes=50_000)
    url = "/v1/recognize"
    _error(client.post(url, files={"image": ("q.jpg", b"not an image")}), 422, "bad_image")
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
    _error(client.post(url, files={"other": ("x", b"1")}), 422, "missing_image")
    _error(client.post(url, json={"image_base64": "!!!"}), 422, "invalid_base64")
    _error(client.post(url, json={"image_base64": "AAAA", "k": 3}), 422, "invalid_request")
    _error(
        client.post(url, content=b"hello", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )


def test_recognize_needs_the_read_key_when_there_is_one(make_client, recognized_index, demo):
    client = make_client(recognized_index, read_key=READER)
    data = demo.queries[0][0].read_bytes()
    _error(client.post("/v1/recognize", files={"image": ("q.png", data)}), 401, "unauthorized")
    allowed = client.post(
        "/v1/recognize", files={"image": ("q.png", data)}, headers={"X-API-Key": READER}
    )
    assert allowed.status_code == 200


def test_same_category_restricts_results_to_the_recognized_category(client, demo):
    data, recognition = _query_with_a_known_category(client, demo)
    category = recognition["category"]
    plain = client.post("/v1/search", files={"image": ("q.png", data)}, data={"k": "20"}).json()
    assert "recognition" not in plain  # unchanged answer without same_category
    assert len({r["metadata"]["category_pred"] for r in plain["results"]}) > 1

    same = client.post(
        "/v1/search",
        files={"image": ("q.png", data)},
        data={"k": "20", "same_category": "true"},
    )
    assert same.status_code == 200, same.text
    body = same.json()
    assert body["recognition"] == recognition
    assert body["results"] and {r["metadata"]["category_pred"] for r in body["results"]} == {
        category
    }
    as_json = client.post(
        "/v1/search",
        json={"image_base64": base64.b64encode(data).decode(), "k": 20, "same_category": True},
    ).json()
    assert [r["id"] for r in as_json["results"]] == [r["id"] for r in body["results"]]

    # combined with the other filters: both apply; filters that exclude each other leave nothing
    colour = body["results"][0]["metadata"]["colours"].split(",")[0]
    both = client.post(
        "/v1/search",
        files={"image": ("q.png", data)},
        data={"k": "20", "same_category": "1", "filters": json.dumps({"colours": colour})},
    ).json()["results"]
    assert both and all(
        r["metadata"]["category_pred"] == category and colour in r["metadata"]["colours"]
        for r in both
    )
    predicted = [r["metadata"]["category_pred"] for r in plain["results"]]
    other = next(c for c in predicted if c != category)
    none = client.post(
        "/v1/search",
        files={"image": ("q.png", data)},
        data={"same_category": "yes", "filters": json.dumps({"category_pred": other})},
    )
    assert none.status_code == 200 and none.json()["results"] == []
    _error(
        client.post(
            "/v1/search", files={"image": ("q.png", data)}, data={"same_category": "maybe"}
        ),
        422,
        "invalid_same_category",
    )


def test_same_category_on_an_index_without_categories_is_409(
    make_client, recognized_index, demo_index, demo
):
    annotated = make_client(recognized_index)
    data, _ = _query_with_a_known_category(annotated, demo)
    plain = make_client(demo_index[0])  # the real model's demo index: no category_pred (read only)
    _error(
        plain.post("/v1/search", files={"image": ("q.png", data)}, data={"same_category": "true"}),
        409,
        "index_not_annotated",
    )


def test_colour_filters_restrict_results(client, demo):
    colours = [item["metadata"]["colours"].split(",") for item in _items(client)]
    counts = {name: sum(name in c for c in colours) for name in {n for c in colours for n in c}}
    name = next(n for n, count in sorted(counts.items()) if 0 < count < len(colours))
    data = demo.queries[1][0].read_bytes()
    response = client.post(
        "/v1/search",
        files={"image": ("q.png", data)},
        data={"k": "100", "filters": json.dumps({"colours": [name]})},
    )
    results = response.json()["results"]
    assert response.status_code == 200 and len(results) == counts[name]
    assert all(name in r["metadata"]["colours"].split(",") for r in results)
    listed = client.get("/v1/items", params={"filter": f"colours:{name}", "limit": 500}).json()
    assert listed["total"] == counts[name]
    assert all(name in i["metadata"]["colours"].split(",") for i in listed["items"])


def test_openapi_documents_recognition(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"multipart/form-data", "application/json"} <= set(
        paths["/v1/recognize"]["post"]["requestBody"]["content"]
    )
    multipart = paths["/v1/search"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert "same_category" in multipart["schema"]["properties"]

"""POST /v1/search with words: alone, with an image, as multipart and as JSON, and its errors."""

from __future__ import annotations

import base64


def _file(demo, index: int = 0) -> bytes:
    return demo.queries[index][0].read_bytes()


def test_words_alone_find_the_items_that_say_them(client):
    response = client.post("/v1/search", json={"text": "ankle boots", "k": 10, "expand": False})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 10
    assert all(r["metadata"]["category"] == "Ankle boot" for r in results)
    as_form = client.post("/v1/search", data={"text": "ankle boots", "k": "10", "expand": "false"})
    assert [r["id"] for r in as_form.json()["results"]] == [r["id"] for r in results]


def test_words_with_a_filter_and_an_image(client, demo):
    data = _file(demo, 0)
    both = client.post(
        "/v1/search",
        json={
            "image_base64": base64.b64encode(data).decode(),
            "text": "sneaker",
            "k": 5,
            "text_weight": 1.0,
        },
    )
    assert both.status_code == 200, both.text
    assert all(r["metadata"]["category"] == "Sneaker" for r in both.json()["results"])
    form = client.post(
        "/v1/search",
        files={"image": ("q.png", data, "image/png")},
        data={"text": "sneaker", "k": "5", "text_weight": "0", "filters": '{"category": "Bag"}'},
    )
    assert form.status_code == 200, form.text
    assert all(r["metadata"]["category"] == "Bag" for r in form.json()["results"])


def test_bad_text_queries_are_422(client):
    cases = [
        ({"k": 3}, "missing_query"),
        ({"text": "the and of"}, "invalid_text"),
        ({"text": "shirt", "same_category": True}, "missing_image"),
    ]
    for body, code in cases:
        response = client.post("/v1/search", json=body)
        assert response.status_code == 422 and response.json()["error"]["code"] == code, body
    form = client.post("/v1/search", data={"text": "shirt", "text_weight": "2"})
    assert form.status_code == 422
    assert form.json()["error"]["code"] == "invalid_text_weight"
    assert client.post("/v1/search", json={"text": "x" * 501}).status_code == 422

"""What the API accepts from clients (issue 16): bounded JSON, strict types, filters and their
errors, 405s with an Allow header, an OpenAPI schema that says what is validated, and 500s only
for bugs."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from serve.conftest import ADMIN, png
from stylefinder.serve.schemas import MAX_JSON_DEPTH, MAX_JSON_FIELD_BYTES

ADMIN_HEADERS = {"X-API-Key": ADMIN}


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code and body["message"], body
    return body


def _nested(levels: int, leaf: str = '"x"') -> str:
    return '{"a": ' * levels + leaf + "}" * levels


def _query(demo) -> bytes:
    return demo.queries[0][0].read_bytes()


# -- JSON limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 20_000])
def test_deeply_nested_json_is_422_everywhere(client, demo, levels):
    image = {"image": ("q.png", _query(demo), "image/png")}
    deep = _nested(levels)
    _error(client.post("/v1/search", files=image, data={"filters": deep}), 422, "json_too_deep")
    _error(
        client.post(
            "/v1/items",
            headers=ADMIN_HEADERS,
            files={"image": ("a.png", png(), "image/png")},
            data={"id": "deep", "metadata": deep},
        ),
        422,
        "json_too_deep",
    )
    body = '{"image_base64": "AAAA", "filters": ' + deep + "}"
    json_body = {"content-type": "application/json"}
    _error(client.post("/v1/search", content=body, headers=json_body), 422, "json_too_deep")
    token = client.post("/v1/users/ann/token", headers=ADMIN_HEADERS).json()["token"]
    events = '{"item_id": "fmnist-test-00001", "kind": "like", "weight": ' + deep + "}"
    headers = {**json_body, "X-User-Token": token}
    _error(
        client.post("/v1/users/ann/events", content=events, headers=headers), 422, "json_too_deep"
    )
    assert client.get("/v1/items/deep").status_code == 404  # nothing was written


def test_oversized_json_fields_are_422(client, demo):
    image = {"image": ("q.png", _query(demo), "image/png")}
    big = json.dumps({"category": ["Bag"] * (MAX_JSON_FIELD_BYTES // 6)})
    body = _error(
        client.post("/v1/search", files=image, data={"filters": big}), 422, "json_too_large"
    )
    assert f"{MAX_JSON_FIELD_BYTES:,}" in body["message"]
    token = client.post("/v1/users/ann/token", headers=ADMIN_HEADERS).json()["token"]
    events = json.dumps({"events": [{"item_id": "x" * 250, "kind": "like"}] * 8000})
    _error(
        client.post(
            "/v1/users/ann/events",
            content=events,
            headers={"content-type": "application/json", "X-User-Token": token},
        ),
        422,
        "json_too_large",
    )


def test_metadata_values_are_flat_text_numbers_or_booleans(client):
    def post(metadata: str):
        return client.post(
            "/v1/items",
            headers=ADMIN_HEADERS,
            files={"image": ("a.png", png(), "image/png")},
            data={"id": "sku-1", "metadata": metadata},
        )

    for bad in ('{"a": null}', '{"a": [1]}', '{"a": {"b": 1}}', '{"id": "x"}', '{"a": NaN}'):
        body = _error(post(bad), 422, "invalid_request")
        assert body["details"][0]["loc"][0] == "metadata", body
    created = post('{"a": "text", "b": 2, "c": 2.5, "d": true}')
    assert created.status_code == 201, created.text
    metadata = created.json()["item"]["metadata"]
    assert (metadata["a"], metadata["b"], metadata["c"], metadata["d"]) == ("text", 2, 2.5, "true")
    _error(
        client.post(
            "/v1/items",
            headers=ADMIN_HEADERS,
            json={"id": "sku-2", "image_base64": "AAAA", "metadata": {"a": None}},
        ),
        422,
        "invalid_request",
    )
    schema = client.get("/openapi.json").json()["paths"]["/v1/items"]["post"]["requestBody"]
    documented = schema["content"]["application/json"]["schema"]["properties"]["metadata"]
    kinds = {branch["type"] for branch in documented["additionalProperties"]["anyOf"]}
    assert kinds == {"string", "integer", "number", "boolean"}
    assert (
        documented["maxProperties"] == 64
        and "no null, objects or arrays" in (documented["description"])
    )


# -- strict types and multipart -------------------------------------------------------------------


def test_json_bodies_are_validated_strictly(client, demo):
    image = base64.b64encode(_query(demo)).decode()
    for body in (
        {"image_base64": image, "k": True},
        {"image_base64": image, "k": 3.0},
        {"image_base64": image, "same_category": "yes"},
        {"image_base64": image, "filters": {"category": True}},
        {"image_base64": image, "filters": {"category": None}},
    ):
        _error(client.post("/v1/search", json=body), 422, "invalid_request")
    assert (
        len(client.post("/v1/search", json={"image_base64": image, "k": 3}).json()["results"]) == 3
    )


def test_two_image_parts_are_422(client, demo):
    files = [
        ("image", ("a.png", _query(demo), "image/png")),
        ("image", ("b.png", png(), "image/png")),
    ]
    _error(client.post("/v1/search", files=files), 422, "duplicate_field")
    _error(
        client.post("/v1/items", headers=ADMIN_HEADERS, files=files, data={"id": "two"}),
        422,
        "duplicate_field",
    )


def test_405_names_the_allowed_methods(client):
    response = client.put("/v1/search")
    _error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
    response = client.put("/v1/items/fmnist-test-00001")  # served by a GET and a DELETE route
    _error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, DELETE"
    assert client.patch("/v1/users/ann").headers["allow"] == "DELETE"


def test_openapi_documents_what_is_validated(client):
    schema = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    paths = schema["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            error = operation["responses"]["422"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path)
    params = {p["name"]: p["schema"] for p in paths["/v1/items"]["get"]["parameters"]}
    assert (
        params["limit"]["minimum"],
        params["limit"]["maximum"],
        params["offset"]["minimum"],
    ) == (
        1,
        500,
        0,
    )
    search = paths["/v1/search"]["post"]["requestBody"]["content"]
    assert search["multipart/form-data"]["schema"]["required"] == []  # an image, text or both
    assert {"image", "text"} <= set(search["multipart/form-data"]["schema"]["properties"])
    k = search["application/json"]["schema"]["properties"]["k"]
    assert (k["minimum"], k["maximum"]) == (1, 100)
    csv_types = set(paths["/v1/users/events:import"]["post"]["requestBody"]["content"])
    assert csv_types == {"text/csv", "text/plain"}  # what the route accepts
    writes = paths["/v1/items"]["post"]["responses"]
    assert {"403", "413", "415", "503", "507"} <= set(writes)
    schemes = schema["components"]["securitySchemes"]
    assert {s.get("name") for s in schemes.values()} >= {"X-API-Key", "X-User-Token"}


# -- filters ---------------------------------------------------------------------------------------


def test_filter_errors_name_the_problem(client, demo):
    image = {"image": ("q.png", _query(demo), "image/png")}
    body = _error(
        client.post("/v1/search", files=image, data={"filters": '{"colour": "red"}'}),
        422,
        "unknown_column",
    )
    assert "category" in body["message"] and "category" in body["details"][0]["known"]
    _error(
        client.post("/v1/search", files=image, data={"filters": '{"category": "<5"}'}),
        422,
        "invalid_filters",
    )
    _error(
        client.post("/v1/search", files=image, data={"filters": '{"category": true}'}),
        422,
        "invalid_filters",
    )
    _error(client.get("/v1/items", params={"filter": "colour:red"}), 422, "unknown_column")
    _error(client.get("/v1/items", params={"filter": "category:<5"}), 422, "invalid_filter")


def test_numbers_and_ranges_filter_numeric_metadata(client):
    for item_id, price in (("cheap", 10), ("dear", 90.5)):
        created = client.post(
            "/v1/items",
            headers=ADMIN_HEADERS,
            files={"image": ("a.png", png(), "image/png")},
            data={"id": item_id, "metadata": json.dumps({"category": "Swatch", "price": price})},
        )
        assert created.status_code == 201, created.text
    image = {"image": ("q.png", png((10, 200, 10)), "image/png")}
    for filters, expected in (
        ({"price": 10}, ["cheap"]),
        ({"price": ["<20", 90.5]}, ["cheap", "dear"]),
    ):
        response = client.post(
            "/v1/search", files=image, data={"filters": json.dumps(filters), "k": "5"}
        )
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert sorted(r["id"] for r in results) == expected
        assert all(isinstance(r["metadata"]["price"], int | float) for r in results)
    page = client.get("/v1/items", params={"filter": "price:20..100"}).json()
    assert [i["id"] for i in page["items"]] == ["dear"]


# -- errors that are bugs --------------------------------------------------------------------------


def test_an_unexpected_value_error_is_a_logged_500(client, caplog, monkeypatch):
    engine = client.app.state.engine

    def broken(**kwargs):
        raise ValueError("a bug, not the client's fault")

    monkeypatch.setattr(engine, "browse", broken)
    with caplog.at_level(logging.ERROR, logger="stylefinder.serve.api"):
        body = _error(client.get("/v1/items"), 500, "internal_error")
    assert "a bug" not in body["message"]
    record = next(r for r in caplog.records if r.name == "stylefinder.serve.api")
    assert record.exc_info and "a bug, not the client's fault" in str(record.exc_info[1])


def test_client_mistakes_stay_4xx(client):
    for path in ("/v1/users/%0Aann/token", "/v1/items/a%0Db"):
        _error(client.post(path, headers=ADMIN_HEADERS), 422, "invalid_path")
    _error(client.post("/v1/users/%20/token", headers=ADMIN_HEADERS), 422, "invalid_request")
    header = b"user_id,item_id," + b"k" * 200_000  # over the csv module's field limit
    _error(
        client.post(
            "/v1/users/events:import",
            content=header,
            headers={**ADMIN_HEADERS, "content-type": "text/csv"},
        ),
        422,
        "invalid_request",
    )
    _error(
        client.post(
            "/v1/items",
            headers=ADMIN_HEADERS,
            files={"image": ("a.png", png(), "image/png")},
            data={"id": "bad\nid"},
        ),
        422,
        "invalid_request",
    )

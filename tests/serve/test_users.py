"""Shoppers over HTTP (issue 8): tokens, events, recommendations, export, erasure, who may see
what, and many concurrent writers."""

from __future__ import annotations

import threading

from serve.conftest import ADMIN, READER
from stylefinder.shoppers.sqlite import SqliteEventStore

ADMIN_HEADERS = {"X-API-Key": ADMIN}


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    return body


def _token(client, user: str) -> dict[str, str]:
    response = client.post(f"/v1/users/{user}/token", headers=ADMIN_HEADERS)
    assert response.status_code == 201, response.text
    assert response.json()["user_id"] == user
    return {"X-User-Token": response.json()["token"]}


def _ids(client, category: str, n: int) -> list[str]:
    page = client.get("/v1/items", params={"filter": f"category:{category}", "limit": n}).json()
    return [item["id"] for item in page["items"]]


def _export(client, user: str) -> dict:
    response = client.get(f"/v1/users/{user}/export", headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    return response.json()


def test_tokens_are_issued_by_the_admin_and_replace_the_old_one(client):
    first = _token(client, "alice")
    second = _token(client, "alice")
    assert first != second
    _error(client.get("/v1/users/alice/export", headers=first), 403, "forbidden")
    assert client.get("/v1/users/alice/export", headers=second).status_code == 200
    bearer = {"Authorization": f"Bearer {second['X-User-Token']}"}
    assert client.get("/v1/users/alice/export", headers=bearer).json()["user"]["has_token"]
    for headers in ({}, second, {"X-API-Key": READER}, {"X-API-Key": "wrong"}, bearer):
        _error(client.post("/v1/users/alice/token", headers=headers), 401, "unauthorized")
    _error(
        client.post(f"/v1/users/{'x' * 300}/token", headers=ADMIN_HEADERS), 422, "invalid_request"
    )


def test_without_an_admin_key_no_token_is_issued_but_tokens_work(make_client, api_index):
    token = SqliteEventStore(api_index).create_token("carol")  # issued earlier, e.g. by the library
    client = make_client(admin_key=None)
    _error(client.post("/v1/users/carol/token", headers=ADMIN_HEADERS), 403, "writes_disabled")
    _error(
        client.post(
            "/v1/users/events:import",
            content=b"user_id,item_id,kind\n",
            headers={**ADMIN_HEADERS, "content-type": "text/csv"},
        ),
        403,
        "writes_disabled",
    )
    _error(client.get("/v1/users/carol/export", headers=ADMIN_HEADERS), 401, "unauthorized")
    headers = {"X-User-Token": token}
    posted = client.post(
        "/v1/users/carol/events",
        json={"item_id": "fmnist-test-00001", "kind": "like"},
        headers=headers,
    )
    assert posted.status_code == 201, posted.text
    assert len(client.get("/v1/users/carol/export", headers=headers).json()["events"]) == 1


def test_events_change_recommendations_and_are_exported(client):
    alice = _token(client, "alice")
    url = "/v1/users/alice/recommendations"
    cold = client.get(url, headers=alice)
    assert cold.status_code == 200, cold.text
    assert cold.json()["user_id"] == "alice" and len(cold.json()["results"]) == 10
    assert set(cold.json()["results"][0]) == {"id", "score", "metadata", "display", "image_url"}

    bags = _ids(client, "Bag", 4)
    batch = {
        "events": [
            {"item_id": bags[0], "kind": "like"},
            {"item_id": bags[1], "kind": "Like", "weight": 2},
            {"item_id": bags[2], "kind": "purchase", "timestamp": "2024-05-01T12:00:00Z"},
        ]
    }
    posted = client.post("/v1/users/alice/events", json=batch, headers=alice)
    assert posted.status_code == 201, posted.text
    stored = posted.json()["events"]
    assert [e["kind"] for e in stored] == ["like", "like", "purchase"]
    assert all(e["id"] and e["user_id"] == "alice" for e in stored)
    assert stored[2]["timestamp"] == "2024-05-01T12:00:00+00:00" and stored[1]["weight"] == 2
    one = client.post(
        "/v1/users/alice/events", json={"item_id": bags[3], "kind": "view"}, headers=alice
    )
    assert one.status_code == 201 and len(one.json()["events"]) == 1

    warm = client.get(url, headers=alice, params={"k": 10}).json()["results"]
    assert [r["id"] for r in warm] != [r["id"] for r in cold.json()["results"]]
    assert sum(r["metadata"]["category"] == "Bag" for r in warm) >= 7
    assert bags[2] not in [r["id"] for r in warm]  # never what they bought
    sandals = client.get(url, headers=alice, params={"filter": "category:Sandal", "k": 3}).json()
    assert len(sandals["results"]) == 3
    assert {r["metadata"]["category"] for r in sandals["results"]} == {"Sandal"}
    assert len(client.get(url, headers=alice, params={"diversity": 0}).json()["results"]) == 10
    for params, code in (
        ({"k": 0}, "invalid_request"),
        ({"k": 101}, "invalid_request"),
        ({"diversity": 1.5}, "invalid_request"),
        ({"filter": "category"}, "invalid_filter"),
    ):
        _error(client.get(url, headers=alice, params=params), 422, code)

    export = client.get("/v1/users/alice/export", headers=alice).json()
    assert export["user"]["id"] == "alice" and export["user"]["has_token"]
    assert set(export["user"]) == {"id", "created_at", "has_token", "token_created_at"}
    assert [(e["item_id"], e["kind"]) for e in export["events"]] == [
        (bags[2], "purchase"),  # oldest first: its timestamp is in 2024
        (bags[0], "like"),
        (bags[1], "like"),
        (bags[3], "view"),
    ]
    assert export["exported_at"]


def test_malformed_events_are_422_and_store_nothing(client):
    alice = _token(client, "alice")
    url = "/v1/users/alice/events"
    item = "fmnist-test-00003"
    for body in (
        {"item_id": item, "kind": "stare"},
        {"item_id": item, "kind": "like", "colour": "red"},
        {"kind": "like"},
        {"item_id": item, "kind": "like", "timestamp": 1714564800000},
        {"item_id": item, "kind": "like", "timestamp": "yesterday"},
        {"item_id": item, "kind": "like", "weight": 0},
        {"item_id": 7, "kind": "like"},
        {"events": []},
        {"events": [{"item_id": item, "kind": "like"}, {"item_id": item, "kind": "hug"}]},
        [{"item_id": item, "kind": "like"}],
    ):
        _error(client.post(url, json=body, headers=alice), 422, "invalid_request")
    batch = {"events": [{"item_id": item, "kind": "like"}, {"item_id": "nope", "kind": "like"}]}
    _error(client.post(url, json=batch, headers=alice), 404, "unknown_item")
    _error(
        client.post(
            url, content=b"{not json", headers={**alice, "content-type": "application/json"}
        ),
        422,
        "invalid_request",
    )
    _error(
        client.post(url, content=b"item,like", headers={**alice, "content-type": "text/csv"}),
        415,
        "unsupported_media_type",
    )
    assert _export(client, "alice")["events"] == []


def test_one_shopper_cannot_read_or_write_another(client):
    alice, bob = _token(client, "alice"), _token(client, "bob")
    client.post(
        "/v1/users/alice/events",
        json={"item_id": "fmnist-test-00005", "kind": "like"},
        headers=alice,
    )
    before = _export(client, "alice")["events"]
    bob_bearer = {"Authorization": f"Bearer {bob['X-User-Token']}"}
    event = {"item_id": "fmnist-test-00006", "kind": "purchase"}

    def attempts(headers):
        yield client.post("/v1/users/alice/events", json=event, headers=headers)
        yield client.get("/v1/users/alice/recommendations", headers=headers)
        yield client.get("/v1/users/alice/export", headers=headers)
        yield client.delete("/v1/users/alice", headers=headers)

    for headers in (bob, bob_bearer, {"X-User-Token": "made-up"}, {**bob, "X-API-Key": READER}):
        for response in attempts(headers):
            _error(response, 403, "forbidden")
    for headers in ({}, {"X-API-Key": READER}, {"X-API-Key": "wrong"}):
        for response in attempts(headers):
            _error(response, 401, "unauthorized")
    _error(client.get("/v1/users/nobody/export", headers=alice), 403, "forbidden")

    assert _export(client, "alice")["events"] == before  # nothing written or erased
    assert _export(client, "bob")["events"] == []
    assert client.get("/v1/users/alice/export", headers=alice).status_code == 200


def test_delete_erases_every_trace_of_a_shopper(client, api_index):
    alice, bob = _token(client, "alice"), _token(client, "bob")
    likes = {"events": [{"item_id": i, "kind": "like"} for i in _ids(client, "Coat", 3)]}
    client.post("/v1/users/alice/events", json=likes, headers=alice)
    client.post("/v1/users/bob/events", json=likes, headers=bob)

    deleted = client.delete("/v1/users/alice", headers=alice)  # a shopper may erase themselves
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"user_id": "alice", "deleted": {"users": 1, "events": 3}}
    _error(client.get("/v1/users/alice/export", headers=ADMIN_HEADERS), 404, "unknown_user")
    # recommendations do not fall back to the cold start for a shopper who is gone
    _error(
        client.get("/v1/users/alice/recommendations", headers=ADMIN_HEADERS), 404, "unknown_user"
    )
    _error(client.get("/v1/users/alice/export", headers=alice), 403, "forbidden")  # token gone
    _error(client.delete("/v1/users/alice", headers=ADMIN_HEADERS), 404, "unknown_user")
    store = SqliteEventStore(api_index)
    assert "alice" not in store.users() and store.events("alice") == []
    assert len(_export(client, "bob")["events"]) == 3  # other shoppers keep their history

    gone = client.delete("/v1/users/bob", headers=ADMIN_HEADERS)  # the admin may erase anyone
    assert gone.status_code == 200 and gone.json()["deleted"] == {"users": 1, "events": 3}
    assert store.users() == []


def test_concurrent_event_posts_all_land(client):
    threads_n, per_thread = 8, 25
    crowd = _token(client, "crowd")
    items = [f"fmnist-test-{n:05d}" for n in range(threads_n * per_thread)]
    errors: list[str] = []

    def post(worker: int) -> None:
        for n in range(per_thread):
            item = items[worker * per_thread + n]
            response = client.post(
                "/v1/users/crowd/events", json={"item_id": item, "kind": "view"}, headers=crowd
            )
            if response.status_code != 201:
                errors.append(f"{item}: {response.status_code} {response.text}")

    threads = [threading.Thread(target=post, args=(w,)) for w in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = _export(client, "crowd")["events"]
    assert len(events) == threads_n * per_thread
    assert sorted(e["item_id"] for e in events) == items
    assert len({e["id"] for e in events}) == len(events)


def test_import_csv_with_the_admin_key(client):
    csv_text = (
        "user_id,item_id,kind,timestamp\n"
        "dave,fmnist-test-00010,like,2024-05-01T12:00:00Z\n"
        "dave,fmnist-test-00011,purchase,\n"
        "erin,nope,like,\n"
        "erin,fmnist-test-00012,frown,\n"
    )
    url = "/v1/users/events:import"
    headers = {**ADMIN_HEADERS, "content-type": "text/csv"}
    response = client.post(url, content=csv_text.encode(), headers=headers)
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["added"] == 2 and summary["rejected_total"] == 2
    assert [r["line"] for r in summary["rejected"]] == [4, 5]
    assert [e["kind"] for e in _export(client, "dave")["events"]] == ["like", "purchase"]
    dave = _token(client, "dave")
    _error(
        client.post(url, content=csv_text.encode(), headers={**dave, "content-type": "text/csv"}),
        401,
        "unauthorized",
    )
    _error(
        client.post(url, json={"rows": []}, headers=ADMIN_HEADERS), 415, "unsupported_media_type"
    )
    _error(client.post(url, content=b"who,what\n", headers=headers), 422, "invalid_request")
    assert len(_export(client, "dave")["events"]) == 2


def test_user_routes_are_documented_and_counted(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"post"} <= set(paths["/v1/users/{user_id}/events"])
    assert "get" in paths["/v1/users/{user_id}/recommendations"]
    assert "get" in paths["/v1/users/{user_id}/export"]
    assert "delete" in paths["/v1/users/{user_id}"]
    assert (
        "post" in paths["/v1/users/{user_id}/token"] and "post" in paths["/v1/users/events:import"]
    )
    alice = _token(client, "alice")
    client.post(
        "/v1/users/alice/events",
        json={"item_id": "fmnist-test-00001", "kind": "view"},
        headers=alice,
    )
    client.get("/v1/users/alice/export")
    metrics = client.get("/metrics").text
    assert 'route="/v1/users/{user_id:path}/events",status="201"} 1.0' in metrics
    assert 'route="/v1/users/{user_id:path}/export",status="401"} 1.0' in metrics
    assert 'route="/v1/users/{user_id:path}/token",status="201"} 1.0' in metrics

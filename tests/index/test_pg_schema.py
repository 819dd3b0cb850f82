"""A catalog's schema in a real PostgreSQL server with pgvector: URLs, migrations, errors."""

from __future__ import annotations

import threading

import pytest

from stylefinder.errors import DatabaseError
from stylefinder.index import pg_schema
from stylefinder.index.pg_connect import connect, open_pool, parse_url, require_vector
from stylefinder.index.pg_schema import LATEST, migrate, schema_version


def _url(postgres_url: str, schema: str) -> str:
    return f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"


def _tables(conn, schema: str) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
    )
    return {name for (name,) in rows}


def test_migrate_creates_the_tables_once(postgres_url):
    target = parse_url(_url(postgres_url, "shop_once"))
    with connect(target) as conn:
        assert schema_version(conn, target.schema) == 0
        assert migrate(conn, target.schema) == list(range(1, LATEST + 1))
        assert migrate(conn, target.schema) == []  # up to date: nothing applied again
        assert schema_version(conn, target.schema) == LATEST
        assert _tables(conn, "shop_once") >= {"header", "items", "events", "users"}
        assert require_vector(conn).startswith("0.8")
        # the vector column takes pgvector values and the JSONB metadata its containment query
        conn.execute(
            "INSERT INTO shop_once.items (id, path, content_hash, metadata, embedding, generation)"
            " VALUES ('a', 'a.jpg', 'h', '{\"colour\": \"navy\"}', '[1,0,0]', 1)"
        )
        found = conn.execute(
            "SELECT id, embedding <=> '[0,1,0]' FROM shop_once.items WHERE metadata @> %s",
            ('{"colour": "navy"}',),
        ).fetchall()
        assert found == [("a", 1.0)]


def test_a_version_1_schema_is_migrated_keeping_its_rows(postgres_url, monkeypatch):
    with connect(parse_url(postgres_url)) as conn:
        with monkeypatch.context() as first_release:
            first_release.setattr(pg_schema, "MIGRATIONS", pg_schema.MIGRATIONS[:1])
            first_release.setattr(pg_schema, "LATEST", 1)
            assert migrate(conn, "shop_v1") == [1]
        conn.execute("INSERT INTO shop_v1.tokens (user_id, token_hash) VALUES ('u-1', 'h1')")
        conn.execute(
            "INSERT INTO shop_v1.events (user_id, item_id, kind, at) VALUES ('u-1', 'a', 'like', 1)"
        )
        assert migrate(conn, "shop_v1") == list(range(2, LATEST + 1))
        users = conn.execute("SELECT id, token_hash FROM shop_v1.users").fetchall()
        weights = conn.execute("SELECT weight FROM shop_v1.events").fetchall()
        assert (users, weights) == ([("u-1", "h1")], [(1.0,)])
        assert "tokens" not in _tables(conn, "shop_v1")


def test_a_pool_hands_out_working_connections_and_refuses_a_dead_server(postgres_url, tmp_path):
    with open_pool(parse_url(postgres_url), max_size=2, timeout=5) as pool:
        with pool.connection() as first, pool.connection() as second:
            pids = {c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in (first, second)}
        assert len(pids) == 2
    down = parse_url(f"postgresql://shop:secret@/catalog?host={tmp_path}")
    with pytest.raises(DatabaseError, match="cannot connect to the PostgreSQL server") as error:
        open_pool(down, timeout=2)
    assert "secret" not in str(error.value)


def test_libpq_options_in_the_url_reach_the_server(postgres_url):
    # a statement timeout, set the libpq way: options=-c statement_timeout=... in the URL
    options = "options=-c%20statement_timeout%3D300"
    target = parse_url(_url(postgres_url, "shop_timeout") + "&" + options)
    assert target.schema == "shop_timeout" and "statement_timeout%3D300" in target.conninfo
    with connect(target) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("300ms",)


def test_schemas_of_one_database_are_separate_catalogs(postgres_url):
    with connect(parse_url(postgres_url)) as conn:
        migrate(conn, "shop_a")
        migrate(conn, "shop_b")
        conn.execute("INSERT INTO shop_a.header VALUES ('backbone', '\"x\"')")
        assert conn.execute("SELECT count(*) FROM shop_b.header").fetchone() == (0,)


def test_concurrent_openers_migrate_once(postgres_url):
    target = parse_url(_url(postgres_url, "shop_race"))
    applied, errors = [], []

    def open_catalog() -> None:
        try:
            with connect(target) as conn:
                applied.append(migrate(conn, target.schema))
        except Exception as error:  # the test reports every failure
            errors.append(error)

    threads = [threading.Thread(target=open_catalog) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(applied) == [[], [], [], list(range(1, LATEST + 1))]


def test_a_schema_from_a_newer_stylefinder_is_refused(postgres_url):
    with connect(parse_url(postgres_url)) as conn:
        migrate(conn, "shop_new")
        conn.execute("INSERT INTO shop_new.schema_migrations VALUES (%s, 'later', now())", (99,))
        with pytest.raises(DatabaseError, match="version 99, newer than this stylefinder"):
            migrate(conn, "shop_new")


def test_a_server_that_is_down_gets_a_clear_error(tmp_path):
    target = parse_url(f"postgresql://shop:secret@/catalog?host={tmp_path}&schema=shop")
    with pytest.raises(DatabaseError, match="cannot connect to the PostgreSQL server") as error:
        connect(target, timeout=2)
    assert "secret" not in str(error.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("shop-index", "not a PostgreSQL URL"),
        ("postgresql://localhost/db?schema=Shop;DROP", "lower-case letters"),
        ("postgresql://localhost/db?schema=", "lower-case letters"),
    ],
)
def test_bad_urls_are_refused(url, message):
    with pytest.raises(DatabaseError, match=message):
        parse_url(url)


def test_the_schema_parameter_is_ours_and_the_rest_goes_to_libpq():
    target = parse_url("postgresql://u:pw@db:5433/cat?sslmode=require&schema=spring")
    assert target.schema == "spring"
    assert target.conninfo == "postgresql://u:pw@db:5433/cat?sslmode=require"
    assert target.redacted == "postgresql://u:***@db:5433/cat?sslmode=require"


def test_a_role_that_may_not_create_the_extension_is_told_who_can(postgres_url):
    from urllib.parse import urlsplit, urlunsplit

    with connect(parse_url(postgres_url)) as admin:
        admin.execute("DROP DATABASE IF EXISTS shopdb")
        admin.execute("DROP ROLE IF EXISTS shopper")
        admin.execute("CREATE ROLE shopper LOGIN")
        admin.execute("CREATE DATABASE shopdb OWNER shopper")
    parts = urlsplit(postgres_url)
    as_shopper = urlunsplit(parts._replace(netloc="shopper@", path="/shopdb"))
    target = parse_url(as_shopper + "&schema=shop")
    with connect(target) as conn, pytest.raises(DatabaseError) as error:
        migrate(conn, target.schema)
    message = str(error.value)
    assert "CREATE EXTENSION vector needs more rights than role 'shopper'" in message
    assert "'shopdb'" in message
    with connect(parse_url(urlunsplit(parts._replace(path="/shopdb")))) as admin:
        admin.execute("CREATE EXTENSION vector")  # what the message asks a superuser to do
    with connect(target) as conn:
        assert migrate(conn, target.schema) == list(range(1, LATEST + 1))

"""Shoppers: their events and access tokens, kept apart from the catalog.

`base.EventStore` is the protocol every store implements: `sqlite.SqliteEventStore` in
INDEX_DIR/shoppers.sqlite, `postgres.PostgresEventStore` in a PostgreSQL catalog's schema;
`validation`, `csv_events` and `tokens` are shared by them.
"""

"""Shoppers: their events and access tokens, kept apart from the catalog in shoppers.sqlite."""

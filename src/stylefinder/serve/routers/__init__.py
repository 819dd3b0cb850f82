"""The API's routes by topic: ops (health, metrics), search, items, users (shoppers).

`stylefinder.serve.api.create_app` includes them in that order: search's
/v1/items/{id}/similar must come before items' /v1/items/{id}, which would match it too.
"""

"""Products, not photos: a product with several photos (a product feed's `product_id`) comes
back once, with its best-matching photo, and a product the feed says is out of stock is left
out unless the query filters on availability itself.

Catalogs without these columns are unchanged: every item is its own product, and available.

Example:
    >>> rows = [Recommendation("p1#1", "", 0.9, {"product_id": "p1"}),
    ...         Recommendation("p1#2", "", 0.8, {"product_id": "p1"}),
    ...         Recommendation("p2#1", "", 0.7, {"product_id": "p2",
    ...                                           "availability": "out of stock"}),
    ...         Recommendation("p3#1", "", 0.6, {"product_id": "p3"})]
    >>> [r.id for r in one_per_product(rows)]
    ['p1#1', 'p3#1']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from stylefinder.recommend.view import Recommendation

PRODUCT_COLUMN = "product_id"
AVAILABILITY_COLUMN = "availability"
#: availability values (folded) of products not to show
UNAVAILABLE = frozenset({"out of stock", "out_of_stock", "outofstock", "sold out", "discontinued"})
MAX_WIDENING = 32  # at most this many times k results are read to fill k products


def product_of(item_id: str, metadata: Mapping[str, object]) -> str:
    """The product an item belongs to: its `product_id`, else the item itself.

    Example:
        >>> product_of("p1#2", {"product_id": "p1"}), product_of("sku-9", {})
        ('p1', 'sku-9')
    """
    product = metadata.get(PRODUCT_COLUMN)
    return item_id if product in (None, "") else str(product)


def is_available(metadata: Mapping[str, object]) -> bool:
    """False when the item's availability says it cannot be bought."""
    value = metadata.get(AVAILABILITY_COLUMN)
    return not (isinstance(value, str) and " ".join(value.casefold().split()) in UNAVAILABLE)


def one_per_product(
    results: Iterable[Recommendation], *, available_only: bool = True, skip: Iterable[str] = ()
) -> list[Recommendation]:
    """The first (best) result of each product, without unavailable ones (`available_only`)
    and without the products `skip`."""
    seen, kept = set(skip), []
    for result in results:
        product = product_of(result.id, result.metadata)
        if product in seen or (available_only and not is_available(result.metadata)):
            continue
        seen.add(product)
        kept.append(result)
    return kept


def products(
    fetch: Callable[[int], list[Recommendation]],
    k: int,
    *,
    filters: Mapping[str, object] | None = None,
    skip: Iterable[str] = (),
) -> list[Recommendation]:
    """`k` products from `fetch(n)` (the n best results), reading more while photos of the
    same product or unavailable ones leave fewer than `k`. Unavailable products are kept when
    `filters` name the availability column (the query asked for it).

    Example:
        >>> products(lambda n: engine.search("shirt", k=n), 10)  # doctest: +SKIP
    """
    available_only = not (filters and AVAILABILITY_COLUMN in filters)
    skip, wanted = list(skip), k
    while True:
        found = fetch(wanted)
        kept = one_per_product(found, available_only=available_only, skip=skip)
        if len(kept) >= k or len(found) < wanted or wanted >= k * MAX_WIDENING:
            return kept[:k]
        wanted *= 4

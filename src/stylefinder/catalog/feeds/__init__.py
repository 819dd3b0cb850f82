"""Product feeds (Shopify, Google Merchant Center, WooCommerce, CSV, JSON): read them into
products (`formats`), download their images (`download`), remember what was fetched
(`state`), and bring a feed's images into an index directory's feed folder (`sync`), which
`stylefinder.jobs.feed.sync_feed` then indexes.

Example:
    >>> from stylefinder.catalog.feeds import read_feed
    >>> read_feed("products_export.csv").format  # doctest: +SKIP
    'shopify'
"""

from stylefinder.catalog.feeds.download import Downloader, DownloadOptions, Fetched, Validators
from stylefinder.catalog.feeds.formats import (
    FEED_FORMATS,
    FeedFormatError,
    FeedReading,
    detect_format,
    read_feed,
)
from stylefinder.catalog.feeds.product import Product
from stylefinder.catalog.feeds.sync import FeedFetch, fetch_feed, item_id_of, product_folder

__all__ = [
    "FEED_FORMATS",
    "DownloadOptions",
    "Downloader",
    "FeedFetch",
    "FeedFormatError",
    "FeedReading",
    "Fetched",
    "Product",
    "Validators",
    "detect_format",
    "fetch_feed",
    "item_id_of",
    "product_folder",
    "read_feed",
]

"""stylefinder: find catalog items that look like a photo of clothing.

Example:
    >>> import stylefinder
    >>> stylefinder.build_index("shop-photos", "shop-index")  # doctest: +SKIP
    >>> engine = stylefinder.Engine.open("shop-index")  # doctest: +SKIP
    >>> engine.recommend("upload.jpg", k=5)  # doctest: +SKIP
"""

from stylefinder._version import __version__
from stylefinder.engine import Engine, IndexInfo, Recommendation
from stylefinder.errors import (
    BackboneUnavailableError,
    BadImageError,
    IndexStateError,
    StylefinderError,
    UnknownItemError,
)
from stylefinder.jobs.build import IndexSummary, build_index

__all__ = [
    "BackboneUnavailableError",
    "BadImageError",
    "Engine",
    "IndexInfo",
    "IndexStateError",
    "IndexSummary",
    "Recommendation",
    "StylefinderError",
    "UnknownItemError",
    "__version__",
    "build_index",
]

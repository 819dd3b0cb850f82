"""stylefinder: find catalog items that look like a photo of clothing.

Example:
    >>> import stylefinder
    >>> stylefinder.build_index("shop-photos", "shop-index")  # doctest: +SKIP
    >>> engine = stylefinder.Engine.open("shop-index")  # doctest: +SKIP
    >>> engine.recommend("upload.jpg", k=5)  # doctest: +SKIP
"""

__version__ = "0.1.0"

from stylefinder.errors import (
    BackboneUnavailableError,
    BadImageError,
    IndexStateError,
    StylefinderError,
    UnknownItemError,
)
from stylefinder.pipeline import IndexSummary, build_index
from stylefinder.recommend.engine import Engine, IndexInfo, Recommendation

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

"""Exceptions raised by stylefinder; every one carries a message meant for a person."""


class StylefinderError(Exception):
    """Base class of every error stylefinder raises on purpose."""


class BadImageError(StylefinderError, ValueError):
    """An input is not a usable image (corrupt, truncated, empty, too large, unknown format).

    Messages read "<source>: <reason>"; `reason` is the part after the source, for places that
    already show which file or upload it was.
    """

    @property
    def reason(self) -> str:
        text = str(self)
        return text.split(": ", 1)[1] if ": " in text else text


class ImageTooLargeError(BadImageError):
    """An image has more pixels than allowed (for example a decompression bomb)."""


class BackboneUnavailableError(StylefinderError, RuntimeError):
    """A backbone's weights or code cannot be loaded here; the message says how to provide them."""


class IndexStateError(StylefinderError, RuntimeError):
    """The index directory is missing, damaged, locked, or built with another backbone."""


class UnknownItemError(StylefinderError, KeyError):
    """An item id is not in the index."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown item"


class UnknownUserError(StylefinderError, KeyError):
    """A shopper (user id) has no record in the index's event store."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown user"

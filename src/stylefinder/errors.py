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


class StaleSnapshotError(IndexStateError):
    """A snapshot's rows were renumbered by a later commit (a compaction or a restore): take a
    new snapshot (`Engine.reload`) and ask again."""


class UnknownItemError(StylefinderError, KeyError):
    """An item id is not in the index."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown item"


class UnknownUserError(StylefinderError, KeyError):
    """A shopper (user id) has no record in the index's event store."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown user"


class UnknownColumnError(StylefinderError, ValueError):
    """A filter, a tuning run or a setting names a metadata column the index does not have.

    `known` lists the columns the index has, so callers can show them (the message does).
    """

    def __init__(self, message: str, known: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.known = list(known)


class BadFilterError(StylefinderError, ValueError):
    """A filter cannot be read (bad syntax, a range on a text column, an unreadable bound)."""


class DamagedIndexError(IndexStateError):
    """A file of the index directory is damaged; the message names it and how to rebuild."""


class NoSpaceError(StylefinderError, OSError):
    """The disk holding the index is full; the message says which one and how much is needed."""


class RemovalGuardError(StylefinderError, RuntimeError):
    """An `index` run would remove more of the catalog than allowed; nothing was written.

    `removals` lists the ids it would remove.
    """

    def __init__(self, message: str, removals: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.removals = list(removals)


class DatabaseError(StylefinderError, RuntimeError):
    """A PostgreSQL catalog cannot be used: the server is down or refuses the connection, the
    pgvector extension is missing, or the schema was migrated by a newer stylefinder."""


class NotOnPostgresError(StylefinderError, ValueError):
    """A feature the PostgreSQL backend does not offer yet (it needs an index directory); the
    message names the way round."""

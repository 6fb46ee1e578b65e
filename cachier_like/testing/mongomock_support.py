"""Running the MongoDB core on mongomock in a test suite.

mongomock 4.3 cannot run pymongo 4.10+'s ``UpdateOne`` in ``bulk_write``: pymongo
passes a ``sort`` argument (None unless given) that mongomock's bulk builder does not
take, so the core's ``set_many``, ``get_many`` stores and ``invalidate_tags`` fail on
mongomock with a recent pymongo, though a real server runs them.
:func:`teach_mongomock_bulk_updates` teaches mongomock the argument; call it once, e.g.
in a ``conftest.py``.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["teach_mongomock_bulk_updates"]


def teach_mongomock_bulk_updates() -> None:
    """Let mongomock run pymongo's ``UpdateOne`` in ``bulk_write``, as a server does.

    A bulk update that asks for a sort is refused (``NotImplementedError``): mongomock
    could not honour it. Idempotent; a no-op when the installed mongomock already takes
    the argument.

    Example:
        >>> import mongomock, pymongo
        >>> teach_mongomock_bulk_updates()
        >>> entries = mongomock.MongoClient().db.entries
        >>> bump = pymongo.UpdateOne({"_id": 1}, {"$inc": {"n": 1}}, upsert=True)
        >>> entries.bulk_write([bump]).upserted_count
        1
    """
    from mongomock.collection import BulkOperationBuilder  # noqa: PLC0415 (optional)

    original = BulkOperationBuilder.add_update
    if getattr(original, "takes_sort", False) or "sort" in inspect.signature(original).parameters:
        return

    def add_update(self: Any, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
        if sort is not None:
            raise NotImplementedError("mongomock cannot sort the document a bulk update takes")
        return original(self, *args, **kwargs)  # type: ignore[no-untyped-call]

    add_update.takes_sort = True  # type: ignore[attr-defined]
    BulkOperationBuilder.add_update = add_update  # type: ignore[method-assign]

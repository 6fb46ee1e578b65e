"""The MongoDB core, one module per job.

* :mod:`.core`: :class:`MongoCore`, the core itself (documents, entries, claims);
* :mod:`.async_ops`: its native async operations on pymongo's ``AsyncCollection``;
* :mod:`.batches`: ``delete``, ``get_many`` and ``set_many``, sync and native async;
* :mod:`.tags`: the tag versions (one counter document per tag), sync and native async;
* :mod:`.documents`: the queries and updates the sync and async operations share;
* :mod:`.maintenance`: clearing, purging, listing and counting documents, inherited;
* :mod:`.clients`: where the collection comes from (URL clients shared per process,
  an ``AsyncMongoClient`` per event loop, :func:`close_clients`);
* :mod:`.guard`: the collection wrappers whose operations go through the breaker.

Importing this package imports pymongo; the backend registry imports it only when
``backend="mongo"`` is used.
"""

from .clients import (
    DEFAULT_COLLECTION,
    DEFAULT_DATABASE,
    DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
    URL_ENV,
    URL_TIMEOUTS_MS,
    close_clients,
)
from .core import INDEX_NAME, TTL_INDEX_NAME, MongoCore
from .guard import MAINTENANCE_S

__all__ = [
    "DEFAULT_COLLECTION",
    "DEFAULT_DATABASE",
    "DEFAULT_SERVER_SELECTION_TIMEOUT_MS",
    "INDEX_NAME",
    "MAINTENANCE_S",
    "TTL_INDEX_NAME",
    "URL_ENV",
    "URL_TIMEOUTS_MS",
    "MongoCore",
    "close_clients",
]

"""The SQL core (SQLAlchemy Core: SQLite, PostgreSQL, MySQL/MariaDB), one module per job.

* :mod:`.core`: :class:`SQLCore`, the core itself (entries, claims, waits);
* :mod:`.engines`: engines from ``sql_engine``, shared, fork-safe, set up once;
* :mod:`.schema`: the table, its name rules and the database clock;
* :mod:`.statements`: every statement the core runs, compiled once;
* :mod:`.runner`: running them, with retries and the circuit breaker;
* :mod:`.watchdog`: unblocking statements on a server that hangs;
* :mod:`.async_engines`: an ``AsyncEngine``'s statements, on a private event loop thread;
* :mod:`.notify`: PostgreSQL ``LISTEN/NOTIFY`` wake-ups for waiters;
* :mod:`.listener`: the LISTEN connection and thread of a process, per database.

Importing this package imports SQLAlchemy; the backend registry imports it only when
``backend="sql"`` is used.
"""

from .core import SQL_URL_ENV, SQLCore

__all__ = ["SQL_URL_ENV", "SQLCore"]

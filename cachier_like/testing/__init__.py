"""Testing support: the core contract for core authors, a pytest plugin for users.

- :class:`~cachier_like.testing.contract.CoreContract`: the tests every storage core
  passes; subclass it with a ``make_core`` fixture (see ``docs/architecture.md``).
- :mod:`cachier_like.testing.plugin`: an opt-in pytest plugin that isolates caches per
  test and can switch caching off (see ``docs/testing.md``).
- :mod:`cachier_like.testing.processes`: threads and forked processes without sleeps.
- :mod:`cachier_like.testing.mongomock_support`: the MongoDB core on mongomock with a
  recent pymongo (:func:`~.mongomock_support.teach_mongomock_bulk_updates`).

Needs pytest. Register the package for assertion rewriting before importing it from a
``conftest.py``, so failed contract asserts show their values::

    pytest.register_assert_rewrite("cachier_like.testing")

Example:
    >>> from cachier_like.testing import CoreContract
    >>> CoreContract.cross_process
    True
"""

from __future__ import annotations

try:
    import pytest  # noqa: F401
except ImportError as exc:  # pragma: no cover - the test suite always has pytest
    raise ImportError(
        "cachier_like.testing needs pytest (pip install pytest); the library itself does not"
    ) from exc

from .contract import CoreContract, MakeCore, UnreadableSerializer

__all__ = ["CoreContract", "MakeCore", "UnreadableSerializer"]

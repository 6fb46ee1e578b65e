"""Per-core test fixtures, discovered and loaded as pytest plugins by tests/conftest.py.

Adding a core takes one module here. Each module exposes:

- ``PARAMS``: the ``pytest.param`` entries it adds to the shared behaviour suite, and one
  ``<param>_core_options`` fixture per entry (``@cached`` options, storage isolated);
- ``CROSS_PROCESS``: the ids of those entries whose store forked processes share, which
  the suite's cross-process section (``tests/test_behaviour_processes.py``) runs on;
- ``CONTRACTS``: its :class:`cachier_like.testing.CoreContract` subclasses (each with a
  ``make_core`` fixture and a marker), which ``tests/test_contract.py`` runs.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

_HELPERS = {"mongo_async_fake", "services", "types"}  # modules of shared helpers, not of cores


def core_modules() -> list[ModuleType]:
    """Every core fixture module of this package, in name order."""
    names = sorted(
        info.name for info in pkgutil.iter_modules(__path__) if info.name not in _HELPERS
    )
    return [importlib.import_module(f"{__name__}.{name}") for name in names]

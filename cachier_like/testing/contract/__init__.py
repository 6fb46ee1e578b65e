"""The core contract: what every storage core must do, as a pytest test class.

Subclass :class:`CoreContract` once per core, give it a ``make_core`` fixture and set
the capability flags that differ from the defaults (all documented on
:class:`~.base.ContractBase`); pytest then runs every contract test on that core.
``make_core(namespace, **options)`` returns a new core object (``options`` may include
``serializer``); two calls with one namespace must reach the same stored entries and
claims, as two processes would. Each test's store must start empty (a fresh
directory, key prefix, table, ...). Two optional fixtures enable two more checks:
``damage`` (corrupt a stored entry the store's own way) and ``store_options`` (the
options :meth:`Core.namespaces` takes for the test's store).

The contract is composed of one part per responsibility:

- :mod:`.storage`: get and set, the size limit, damaged payloads and stored entries;
- :mod:`.signing`: signed entries (``secret=``), refused unless their signature verifies;
- :mod:`.maintenance`: clear, purge_stale, stats, entries, namespaces;
- :mod:`.invalidation`: deleting one entry, batched reads and writes, tag versions;
- :mod:`.claims`: claims and waits within one process;
- :mod:`.across_processes`: eight racing processes, a killed claim holder.

Example (in a test module, with ``pytest.register_assert_rewrite("cachier_like.testing")``
in ``conftest.py``)::

    class TestMyCore(CoreContract):
        cross_process = False

        @pytest.fixture
        def make_core(self, tmp_path):
            return lambda namespace, **options: MyCore(namespace, root=tmp_path, **options)
"""

from __future__ import annotations

from .across_processes import ProcessChecks
from .base import MakeCore, UnreadableSerializer
from .claims import ClaimChecks
from .invalidation import BatchChecks, DeleteChecks, TagChecks
from .maintenance import MaintenanceChecks
from .signing import SigningChecks
from .storage import StorageChecks

__all__ = ["CoreContract", "MakeCore", "UnreadableSerializer"]


class CoreContract(
    StorageChecks,
    SigningChecks,
    MaintenanceChecks,
    DeleteChecks,
    BatchChecks,
    TagChecks,
    ClaimChecks,
    ProcessChecks,
):
    """The tests every core passes; subclass with a ``make_core`` fixture.

    The capability flags (``cross_process``, ``serializes``, ``lists_entries``,
    ``lists_namespaces``, ``notifications``, ``atomic_claims_on_entries``,
    ``race_threads``, ``race_rounds``, ``short_lease_s``) are described on
    :class:`~.base.ContractBase`.
    """

"""What every part of the contract shares: the capability flags and the fixtures.

The flags and optional fixtures are documented here, once. :class:`ContractBase` is the
root of every part, so a :class:`~cachier_like.testing.CoreContract` subclass sets them
in one place for all of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, ClassVar

import pytest

from ...cores.base import Core
from ..processes import in_call
from ..processes import wait_until as _wait_until

#: ``make_core(namespace, **options)``: a new core object on the test's store.
MakeCore = Callable[..., Core]

NAMESPACE = "contract.f"
#: Keys of the shapes the call path makes (hex digests) and any other hashable.
KEYS: list[Hashable] = [
    "k",
    "user_profile_7",
    "userprofilekey1234",
    "user_profile_12345678",
    "0123456789abcdef0123456789abcdef",
    ("a", "tuple", 3),
    7,
]
#: Namespaces that prefix, pattern-match or case-fold into one another.
NEIGHBOURS = ["pkg.f2", "pkg.f_extra", "pkg.f*", "pkg.f}x", "pkg.f:v:x", "pkg.[f]", "Pkg.F"]


class UnreadableSerializer:
    """Writes payloads that no pickle-reading core can read back."""

    def dumps(self, value: Any) -> bytes:
        return b"not a pickle" + repr(value).encode()

    def loads(self, data: bytes) -> Any:
        raise ValueError("damaged payload")


class ContractBase:
    """The capability flags and fixtures the parts of the contract read.

    A subclass sets only the flags that differ from these defaults. Two more flags are
    read from the core class itself: ``leases`` (claims expire unless renewed, so a
    dead holder frees its keys within a lease) and ``stable_keys``.
    """

    #: The store is shared between processes (forked children use the inherited core).
    cross_process: ClassVar[bool] = True
    #: Values are stored serialized: a payload can be damaged, and sizes are counted.
    serializes: ClassVar[bool] = True
    #: :meth:`Core.entries` lists the stored entries.
    lists_entries: ClassVar[bool] = True
    #: :meth:`Core.namespaces` lists the namespaces of the store (False where the store
    #: does not outlive the core objects, as in memory).
    lists_namespaces: ClassVar[bool] = True
    #: A waiter is woken by a notification (bound 0.5 s), not by polling (bound 5 s).
    notifications: ClassVar[bool] = False
    #: Racing claims on a key that already has an entry are atomic (not so on mongomock).
    atomic_claims_on_entries: ClassVar[bool] = True
    #: How many threads race for one claim, and how many rounds.
    race_threads: ClassVar[int] = 16
    race_rounds: ClassVar[int] = 20
    #: The short lease of the killed-holder test (seconds).
    short_lease_s: ClassVar[float] = 1.0

    @pytest.fixture
    def make_core(self) -> MakeCore:
        """Override: return ``make_core(namespace, **options)`` for this core."""
        raise NotImplementedError("a CoreContract subclass must define a make_core fixture")

    @pytest.fixture
    def core(self, make_core: MakeCore) -> Core:
        """One core on the test's store."""
        return make_core(NAMESPACE)

    @pytest.fixture
    def damage(self) -> Callable[[Core, Hashable], None]:
        """Override: ``damage(core, key)`` overwrites the entry of ``key``, past the core.

        Not a payload the serializer rejects, but bytes that are not even the core's
        framing (a garbage entry file, a garbage value in the key, row or document),
        written the store's own way. Without an override the check is skipped.
        """
        pytest.skip(f"{type(self).__name__} defines no damage fixture")

    @pytest.fixture
    def tamper(self) -> Callable[[Core, Hashable, bytes], None]:
        """Override: ``tamper(core, key, payload)`` replaces the stored payload of ``key``.

        What an attacker with write access to the store does: the core's own framing
        (entry header, timestamp) is kept and only the payload bytes are replaced,
        written the store's own way, past the core. Without an override the check is
        skipped.
        """
        pytest.skip(f"{type(self).__name__} defines no tamper fixture")

    @pytest.fixture
    def store_options(self) -> dict[str, Any]:
        """Override: the options naming the test's store to ``Core.namespaces(**options)``.

        The core class's own constructor options (``cache_dir``, ``redis_client``, ...),
        as the CLI passes them. Without an override the check is skipped.
        """
        pytest.skip(f"{type(self).__name__} defines no store_options fixture")


def start(target: Callable[[], object]) -> tuple[threading.Thread, list[Any]]:
    """Run ``target`` in a daemon thread; its result is appended to the list."""
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(target()), daemon=True)
    thread.start()
    return thread, results


def wait_started(thread: threading.Thread, core: Core) -> None:
    """Return once ``thread`` is inside ``core.wait``."""
    code = type(core).wait.__code__
    _wait_until(lambda: in_call(thread, code))

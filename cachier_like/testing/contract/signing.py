"""Contract part: signed entries (``secret=``): refused unless their signature verifies."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pytest

from ...cores.base import Core
from ...entry import Entry
from ...serialize import DEFAULT_SERIALIZER
from ...signing import MAGIC, TAG_SIZE, Signer
from ..processes import library_warnings
from .base import NAMESPACE, ContractBase, MakeCore

OLD = b"the old secret, sixteen bytes or more"
NEW = b"the new secret, sixteen bytes or more"


class CountingSerializer:
    """Pickle that counts ``loads``: a refused entry must never reach it."""

    def __init__(self) -> None:
        self.loads_calls = 0

    def dumps(self, value: Any) -> bytes:
        return DEFAULT_SERIALIZER.dumps(value)

    def loads(self, data: bytes) -> Any:
        self.loads_calls += 1
        return DEFAULT_SERIALIZER.loads(data)


#: ``tamper(core, key, payload)`` (see :meth:`ContractBase.tamper`).
Tamper = Callable[[Core, Hashable, bytes], None]


class _Planted:
    """A pickle that creates a directory when loaded: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def _signed(core: Core, *secrets: bytes) -> Core:
    core.signer = Signer(secrets) if secrets else None
    return core


class SigningChecks(ContractBase):
    """With a secret, only entries signed for this function, key and time are read."""

    def _skip_unless_serializing(self) -> None:
        if not self.serializes:
            pytest.skip("this core keeps objects: nothing is read back from bytes")

    def test_signed_entries_round_trip_and_other_handles_read_them(
        self, make_core: MakeCore
    ) -> None:
        self._skip_unless_serializing()
        writer = _signed(make_core(NAMESPACE), NEW)
        assert writer.set("k", Entry({"a": 1}, 10.0))
        assert writer.get("k") == Entry({"a": 1}, 10.0)
        assert _signed(make_core(NAMESPACE), NEW).get("k") == Entry({"a": 1}, 10.0)

    def test_an_entry_with_a_foreign_signature_is_refused_before_deserializing(
        self, make_core: MakeCore
    ) -> None:
        self._skip_unless_serializing()
        assert _signed(make_core(NAMESPACE), OLD).set("k", Entry([1, 2], 10.0))
        counting = CountingSerializer()
        reader = _signed(make_core(NAMESPACE, serializer=counting), NEW)
        with library_warnings() as warned:
            assert reader.get("k") is None
            assert reader.get("k") is None
        refused = [w for w in warned if "signature" in w]
        assert len(refused) == 1, warned  # rate-limited: one warning for both reads
        assert NAMESPACE in refused[0]
        assert counting.loads_calls == 0, "a refused entry was deserialized"
        assert reader.rejected == 2
        assert reader.set("k", Entry([1, 2], 11.0))  # replaced, and readable again
        assert reader.get("k") == Entry([1, 2], 11.0)

    def test_an_unsigned_entry_is_refused_once_a_secret_is_set(self, make_core: MakeCore) -> None:
        self._skip_unless_serializing()
        assert make_core(NAMESPACE).set("k", Entry("plain", 10.0))
        counting = CountingSerializer()
        reader = _signed(make_core(NAMESPACE, serializer=counting), NEW)
        with library_warnings() as warned:
            assert reader.get("k") is None
        assert any("signature" in w for w in warned), warned
        assert counting.loads_calls == 0

    def test_a_signed_entry_is_refused_without_the_secret(self, make_core: MakeCore) -> None:
        self._skip_unless_serializing()
        assert _signed(make_core(NAMESPACE), NEW).set("k", Entry("signed", 10.0))
        counting = CountingSerializer()
        reader = make_core(NAMESPACE, serializer=counting)
        with library_warnings() as warned:
            assert reader.get("k") is None
        assert any("no secret is configured" in w for w in warned), warned
        assert counting.loads_calls == 0

    def test_rotation_the_first_secret_signs_and_every_one_verifies(
        self, make_core: MakeCore
    ) -> None:
        self._skip_unless_serializing()
        assert _signed(make_core(NAMESPACE), OLD).set("old", Entry("by old", 10.0))
        rotating = _signed(make_core(NAMESPACE), NEW, OLD)
        assert rotating.get("old") == Entry("by old", 10.0)
        assert rotating.set("new", Entry("by new", 11.0))
        assert _signed(make_core(NAMESPACE), NEW).get("new") == Entry("by new", 11.0)
        assert _signed(make_core(NAMESPACE), OLD).get("new") is None  # signed by NEW only

    def test_a_signature_is_bound_to_its_function(self, make_core: MakeCore) -> None:
        # The same secret, key and bytes under another namespace: the tag differs, so a
        # value copied from one function's store to another's would not verify.
        self._skip_unless_serializing()
        core = _signed(make_core(NAMESPACE), NEW)
        other = _signed(make_core(NAMESPACE + ".other"), NEW)
        assert core.encode("v", "k", 1.0) != other.encode("v", "k", 1.0)
        assert core.encode("v", "k", 1.0) != core.encode("v", "k2", 1.0)
        assert core.encode("v", "k", 1.0) != core.encode("v", "k", 2.0)

    @pytest.mark.parametrize("disguise", ["bare", "forged"], ids=["bare", "forged-tag"])
    def test_a_planted_pickle_never_runs_when_a_secret_is_set(
        self, core: Core, request: pytest.FixtureRequest, tmp_path: Path, disguise: str
    ) -> None:
        self._skip_unless_serializing()
        tamper: Tamper = request.getfixturevalue("tamper")
        _signed(core, NEW)
        assert core.set("k", Entry("genuine", 10.0))
        marker = tmp_path / "the planted pickle ran"
        planted = pickle.dumps(_Planted(marker))
        if disguise == "forged":  # the signed framing, with a tag made without the secret
            planted = MAGIC + b"\0" * TAG_SIZE + planted
        tamper(core, "k", planted)
        with library_warnings() as warned:
            assert core.get("k") is None
        assert not marker.exists(), "a payload written past the core was unpickled"
        assert any("signature" in w for w in warned), warned
        assert core.set("k", Entry("genuine", 11.0))  # the next store replaces it
        assert core.get("k") == Entry("genuine", 11.0)

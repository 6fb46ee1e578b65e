"""``secret=``, ``serializer="json"`` and the pickle core's file modes, through ``@cached``.

The core-level checks (foreign, unsigned and planted payloads on every core) are in the
shipped contract (``cachier_like.testing.contract.signing``); these cover configuration.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cachier_like import ConfigurationError, cached, set_default_params
from cachier_like.signing import SECRET_ENV
from tests.backends.types import CoreOptions
from tests.support import library_warnings

SECRET = "a secret for these tests, long enough"
OTHER = "another secret for these tests, long too"


def _counted(**options: Any) -> tuple[Any, list[int]]:
    calls: list[int] = []

    def triple(x: int) -> int:
        calls.append(x)
        return 3 * x

    return cached(**options)(triple), calls


def test_a_function_with_a_secret_rejects_entries_written_without_it(cache_dir: Path) -> None:
    plain, plain_calls = _counted(cache_dir=cache_dir, namespace="signed.demo")
    assert plain(2) == 6 and plain(2) == 6
    assert plain_calls == [2]
    signed, signed_calls = _counted(cache_dir=cache_dir, namespace="signed.demo", secret=SECRET)
    with library_warnings() as warned:
        assert signed(2) == 6  # the unsigned entry is a miss: computed and replaced
    assert signed_calls == [2]
    assert any("signature" in w for w in warned), warned
    assert signed(2) == 6 and signed_calls == [2]  # now a hit
    assert signed.core.rejected == 2  # the first read, and the re-check under the claim


def test_the_secret_comes_from_the_defaults_or_the_environment(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_default_params(secret=SECRET)
    first, _ = _counted(cache_dir=cache_dir, namespace="signed.env")
    assert first(1) == 3
    set_default_params(secret=None)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    second, calls = _counted(cache_dir=cache_dir, namespace="signed.env")
    assert second(1) == 3 and calls == []  # the same secret verifies the entry
    monkeypatch.setenv(SECRET_ENV, OTHER)
    third, calls = _counted(cache_dir=cache_dir, namespace="signed.env")
    assert third(1) == 3 and calls == [1]  # another secret does not


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("short", "at least 16"),
        (12345, "must be a str or bytes secret"),
        ([], "non-empty sequence"),
        ([SECRET, "tiny"], r"secret\[1\] is 4 bytes"),
    ],
)
def test_a_bad_secret_is_a_configuration_error(cache_dir: Path, secret: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        cached(cache_dir=cache_dir, secret=secret)(lambda x: x)


@pytest.fixture
def umask_0() -> Iterator[None]:
    previous = os.umask(0)
    yield
    os.umask(previous)


def _modes(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): stat.S_IMODE(path.stat().st_mode)
        for path in [root, *root.rglob("*")]
    }


@pytest.mark.pickle
@pytest.mark.usefixtures("umask_0")
def test_pickle_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    f, _ = _counted(cache_dir=root)
    assert f(1) == 3
    modes = _modes(root)
    assert modes["."] == 0o700, modes  # the cache directory the core created
    files = {name: mode for name, mode in modes.items() if (root / name).is_file()}
    directories = {name: mode for name, mode in modes.items() if (root / name).is_dir()}
    assert any(name.endswith(".entry") for name in files), files
    assert set(files.values()) == {0o600}, files
    assert set(directories.values()) == {0o700}, directories


@pytest.mark.pickle
def test_a_file_mode_shared_with_the_group_is_set_despite_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)  # would strip every group bit
    try:
        root = tmp_path / "cache"
        f, _ = _counted(cache_dir=root, file_mode=0o640)
        assert f(1) == 3
    finally:
        os.umask(previous)
    entries = [p for p in root.rglob("*.entry")]
    assert entries and {stat.S_IMODE(p.stat().st_mode) for p in entries} == {0o640}
    assert stat.S_IMODE(entries[0].parent.stat().st_mode) == 0o750


@pytest.mark.pickle
@pytest.mark.parametrize("mode", [0o400, 0o1777, "0o600", True])
def test_a_bad_file_mode_is_a_configuration_error(tmp_path: Path, mode: Any) -> None:
    with pytest.raises(ConfigurationError, match="file_mode must be permission bits"):
        cached(cache_dir=tmp_path, file_mode=mode)(lambda x: x)


def test_the_json_serializer_stores_json_values_on_every_core(core_options: CoreOptions) -> None:
    f, calls = _counted(**core_options(serializer="json"))
    assert f(4) == 12 and f(4) == 12
    assert calls == [4]


def test_json_stores_nothing_a_reader_could_run(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir, serializer="json")
    def describe(x: int) -> dict[str, Any]:
        return {"x": x, "items": [1, 2.5, None, "s"]}

    assert describe(1) == {"x": 1, "items": [1, 2.5, None, "s"]}
    [entry_file] = list(cache_dir.rglob("*.entry"))
    assert b'{"x":1,"items":[1,2.5,null,"s"]}' in entry_file.read_bytes()
    entry = describe.cached_entry(1)
    assert entry is not None and entry.value == {"x": 1, "items": [1, 2.5, None, "s"]}


def test_a_value_json_cannot_hold_is_returned_uncached(cache_dir: Path) -> None:
    calls: list[int] = []

    @cached(cache_dir=cache_dir, serializer="json")
    def make_set(x: int) -> set[int]:
        calls.append(x)
        return {x}

    with library_warnings():
        assert make_set(1) == {1}
        assert make_set(1) == {1}
    assert calls == [1, 1]


@pytest.mark.parametrize("serializer", ["yaml", 3, object()])
def test_a_bad_serializer_is_a_configuration_error(cache_dir: Path, serializer: Any) -> None:
    with pytest.raises(ConfigurationError, match="serializer must be 'pickle', 'json'"):
        cached(cache_dir=cache_dir, serializer=serializer)(lambda x: x)


@pytest.mark.redis
def test_native_async_reads_check_signatures_too(redis_prefix: str) -> None:
    from tests.backends.redis_backend import redis_url

    options: dict[str, Any] = {
        "backend": "redis",
        "redis_client": redis_url(),
        "key_prefix": redis_prefix,
    }
    plain, _ = _counted(namespace="signed.async", **options)
    assert plain(5) == 15  # an entry written without the secret
    calls: list[int] = []

    @cached(namespace="signed.async", secret=SECRET, **options)
    async def triple(x: int) -> int:
        calls.append(x)
        return 3 * x

    async def main() -> None:
        with library_warnings() as warned:
            assert await triple(5) == 15  # refused on the native path: computed again
        assert calls == [5]
        assert any("signature" in w for w in warned), warned
        assert triple.core.native_async
        assert await triple(5) == 15 and calls == [5]  # the signed entry is a hit

    asyncio.run(main())


@pytest.mark.parametrize("secret", [b"s" * 16, b"k" * 64, b"long secret " * 10])
def test_the_signature_is_the_standard_hmac_sha256(secret: bytes) -> None:
    # The padded-key states are precomputed for speed: the tag must still be RFC 2104's.
    import hmac
    import struct

    from cachier_like.signing import MAGIC, TAG_SIZE, Signer

    signed = Signer([secret]).sign("pkg.f", "key", 1700000000.5, b"payload")
    ns, name = b"pkg.f", b"key"
    head = struct.pack(">I", len(ns)) + ns + struct.pack(">I", len(name)) + name
    head += struct.pack(">d", 1700000000.5)
    expected_tag = hmac.digest(secret, head + b"payload", "sha256")
    assert signed == MAGIC + expected_tag + b"payload"
    assert len(expected_tag) == TAG_SIZE

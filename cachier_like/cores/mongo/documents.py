"""The MongoDB core's queries and updates, shared by its sync and native async operations.

Both paths build every filter and update here, so they store the same documents and
keep the same claim semantics (see :mod:`.core` for the layout); only the awaiting
differs.

Example:
    >>> claim_query("pkg.f", "k1", 100.0)
    {'ns': 'pkg.f', 'key': 'k1', 'claim_until': {'$not': {'$gt': 100.0}}}
    >>> lease_update(110.0, "ab12", ttl=None)
    {'$set': {'claim_until': 110.0, 'claim_token': 'ab12'}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from bson.binary import Binary

#: Unset when a claim ends on a document that keeps its entry.
CLAIM_FIELDS = {"claim_token": "", "claim_until": ""}
#: What a read fetches: the entry's fields only.
ENTRY_PROJECTION = {"_id": 0, "value": 1, "ts": 1}
#: What a wait's poll fetches: the entry and the claim's expiry, in one read.
POLL_PROJECTION = {"_id": 0, "value": 1, "ts": 1, "claim_until": 1}
#: Attempts of an upsert that races another writer's insert of the same document.
UPSERT_ATTEMPTS = 5


def date(seconds: float) -> datetime:
    """``seconds`` since the epoch as an aware UTC datetime (a BSON date)."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def server_seconds(hello: Mapping[str, Any]) -> float:
    """The server's time in a ``hello`` reply (``localTime``, a BSON date), in seconds.

    pymongo decodes BSON dates as naive UTC datetimes unless the client is
    ``tz_aware``; either way the moment is the same.
    """
    local_time = hello["localTime"]
    if local_time.tzinfo is None:
        local_time = local_time.replace(tzinfo=timezone.utc)
    return float(local_time.timestamp())


def doc_query(ns: str, name: str) -> dict[str, Any]:
    """The one document of key ``name`` in function ``ns``."""
    return {"ns": ns, "key": name}


def entry_update(payload: bytes, stamp: float, ttl: float | None) -> dict[str, Any]:
    """The ``$set`` storing an entry's fields; any claim on the document stays as it is."""
    fields: dict[str, Any] = {
        "value": Binary(payload),
        "ts": stamp,
        "time": date(stamp),
        "size": len(payload),
    }
    if ttl is not None:
        fields["expires_at"] = date(stamp + ttl)
    return {"$set": fields}


def ending_claim(update: dict[str, Any]) -> dict[str, Any]:
    """An :func:`entry_update` that also ends the claim: the claim holder's store.

    Matched with :func:`token_query`, so it ends only the holder's own claim; waiters
    see the claim end and the value in the same write.
    """
    return {**update, "$unset": CLAIM_FIELDS}


def claim_query(ns: str, name: str, now: float) -> dict[str, Any]:
    """Matches the document only while its claim is absent or expired.

    Upserted with :func:`lease_update`: when a live claim is held the filter does not
    match, the insert hits the unique ``(ns, key)`` index, and the claim is lost.
    """
    return {"ns": ns, "key": name, "claim_until": {"$not": {"$gt": now}}}


def lease_update(until: float, token: str | None, ttl: float | None) -> dict[str, Any]:
    """Set a claim's expiry (and its token, when taking it)."""
    fields: dict[str, Any] = {"claim_until": until}
    if token is not None:
        fields["claim_token"] = token
    update: dict[str, Any] = {"$set": fields}
    if ttl is not None:  # the TTL monitor must not delete a held claim
        update["$max"] = {"expires_at": date(until)}
    return update


def token_query(ns: str, name: str, token: str) -> dict[str, Any]:
    """The document while it holds the claim with ``token`` (this process's claim)."""
    return {"ns": ns, "key": name, "claim_token": token}


def claim_only(query: dict[str, Any]) -> dict[str, Any]:
    """``query`` narrowed to a document that holds no entry (a claim and nothing else)."""
    return {**query, "value": {"$exists": False}}


def live_claim_query(ns: str, name: str, now: float) -> dict[str, Any]:
    """The document while any caller holds an unexpired claim on it."""
    return {"ns": ns, "key": name, "claim_until": {"$gt": now}}


def claims_query(ns: str) -> dict[str, Any]:
    """Every document of ``ns`` that holds a claim, live or lapsed (``clear_claims``)."""
    return {"ns": ns, "claim_token": {"$exists": True}}


# -- clear: entries go, calculations in progress keep their claims ----------------

#: Unset when an entry is removed from a claimed document (``expires_at`` stays: the
#: claim's renewals keep it ahead of the TTL monitor).
ENTRY_FIELDS = {"value": "", "ts": "", "time": "", "size": ""}


def clear_queries(ns: str, now: float) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """What ``clear`` does, in order: delete unclaimed entries, delete dead claim
    documents, and unset the entry of documents under a live claim (or any claim)."""
    unclaimed = {"ns": ns, "claim_until": {"$not": {"$gt": now}}}
    claimed = {"ns": ns, "claim_until": {"$exists": True}, "value": {"$exists": True}}
    return {**unclaimed, "value": {"$exists": True}}, claim_only(unclaimed), claimed


# -- delete: one entry goes, a calculation in progress keeps its claim ------------


def delete_queries(ns: str, name: str, now: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """What ``delete`` does, in order, until one matches: delete the document when it
    holds an entry and no live claim; else unset the entry of the claimed document."""
    entry = {"ns": ns, "key": name, "value": {"$exists": True}}
    return {**entry, "claim_until": {"$not": {"$gt": now}}}, entry


# -- batches: one query or one bulk write for many keys ---------------------------

#: What a batched read fetches: the entry's fields, and the key they belong to.
MANY_PROJECTION = {"_id": 0, "key": 1, "value": 1, "ts": 1}


def many_query(ns: str, names: Iterable[str]) -> dict[str, Any]:
    """The documents of keys ``names`` (each once) in function ``ns``: one ``$in``."""
    return {"ns": ns, "key": {"$in": list(dict.fromkeys(names))}}


# -- tag versions: one counter document per tag, beside the entries ----------------
# A tag's document has a sub-document ``_id`` (an entry's is an ObjectId) and no ``ns``,
# so no query of a function's documents (reads, clear, purge, stats, listings) matches
# it, and no ``expires_at``, so the TTL monitor leaves it. It repeats its ``_id`` as its
# ``key``: the unique ``(ns, key)`` index counts a missing field as null, and would
# refuse a second document missing both.

#: The field of a tag document's ``_id`` that holds the tag.
TAG_FIELD = "cachier_like_tag"
#: The field holding a tag's version (absent from every entry document).
VERSION_FIELD = "tag_version"
#: What a read of tag versions fetches.
TAG_PROJECTION = {"_id": 1, VERSION_FIELD: 1}
#: What ``get_tagged``'s one query fetches: an entry's fields, a tag's version.
TAGGED_PROJECTION = {"_id": 1, "value": 1, "ts": 1, VERSION_FIELD: 1}


def tag_id(tag: str) -> dict[str, str]:
    """The ``_id`` of ``tag``'s version document.

    >>> tag_id("user:7")
    {'cachier_like_tag': 'user:7'}
    """
    return {TAG_FIELD: tag}


def tags_query(tags: Iterable[str]) -> dict[str, Any]:
    """The version documents of ``tags`` (a missing one is version 0)."""
    return {"_id": {"$in": [tag_id(tag) for tag in dict.fromkeys(tags)]}}


def tagged_query(ns: str, name: str, tags: Iterable[str]) -> dict[str, Any]:
    """An entry's document and its tags' version documents, in one query.

    Each branch is served by an index: ``(ns, key)`` and ``_id``.
    """
    return {"$or": [doc_query(ns, name), tags_query(tags)]}


def bump_update(tag: str) -> dict[str, Any]:
    """The upsert advancing ``tag``'s version by one (from 0 when it has no document)."""
    return {"$inc": {VERSION_FIELD: 1}, "$setOnInsert": {"key": tag_id(tag)}}


def versions_of(found: Iterable[Mapping[str, Any]], tags: Sequence[str]) -> tuple[int, ...]:
    """The version of each of ``tags`` among the read documents ``found`` (0 if absent).

    Documents other than tag documents (the entry of :func:`tagged_query`) are skipped.

    >>> versions_of([{"_id": tag_id("a"), "tag_version": 3}, {"value": b""}], ["a", "b"])
    (3, 0)
    """
    versions: dict[str, int] = {}
    for doc in found:
        version, ident = doc.get(VERSION_FIELD), doc.get("_id")
        if version is not None and isinstance(ident, Mapping):
            versions[str(ident.get(TAG_FIELD))] = int(version)
    return tuple(versions.get(tag, 0) for tag in tags)


def entry_among(found: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The entry's document among those :func:`tagged_query` read, or None."""
    return next((doc for doc in found if VERSION_FIELD not in doc), None)


# -- indexes ------------------------------------------------------------------------

INDEX_NAME = "cachier_like_ns_key"
TTL_INDEX_NAME = "cachier_like_expires_at"


def indexes(ttl: float | None) -> list[tuple[Any, dict[str, Any]]]:
    """The ``create_index`` arguments of the core's indexes: ``(keys, options)`` each.

    The unique ``(ns, key)`` index makes claims exclusive; with ``server_ttl``, a TTL
    index on ``expires_at`` lets the server delete expired entries.
    """
    specs: list[tuple[Any, dict[str, Any]]] = [
        ([("ns", 1), ("key", 1)], {"unique": True, "name": INDEX_NAME})
    ]
    if ttl is not None:
        specs.append(("expires_at", {"expireAfterSeconds": 0, "name": TTL_INDEX_NAME}))
    return specs

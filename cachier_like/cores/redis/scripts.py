"""The Redis core's Lua scripts: the steps that must be atomic, each one round trip.

Key roles (all of one function's keys share a hash tag, so one cluster slot):
``v`` the entry, ``c`` the claim (value: the holder's token; PTTL: its lease), and
``w:<token>`` the wake list of that one claim: its release pushes an element there and
its waiters block on it with ``BLMOVE w w``, which leaves the element in place, so
every blocked waiter wakes. A claim itself is a plain ``SET NX PX`` (no script): a new
claim has a new token, hence an empty wake list of its own.

A batch (:meth:`~.link.Link.batch`) names a script as ``(Script, numkeys, *keys, *args)``
among plain commands: sent by SHA1 (:func:`by_sha`), resent as text (:func:`by_text`)
when the server lacks one.
"""

from __future__ import annotations

import hashlib
from typing import Any


class Script:
    """A Lua script, run by its SHA1 (loaded on first use by each server)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


# End a claim (shared text): drop it if it is still ours (a lapsed lease may have let
# another caller take over), then wake the waiters of our claim.
_RELEASE = """
if redis.call('GET', {c}) == {token} then redis.call('DEL', {c}) end
redis.call('RPUSH', {w}, '1')
redis.call('PEXPIRE', {w}, {wake_ms})
return 1
"""

#: KEYS: claim, wake; ARGV: token, wake_ms.
RELEASE = Script(_RELEASE.format(c="KEYS[1]", w="KEYS[2]", token="ARGV[1]", wake_ms="ARGV[2]"))

#: KEYS: entry, claim, wake; ARGV: data, ttl_ms ('0': none), token, wake_ms.
STORE_RELEASE = Script(
    """
if ARGV[2] == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
"""
    + _RELEASE.format(c="KEYS[2]", w="KEYS[3]", token="ARGV[3]", wake_ms="ARGV[4]")
)

#: KEYS: claim; ARGV: token, lease_ms -> 1 if the claim is still ours (and renewed).
RENEW = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
""")

#: KEYS: claim, entry -> {pttl, token} while claimed, else {-2, entry or nil}.
PROBE = Script("""
local token = redis.call('GET', KEYS[1])
if not token then return {-2, redis.call('GET', KEYS[2])} end
return {redis.call('PTTL', KEYS[1]), token}
""")

#: KEYS: claim1, wake1, claim2, wake2, ...; ARGV: wake_ms, token1, token2, ...
#: -> how many claims were dropped (one taken again since its token was read stays).
DROP_CLAIMS = Script("""
local n = 0
for i = 1, #KEYS, 2 do
  if redis.call('GET', KEYS[i]) == ARGV[(i + 1) / 2 + 1] then
    n = n + redis.call('DEL', KEYS[i])
    redis.call('RPUSH', KEYS[i + 1], '1')
    redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
  end
end
return n
""")

#: KEYS: entries; ARGV: header length, then each entry's header as read -> removed.
#: An entry rewritten since it was read (new header) is kept.
PURGE = Script("""
local n = 0
local last = tonumber(ARGV[1]) - 1
for i, key in ipairs(KEYS) do
  if redis.call('GETRANGE', key, 0, last) == ARGV[i + 1] then
    n = n + redis.call('UNLINK', key)
  end
end
return n
""")

#: KEYS: the tag-version keys (one slot) -> how many were advanced. All in one step, so
#: a reader sees every tag of one invalidation advanced, or none.
BUMP_TAGS = Script("""
for _, key in ipairs(KEYS) do redis.call('INCR', key) end
return #KEYS
""")


def by_sha(commands: tuple[tuple[Any, ...], ...]) -> tuple[tuple[Any, ...], ...]:
    """``commands`` with each ``(Script, numkeys, ...)`` made an ``EVALSHA``.

    Example:
        >>> by_sha(((RENEW, 1, "c", "t", 5), ("GET", "v")))[0][:2] == ("EVALSHA", RENEW.sha)
        True
    """
    return tuple(("EVALSHA", c[0].sha, *c[1:]) if type(c[0]) is Script else c for c in commands)


def by_text(commands: tuple[tuple[Any, ...], ...]) -> tuple[tuple[Any, ...], ...]:
    """``commands`` with each ``(Script, numkeys, ...)`` made an ``EVAL`` (for a server
    that lacks a script: it then keeps it for the next ``EVALSHA``)."""
    return tuple(("EVAL", c[0].text, *c[1:]) if type(c[0]) is Script else c for c in commands)

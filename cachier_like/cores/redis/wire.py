"""The Redis protocol on a private connection: packing commands, one exchange.

Imported only by :mod:`.link`, whose :class:`~.link.Link` runs the core's commands on one
private connection per thread when the client allows it (see its module docstring).
"""

from __future__ import annotations

from typing import Any

from redis.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from ... import forks

_generation = 0  # bumped in a forked child: inherited connections belong to the parent


def _after_fork() -> None:
    global _generation
    _generation += 1


forks.reset_in_child(_after_fork)


class Parts(tuple[bytes, ...]):
    """Pieces of one argument (an entry's header and payload), sent without joining them.

    Joining a large payload to its header would copy it whole; on a private connection
    the pieces go to the socket as they are, so storing holds no second copy.
    """

    __slots__ = ()


#: Pieces at least this large are sent by themselves rather than copied into a batch.
_LARGE_PIECE = 1 << 16
#: Large pieces go out in slices this big: since Python 3.5 a socket timeout bounds a
#: whole ``sendall``, so each slice gets the timeout, as each read does.
_SEND_SLICE = 1 << 20


def _pack(commands: tuple[tuple[Any, ...], ...]) -> list[bytes | memoryview]:
    """Commands in the Redis protocol (arrays of bulk strings), about three times cheaper
    than redis-py's general-purpose packer for the core's few argument types. Small
    pieces are joined into one buffer; a large :class:`Parts` piece stays apart."""
    out: list[bytes] = []
    large = False
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            if type(arg) is Parts:
                size = sum(map(len, arg))
                large = large or size >= _LARGE_PIECE
                out.append(b"$%d\r\n" % size)
                out += arg
            else:
                data = arg if type(arg) is bytes else str(arg).encode()
                out += (b"$%d\r\n" % len(data), data)
            out.append(b"\r\n")
    if not large:
        return [b"".join(out)]
    batches: list[bytes | memoryview] = []
    small: list[bytes] = []
    for piece in out:
        if len(piece) < _LARGE_PIECE:
            small.append(piece)
            continue
        if small:
            batches.append(b"".join(small))
            small = []
        view = memoryview(piece)
        batches += (view[at : at + _SEND_SLICE] for at in range(0, len(piece), _SEND_SLICE))
    if small:
        batches.append(b"".join(small))
    return batches


def _joined(command: tuple[Any, ...]) -> tuple[Any, ...]:
    """``command`` with :class:`Parts` joined, for redis-py's own packer."""
    return tuple(b"".join(arg) if type(arg) is Parts else arg for arg in command)


class _Slot:
    """One thread's private connection."""

    __slots__ = ("conn", "generation", "tracked", "tracks", "used")

    def __init__(self, conn: Connection) -> None:
        self.conn: Any = conn  # redis-py leaves send_command and disconnect untyped
        self.generation = _generation
        self.used = False  # has answered at least once since it (re)connected
        #: Whether this connection keeps tag versions (:mod:`.tracking`), and those kept.
        self.tracks = False
        self.tracked: Any = None


def _exchange(slot: _Slot, commands: tuple[tuple[Any, ...], ...]) -> list[Any]:
    """Send ``commands`` on the slot's connection and read every reply (an error
    reply raises once all are read, so the connection stays in step)."""
    conn = slot.conn
    for attempt in (0, 1):
        replies: list[Any] = []
        error: ResponseError | None = None
        try:
            conn.send_packed_command(_pack(commands))
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:  # an error reply: the connection is in step
                    error = error or exc
                    replies.append(exc)
        except RedisConnectionError:
            conn.disconnect()
            # A connection that worked may have been closed by the server (idle
            # timeout, restart, CLIENT KILL): one fresh try, like redis-py's retry.
            if attempt or not slot.used:
                raise
            slot.used = False
            continue
        except BaseException:
            conn.disconnect()  # a reply may still be on its way: start afresh
            slot.used = False
            raise
        slot.used = True
        if error is not None:
            raise error
        return replies
    raise AssertionError("unreachable")  # pragma: no cover

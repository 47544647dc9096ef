"""The message schema: requests, replies, the hello handshake and typed field access.

A *request* is ``{"id": int, "op": str, ...arguments}``; its *reply* carries the same ``id`` and
either ``"ok"`` (the result) or ``"err"`` (a stable code from :data:`ERRORS_BY_CODE`) with
``"msg"``. The set of operations is open: ``op`` is a string, and a daemon answers an op it does
not know with :class:`InvalidArgument`. A connection starts with a ``hello`` request.

Everything here builds or reads plain dicts; nothing does I/O or keeps state, so all of it is
thread-safe. Builders return fresh dicts and never mutate their arguments.
"""

from __future__ import annotations

from collections.abc import Mapping

from agentmem import constants
from agentmem.errors import (
    ERRORS_BY_CODE,
    AgentmemError,
    InvalidArgument,
    ProtocolError,
    TooLarge,
)

TYPE_CHECKING = False  # not typing's: the client must not import typing (see ids.py)

if TYPE_CHECKING:
    from typing import Final, TypeVar

    _T = TypeVar("_T")

__all__ = [
    "OPS",
    "OP_ALLOC_PROFILE",
    "OP_ALLOC_SMU",
    "OP_APPEND",
    "OP_FORK",
    "OP_GET_STATS",
    "OP_HELLO",
    "OP_MARK_HOT",
    "OP_MESSAGES",
    "OP_READ",
    "OP_RELEASE",
    "OP_SET_STATE",
    "OP_SHARE_CONTENT",
    "PROTOCOL_VERSION",
    "check_hello",
    "hello",
    "optional",
    "parse_request",
    "raise_for_reply",
    "reply_error",
    "reply_ok",
    "request",
    "require",
    "OUT_OF_RANGE",
]

#: Version of the message schema, exchanged in ``hello``. Distinct from the frame header's
#: FRAME_VERSION: that one changes with the byte layout, this one with the meaning of messages.
PROTOCOL_VERSION: Final = 1
#: What an integer argument the protocol cannot carry (beyond 64 bits; no handle is) raises,
#: ``InvalidArgument``: from the socket clients before sending, from the in-process service.
OUT_OF_RANGE: Final = "an integer argument is out of range: the protocol carries 64-bit integers"

# Planned operations. Their arguments and results are specified with the daemon; the names are
# fixed here so both sides spell them alike. The four calls of the original interface first.
OP_HELLO: Final = "hello"
OP_ALLOC_SMU: Final = "alloc_smu"
OP_SHARE_CONTENT: Final = "share_content"
OP_MARK_HOT: Final = "mark_hot"
OP_GET_STATS: Final = "get_stats"
OP_READ: Final = "read"
OP_RELEASE: Final = "release"
OP_SET_STATE: Final = "set_state"
OP_APPEND: Final = "append"
OP_FORK: Final = "fork"
OP_MESSAGES: Final = "messages"
OP_ALLOC_PROFILE: Final = "alloc_profile"

OPS: Final = frozenset(
    {
        OP_HELLO,
        OP_ALLOC_SMU,
        OP_SHARE_CONTENT,
        OP_MARK_HOT,
        OP_GET_STATS,
        OP_READ,
        OP_RELEASE,
        OP_SET_STATE,
        OP_APPEND,
        OP_FORK,
        OP_MESSAGES,
        OP_ALLOC_PROFILE,
    }
)
"""The operations planned so far (not a closed set: a peer may send others)."""

#: Longest ``op`` name accepted; names are short identifiers, and the bound keeps an error
#: message that quotes an unknown op short.
MAX_OP_NAME: Final = 64

#: A views reply's ``pieces`` packed (``messages`` with ``views`` and ``packed``): native
#: uint32 triples (segment, offset, length), one a piece. Segment PACKED_COPY is the reply's
#: copy segment (id -1); PACKED_INLINE stands for the next item of ``inline`` (the bytes of one
#: message, ``length`` of them). No list and three int objects a piece on either side: a
#: 15,000-message history is ~6,000 pieces, ~900 KiB of objects in every reply when unpacked.
PACKED_COPY: Final = 0xFFFFFFFF
PACKED_INLINE: Final = 0xFFFFFFFE


def _is(value: object, kind: type[object]) -> bool:
    """``isinstance``, except that a bool is not an int (msgpack keeps them apart; so do we)."""
    if isinstance(value, bool):
        return kind is bool or kind is object
    return isinstance(value, kind)


def require(msg: Mapping[str, object], key: str, kind: type[_T]) -> _T:
    """``msg[key]``, checked to be a ``kind``; :class:`InvalidArgument` if missing or mistyped.

    ``bool`` does not pass for ``int``: ``{"handle": true}`` is refused.
    """
    try:
        value = msg[key]
    except KeyError:
        raise InvalidArgument(f"missing field {key!r}") from None
    if not _is(value, kind):
        raise InvalidArgument(f"field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value  # type: ignore[return-value]  # checked by _is just above


def optional(msg: Mapping[str, object], key: str, kind: type[_T], default: _T) -> _T:
    """Like :func:`require`, but ``default`` when ``key`` is absent (``None`` counts as set)."""
    if key not in msg:
        return default
    return require(msg, key, kind)


def request(op: str, id: int, /, **args: object) -> dict[str, object]:
    """``{"id": id, "op": op, **args}``, keys in that order (the golden test pins the bytes).

    ``ValueError`` if ``args`` names ``id`` or ``op`` (they would overwrite the envelope).
    """
    if "id" in args or "op" in args:
        raise ValueError("'id' and 'op' are the request envelope, not arguments")
    return {"id": id, "op": op, **args}


def parse_request(msg: Mapping[str, object]) -> tuple[int, str]:
    """``(id, op)`` of an incoming request.

    Raises :class:`ProtocolError` when ``id`` is missing or not an int (there is no id to reply
    to, so the connection is closed) and :class:`InvalidArgument` when ``op`` is missing, not a
    str or longer than MAX_OP_NAME (the daemon replies with the error under that id). Whether the
    op is known is the daemon's to decide.
    """
    ident = msg.get("id")
    if not isinstance(ident, int) or isinstance(ident, bool):
        raise ProtocolError(f"request without an integer id: {type(ident).__name__}")
    op = require(msg, "op", str)
    if not op or len(op) > MAX_OP_NAME:
        raise InvalidArgument(f"op name must be 1 to {MAX_OP_NAME} characters")
    return ident, op


def reply_ok(id: int, result: object) -> dict[str, object]:
    """A success reply to request ``id`` carrying ``result`` (any msgpack-encodable value)."""
    return {"id": id, "ok": result}


def reply_error(id: int, exc: AgentmemError) -> dict[str, object]:
    """An error reply to request ``id``: the class's stable ``code`` and ``str(exc)``.

    The peer's :func:`raise_for_reply` raises the same class with the same message. An exception
    that is not an :class:`AgentmemError` is a bug; the daemon reports it as the base class
    (code 1) rather than passing it here.
    """
    return {"id": id, "err": exc.code, "msg": str(exc)}


def raise_for_reply(reply: Mapping[str, object]) -> object:
    """The result of a reply, or raise the error it carries.

    Raises the class registered for the reply's ``err`` code (with ``msg`` as its message), and
    :class:`ProtocolError` for an unknown code or a malformed reply (no integer ``id``, neither or
    both of ``ok`` and ``err``, a mistyped ``msg``). Matching ``id`` to the request is the
    caller's business.
    """
    if not _is(reply.get("id"), int):
        raise ProtocolError("reply without an integer id")
    has_ok = "ok" in reply
    if has_ok == ("err" in reply):
        raise ProtocolError("a reply carries exactly one of 'ok' and 'err'")
    if has_ok:
        return reply["ok"]
    code = reply["err"]
    msg = reply.get("msg", "")
    if not isinstance(code, int) or isinstance(code, bool) or not isinstance(msg, str):
        raise ProtocolError("error reply needs an integer 'err' and a str 'msg'")
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        raise ProtocolError(f"unknown error code {code}: {msg}")
    raise cls(msg)


def hello(id: int, name: str, **extra: object) -> dict[str, object]:
    """The handshake request a client sends first: who it is and which schema it speaks.

    ``name`` is the agent's display name; the daemon identifies the peer by SO_PEERCRED, never
    by this claim. ``extra`` carries optional fields specified with the daemon.
    """
    return request(OP_HELLO, id, version=PROTOCOL_VERSION, name=name, **extra)


def check_hello(msg: Mapping[str, object]) -> str:
    """Validate a ``hello`` request on the daemon side; return the agent name it gives.

    Raises :class:`ProtocolError` if ``op`` is not ``hello`` or the ``version`` is not
    PROTOCOL_VERSION (reply with it, then close), :class:`InvalidArgument` for a missing or
    mistyped field or an empty name, :class:`TooLarge` for a name over MAX_AGENT_NAME bytes.
    """
    if msg.get("op") != OP_HELLO:
        raise ProtocolError(f"expected {OP_HELLO!r} first, got op {msg.get('op')!r:.80}")
    version = require(msg, "version", int)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {version} not supported (this side speaks {PROTOCOL_VERSION})"
        )
    name = require(msg, "name", str)
    if not name:
        raise InvalidArgument("agent name must not be empty")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > constants.MAX_AGENT_NAME:
        raise TooLarge(f"agent name of {size} bytes exceeds {constants.MAX_AGENT_NAME}")
    return name

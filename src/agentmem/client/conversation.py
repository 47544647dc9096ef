"""A conversation as a list of message dicts, stored in agentmem.

Code that keeps an LLM conversation in ``messages = []`` switches by changing that one line to
``messages = client.conversation()``; appends, iteration, ``len``, indexing, slices and ``==``
behave as on the list.

Why append-only. A conversation SMU is a chain of message nodes whose ids hash the parent id
with the content (DESIGN.md), which is what lets agents with the same history share it. A stored
history is therefore never edited: ``__setitem__``, ``__delitem__``, ``insert``, ``pop``,
``remove``, ``clear``, ``reverse`` and ``sort`` raise :class:`~agentmem.errors.WrongType` (a
``TypeError``) naming the alternatives: :meth:`Conversation.fork` to branch,
:meth:`Conversation.truncated` for a new conversation holding a prefix (``pop()`` is
``conv = conv.truncated(-1)``), ``client.conversation()`` to start afresh. Rebinding in place
(a ``clear()`` that swaps the handle) was left out on purpose: it would change what the handle
means behind the back of anyone holding it.

Encoding. A message is stored as ``json.dumps(m, separators=(",", ":"), ensure_ascii=False)``
encoded as UTF-8: compact and deterministic, so equal dicts built in the same key order give the
same bytes and deduplicate. Keys are not sorted: key order is the caller's and comes back
unchanged. Reads return what ``json.loads`` gives, so tuples come back as lists and non-string
keys as strings, exactly as an LLM SDK would have sent them.

The cache. The stored history of a handle only grows, so whatever prefix of it this object has
seen stays true. The object keeps the raw bytes of a prefix (up to ``cache_bytes``) and asks the
daemon only for what lies beyond it: a positive index inside the prefix costs no request;
iteration, ``==``, ``in``, a negative index or an open-ended slice cost one ``messages()``
request (for the tail, usually empty); ``len`` costs one small ``length`` request. Appends made
through this object extend the prefix; appends made through another object on the same handle
are picked up by the next tail request. The default budget, 1 MiB, holds any conversation that
fits a 200k-token context window (200k tokens x ~4 bytes of text each ~= 800 KB of JSON); pass
``cache_bytes=0`` to keep nothing in this process and read everything from the daemon.

Not thread-safe, like the client it uses.
"""

from __future__ import annotations

import json
import operator
import sys
from collections.abc import Iterable, Iterator, Sequence

from agentmem.errors import AgentmemError, InvalidArgument, UnknownHandle, WrongType
from agentmem.ids import Handle

TYPE_CHECKING = False  # not typing's: the client must not import typing (see ids.py)

if TYPE_CHECKING:
    from typing import Any, NoReturn, overload

    from agentmem.client.client import Client

#: Bytes of raw messages one :class:`Conversation` keeps locally (see the module docstring).
CACHE_BYTES = 1 << 20

if TYPE_CHECKING:
    #: One decoded message, e.g. ``{"role": "user", "content": "..."}``.
    Message = dict[str, Any]
else:
    Message = dict

_REPR_PREVIEW = 60  # characters of the last message shown by repr()


def encode(message: object) -> bytes:
    """The stored form of ``message``: compact JSON, keys in the caller's order, UTF-8.

    Raises ``InvalidArgument`` if ``message`` is not a dict or is not JSON-serialisable.
    """
    if not isinstance(message, dict):
        raise InvalidArgument(f"a message must be a dict, not {type(message).__name__}")
    try:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:  # unserialisable, circular, lone surrogate
        raise InvalidArgument(
            f"message is not JSON-serialisable: {exc} "
            "(convert SDK objects first, e.g. with .model_dump())"
        ) from exc


def decode(raw: bytes) -> Any:
    """The message stored as ``raw`` (``json.loads``; ``ValueError`` if it is not JSON)."""
    return json.loads(raw)


def _index(value: object) -> int:
    """``value`` as a plain int, as list indexing accepts it (ints, bools, ``__index__``)."""
    try:
        return int(operator.index(value))  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"conversation indices must be integers or slices, not {type(value).__name__}"
        ) from None


def _encode_all(messages: Iterable[object]) -> list[bytes]:
    if isinstance(messages, dict | str | bytes):
        raise InvalidArgument("messages must be an iterable of message dicts, not one message")
    return [encode(msg) for msg in messages]


class Conversation(Sequence[Message]):
    """A list of message dicts backed by an agentmem conversation; append-only.

    Reads return freshly decoded dicts (editing one changes nothing stored); slices and
    :meth:`copy` return plain lists. Mutators other than :meth:`append`, :meth:`extend` and
    ``+=`` raise ``WrongType`` (a ``TypeError``). Requests raise what the client raises
    (``UnknownHandle``, ``DaemonUnavailable``, ...). Not thread-safe.
    """

    def __init__(self, client: Client, handle: Handle, *, cache_bytes: int = CACHE_BYTES) -> None:
        """Wrap ``client``'s conversation ``handle`` (no request is made). Cache at most
        ``cache_bytes`` of raw messages locally. The handle stays ``client``'s: release it with
        :meth:`release` or by closing the client."""
        self._client = client
        self._handle = handle
        self._budget = max(0, cache_bytes)
        self._cache: list[bytes] = []
        self._cached_bytes = 0
        self._released = False

    @classmethod
    def _create(cls, client: Client, messages: Iterable[object]) -> Conversation:
        """Allocate a new conversation holding ``messages`` (for ``Client.conversation``)."""
        return cls._alloc(client, _encode_all(messages), CACHE_BYTES)

    @classmethod
    def _alloc(cls, client: Client, raws: list[bytes], cache_bytes: int) -> Conversation:
        conv = cls(client, client.alloc_smu("conversation", raws), cache_bytes=cache_bytes)
        conv._remember(0, raws)
        return conv

    # --- identity and lifecycle ------------------------------------------------------------

    @property
    def handle(self) -> Handle:
        """The client's handle on this conversation."""
        return self._handle

    def release(self) -> None:
        """Drop the handle (idempotent); later use raises ``UnknownHandle``."""
        if self._released:
            return
        self._released = True
        self._cache, self._cached_bytes = [], 0
        if not self._client.closed:  # a closed client's handles are already gone
            self._client.release(self._handle)

    def __enter__(self) -> Conversation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def fork(self) -> Conversation:
        """A new conversation sharing this history; appends to either do not show in the other."""
        other = Conversation(
            self._client, self._client.fork(self._live()), cache_bytes=self._budget
        )
        other._remember(0, self._cache)
        return other

    def truncated(self, n: int) -> Conversation:
        """A new conversation holding ``self[:n]`` (slice semantics: ``-1`` drops the last).

        The messages are sent again but not stored again: message ids chain, so the new
        conversation's nodes are the ones this history already has.
        """
        return Conversation._alloc(self._client, self._range(0, _index(n)), self._budget)

    # --- appending -------------------------------------------------------------------------

    def append(self, message: Message) -> None:
        """Store ``message`` at the end. Raises ``InvalidArgument`` (nothing stored) if it is
        not a JSON-serialisable dict."""
        raw = encode(message)
        known = len(self._cache)
        if self._client.append(self._live(), raw) == known + 1:
            self._remember(known, [raw])

    def extend(self, messages: Iterable[Message]) -> None:
        """Store ``messages`` at the end in one request; if any cannot be encoded, raises
        ``InvalidArgument`` and stores none of them."""
        raws = _encode_all(messages)
        if not raws:
            return
        known = len(self._cache)
        if self._client.extend(self._live(), raws) == known + len(raws):
            self._remember(known, raws)

    # As with list: ``+=`` extends in place, ``+`` builds a plain list; mypy wants them alike.
    def __iadd__(self, messages: Iterable[Message]) -> Conversation:  # type: ignore[misc]
        self.extend(messages)
        return self

    # --- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._client.length(self._live())

    def __bool__(self) -> bool:
        return bool(self._cache) or len(self) > 0

    if TYPE_CHECKING:

        @overload
        def __getitem__(self, index: int) -> Message: ...

        @overload
        def __getitem__(self, index: slice) -> list[Message]: ...

    def __getitem__(self, index: int | slice) -> Message | list[Message]:
        if isinstance(index, slice):
            return [decode(raw) for raw in self._slice(index)]
        decoded: Message = decode(self.raw(index))
        return decoded

    def raw(self, index: int) -> bytes:
        """The stored bytes of message ``index`` (negative counts from the end), undecoded.
        Raises ``IndexError`` out of range."""
        index = _index(index)
        found = self._range(index, None if index == -1 else index + 1)
        if not found:
            raise IndexError("conversation index out of range")
        return found[0]

    def __iter__(self) -> Iterator[Message]:
        """Iterate over a snapshot taken by one request."""
        return iter(self.copy())

    def __reversed__(self) -> Iterator[Message]:
        return reversed(self.copy())

    def copy(self) -> list[Message]:
        """The messages as a plain list of dicts (one request)."""
        return [decode(raw) for raw in self._range(0, None)]

    def __contains__(self, value: object) -> bool:
        return value in self.copy()

    def index(self, value: Any, start: int = 0, stop: int = sys.maxsize) -> int:
        """First position of ``value`` in ``[start:stop]``, as ``list.index``."""
        return self.copy().index(value, start, stop)

    def count(self, value: Any) -> int:
        return self.copy().count(value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Conversation):
            if other._client is self._client and other._handle == self._handle:
                return True
            mine, theirs = self._range(0, None), other._range(0, None)
            # Equal bytes are equal dicts; unequal bytes may still be (another key order).
            return mine == theirs or [decode(r) for r in mine] == [decode(r) for r in theirs]
        if isinstance(other, list):
            return self.copy() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # it grows, so it cannot be a dict key

    def __add__(self, other: object) -> list[Message]:
        """``conv + [msg]``: a plain list; nothing is stored."""
        if isinstance(other, Conversation | list):
            return self.copy() + list(other)
        return NotImplemented

    def __radd__(self, other: object) -> list[Message]:
        if isinstance(other, list):
            return other + self.copy()
        return NotImplemented

    def __repr__(self) -> str:
        if self._released:
            return f"Conversation(handle={self._handle}, released)"
        try:
            n = len(self)
            last = self.raw(-1).decode(errors="replace") if n else ""
        except AgentmemError:  # a closed client, a handle released elsewhere: repr must not raise
            return f"Conversation(handle={self._handle}, unavailable)"
        if not n:
            return f"Conversation(handle={self._handle}, len=0)"
        if len(last) > _REPR_PREVIEW:
            last = last[: _REPR_PREVIEW - 1] + "…"
        return f"Conversation(handle={self._handle}, len={n}, last={last})"

    # --- not supported: the history is append-only ------------------------------------------

    def _append_only(self, what: str) -> NoReturn:
        raise WrongType(
            f"{what}: a conversation is append-only (its messages are a shared hash chain); "
            "use fork() to branch, truncated(n) for a new conversation holding the first n "
            "messages (pop() is conv = conv.truncated(-1)), or client.conversation() to start "
            "afresh"
        )

    def __setitem__(self, index: object, value: object) -> NoReturn:
        self._append_only("item assignment")

    def __delitem__(self, index: object) -> NoReturn:
        self._append_only("item deletion")

    def insert(self, index: int, value: object) -> NoReturn:
        self._append_only("insert()")

    def pop(self, index: int = -1) -> NoReturn:
        self._append_only("pop()")

    def remove(self, value: object) -> NoReturn:
        self._append_only("remove()")

    def clear(self) -> NoReturn:
        self._append_only("clear()")

    def reverse(self) -> NoReturn:
        self._append_only("reverse()")

    def sort(self, *args: object, **kwargs: object) -> NoReturn:
        self._append_only("sort()")

    # --- plumbing --------------------------------------------------------------------------

    def _live(self) -> Handle:
        if self._released:
            # The daemon may reissue the number to a new SMU: never send it again.
            raise UnknownHandle(f"conversation {self._handle} was released")
        return self._handle

    def _remember(self, at: int, raws: Sequence[bytes]) -> None:
        """Extend the cached prefix with ``raws``, known to be messages ``at...``, within the
        budget. The cache stays a prefix: it grows only at its end, and stops at the first
        message that does not fit."""
        if at != len(self._cache):
            return
        for raw in raws:
            if self._cached_bytes + len(raw) > self._budget:
                return
            self._cache.append(raw)
            self._cached_bytes += len(raw)

    def _range(self, start: int, stop: int | None) -> list[bytes]:
        """Raw messages ``start:stop`` (slice semantics), with at most one request."""
        handle = self._live()
        known = len(self._cache)
        if start >= 0 and stop is not None and 0 <= stop <= known:
            return self._cache[start:stop]
        if 0 <= start <= known and (stop is None or stop >= 0):
            tail = self._client.messages(handle, known, stop)
            head = self._cache[start:known]
            self._remember(known, tail)
            return head + tail
        return self._client.messages(handle, start, stop)

    def _slice(self, s: slice) -> list[bytes]:
        start, stop, step = (None if v is None else _index(v) for v in (s.start, s.stop, s.step))
        if step is None or step == 1:
            return self._range(0 if start is None else start, stop)
        if step == 0:
            raise ValueError("slice step cannot be zero")
        return self._range(0, None)[s]

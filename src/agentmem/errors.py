"""The one exception tree of agentmem.

Every error a caller can meet derives from :class:`AgentmemError`. Errors that cross the wire
carry a stable numeric ``code``; :data:`ERRORS_BY_CODE` maps a code back to its class so the
client raises the same class the store raised. Codes are part of the protocol: never reuse or
renumber one.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: the client must not import typing (see ids.py)

if TYPE_CHECKING:
    from typing import ClassVar


class AgentmemError(Exception):
    """Base of every agentmem error. ``code`` is stable on the wire."""

    code: ClassVar[int] = 1


class InvalidArgument(AgentmemError, ValueError):
    """An argument has the wrong type or value (unknown SMU type, negative index, ...)."""

    code = 2


class UnknownHandle(AgentmemError, KeyError):
    """The handle was never issued to this caller, was released, or belongs to someone else.

    Deliberately one error for all three: telling them apart would let a caller probe for
    handles it does not own.
    """

    code = 3

    def __str__(self) -> str:  # KeyError quotes its argument; a message reads better
        return Exception.__str__(self)


class UnknownAgent(AgentmemError, KeyError):
    """No registered agent has that name (or it was unregistered)."""

    code = 4

    def __str__(self) -> str:
        return Exception.__str__(self)


class WrongType(AgentmemError, TypeError):
    """The operation does not apply to this SMU's type (``append`` on a ``system_prompt``)."""

    code = 5


class TooLarge(AgentmemError, ValueError):
    """Content or a request exceeds a fixed bound (see ``constants``)."""

    code = 6


class QuotaExceeded(AgentmemError):
    """An agent or a domain would exceed its configured byte or handle quota."""

    code = 7


class AgentExists(AgentmemError):
    """An agent with that name is already registered in this domain."""

    code = 8


class CorruptFrame(AgentmemError):
    """Stored bytes failed verification: bad magic, bad header, or a hash mismatch."""

    code = 9


class UnknownDictionary(CorruptFrame):
    """A frame names a compression dictionary this store does not hold."""

    code = 10


class StoreClosed(AgentmemError):
    """The store (or the connection to it) has been closed."""

    code = 11


class ProtocolError(AgentmemError):
    """A peer sent a malformed or out-of-order frame; the connection is closed."""

    code = 12


class DaemonUnavailable(AgentmemError):
    """No daemon answers on the socket (raised from the transport's ``OSError``)."""

    code = 13


class PermissionDenied(AgentmemError, PermissionError):
    """The caller may not perform this operation (other uid, other tenant)."""

    code = 14


class DaemonRunning(AgentmemError):
    """Another daemon already holds the lock of this socket."""

    code = 15


class DiskFull(AgentmemError, OSError):
    """The state directory's file system is full (or over its quota): nothing was stored.

    Raised for an append whose journal record could not be written (the message is not in the
    conversation) and for content that could not move to the cold tier (it stays where it was).
    """

    code = 16


class PackUnreadable(CorruptFrame):
    """A cold-tier pack could not be read back (I/O error, short read, bad checksum).

    Only the chunks of that record are affected; every other pack and tier keeps serving.
    """

    code = 17


def _collect() -> dict[int, type[AgentmemError]]:
    table: dict[int, type[AgentmemError]] = {}
    stack: list[type[AgentmemError]] = [AgentmemError]
    while stack:
        cls = stack.pop()
        if cls.code in table and table[cls.code] is not cls:
            raise RuntimeError(f"error code {cls.code} used twice")
        table[cls.code] = cls
        stack.extend(cls.__subclasses__())
    return table


ERRORS_BY_CODE: dict[int, type[AgentmemError]] = _collect()
"""Wire code -> exception class, for mapping a reply back to the class the store raised."""

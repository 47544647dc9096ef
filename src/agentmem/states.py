"""Enumerations and lifecycles, each with one checked transition function.

Imports nothing from agentmem but its exceptions.
"""

from __future__ import annotations

import enum

from agentmem.errors import InvalidArgument


class SMUType(enum.IntEnum):
    """The kinds of semantic memory unit. Values are stable (wire and frame headers)."""

    SYSTEM_PROMPT = 1
    TOOL_DEF = 2
    CONVERSATION = 3
    TOOL_RESULT = 4
    BLOB = 5

    @classmethod
    def parse(cls, value: object) -> SMUType:
        """Accept an ``SMUType``, its name (``"tool_def"``) or value; else ``InvalidArgument``
        (a ``ValueError``), as the store and the daemon answer it."""
        if isinstance(value, SMUType):
            return value
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        names = ", ".join(m.name.lower() for m in cls)
        raise InvalidArgument(f"unknown SMU type {value!r}; expected one of: {names}")

    @property
    def label(self) -> str:
        """The lower-case name used in stats and on the command line."""
        return self.name.lower()


class AgentState(enum.IntEnum):
    """What an agent is doing; drives tiering (idle agents are demoted first)."""

    ACTIVE = 1
    PAUSED = 2
    IDLE = 3

    @classmethod
    def parse(cls, value: object) -> AgentState:
        """Accept an ``AgentState``, its name or its value; else ``InvalidArgument``."""
        if isinstance(value, AgentState):
            return value
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        raise InvalidArgument(f"unknown agent state {value!r}; expected active, paused or idle")

    @property
    def label(self) -> str:
        return self.name.lower()


class Tier(enum.IntEnum):
    """Where a chunk's bytes live."""

    HOT = 0
    WARM = 1
    COLD = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class ChunkState(enum.IntEnum):
    """Lifecycle of a chunk: pending -> sealed -> (spilled <-> sealed) -> freed."""

    PENDING = 0  # bytes being written or verified; not yet readable by anyone else
    SEALED = 1  # stored and verified; readable
    SPILLED = 2  # moved out of RAM to the cold tier
    FREED = 3  # last ref gone; bytes reclaimable


_CHUNK_TRANSITIONS: dict[ChunkState, frozenset[ChunkState]] = {
    ChunkState.PENDING: frozenset({ChunkState.SEALED, ChunkState.FREED}),
    ChunkState.SEALED: frozenset({ChunkState.SPILLED, ChunkState.FREED}),
    ChunkState.SPILLED: frozenset({ChunkState.SEALED, ChunkState.FREED}),
    ChunkState.FREED: frozenset(),
}


def chunk_transition(current: ChunkState, new: ChunkState) -> ChunkState:
    """Return ``new`` if a chunk may go from ``current`` to it; raise ``RuntimeError`` if not.

    A refused transition is a bug in the store, not bad input, hence not an AgentmemError.
    """
    if new not in _CHUNK_TRANSITIONS[current]:
        raise RuntimeError(f"illegal chunk transition {current.name} -> {new.name}")
    return new


class ConnectionState(enum.IntEnum):
    """Lifecycle of a client connection: opening -> open -> closing -> closed."""

    OPENING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


_CONNECTION_TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    ConnectionState.OPENING: frozenset({ConnectionState.OPEN, ConnectionState.CLOSING}),
    ConnectionState.OPEN: frozenset({ConnectionState.CLOSING}),
    ConnectionState.CLOSING: frozenset({ConnectionState.CLOSED}),
    ConnectionState.CLOSED: frozenset(),
}


def connection_transition(current: ConnectionState, new: ConnectionState) -> ConnectionState:
    """Return ``new`` if a connection may go from ``current`` to it; raise ``RuntimeError``."""
    if new not in _CONNECTION_TRANSITIONS[current]:
        raise RuntimeError(f"illegal connection transition {current.name} -> {new.name}")
    return new

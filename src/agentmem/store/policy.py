"""Which content leaves the hot tier first: the policy decides, the store acts.

A policy is a pure object: given what each handle holds and what its agent is doing, and how
many hot bytes must go, it returns the handles to demote, in order. It does no I/O and keeps
no clock of its own; the store passes ``now``. Two implementations share the protocol so they
can be compared on the same trace:

* :class:`SemanticPolicy` orders by meaning (DESIGN.md, "tiered by meaning"): idle agents'
  content before paused agents', before active agents'; within that, a conversation's older
  messages before its recent ones, then lower importance first, then content untouched for
  longer; system prompts and tool definitions held by several agents go last, because
  demoting them would cost every one of their readers. Pinned content (``mark_hot``) never
  goes.
* :class:`LRUPolicy` is what a page cache does: least recently used first, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from agentmem.ids import Handle
from agentmem.states import AgentState, SMUType

_STATE_RANK = {AgentState.IDLE: 0, AgentState.PAUSED: 1, AgentState.ACTIVE: 2}
_SHARED_TYPES = frozenset({SMUType.SYSTEM_PROMPT, SMUType.TOOL_DEF})


class Candidate(NamedTuple):
    """One handle whose content could be demoted, and the facts a policy may weigh."""

    handle: Handle
    hot_bytes: int
    """Bytes of its content currently hot (an upper bound: chunks shared with others count)."""
    state: AgentState
    importance: int
    touched: float
    """Store clock of the last operation on the handle."""
    smu_type: SMUType
    holders: int
    """Handles on the same content (1: this agent alone)."""
    pinned: bool
    keep: int = 0
    """Newest messages of a conversation the demotion leaves where they are (0: all goes)."""
    recent: bool = False
    """The newest messages of a conversation (whose older ones are a candidate of their own)."""


class EvictionPolicy(Protocol):
    """Chooses what to demote; pure (no I/O, no clock, no store access)."""

    def choose(self, candidates: Sequence[Candidate], need: int, now: float) -> list[Candidate]:
        """Candidates to demote, in order, until their bytes reach ``need`` (or none remain)."""
        ...


def _take(ordered: Sequence[Candidate], need: int) -> list[Candidate]:
    out: list[Candidate] = []
    freed = 0
    for c in ordered:
        if freed >= need:
            break
        if c.pinned or c.hot_bytes <= 0:
            continue
        out.append(c)
        freed += c.hot_bytes
    return out


class SemanticPolicy:
    """Agent state, importance and age first; widely shared prompts and tools last."""

    def choose(self, candidates: Sequence[Candidate], need: int, now: float) -> list[Candidate]:
        def key(c: Candidate) -> tuple[int, int, int, int, float]:
            shared_last = 1 if c.smu_type in _SHARED_TYPES and c.holders > 1 else 0
            return (shared_last, _STATE_RANK[c.state], c.recent, c.importance, -(now - c.touched))

        return _take(sorted(candidates, key=key), need)


class LRUPolicy:
    """Least recently used first, whatever the content or its agent."""

    def choose(self, candidates: Sequence[Candidate], need: int, now: float) -> list[Candidate]:
        return _take(sorted(candidates, key=lambda c: c.touched), need)


POLICIES: dict[str, type[SemanticPolicy] | type[LRUPolicy]] = {
    "semantic": SemanticPolicy,
    "lru": LRUPolicy,
}
"""Policies by name (``agentmem daemon --policy``)."""

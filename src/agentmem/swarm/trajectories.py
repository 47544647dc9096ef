"""Recorded trajectories for the swarm: what each agent remembers and what the mock LLM answers.

A trajectory is a conversation cut into a *history* (the messages an agent already holds when
the swarm starts) and *turns*: an assistant message with the tool results that followed it,
which the mock LLM replays one per request.

Where they come from:

* ``--corpus DIR``: every conversation under ``DIR/conversations/*/`` (mini-swe-agent, SWE-agent,
  Claude Code sessions, ADP samples, ToolBench), read by
  :func:`agentmem.bench.workloads.load_conversations`. Messages are kept as the compact JSON
  the loader made of them; lines that are not JSON (the Claude Code sessions' redaction
  artifacts) are dropped, and so are system messages (the profile supplies the system prompt).
* no corpus: :class:`agentmem.bench.workloads.TrajectoryMaker`, whose trajectories copy the
  corpus's mini-swe-agent figures (STATS.md): 10-60 turns, THOUGHT + one command per assistant
  message, tool output that revisits a few slices of the same files, so the folder compresses
  ~10x concatenated and ~7.5x file by file, with CDC dedup across trajectories ~1.1x (one shared
  system prompt and task template). Generated messages average ~1.7 KB.

Seed-profile histories are far longer than any recorded trajectory (30 MB at the default
scale), so they are drawn from a *pool* of all the messages, each agent from its own offset,
wrapping around. To keep the pool's reuse from turning into deduplication that real agents
would not see, every agent passes the prose fields of its messages through its own permutation
of the ASCII letters (:func:`agentmem.swarm.agent.letter_table`): sizes, JSON structure and
compressibility stay those of the source text, but no two agents hold the same message.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

#: Roles (or ``from``/``type`` values) that mark a message as the model's.
ASSISTANT = frozenset({"assistant", "gpt", "model", "ai"})


@dataclasses.dataclass(frozen=True, slots=True)
class Turn:
    """One reply of the mock LLM: the assistant message and the tool results after it."""

    message: bytes
    results: tuple[bytes, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Trajectory:
    """A recorded conversation: messages before the first assistant message, then turns."""

    name: str
    opening: tuple[bytes, ...]
    turns: tuple[Turn, ...]

    def messages(self, turns: int | None = None) -> Iterator[bytes]:
        """The opening, then the first ``turns`` turns (all by default), message by message."""
        yield from self.opening
        for t in self.turns[:turns]:
            yield t.message
            yield from t.results


def role(raw: bytes) -> str | None:
    """The role of a stored message (``role``, ``from``, ``type`` or ``message.role``), or
    None if it is not a JSON object."""
    try:
        msg = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(msg, dict):
        return None
    for key in ("role", "from", "type"):
        value = msg.get(key)
        if isinstance(value, str):
            return value.lower()
    inner = msg.get("message")
    if isinstance(inner, dict) and isinstance(inner.get("role"), str):
        return str(inner["role"]).lower()
    return ""


def split_turns(name: str, messages: Iterable[bytes]) -> Trajectory:
    """``messages`` as a trajectory: system messages and non-JSON lines dropped, the rest cut
    before each assistant message."""
    opening: list[bytes] = []
    turns: list[Turn] = []
    current: bytes | None = None
    results: list[bytes] = []
    for raw in messages:
        r = role(raw)
        if r is None or r == "system":
            continue
        if r in ASSISTANT:
            if current is not None:
                turns.append(Turn(current, tuple(results)))
            current, results = raw, []
        elif current is None:
            opening.append(raw)
        else:
            results.append(raw)
    if current is not None:
        turns.append(Turn(current, tuple(results)))
    return Trajectory(name, tuple(opening), tuple(turns))


def load(
    corpus: Path | None, *, min_turns: int = 2, generated_bytes: int = 8 << 20
) -> list[Trajectory]:
    """Trajectories with at least ``min_turns`` turns, from ``corpus`` or generated (about
    ``generated_bytes`` of trajectory files)."""
    from agentmem.bench import workloads

    if corpus is not None:
        convs = workloads.load_conversations(corpus).conversations
    else:
        convs = workloads.generated_conversations(generated_bytes).conversations
    out = [split_turns(c.name, c.messages) for c in convs]
    return [t for t in out if len(t.turns) >= min_turns]

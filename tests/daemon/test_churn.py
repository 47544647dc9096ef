"""Agents that come and go for as long as the daemon runs: once they are gone, so is what they held.

A user's daemon serves for days while agents start, work and leave: some release everything and
close, some exit without a word, some are killed. Each round below is a pair of agent processes:
the *giver* allocates a shared prompt, private content and a conversation with large messages,
forks it and shares its private content with the *taker*, which reads it; the giver then
releases and closes, exits holding everything, or is SIGKILLed holding everything. After the
rounds the domain's statistics are what they were before them, field by field (the index's
estimate included), the daemon's descriptors too, and its journal has been rewritten down to
what is live (nothing).

Every round stores the same bytes as the warm-up does, except the sizes of its large messages,
which no earlier round had: content with sizes the store has seen before adds nothing to its
table of shared sizes, so the index's estimate at rest must come back to the byte.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from typing import Any

import pytest

import agentmem
from agentmem.client import connect as client_connect
from agentmem.constants import CDC_MAX_SIZE
from agentmem.stats import StoreStats
from agentmem.testing import DaemonProcess
from tests.conftest import message, text
from tests.daemon.conftest import Channel, Child, daemon_fds, wait_until

ROUNDS = 30
#: Large messages a giver appends, each of a size no other round's has.
LARGE_EACH = 4
PROMPT = text(1, 40_000)
PRIVATE = text(2, 30_000)  # over 16 KiB: a segment of its own, mapped by the taker
HISTORY = [message(i) for i in range(20)]
MODES = ("release", "exit", "kill")
#: The journal is rewritten once past this (and twice what is live): a round journals ~250 KB.
REWRITE_MIN = 1 << 20


def _large(multiple: int, i: int) -> bytes:
    """A message of ``multiple`` chunks of CDC_MAX_SIZE and a tail of 1000 + ``i`` bytes: a run
    of one byte is cut only at the chunk size limit, so its chunks' sizes are those two."""
    return b"a" * (multiple * CDC_MAX_SIZE + 1000 + i)


def _giver(socket_path: str, name: str, taker: str, large: Sequence[bytes], mode: str) -> Any:
    def run(channel: Channel) -> object:
        c = agentmem.connect(socket_path, name=name)
        prompt = c.alloc_smu("system_prompt", PROMPT)
        private = c.alloc_smu("tool_result", PRIVATE)
        conv = c.alloc_smu("conversation", HISTORY)
        c.extend(conv, large)
        fork = c.fork(conv)
        c.append(fork, HISTORY[0])
        c.share_content(private, taker)
        assert bytes(c.read(prompt)) == PROMPT
        assert c.messages(fork)[-len(large) - 1 :] == [*large, HISTORY[0]]
        if mode == "kill":
            channel.send("holding")
            channel.wait()  # killed here
        if mode == "release":
            for h in (prompt, private, conv, fork):
                c.release(h)
            c.close()
        return "done"  # "exit": the process ends holding everything, its socket closed by exit

    return run


def _taker(socket_path: str, name: str) -> Callable[[Channel], object]:
    def run(channel: Channel) -> object:
        c = agentmem.connect(socket_path, name=name)
        channel.send("up")
        channel.wait()  # until the giver has shared
        [shared] = c.handles()
        assert bytes(c.read(shared["handle"])) == PRIVATE
        return "done"  # exits holding the share

    return run


def _round(socket_path: str, n: int, large: Sequence[bytes], mode: str) -> None:
    taker = Child(_taker(socket_path, f"taker-{n}"))
    assert taker.recv() == "up"
    giver = Child(_giver(socket_path, f"giver-{n}", f"taker-{n}", large, mode))
    if mode == "kill":
        assert giver.recv(timeout=60) == "holding"
        giver.kill(signal.SIGKILL)
    else:
        assert giver.recv(timeout=60) == "done"
        giver.join()
    taker.release()
    assert taker.recv() == "done"
    taker.join()


@pytest.mark.slow
def test_agents_coming_and_going_leave_the_daemon_as_it_was() -> None:
    env = {**os.environ, "AGENTMEM_JOURNAL_REWRITE_MIN_BYTES": str(REWRITE_MIN)}
    with (
        DaemonProcess(env=env) as d,
        client_connect(d.socket, observer=True, autostart=False) as observer,
    ):

        def stats() -> StoreStats:
            s = observer.get_stats()
            assert isinstance(s, StoreStats)
            return s

        def at_rest() -> StoreStats:
            wait_until(lambda: stats().agents == 0, "every agent is gone")
            return stats()

        # Warm-up: every size the rounds store but their large messages' own.
        tails = range(ROUNDS * LARGE_EACH)
        _round(d.socket, -1, [_large(2, i) for i in tails], "release")
        before, fds_before = at_rest(), daemon_fds(d.pid, segments=True)
        assert before.handles == before.chunks == 0
        for n in range(ROUNDS):
            mine = tails[n * LARGE_EACH : (n + 1) * LARGE_EACH]
            _round(d.socket, n, [_large(3, i) for i in mine], MODES[n % len(MODES)])
        after = at_rest()
        for field in (
            "handles",
            "logical_bytes",
            "unique_bytes",
            "chunks",
            "messages",
            "segments",
            "metadata_bytes",
        ):
            assert getattr(after, field) == getattr(before, field), field
        assert daemon_fds(d.pid, segments=True) == fds_before

        def journal_bytes() -> int:
            tiering = stats().tiering
            assert tiering is not None
            return tiering.journal_bytes

        # ~7 MB journaled by the rounds, rewritten to what is live (nothing) by a tick.
        wait_until(lambda: journal_bytes() <= REWRITE_MIN, "the journal is rewritten")

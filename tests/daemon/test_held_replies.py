"""A reply held for the journal sync keeps its segments' fds even if they are retired first."""

from __future__ import annotations

import os

import pytest

from agentmem.daemon.server import _holding_fds
from agentmem.daemon.service import Reply
from agentmem.store.segments import Segment


def test_a_held_reply_owns_dups_of_its_segments_fds() -> None:
    seg = Segment(1, 1 << 16, pool="private")
    seg.append(b"x" * 100)
    copy = Segment(-1, 1 << 12, pool="private", exclusive=True)  # a reply's one-off copy
    reply = Reply({"ok": None}, [seg, copy], [copy], sync=True)
    held = _holding_fds(reply)
    assert held.sync and held.body is reply.body
    dup = held.segments[0]
    assert dup is not seg and dup.fd != seg.fd
    assert held.segments[1] is copy  # transient ones are the reply's own already
    seg.close()  # retired by a later request of the same wakeup
    assert os.fstat(dup.fd).st_size >= 100  # the held reply's fd still names the memfd
    fd = dup.fd
    for s in held.transient:  # what the server does once the reply is sent
        s.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)

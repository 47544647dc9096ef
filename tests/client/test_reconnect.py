"""A client survives its daemon going away: one call fails, the next reconnects."""

from __future__ import annotations

import pathlib
import signal
import socket
import subprocess
import sys
import threading

import pytest

import agentmem
from agentmem.client import UnixSocketTransport
from agentmem.errors import DaemonUnavailable, StoreClosed, UnknownHandle
from agentmem.protocol import framing
from agentmem.testing import DaemonProcess


def test_client_reconnects_after_the_daemon_restarts() -> None:
    daemon = DaemonProcess().start()
    try:
        client = agentmem.connect(daemon.socket, name="survivor")
        old = client.alloc_smu("system_prompt", b"before the restart")
        daemon.kill(signal.SIGKILL)
        with pytest.raises(DaemonUnavailable):
            client.read(old)
        # A new daemon on the same socket (the stale socket file must not stop it).
        cmd = [sys.executable, "-m", "agentmem", "daemon", "--socket", daemon.socket, "--detach"]
        subprocess.run(cmd, check=True, timeout=60)
        with open(daemon.socket + ".lock") as f:
            daemon.pid = int(f.read().split()[0])
        new = client.alloc_smu("system_prompt", b"after the restart")
        assert client.reconnects == 1
        assert client.name == "survivor"
        assert bytes(client.read(new)) == b"after the restart"
        with pytest.raises(UnknownHandle):
            client.read(old)  # its ref died with the old connection
        client.close()
    finally:
        daemon.kill()


def test_a_client_closed_while_broken_stays_closed() -> None:
    """Closed by its owner after the daemon went away, a client does not reconnect on the next
    call (which would give it a connection nobody will close): it raises StoreClosed."""
    daemon = DaemonProcess().start()
    try:
        client = agentmem.connect(daemon.socket, name="closed-while-broken")
        daemon.kill(signal.SIGKILL)
        with pytest.raises(DaemonUnavailable):
            client.alloc_smu("blob", b"x")
        daemon.start()
        client.close()
        with pytest.raises(StoreClosed):
            client.alloc_smu("blob", b"y")
        assert client.reconnects == 0 and client.closed
        with agentmem.connect(daemon.socket, name="watcher") as watcher:
            assert "closed-while-broken" not in [a.name for a in watcher.get_stats().per_agent]
    finally:
        daemon.kill()


def test_a_reconnect_does_not_wait_for_the_names_to_be_published_again() -> None:
    """A restarted daemon has lost the published names: an agent that opened one reconnects
    all the same and goes on with its journaled conversation; it opens the name again once an
    orchestrator has published it."""
    prompt = b"the team's prompt " * 2000
    daemon = DaemonProcess().start()
    try:
        boss = agentmem.connect(daemon.socket, name="boss")
        boss.publish(boss.alloc_smu("system_prompt", prompt), "team/prompt")
        client = agentmem.connect(daemon.socket, name="worker", open=["team/prompt"])
        chat = client.conversation([{"role": "user", "content": "kept"}])
        daemon.kill(signal.SIGKILL)
        with pytest.raises(DaemonUnavailable):
            client.length(chat.handle)
        daemon.start()  # same socket and state directory: the journal is replayed
        chat.append({"role": "assistant", "content": "after"})
        assert client.reconnects == 1 and client.opened == {}
        assert [m["content"] for m in chat] == ["kept", "after"]
        again = agentmem.connect(daemon.socket, name="boss-again")
        again.publish(again.alloc_smu("system_prompt", prompt), "team/prompt")
        assert bytes(client.read(client.open("team/prompt"))) == prompt
        for c in (client, again, boss):
            c.close()
    finally:
        daemon.kill()


def test_a_daemon_killed_in_the_middle_of_a_reply_is_unavailable(tmp_path: pathlib.Path) -> None:
    """The daemon died while it wrote a reply (half a frame, then the close): the call fails
    with DaemonUnavailable, as when it dies at any other moment, so the caller's reconnect
    and retry go on (a ProtocolError here stopped an agent in a crash test)."""
    path = str(tmp_path / "daemon.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    reply = framing.Encoder().encode({"id": 1, "data": b"x" * 4000})

    def half_a_reply() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)  # the request
            conn.sendall(reply[: len(reply) // 2])

    server = threading.Thread(target=half_a_reply)
    server.start()
    transport = UnixSocketTransport(path)
    try:
        with pytest.raises(DaemonUnavailable, match="middle of a frame"):
            transport.request({"op": "read", "id": 1})
        with pytest.raises(DaemonUnavailable):  # closed after the break
            transport.request({"op": "read", "id": 2})
    finally:
        transport.close()
        server.join(10)
        listener.close()
    assert not server.is_alive()


def test_a_timeout_bounds_a_daemon_that_does_not_answer(tmp_path: pathlib.Path) -> None:
    """``agentmem.connect(timeout=)``: a daemon that takes the connection and never answers
    (stopped, wedged) gives DaemonUnavailable past it, where the call would wait forever."""
    path = str(tmp_path / "silent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    try:
        with pytest.raises(DaemonUnavailable, match=r"no reply from the daemon within 0\.2 s"):
            agentmem.connect(path, timeout=0.2)
    finally:
        listener.close()
    with DaemonProcess() as daemon, agentmem.connect(daemon.socket, timeout=60) as client:
        assert bytes(client.read(client.alloc_smu("blob", b"answered"))) == b"answered"

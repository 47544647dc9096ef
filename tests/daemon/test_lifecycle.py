"""Daemon lifecycle with real processes: one daemon per socket, clean shutdown, restart after a
crash, and start on first use by many agents at once."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

import agentmem
from agentmem.daemon import lifecycle
from agentmem.errors import DaemonRunning, DaemonUnavailable
from agentmem.stats import StoreStats
from agentmem.testing import DaemonProcess
from tests.daemon.conftest import WAIT

DAEMON = [sys.executable, "-m", "agentmem", "daemon"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DAEMON, *args], capture_output=True, text=True, timeout=60, check=False)


def _lock_pid(socket_path: str) -> int:
    with open(socket_path + ".lock") as f:
        return int(f.read().split()[0])


def _stop(pid: int, sig: int = signal.SIGTERM) -> None:
    """Signal ``pid`` and wait on a pidfd until it has exited."""
    pidfd = os.pidfd_open(pid)
    try:
        os.kill(pid, sig)
        ready, _, _ = select.select([pidfd], [], [], WAIT)
        assert ready, f"process {pid} did not exit within {WAIT} s"
    finally:
        os.close(pidfd)


def _serving(d: DaemonProcess) -> bool:
    try:
        with agentmem.connect(d.socket, name="probe") as c:
            c.get_stats()
    except DaemonUnavailable:
        return False
    return True


def test_second_daemon_on_the_same_socket_exits_naming_the_first(daemon: DaemonProcess) -> None:
    inode = os.stat(daemon.socket).st_ino
    for detach in ([], ["--detach"]):
        second = _run("--socket", daemon.socket, *detach)
        assert second.returncode != 0
        assert f"pid {daemon.pid}" in second.stderr
        assert daemon.socket in second.stderr
    assert os.stat(daemon.socket).st_ino == inode  # its socket untouched
    assert _lock_pid(daemon.socket) == daemon.pid
    assert _serving(daemon)


def test_if_absent_exits_zero_when_a_daemon_serves(daemon: DaemonProcess) -> None:
    inode = os.stat(daemon.socket).st_ino
    second = _run("--socket", daemon.socket, "--detach", "--if-absent")
    assert (second.returncode, second.stderr) == (0, "")
    assert os.stat(daemon.socket).st_ino == inode
    assert _lock_pid(daemon.socket) == daemon.pid
    assert _serving(daemon)


def test_sigterm_shuts_down_cleanly() -> None:
    """In the foreground: exit status 0, socket and lock removed, clients see it gone."""
    with tempfile.TemporaryDirectory(prefix="agentmem-test-") as tmp:
        path = os.path.join(tmp, "agentmem.sock")
        with subprocess.Popen(
            [*DAEMON, "--socket", path], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
        ) as proc:
            try:
                assert proc.stderr is not None
                ready, _, _ = select.select([proc.stderr], [], [], WAIT)
                assert ready and b"serving " + path.encode() in proc.stderr.readline()
                client = agentmem.connect(path, name="bystander")
                client.alloc_smu("blob", b"held while the daemon stops")
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=WAIT) == 0
                rest = proc.stderr.read().decode()
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert "Traceback" not in rest and "ERROR" not in rest, rest
        assert not os.path.exists(path)
        assert not os.path.exists(path + ".lock")
        with pytest.raises(DaemonUnavailable):
            client.get_stats()
        client.close()


def test_sigterm_stops_a_detached_daemon_and_removes_its_files() -> None:
    d = DaemonProcess().start()
    pid = d.pid
    pidfd = os.pidfd_open(pid)
    try:
        d.kill(signal.SIGTERM)  # returns once the pidfd says the process is gone
        assert select.select([pidfd], [], [], 0)[0]
    finally:
        os.close(pidfd)
    assert not os.path.exists(d.socket)
    assert not os.path.exists(d.socket + ".lock")
    assert "ERROR" not in d.log() and "Traceback" not in d.log()


def test_a_stale_socket_does_not_prevent_a_restart() -> None:
    d = DaemonProcess().start()
    try:
        old = d.pid
        d.kill(signal.SIGKILL)
        assert os.path.exists(d.socket)  # left behind: nobody removed it
        with pytest.raises(DaemonUnavailable):
            agentmem.connect(d.socket, name="too-early")
        d.start()  # same socket path
        assert d.pid != old
        with agentmem.connect(d.socket, name="after-restart") as c:
            h = c.alloc_smu("blob", b"fresh")
            assert bytes(c.read(h)) == b"fresh"
    finally:
        d.kill()


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_a_socket_path_that_is_not_a_socket_is_left_alone(kind: str) -> None:
    """A file or directory named as the socket is the user's: the daemon refuses it, one line
    on stderr, rather than removing it to bind there."""
    with tempfile.TemporaryDirectory(prefix="agentmem-test-") as tmp:
        path = os.path.join(tmp, "agentmem.sock")
        if kind == "file":
            with open(path, "w") as f:
                f.write("notes\n")
        else:
            os.mkdir(path)
        result = _run("--socket", path, "--state-dir", "none")
        assert result.returncode == 1
        assert result.stderr == (
            f"agentmem daemon: cannot listen on {path}: a {kind} is there, not a socket; "
            "left as it is\n"
        )
        if kind == "file":
            with open(path) as f:
                assert f.read() == "notes\n"
        else:
            assert os.path.isdir(path)
        assert not os.path.exists(path + ".lock")


def test_unusable_socket_paths_fail_in_one_line() -> None:
    with tempfile.TemporaryDirectory(prefix="agentmem-test-") as tmp:
        blocker = os.path.join(tmp, "file")
        open(blocker, "w").close()
        too_long = os.path.join(tmp, "x" * 120, "agentmem.sock")  # AF_UNIX paths: 107 bytes
        for path, reason in (
            (os.path.join(blocker, "agentmem.sock"), f"cannot lock {blocker}/agentmem.sock.lock"),
            (
                os.path.join(blocker, "d", "agentmem.sock"),
                f"cannot create runtime directory {blocker}/d",
            ),
            (too_long, f"cannot listen on {too_long}: AF_UNIX path too long"),
        ):
            result = _run("--socket", path, "--state-dir", "none")
            assert result.returncode == 1
            assert result.stderr.startswith(f"agentmem daemon: {reason}")
            assert result.stderr.count("\n") == 1  # one line, no traceback
            assert not os.path.exists(path + ".lock")
        path = os.path.join(tmp, "agentmem.sock")
        result = _run("--socket", path, "--state-dir", blocker)
        assert (result.returncode, result.stderr.count("\n")) == (1, 1)
        assert result.stderr.startswith(f"agentmem daemon: cannot create state directory {blocker}")
        assert not os.path.exists(path) and not os.path.exists(path + ".lock")


def test_the_lock_is_never_won_on_a_lock_file_being_removed(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon shutting down removes its lock file. A starting daemon that opened that file
    just before must not win the lock on it: a third daemon would then win it too, on a new
    file, and two daemons would serve one socket. The interleaving (the holder releases
    between our open and our flock) cannot be caused from outside, so it is injected."""
    path = os.path.join(tmp_path, "agentmem.sock")
    holder = lifecycle.Lock(path)
    holder.acquire()
    real_open = os.open

    def open_then_holder_exits(*args: object, **kw: object) -> int:
        fd = real_open(*args, **kw)  # type: ignore[arg-type]
        if holder.fd >= 0:
            holder.release()  # the old daemon exits: unlinks the file, drops the lock
        return fd

    monkeypatch.setattr(os, "open", open_then_holder_exits)
    starting = lifecycle.Lock(path)
    starting.acquire()
    monkeypatch.undo()
    try:
        third = lifecycle.Lock(path)
        with pytest.raises(DaemonRunning, match=f"pid {os.getpid()}"):
            third.acquire()
    finally:
        starting.release()


# --- start on first use --------------------------------------------------------------------------

_AGENT = """
import os, sys
import agentmem
os.read(int(sys.argv[1]), 1)  # the start line: EOF for every agent at once
c = agentmem.connect(name=sys.argv[2])
h = c.alloc_smu("system_prompt", b"the same prompt for all" * 1000)
assert bytes(c.read(h)) == b"the same prompt for all" * 1000
print("connected", flush=True)
sys.stdin.read()  # hold the connection until told to go
c.close()
"""


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="agentmem-test-") as tmp:
        yield os.path.join(tmp, "run")  # absent: the daemon creates it


def _daemons_for(socket_path: str) -> list[int]:
    """Pids of the daemon processes serving ``socket_path``."""
    found = subprocess.run(
        ["pgrep", "-f", f"agentmem daemon --socket {socket_path} "],
        capture_output=True,
        text=True,
        check=False,
    )
    return sorted(int(p) for p in found.stdout.split())


@pytest.mark.slow
def test_many_agents_starting_at_once_start_exactly_one_daemon(runtime_dir: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AGENTMEM_SOCKET"}
    env["AGENTMEM_RUNTIME_DIR"] = runtime_dir
    socket_path = os.path.join(runtime_dir, "agentmem.sock")
    start_r, start_w = os.pipe()
    agents = [
        subprocess.Popen(
            [sys.executable, "-c", _AGENT, str(start_r), f"agent-{i}"],
            env=env,
            pass_fds=(start_r,),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(20)
    ]
    os.close(start_r)
    daemon_pid = -1
    try:
        os.close(start_w)  # go
        deadline = time.monotonic() + 60
        for a in agents:
            assert a.stdout is not None
            ready, _, _ = select.select([a.stdout], [], [], max(0, deadline - time.monotonic()))
            line = a.stdout.readline() if ready else b""
            if line != b"connected\n":
                a.kill()
                _, err = a.communicate()
                pytest.fail(f"agent failed to connect: {err.decode()}")
        daemon_pid = _lock_pid(socket_path)
        assert _daemons_for(socket_path) == [daemon_pid]
        assert os.stat(runtime_dir).st_mode & 0o777 == 0o700
        with agentmem.connect(socket_path, name="observer") as observer:
            s = observer.get_stats()
            assert isinstance(s, StoreStats)
            assert s.agents == 21  # all 20 on the one daemon
            assert s.unique_bytes == len(b"the same prompt for all" * 1000)
        for a in agents:
            _, err = a.communicate(b"", timeout=WAIT)
            assert (a.returncode, err) == (0, b""), err.decode()
    finally:
        for a in agents:
            if a.poll() is None:
                a.kill()
                a.wait()
        if daemon_pid > 0:
            _stop(daemon_pid)
    assert not os.path.exists(socket_path)

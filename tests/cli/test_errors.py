"""Commands meeting what they cannot work with: a socket where no agentmem daemon of this
version answers, arguments they cannot use, Ctrl-C. One line on stderr that says what was
wrong, a non-zero exit status, no traceback."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from agentmem.cli import stats as stats_cli
from agentmem.cli import top as top_cli
from agentmem.cli.main import main
from agentmem.protocol import framing
from agentmem.testing import DaemonProcess
from tests.daemon.conftest import WAIT

COMMANDS = {
    "stats": ["stats"],
    "top": ["top"],
    "check": ["check"],
    "flamegraph": ["flamegraph", "-o", "profile.svg"],
}

#: What the peer answers the handshake with, and what the command must say about it.
PEERS = {
    "http": (b"HTTP/1.1 400 Bad Request\r\n\r\n", "bad frame magic b'HT'"),
    "newer protocol": (
        framing.HEADER.pack(framing.MAGIC, framing.FRAME_VERSION + 1, 0, 1) + b"\x80",
        f"frame version {framing.FRAME_VERSION + 1} not supported",
    ),
}


@pytest.fixture(params=list(PEERS))
def peer(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[tuple[str, str]]:
    """A socket whose one connection gets the peer's answer to its first request; yields the
    path and the expected reason."""
    answer, reason = PEERS[request.param]
    path = str(tmp_path / "other.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)  # the hello
            conn.sendall(answer)
            while conn.recv(65536):  # until the client hangs up
                pass

    server = threading.Thread(target=serve_one)
    server.start()
    try:
        yield path, reason
    finally:
        server.join(10)
        listener.close()
    assert not server.is_alive()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_peer_that_is_not_an_agentmem_daemon(
    command: str,
    peer: tuple[str, str],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, reason = peer
    monkeypatch.chdir(tmp_path)
    assert main([*COMMANDS[command], "--socket", path]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"agentmem {command}: no agentmem daemon of this version on {path}: ")
    assert reason in err and err.count("\n") == 1
    assert not (tmp_path / "profile.svg").exists()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_peer_that_never_answers_the_handshake(
    command: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stopped or wedged daemon (here: a socket whose backlog takes the connection and
    nobody reads it) no longer holds the command forever: it gives up after the handshake's
    bound, in one line."""
    path = str(tmp_path / "silent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    monkeypatch.setattr(stats_cli, "HANDSHAKE_SECONDS", 0.2)
    monkeypatch.chdir(tmp_path)
    try:
        assert main([*COMMANDS[command], "--socket", path]) == 1
    finally:
        listener.close()
    assert capsys.readouterr() == (
        "",
        f"agentmem {command}: no reply from the daemon within 0.2 s\n",
    )


def test_the_handshake_bound_does_not_bound_what_follows() -> None:
    """A fresh walk of a large domain or a check may take minutes: after the handshake the
    observer waits as long as the daemon takes, as before."""
    with DaemonProcess() as daemon:
        client = stats_cli.connect_observer(daemon.socket, "stats")
        try:
            assert client._transport._sock.gettimeout() is None  # type: ignore[union-attr]
            assert len(client.get_stats().per_agent) == 0
        finally:
            client.close()


def test_a_socket_path_too_long_is_named_with_its_reason(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / ("x" * 120) / "agentmem.sock")
    assert main(["stats", "--socket", path]) == 1
    assert capsys.readouterr().err == (
        f"agentmem stats: no daemon answers on {path}: AF_UNIX path too long\n"
    )


def bad_arguments(tmp: pathlib.Path) -> list[tuple[list[str], str]]:
    """Command lines refused before any work, and what the error must say."""
    (tmp / "file").write_text("kept\n")
    (tmp / "empty").mkdir()
    (tmp / "conversations-only" / "conversations" / "none-yet").mkdir(parents=True)
    return [
        (["swarm", "--agents", "abc"], "argument --agents: 'abc' is not a whole number"),
        (["swarm", "--processes", "-2"], "argument --processes: must be >= 1"),
        (["swarm", "--think", "-1"], "argument --think: must be >= 0 seconds"),
        (["swarm", "--concurrency", "-5"], "argument --concurrency: must be >= 0"),
        (["swarm", "--plot", str(tmp / "plot.txt")], "the plot is a PNG; name it FILE.png"),
        (["swarm", "--json", str(tmp / "file" / "r.json")], f"{tmp / 'file'} is not a directory"),
        (["swarm", "--md", str(tmp / "empty")], f"--md {tmp / 'empty'}: Is a directory"),
        (["bench", "tiers", "--agents", "0"], "--agents must be >= 1"),
        (["swarm", "--corpus", str(tmp / "empty")], "no files at conversations/*/*"),
        (["bench", "store", "--corpus", str(tmp / "conversations-only")], "conversations/*/*"),
        (["bench", "daemon", "--corpus", str(tmp / "empty")], "system_prompts/asgeirtj/*"),
    ]


def test_bad_arguments_are_refused_in_one_line_before_any_work(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, reason in bad_arguments(tmp_path):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2, argv
        err = capsys.readouterr().err
        last = err.splitlines()[-1]  # after argparse's usage lines
        assert last.startswith("agentmem") and "error: " in last and reason in last, argv
        assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conversations-only", "empty", "file"]
    assert (tmp_path / "file").read_text() == "kept\n"


def test_ctrl_c_while_a_daemon_does_not_answer_exits_130_without_a_traceback(
    tmp_path: pathlib.Path,
) -> None:
    path = str(tmp_path / "stuck.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentmem", "stats", "--socket", path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        listener.settimeout(WAIT)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(WAIT)
            assert conn.recv(65536)  # the hello: the command now waits for its reply
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=WAIT)
    finally:
        proc.kill()
        proc.wait()
        listener.close()
    assert (proc.returncode, out, err) == (130, "", "agentmem stats: interrupted\n")


def test_output_that_cannot_be_written(tmp_path: pathlib.Path) -> None:
    """A full disk gets one line and status 1; a reader that went away (| head) a quiet 141,
    as a shell reports it; neither a traceback nor an error at exit."""
    with DaemonProcess() as daemon:
        cmd = [sys.executable, "-m", "agentmem", "stats", "--json", "--socket", daemon.socket]
        with open("/dev/full", "w") as full:
            result = subprocess.run(
                cmd, check=False, stdout=full, stderr=subprocess.PIPE, text=True
            )
        assert (result.returncode, result.stderr) == (
            1,
            "agentmem stats: cannot write the output: No space left on device\n",
        )
        r, w = os.pipe()
        os.close(r)  # the reader is gone before the command writes anything
        try:
            result = subprocess.run(cmd, check=False, stdout=w, stderr=subprocess.PIPE, text=True)
        finally:
            os.close(w)
        assert (result.returncode, result.stderr) == (141, "")


def test_top_without_a_terminal_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """No keys to read: the live view would draw once and end, silently, with status 0."""
    with DaemonProcess() as daemon, open(os.devnull) as stdin:
        assert top_cli.run(daemon.socket, stdin=stdin) == 1
    assert capsys.readouterr() == (
        "",
        "agentmem top: needs a terminal; for the table once, agentmem stats\n",
    )

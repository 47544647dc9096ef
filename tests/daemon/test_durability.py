"""Nothing acknowledged is lost: the daemon is SIGKILLed at random moments during appends.

Four agent processes append numbered messages to their conversations as fast as they can and
report each acknowledgement on a pipe. The test kills the daemon after a random number of new
acknowledgements (so the moment falls anywhere in a request's life: reading it, applying it,
between the journal write and its sync, sending the reply), restarts it on the same socket and
state directory, and repeats; each agent reconnects under its name, gets its conversation back
under the same handle and goes on. At the end every acknowledged message must be there, in
order, exactly once, and ``check`` must find the store consistent.
"""

from __future__ import annotations

import os
import pathlib
import random
import selectors
import signal
import subprocess
import sys
import textwrap

import pytest

import agentmem
from agentmem.client import connect as client_connect
from agentmem.testing import DaemonProcess
from tests.daemon.conftest import WAIT

KILLS = 20
WORKERS = 4

WORKER = textwrap.dedent(
    """
    import os, sys, time
    import agentmem
    from agentmem.errors import DaemonUnavailable

    sock, name, stop = sys.argv[1:4]

    def retry(call):
        # The daemon is down until the test restarts it: wait for that (bounded).
        deadline = time.monotonic() + 60
        while True:
            try:
                return call()
            except DaemonUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.002)

    client = retry(lambda: agentmem.connect(sock, name=name, autostart=False))
    h = retry(lambda: client.alloc_smu("conversation", []))
    i = 0
    while not os.path.exists(stop):
        msg = f"{name}-{i}".encode()
        try:
            client.append(h, msg)
        except DaemonUnavailable:
            # Unknown whether it landed: look at the restored conversation's tip.
            tip = retry(lambda: client.messages(h, -1))
            if tip != [msg]:
                continue  # not stored: append it again
        print("ack", i, flush=True)
        i += 1
    final = retry(lambda: client.messages(h))
    print("final", " ".join(m.decode().rsplit("-", 1)[1] for m in final), flush=True)
    print("restored", client.reconnects, flush=True)
    client.close()
    """
)


def test_every_acknowledged_append_survives_repeated_sigkill(tmp_path: pathlib.Path) -> None:
    state = str(tmp_path)
    stop = os.path.join(state, "stop")
    daemon = DaemonProcess(extra_args=["--state-dir", state]).start()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, daemon.socket, f"w{k}", stop],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(WORKERS)
    ]
    acked: dict[str, list[int]] = {f"w{k}": [] for k in range(WORKERS)}
    final: dict[str, list[int]] = {}
    reconnects: dict[str, int] = {}
    sel = selectors.DefaultSelector()
    for k, p in enumerate(procs):
        assert p.stdout is not None
        sel.register(p.stdout, selectors.EVENT_READ, f"w{k}")
    rng = random.Random(20261125)

    def pump(until_acks: int | None) -> None:
        """Read workers' lines until ``until_acks`` more acks arrived (None: until all end)."""
        seen = 0
        while sel.get_map():
            events = sel.select(WAIT)
            assert events, f"no agent made progress for {WAIT:.0f} s"
            for key, _ in events:
                line = key.fileobj.readline()  # type: ignore[union-attr]
                name = key.data
                if not line:
                    sel.unregister(key.fileobj)
                    continue
                kind, _, rest = line.strip().partition(" ")
                if kind == "ack":
                    acked[name].append(int(rest))
                    seen += 1
                elif kind == "final":
                    final[name] = [int(x) for x in rest.split()]
                elif kind == "restored":
                    reconnects[name] = int(rest)
            if until_acks is not None and seen >= until_acks:
                return

    try:
        for _ in range(KILLS):
            pump(rng.randint(1, 60))
            daemon.kill(signal.SIGKILL)
            daemon.start()  # same socket, same state directory: restores, then serves
        pump(40)
        with client_connect(daemon.socket, observer=True, autostart=False) as obs:
            report = obs.check()
            assert report["ok"], report
            assert report["restore_problems"] == []
        open(stop, "w").close()
        pump(None)
        for p in procs:
            assert p.wait(WAIT) == 0
        print(daemon.log())
    except BaseException:
        print(daemon.log())  # shown with the failure: restores, errors, dropped connections
        raise
    finally:
        open(stop, "w").close()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()
        sel.close()
        daemon.kill(signal.SIGKILL)

    assert sum(len(v) for v in acked.values()) > KILLS
    for name, got in final.items():
        # every acknowledged message is there, in order, once; nothing else is
        assert got == list(range(len(got))), name
        assert acked[name] == list(range(len(acked[name]))), name
        assert len(got) == len(acked[name]), name
    assert len(final) == WORKERS
    # each agent went through the restarts with its handle (adopted after every crash)
    assert all(n >= KILLS // 2 for n in reconnects.values()), reconnects


def test_check_cli_offline_and_through_the_daemon(tmp_path: pathlib.Path) -> None:
    state = str(tmp_path)
    with (
        DaemonProcess(extra_args=["--state-dir", state]) as daemon,
        agentmem.connect(daemon.socket, name="a", autostart=False) as c,
    ):
        conv = c.conversation()
        conv.extend([{"role": "user", "content": f"m{i}"} for i in range(20)])
        live = subprocess.run(
            [sys.executable, "-m", "agentmem", "check", "--socket", daemon.socket],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert live.returncode == 0, live.stderr
        assert "OK" in live.stdout and "live daemon" in live.stdout
        daemon.kill(signal.SIGKILL)
    offline = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentmem",
            "check",
            "--state-dir",
            state,
            "--socket",
            "/nonexistent",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert offline.returncode == 0, offline.stderr
    assert "offline" in offline.stdout and "OK" in offline.stdout
    # damage the journal in place: check names it, --repair cannot bring the bytes back
    journal = pathlib.Path(state, f"uid-{os.getuid()}", "journal.amj")
    data = bytearray(journal.read_bytes())
    data[200] ^= 0xFF
    journal.write_bytes(bytes(data))
    damaged = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentmem",
            "check",
            "--state-dir",
            state,
            "--socket",
            "/nonexistent",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "journal records" in damaged.stdout, damaged.stdout


@pytest.mark.parametrize("mode", ["strict", "relaxed"])
def test_appends_wait_for_the_journal_in_strict_mode_only(
    mode: str, tmp_path: pathlib.Path
) -> None:
    state = str(tmp_path)
    with DaemonProcess(extra_args=["--state-dir", state, "--durability", mode]) as daemon:
        with agentmem.connect(daemon.socket, name="a", autostart=False) as c:
            h = c.alloc_smu("conversation", [])
            for i in range(20):
                c.append(h, f"m{i}")
            stats = c.get_stats(daemon=True)
        daemon.kill(signal.SIGKILL)
    assert isinstance(stats, agentmem.StoreStats)
    tiering = stats.tiering
    assert tiering is not None and tiering.durability == mode
    if mode == "strict":
        assert tiering.journal_syncs >= 20  # one per acknowledged append here (no batching)
    else:
        assert tiering.journal_syncs < 20

"""An agent process that imports the client and connects stays light (DESIGN.md: per-agent
fixed cost is part of the honest total)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agentmem.testing import DaemonProcess

HOLD = "import sys\n{body}\nsys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()"
CLIENT = "import sys, agentmem; client = agentmem.connect(sys.argv[1], name='light')"


def pss_kib(body: str, *args: str) -> int:
    """PSS of a fresh interpreter that ran ``body`` and holds still (smaller of two runs)."""
    values = []
    for _ in range(2):
        p = subprocess.Popen(
            [sys.executable, "-c", HOLD.format(body=body), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline() == b"ready\n"
        with open(f"/proc/{p.pid}/smaps_rollup") as f:
            values.append(next(int(x.split()[1]) for x in f if x.startswith("Pss:")))
        p.stdin.close()
        p.wait(timeout=30)
        p.stdout.close()
    return min(values)


def test_importing_and_connecting_adds_at_most_5_mib_of_pss() -> None:
    with DaemonProcess() as daemon:
        bare = pss_kib("")
        client = pss_kib(CLIENT, daemon.socket)
    assert client - bare <= 5 * 1024, f"client costs {client - bare} KiB over {bare} KiB"


def _printed(script: str) -> list[str]:
    """What ``script`` printed, run by a fresh interpreter against a fresh daemon."""
    with DaemonProcess() as daemon:
        out = subprocess.run(
            [sys.executable, "-c", script, daemon.socket],
            capture_output=True,
            text=True,
            check=True,
        )
    return out.stdout.split()


def test_the_sync_client_loads_no_heavy_module() -> None:
    loaded = set(_printed(CLIENT + "\nprint(' '.join(sorted(sys.modules)))"))
    heavy = {"asyncio", "psutil", "zstandard", "blake3", "pyfastcdc", "agentmem.store", "json"}
    assert not loaded & heavy
    # typing is ~0.7 MiB of heap (with what the modules would build with it) in a process
    # that may otherwise never import it.
    assert "typing" not in loaded


CONVERSING = (
    CLIENT
    + """
from agentmem.client.conversation import Conversation
chat = Conversation(client, client.alloc_smu("conversation", []))
chat.extend([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
assert chat[1] == {"role": "assistant", "content": "hello"} and chat[:1] == chat[0:1]
prompt = client.alloc_smu("system_prompt", b"You are a helpful agent." * 100)
assert bytes(client.read(prompt)).startswith(b"You are")
views = client.iter_message_views(chat.handle, 0, 2)
assert [bytes(v) for v in views] == [chat.raw(0), chat.raw(1)]
client.set_state("idle")
print(" ".join(sorted(sys.modules)))
"""
)


def test_an_agent_using_every_common_call_never_imports_typing() -> None:
    assert "typing" not in _printed(CONVERSING)


RESTING = """
import sys, agentmem
client = agentmem.connect(sys.argv[1], name="rests")
assert "ctypes" not in sys.modules  # loaded on the first rest only


def anonymous_kib() -> int:
    with open("/proc/self/smaps_rollup") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("Anonymous:"))


# What an agent's turn leaves: ~40 MB of buffers freed under one that lives on, so glibc
# keeps their pages (only the top of its heap goes back by itself).
held = [bytearray(2000) for _ in range(20_000)]
pin = bytearray(2000)
del held
before = anonymous_kib()
client.set_state("idle")
after = anonymous_kib()
client.set_state("active")
client.set_state("idle")  # within a second of the last: not again
print(before - after, client.trims)
"""


def _rest(socket: str, trim: str) -> tuple[int, int]:
    env = {**os.environ, "AGENTMEM_TRIM_ON_IDLE": trim}
    out = subprocess.run(
        [sys.executable, "-c", RESTING, socket],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    freed, trims = out.stdout.split()
    return int(freed), int(trims)


def test_an_agent_that_reports_idle_gives_its_free_heap_back() -> None:
    with DaemonProcess() as daemon:
        freed, trims = _rest(daemon.socket, "on")
        assert freed > 20 * 1024 and trims == 1, (freed, trims)
        freed, trims = _rest(daemon.socket, "off")
        assert freed < 4 * 1024 and trims == 0, (freed, trims)


def test_trim_on_idle_is_on_unless_turned_off_and_a_bad_value_says_so() -> None:
    from agentmem.config import trim_on_idle

    assert trim_on_idle({}) and trim_on_idle({"AGENTMEM_TRIM_ON_IDLE": "yes"})
    assert not trim_on_idle({"AGENTMEM_TRIM_ON_IDLE": "off"})
    with pytest.raises(ValueError, match="AGENTMEM_TRIM_ON_IDLE"):
        trim_on_idle({"AGENTMEM_TRIM_ON_IDLE": "sometimes"})


def test_a_small_agent_resting_loads_nothing_to_give_back() -> None:
    # Below TRIM_MIN_GROWTH since it connected, ctypes would cost more than it could return.
    script = CLIENT + "\nclient.set_state('idle')\nprint(client.trims, 'ctypes' in sys.modules)"
    assert _printed(script) == ["0", "False"]


def test_connect_takes_trim_on_idle_from_its_argument_else_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agentmem

    monkeypatch.setenv("AGENTMEM_TRIM_ON_IDLE", "off")
    with agentmem.connect(inprocess=True, name="env-off") as quiet:
        assert not quiet.trim_on_idle
    with agentmem.connect(inprocess=True, name="arg-on", trim_on_idle=True) as keen:
        assert keen.trim_on_idle
    with DaemonProcess() as daemon, agentmem.connect(daemon.socket, name="sock") as remote:
        assert not remote.trim_on_idle


def test_a_serving_daemon_maps_no_library_it_does_not_use() -> None:
    # ``secrets`` would map OpenSSL's libcrypto (~4 MiB of PSS that only the daemon holds),
    # fractions the decimal module, ctypes libffi: none serves a request. The daemon pays
    # its fixed cost once per machine, but in a small swarm that cost is the difference.
    with DaemonProcess() as daemon:
        client = subprocess.run(
            [sys.executable, "-c", CONVERSING, daemon.socket], capture_output=True, check=False
        )
        assert client.returncode == 0, client.stderr
        with open(f"/proc/{daemon.pid}/maps") as f:
            mapped = {os.path.basename(line.split()[-1]) for line in f if ".so" in line}
    unused = ("libcrypto", "_hashlib", "_decimal", "_ctypes", "_json")
    assert not [name for name in mapped if name.startswith(unused)], sorted(mapped)

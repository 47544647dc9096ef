"""An agent process that imports the client and connects stays light (DESIGN.md: per-agent
fixed cost is part of the honest total)."""

from __future__ import annotations

import subprocess
import sys

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


def test_the_sync_client_loads_no_heavy_module() -> None:
    with DaemonProcess() as daemon:
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                CLIENT + "\nprint(' '.join(sorted(sys.modules)))",
                daemon.socket,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    loaded = set(out.stdout.split())
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
    with DaemonProcess() as daemon:
        out = subprocess.run(
            [sys.executable, "-c", CONVERSING, daemon.socket],
            capture_output=True,
            text=True,
            check=True,
        )
    assert "typing" not in set(out.stdout.split())

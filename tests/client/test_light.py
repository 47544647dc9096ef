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

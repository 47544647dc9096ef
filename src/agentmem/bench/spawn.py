"""Agent spawn: the ``spawn`` section of ``agentmem bench daemon``.

What a new agent process pays before it can use a shared prompt: connect, hello (which opens
the prompt an orchestrator published by name; the reply brings its segment, which the client
maps), and the first zero-copy read (served from that reply: it touches the first byte). Timed
inside fresh interpreters (start-up and ``import agentmem`` are reported apart), one after
another, beside the same process reading the same bytes from a file, mapping the file, and
copying them.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentmem.bench import report as rp
from agentmem.bench.fleet import CHILD_TIMEOUT, expect_line, private_daemon
from agentmem.client import connect

#: A fresh agent process: times ``import agentmem``, then connect, hello opening the published
#: prompt, and the first zero-copy read up to touching its first byte; and
#: the same bytes read from a file, mapped from a file and copied in memory. The baselines run
#: before or after the agent's read on alternate spawns, so neither gets the warmer process.
_SPAWN_CHILD = r"""
import json, os, sys, time
started = time.perf_counter()
import agentmem
from agentmem.client.transport import UnixSocketTransport
imported = time.perf_counter()
path, name, prompt_file, baselines_first = sys.argv[1:5]

def baselines():
    import mmap
    b0 = time.perf_counter()
    with open(prompt_file, "rb") as f:
        data = f.read()
    data[0]
    b1 = time.perf_counter()
    with open(prompt_file, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    mapping[0]
    b2 = time.perf_counter()
    copy = memoryview(data).tobytes()
    copy[0]
    b3 = time.perf_counter()
    return data, {"file_read": b1 - b0, "file_mmap": b2 - b1, "memory_copy": b3 - b2}

if baselines_first == "1":
    data, base = baselines()
t0 = time.perf_counter()
transport = UnixSocketTransport(path)
t1 = time.perf_counter()
client = agentmem.Client(transport, name=name, open=["bench/system-prompt"])
t2 = time.perf_counter()
handle = client.opened["bench/system-prompt"]
t3 = time.perf_counter()
view = client.read(handle)
view[0]
t4 = time.perf_counter()
if baselines_first != "1":
    data, base = baselines()
out = {
    "started": started, "import": imported - started, "connect": t1 - t0, "hello": t2 - t1,
    "read": t4 - t3, "total": t4 - t0,
    "zero_copy": type(view.obj).__name__ == "mmap" and view.readonly and view == data,
}
print(json.dumps({**out, **base}), flush=True)
"""

SPAWN_PHASES = ("connect", "hello", "read", "total")
SPAWN_BASELINES = ("file_read", "file_mmap", "memory_copy")


def _us_stats(values: Sequence[float]) -> dict[str, float]:
    s = sorted(values)
    return {
        "p50_us": round(rp.percentile(s, 0.5) * 1e6, 1),
        "p99_us": round(rp.percentile(s, 0.99) * 1e6, 1),
    }


def bench_spawn(spawns: int, prompt: bytes) -> dict[str, Any]:
    """Fresh interpreters, one after another, each becoming an agent that reads the prompt."""
    samples: list[dict[str, Any]] = []
    startup: list[float] = []
    wall: list[float] = []
    with private_daemon() as d, tempfile.TemporaryDirectory(prefix="agentmem-spawn-") as tmp:
        prompt_file = os.path.join(tmp, "prompt.md")
        Path(prompt_file).write_bytes(prompt)
        with connect(d.socket, name="bench-orchestrator") as orchestrator:
            handle = orchestrator.alloc_smu("system_prompt", prompt)
            orchestrator.publish(handle, "bench/system-prompt")
            for i in range(spawns):
                name = f"spawned-{i:03d}"
                cmd = [sys.executable, "-c", _SPAWN_CHILD, d.socket, name, prompt_file, str(i % 2)]
                t0 = time.perf_counter()
                with subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
                ) as child:
                    line = expect_line(child.stdout, "spawn")
                    child.wait(CHILD_TIMEOUT)
                wall.append(time.perf_counter() - t0)
                sample = json.loads(line)
                startup.append(sample["started"] - t0)
                samples.append(sample)
    out: dict[str, Any] = {
        "notes": "Each spawn is a fresh `python -c` process. Timed inside it (perf_counter): "
        "from just before connect to just after touching the first byte of the first read of "
        "a 1 MiB system prompt that an orchestrator process published by name. Phases: connect "
        "(socket connect), hello (register, opening the published prompt: the handle comes "
        "back in the hello reply), read (the read request, the segment's fd passed and "
        "mapped, first byte touched). Baselines in the same process, same bytes: open+read "
        "of the prompt file "
        "(page cache warm), open+mmap of it, and a private copy from memory, each to its "
        "first byte. import_ms: `import agentmem` (excluded from the total); startup_ms: "
        "interpreter start-up before the script runs; process_wall_ms: Popen to exit, as seen "
        "by the parent.",
        "spawns": len(samples),
        "prompt_bytes": len(prompt),
        "zero_copy": all(s["zero_copy"] for s in samples),
    }
    for key in SPAWN_PHASES + SPAWN_BASELINES:
        out[key] = _us_stats([s[key] for s in samples])
    out["import_ms"] = round(statistics.median(s["import"] for s in samples) * 1000, 2)
    out["startup_ms"] = round(statistics.median(startup) * 1000, 2)
    out["process_wall_ms"] = round(statistics.median(wall) * 1000, 2)
    return out

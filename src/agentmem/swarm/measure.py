"""What the swarm reads from the machine: PSS of a set of processes plus the daemon's unmapped
shared memory, sampled on a thread; CPU time; KSM switched on for a run and restored after.

Memory total = the sum of PSS over the agent processes and the daemon, plus the pages of the
daemon's memfds that no process maps (they count in no PSS, DESIGN.md). Those are taken from the
memfds themselves: ``st_blocks`` of each ``/proc/<daemon>/fd`` entry that is a memfd is what its
pages occupy; whatever of that the counted processes map shows up in their ``Pss_Shmem``, so
``max(0, memfd bytes - sum of Pss_Shmem)`` is the unmapped rest. (The daemon maps its own
segments to append to them, so this is usually ~0; it is reported either way.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from agentmem.bench.pss import cpu_seconds, rollup

#: Where the kernel exposes KSM's switches and counters.
KSM_DIR = Path("/sys/kernel/mm/ksm")
#: ksmd's settings during a ``ksm`` run: up to 10,000 pages (39 MiB) every 10 ms, a full pass
#: over 10 GiB of agent memory in ~7 s, so that merging has happened by the time the swarm is
#: measured (the defaults, 100 pages every 20 ms, take ~2 h for that). This is KSM's best case;
#: its CPU is charged to the run (ksmd's time, as the daemon's is in ``agentmem`` mode).
KSM_TUNING = {"pages_to_scan": "10000", "sleep_millisecs": "10"}
KSM_SAVED = ("run", "pages_to_scan", "sleep_millisecs")


def memfd_bytes(pid: int) -> int:
    """Bytes of memory the memfds open in process ``pid`` occupy (each counted once)."""
    seen: set[int] = set()
    total = 0
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        path = f"{fd_dir}/{fd}"
        try:
            if not os.readlink(path).startswith("/memfd:"):
                continue
            st = os.stat(path)
        except FileNotFoundError:  # closed meanwhile
            continue
        if st.st_ino not in seen:
            seen.add(st.st_ino)
            total += st.st_blocks * 512
    return total


def sample(pids: Sequence[int], daemon: int | None) -> dict[str, int]:
    """One reading of the swarm's memory (``OSError`` if a process is gone)."""
    everyone = [*pids, daemon] if daemon is not None else list(pids)
    rolls = [rollup(pid) for pid in everyone]
    pss = sum(r["Pss"] for r in rolls)
    mapped_shmem = sum(r.get("Pss_Shmem", 0) for r in rolls)
    memfd = memfd_bytes(daemon) if daemon is not None else 0
    unmapped = max(0, memfd - mapped_shmem)
    return {
        "total": pss + unmapped,
        "pss": pss,
        "agents": sum(r["Pss"] for r in rolls[: len(pids)]),
        "daemon": rolls[-1]["Pss"] if daemon is not None else 0,
        "memfd": memfd,
        "unmapped_memfd": unmapped,
    }


def mem_available() -> int:
    """``MemAvailable`` of ``/proc/meminfo``, bytes."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise OSError("no MemAvailable line in /proc/meminfo")


class Sampler:
    """Samples the swarm's total every ``interval`` seconds on a thread until stopped, and
    guards the machine: if ``MemAvailable`` falls under ``guard`` bytes, it kills the agent
    processes (SIGKILL; they are this run's children) and says why in ``exhausted``, so that
    a mode that does not fit ends as "did not fit" instead of waking the OOM killer.

    ``totals`` may be read once :meth:`stop` returned. A reading that fails (a process exiting)
    is skipped.
    """

    def __init__(
        self, pids: Sequence[int], daemon: int | None, interval: float, guard: int = 1 << 30
    ) -> None:
        self.pids = list(pids)
        self.daemon = daemon
        self.interval = interval
        self.guard = guard
        self.totals: list[int] = []
        self.exhausted: str | None = None
        self._mark = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="swarm-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.totals.append(sample(self.pids, self.daemon)["total"])
            available = mem_available()
            if available < self.guard and self.exhausted is None:
                total = self.totals[-1] if self.totals else 0
                self.exhausted = (
                    f"did not fit: MemAvailable fell to {available >> 20} MiB with the swarm at "
                    f"{total >> 20} MiB; its processes were stopped"
                )
                for pid in self.pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            self._stop.wait(self.interval)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def mark(self) -> None:
        """Start of the turns: :meth:`median` covers the samples from here on."""
        self._mark = len(self.totals)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def median(self) -> int:
        """Median of the samples since :meth:`mark`."""
        run = self.totals[self._mark :]
        return int(statistics.median(run)) if run else 0


def cpu(pids: Sequence[int]) -> float:
    """CPU seconds used so far by ``pids`` together (processes already gone count 0)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


# --- KSM ---------------------------------------------------------------------------------------


def ksm_unavailable(ksm_dir: Path | None = None) -> str | None:
    """Why KSM cannot be switched on here (None if it can): no sysfs directory, or its switches
    not writable (checked by writing back the value each holds)."""
    d = ksm_dir or KSM_DIR
    if not (d / "run").is_file():
        return f"{d} not found: this kernel has no KSM"
    for name in KSM_SAVED:
        try:
            value = (d / name).read_text()
            with (d / name).open("w") as f:
                f.write(value)
        except OSError as exc:
            return f"{d / name} is not writable ({exc.strerror or exc}): KSM cannot be switched on"
    return None


def ksmd_pid() -> int | None:
    """The pid of the ksmd kernel thread, if it is visible from here."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as f:
                if f.read().strip() == "ksmd":
                    return int(entry)
    return None


class KsmSession:
    """KSM on and tuned (:data:`KSM_TUNING`) for the block; every setting put back after.

    ``saved`` holds what was there before and ``restored`` what was written back on exit.
    """

    def __init__(self, ksm_dir: Path | None = None) -> None:
        self.dir = ksm_dir or KSM_DIR
        self.saved: dict[str, str] = {}
        self.restored: dict[str, str] = {}

    def read(self, name: str) -> int:
        return int((self.dir / name).read_text().split()[0])

    def _write(self, name: str, value: str) -> None:
        (self.dir / name).write_text(value)

    def __enter__(self) -> KsmSession:
        self.saved = {name: (self.dir / name).read_text().strip() for name in KSM_SAVED}
        try:
            for name, value in KSM_TUNING.items():
                self._write(name, value)
            self._write("run", "1")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        # run last: ksmd stops with its old settings already back in place.
        for name in (*KSM_TUNING, "run"):
            if name in self.saved:
                self._write(name, self.saved[name])
                self.restored[name] = self.saved[name]

    def counters(self) -> dict[str, int]:
        """pages_shared, pages_sharing, full_scans now."""
        return {n: self.read(n) for n in ("pages_shared", "pages_sharing", "full_scans")}

    def wait_scans(self, scans: int, timeout: float) -> float:
        """Wait until ksmd has finished ``scans`` more full passes (at most ``timeout`` s);
        return the seconds waited."""
        t0 = time.monotonic()
        goal = self.read("full_scans") + scans
        while self.read("full_scans") < goal and time.monotonic() - t0 < timeout:
            time.sleep(0.1)
        return time.monotonic() - t0


def unwind_on_signals() -> None:
    """Make SIGTERM and SIGHUP unwind this process like an exception (``SystemExit``), so the
    KSM session puts the kernel's settings back and the fleet is stopped. Without it a swarm
    stopped with ``kill`` left ksmd scanning 10,000 pages every 10 ms for every later run on
    the machine (measured: a seed run's daemon CPU, spawn and turn figures all moved).
    Main thread only (where Python runs signal handlers)."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)


@contextlib.contextmanager
def ksm_session(ksm_dir: Path | None = None) -> Iterator[KsmSession]:
    with KsmSession(ksm_dir) as session:
        yield session

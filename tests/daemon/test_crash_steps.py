"""Nothing acknowledged is lost when the daemon is SIGKILLed while its long work runs in steps.

The daemon does three kinds of work a step at a time between requests: it rewrites its journal
(a new file written over several maintenance passes, then renamed over the old one), demotes
idle conversations a warm group at a time (straight to the cold tier's packs once the warm
tier is at its budget), and promotes a demoted range a step at a time for a ``messages`` read
(a deferred reply). Settings make all three frequent in a small run: the journal is rewritten
past 1 MiB, conversations unused for a second go warm, warm groups are 16 KiB, the warm budget
is 64 KiB.

Four agent processes append to their conversations, fork them, append to the forks, hand a
history over to a fork (the original released: a rewrite that had not written it yet must be
abandoned), release conversations and forks once long enough (most of what the journal holds
is dead, so it is rewritten again and again) and read back ranges of the conversations they
left idle (demoted by then); each acknowledged operation goes to the test on a pipe.

The test kills the daemon in turn: once the rewrite has opened its new file and written a
random number of times to it, once the daemon has written a random number of pack records,
and after a random number of acknowledgements; then it restarts the daemon on the same state
directory and has it check itself (consistent, restored without a problem). The moments come
from the files themselves (inotify on the state directory), so no sleep stands in for them.

An agent whose request was cut off finds out after the restart what became of it (its handles
as the new daemon gives them back, the conversation's tip) and checks on every restart that
no conversation it holds was lost and none it released came back. At the end every
acknowledged message of every live conversation and fork is there, in order, once; the agents
hold exactly the handles they were acknowledged; the daemon logged no error; an offline check
of the state directory after a last kill finds it consistent.
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import random
import selectors
import signal
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import TypeVar

from agentmem.client import connect as client_connect
from agentmem.errors import DaemonUnavailable
from agentmem.stats import StoreStats
from agentmem.testing import DaemonProcess
from tests.daemon.conftest import WAIT

_T = TypeVar("_T")

WORKERS = 4
#: Kills of each kind: during a journal rewrite, just after a pack record is written (a
#: demotion to the cold tier), at random.
KILLS_EACH = 5
#: How long the daemon may take to start the work a kill waits for (a rewrite comes due once
#: the agents have written twice the live conversations past the threshold: ~1-3 s here).
TRIGGER_WAIT = 30.0

SETTINGS = {
    "AGENTMEM_JOURNAL_REWRITE_MIN_BYTES": "1M",
    "AGENTMEM_WARM_AFTER_SECONDS": "1",
    "AGENTMEM_COLD_AFTER_SECONDS": "0",
    "AGENTMEM_WARM_GROUP_BYTES": "16K",
    "AGENTMEM_WARM_BUDGET_BYTES": "64K",
}

WORKER = textwrap.dedent(
    """
    import os, random, sys, time
    import agentmem
    from agentmem.errors import DaemonUnavailable

    sock, name, seed, stop = sys.argv[1:5]
    rng = random.Random(int(seed))
    WORDS = (
        "the agent reads a file and calls a tool then writes the answer to memory while "
        "another conversation waits for its turn in the queue of requests the daemon serves "
        "from one loop between maintenance passes over idle content"
    ).split()
    CONVERSATIONS = 6  # each released once it holds 100-250 messages (~1.5 KiB each)
    IDLE = 1.5  # seconds unused after which a conversation is demoted (warm after 1 s)

    def body(tag):
        r = random.Random(tag)
        return (tag + "|" + " ".join(r.choice(WORDS) for _ in range(r.randint(120, 400)))).encode()

    def tags(messages):
        out = []
        for data in messages:
            tag = bytes(data).split(b"|", 1)[0].decode()
            if bytes(data) != body(tag):
                bad(f"message {tag} does not hold its bytes")
            out.append(tag)
        return out

    def say(*words):
        print(*words, flush=True)

    def bad(why):
        say("bad", why.replace(" ", "_"))
        sys.exit(3)

    live = {}  # handle -> tags of its acknowledged messages, in order
    limit = {}  # handle -> length at which it is released
    forks = set()
    released = set()
    used = {}  # handle -> when this agent last used it
    focus = []  # the handles appended to for now; the others go idle
    count = 0

    def run(op):
        # Perform ``op`` and acknowledge it (DaemonUnavailable: its outcome is unknown).
        kind, *args = op
        if kind == "new":
            acked(op, client.alloc_smu("conversation", []))
        elif kind == "fork":
            acked(op, client.fork(args[0]))
        elif kind == "append":
            client.append(args[0], body(args[1]))
            acked(op)
        elif kind == "release":
            client.release(args[0])
            acked(op)
        else:
            h, start, stop_ = args
            got = tags(client.messages(h, start, stop_))
            if got != live[h][start:stop_]:
                bad(f"read of {h} [{start}:{stop_}] gave {got} not {live[h][start:stop_]}")
            used[h] = time.monotonic()
            say("read", h, len(got))

    def acked(op, new=None):
        kind, *args = op
        now = time.monotonic()
        if kind == "new":
            live[new], limit[new], used[new] = [], rng.randint(100, 250), now
            focus.append(new)
            say("new", new)
        elif kind == "fork":
            src, handoff = args
            live[new], used[new], used[src] = list(live[src]), now, now
            if handoff:  # the fork goes on in its place (the source is released next)
                limit[new] = limit[src]
            else:
                limit[new] = len(live[src]) + rng.randint(5, 25)
                forks.add(new)
            focus.append(new)
            say("fork", src, new)
        elif kind == "append":
            live[args[0]].append(args[1])
            used[args[0]] = now
            say("append", args[0], args[1])
        elif kind == "release":
            h = args[0]
            del live[h], limit[h], used[h]
            forks.discard(h)
            if h in focus:
                focus.remove(h)
            released.add(h)
            say("release", h)

    def settle(op):
        # The daemon went away with ``op`` in flight: once it is back, find what became of it
        # (and check the handles it gave back), then acknowledge it or do it again.
        deadline = time.monotonic() + 60
        while True:
            try:
                return resolve(op)
            except DaemonUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.002)  # the test restarts it

    def resolve(op):
        kind, *args = op
        held = {int(d["handle"]) for d in client.handles()}
        if held & released:
            bad(f"released conversations came back: {sorted(held & released)}")
        missing = set(live) - held - ({args[0]} if kind == "release" else set())
        if missing:
            bad(f"conversations lost: {sorted(missing)}")
        extra = held - set(live)
        if kind in ("new", "fork"):
            if len(extra) > 1:
                bad(f"handles nobody asked for: {sorted(extra)}")
            if extra:  # it was done: the conversation is there
                h = extra.pop()
                expected = live[args[0]] if kind == "fork" else []
                got = tags(client.messages(h))
                if got != expected:
                    bad(f"unacknowledged {kind} {h} holds {got}, not {expected}")
                return acked(op, h)
            return run(op)
        if extra:
            bad(f"handles nobody asked for: {sorted(extra)}")
        if kind == "append":
            tip = client.messages(args[0], -1)
            if tip and tags(tip) == [args[1]]:
                return acked(op)
        elif kind == "release" and args[0] not in held:
            return acked(op)
        return run(op)

    def do(op):
        try:
            run(op)
        except DaemonUnavailable:
            settle(op)

    def step():
        global count
        now = time.monotonic()
        if len(live) - len(forks) < CONVERSATIONS:
            return do(("new",))
        for h, n in limit.items():
            if len(live[h]) >= n:
                return do(("release", h))
        r = rng.random()
        idle = [h for h in live if now - used[h] > IDLE and live[h]]
        if idle and r < 0.03:
            h = rng.choice(idle)
            n = len(live[h])
            start = rng.randrange(n // 2 + 1)
            return do(("read", h, start, rng.choice([None, n, rng.randint(start, n)])))
        if not focus or r > 0.997:  # others get the appends for a while (~1 s)
            focus[:] = rng.sample(sorted(live), 2)
        if r < 0.04 and len(forks) < 2:
            src = rng.choice(focus)
            if src in forks or r < 0.03:
                return do(("fork", src, False))
            # A hand-off: the history goes on in a fork, the original is released (while a
            # rewrite has not written it, the rewrite must be abandoned: the fork needs it).
            do(("fork", src, True))
            return do(("release", src))
        count += 1
        return do(("append", rng.choice(focus), f"{name}.{count}"))

    deadline = time.monotonic() + 60
    while True:
        try:
            client = agentmem.connect(sock, name=name, autostart=False)
            break
        except DaemonUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)
    while not os.path.exists(stop):
        step()
    deadline = time.monotonic() + 60
    while True:  # the daemon runs on now: the last word of each conversation
        try:
            held = {int(d["handle"]) for d in client.handles()}
            final = {h: tags(client.messages(h)) for h in sorted(held)}
            break
        except DaemonUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)
    for h, got in final.items():
        say("final", h, *got)
    say("done", client.reconnects)
    client.close()
    """
)

# inotify(7): the daemon's file operations, as they happen, without polling.
_IN_MODIFY = 0x002
_IN_OPEN = 0x020
_IN_MOVED_FROM = 0x040
_IN_DELETE = 0x200
_IN_Q_OVERFLOW = 0x4000
_EVENT = struct.Struct("iIII")


class Watch:
    """inotify watches on directories; :meth:`events` gives ``(directory, mask, name)``."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        self.dirs: dict[int, str] = {}

    def add(self, directory: str, mask: int) -> None:
        wd = self.libc.inotify_add_watch(self.fd, directory.encode(), mask)
        assert wd >= 0, os.strerror(ctypes.get_errno())
        self.dirs[wd] = directory

    def events(self) -> list[tuple[str, int, str]]:
        out: list[tuple[str, int, str]] = []
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return out
            pos = 0
            while pos < len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
                assert not mask & _IN_Q_OVERFLOW, "inotify lost events"
                raw = data[pos + _EVENT.size : pos + _EVENT.size + length]
                out.append((self.dirs.get(wd, ""), mask, raw.rstrip(b"\0").decode()))
                pos += _EVENT.size + length

    def close(self) -> None:
        os.close(self.fd)


class Agents:
    """The worker processes and what they acknowledged, read off their pipes."""

    def __init__(self, socket: str, stop: str, logs: pathlib.Path) -> None:
        self.errors = [logs / f"w{k}.stderr" for k in range(WORKERS)]
        self.procs = []
        for k, errors in enumerate(self.errors):
            with errors.open("w") as err:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", WORKER, socket, f"w{k}", str(20261126 + k), stop],
                        stdout=subprocess.PIPE,
                        stderr=err,
                        text=True,
                    )
                )
        self.sel = selectors.DefaultSelector()
        for k, p in enumerate(self.procs):
            assert p.stdout is not None
            self.sel.register(p.stdout, selectors.EVENT_READ, f"w{k}")
        #: Per agent: its conversations as acknowledged (handle -> tags), and those released.
        self.live: dict[str, dict[int, list[str]]] = {f"w{k}": {} for k in range(WORKERS)}
        self.released: dict[str, set[int]] = {f"w{k}": set() for k in range(WORKERS)}
        self.final: dict[str, dict[int, list[str]]] = {f"w{k}": {} for k in range(WORKERS)}
        self.reconnects: dict[str, int] = {}
        self.acks = 0
        self.reads = 0

    def pump(self, timeout: float, extra: int | None = None) -> list[int]:
        """Read what the agents said within ``timeout`` (0: what is there); the keys ready,
        ``extra`` (another fd) among them when it is."""
        if extra is not None and extra not in [k.fd for k in self.sel.get_map().values()]:
            self.sel.register(extra, selectors.EVENT_READ, None)
        ready: list[int] = []
        for key, _ in self.sel.select(timeout):
            if key.data is None:
                ready.append(key.fd)
                continue
            line = key.fileobj.readline()  # type: ignore[union-attr]
            if not line:
                self.sel.unregister(key.fileobj)
                continue
            self._take(key.data, line.split())
        return ready

    def _take(self, name: str, words: list[str]) -> None:
        kind, args = words[0], words[1:]
        live = self.live[name]
        if kind == "bad":
            raise AssertionError(f"agent {name}: {' '.join(args)}")
        if kind == "new":
            live[int(args[0])] = []
        elif kind == "fork":
            live[int(args[1])] = list(live[int(args[0])])
        elif kind == "append":
            live[int(args[0])].append(args[1])
        elif kind == "release":
            del live[int(args[0])]
            self.released[name].add(int(args[0]))
        elif kind == "read":
            self.reads += 1
        elif kind == "final":
            self.final[name][int(args[0])] = args[1:]
        elif kind == "done":
            self.reconnects[name] = int(args[0])
        if kind in ("new", "fork", "append", "release"):
            self.acks += 1

    def stderr(self) -> str:
        """What the agents wrote to stderr (a traceback, if one failed)."""
        return "".join(f"--- {e.name}\n{e.read_text()}" for e in self.errors)

    def running(self) -> bool:
        return any(k.data is not None for k in self.sel.get_map().values())

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()
        self.sel.close()


def test_nothing_acknowledged_is_lost_when_killed_during_work_in_steps(
    tmp_path: pathlib.Path,
) -> None:
    state = str(tmp_path / "state")
    domain = os.path.join(state, f"uid-{os.getuid()}")
    stop = str(tmp_path / "stop")
    daemon = DaemonProcess(extra_args=["--state-dir", state], env={**os.environ, **SETTINGS})
    daemon.start()
    # An observer's hello makes the domain (its directory) on a first start.
    observer = client_connect(daemon.socket, observer=True, autostart=False)
    watch = Watch()
    watch.add(domain, _IN_OPEN | _IN_MODIFY | _IN_MOVED_FROM | _IN_DELETE)
    watch.add(os.path.join(domain, "packs"), _IN_MODIFY)
    agents = Agents(daemon.socket, stop, tmp_path)
    rng = random.Random(20261126)
    #: Per daemon life, the last statistics seen (their counters start again at each start).
    seen: list[StoreStats] = []
    life: list[StoreStats | None] = [None]
    rewriting = False  # the journal's new file is open, not renamed or removed yet
    landed = {"rewrite": 0, "packs": 0, "random": 0}
    pack_writes = 0  # records the cold tier wrote: demotions (and moves of warm content) to it

    def drain() -> list[tuple[str, int, str]]:
        """The daemon's file operations since the last call; ``rewriting`` kept up."""
        nonlocal rewriting, pack_writes
        events = watch.events()
        for _, mask, name in events:
            if name == "journal.amj.new":
                rewriting = bool(mask & (_IN_OPEN | _IN_MODIFY))
            pack_writes += name.startswith("pack-") and bool(mask & _IN_MODIFY)
        return events

    def ask(call: Callable[[], _T]) -> _T:
        try:
            return call()
        except DaemonUnavailable:  # the connection to a daemon killed since: a new one
            return call()

    def sample() -> None:
        stats = ask(observer.get_stats)
        assert isinstance(stats, StoreStats)
        life[0] = stats

    def check() -> None:
        """The store is consistent, and came back from the journal without a problem."""
        report = ask(observer.check)
        assert report["ok"], report
        assert report["restore_problems"] == [], report["restore_problems"]

    def serve(until: Callable[[], bool], on_event: Callable[[int, str], bool]) -> None:
        """Take the agents' acknowledgements until ``until()``, or until ``on_event(mask,
        name)`` is true of a file operation of the daemon's."""
        deadline = time.monotonic() + TRIGGER_WAIT
        acks = agents.acks
        while not until():
            assert time.monotonic() < deadline, "the daemon never started the awaited work"
            assert agents.running(), "the agents ended early"
            agents.pump(WAIT, extra=watch.fd)
            if any(on_event(mask, name) for _, mask, name in drain()):
                return
            if agents.acks - acks >= 50:
                sample()
                acks = agents.acks

    def writes(prefix: str, n: int) -> Callable[[int, str], bool]:
        """True at the ``n``-th write (``n`` = 0: the open) of a file named ``prefix...``."""
        left = [n]

        def hit(mask: int, name: str) -> bool:
            if name.startswith(prefix) and mask & (_IN_OPEN | _IN_MODIFY):
                left[0] -= 1
            return left[0] < 0

        return hit

    def never(mask: int, name: str) -> bool:
        return False

    def acks(n: int) -> Callable[[], bool]:
        target = agents.acks + n
        return lambda: agents.acks >= target

    try:
        t0 = time.monotonic()
        for k in range(3 * KILLS_EACH):
            kind = ("rewrite", "packs", "random")[k % 3]
            if kind == "rewrite":
                # at the open of the new file, or after some of its writes (8 MiB syncs
                # included), or at the copy of what came meanwhile
                serve(lambda: False, writes("journal.amj.new", rng.randint(0, 6)))
            elif kind == "packs":
                # just after a pack record is written: a demotion (or a move of warm content
                # to cold) is going on
                serve(lambda: False, writes("pack-", rng.randint(2, 14)))
            else:
                serve(acks(rng.randint(1, 300)), never)
                sample()
            daemon.kill(signal.SIGKILL)
            drain()  # what it did up to its death
            # Killed with the new file written in part: the old journal is the journal.
            new_file = os.path.exists(os.path.join(domain, "journal.amj.new"))
            assert new_file or not rewriting, "inotify said the rewrite was on"
            landed["rewrite"] += rewriting
            landed["packs"] += kind == "packs"
            landed["random"] += kind == "random"
            rewriting = False
            if life[0] is not None:
                seen.append(life[0])
                life[0] = None
            daemon.start()  # same socket, same state directory: restores, then serves
            check()
        serve(acks(300), never)
        sample()
        check()
        open(stop, "w").close()
        while agents.running():
            agents.pump(WAIT)
        for k, p in enumerate(agents.procs):
            assert p.wait(WAIT) == 0, f"agent w{k} exited with {p.returncode}\n{agents.stderr()}"
        elapsed = time.monotonic() - t0
        daemon.kill(signal.SIGKILL)
        offline = subprocess.run(
            [sys.executable, "-m", "agentmem", "check", "--state-dir", state, "--socket", "/x"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **SETTINGS},
        )
        assert offline.returncode == 0 and "OK" in offline.stdout, offline.stdout
        log = daemon.log()
    except BaseException:
        print(daemon.log())  # shown with the failure: restores, rewrites, errors
        print(agents.stderr())
        raise
    finally:
        open(stop, "w").close()
        observer.close()
        agents.close()
        watch.close()
        daemon.kill(signal.SIGKILL)

    if life[0] is not None:
        seen.append(life[0])
    for name, live in agents.live.items():
        # every acknowledged message is there, in order, once; nothing else is; the
        # conversations released are gone
        assert agents.final[name] == live, name
        assert not set(agents.final[name]) & agents.released[name], name
        assert agents.reconnects[name] >= 3 * KILLS_EACH // 2, agents.reconnects
    tiering = [s.tiering for s in seen if s.tiering is not None]
    demoted = sum(t.demoted_bytes["warm"] + t.demoted_bytes["cold"] for t in tiering)
    promoted = sum(sum(t.promoted_bytes.values()) for t in tiering)
    abandoned = log.count("journal rewritten: 0 bytes saved")
    rewrites = log.count("journal rewritten") - abandoned
    print(
        f"{elapsed:.1f} s, {agents.acks} acknowledged, {agents.reads} reads of idle ranges; "
        f"kills during a rewrite {landed['rewrite']}, just after a pack write {landed['packs']}, "
        f"at random {landed['random']}; rewrites completed {rewrites}, abandoned {abandoned}; "
        f"pack records written {pack_writes}; demoted {demoted} bytes, promoted {promoted} "
        "(as last seen in each daemon life)"
    )
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert not errors, errors  # no internal error, no failed maintenance pass or sync
    assert landed["rewrite"] >= KILLS_EACH - 1  # one may finish between its write and the kill
    assert rewrites >= 1 and pack_writes > 0 and demoted > 0 and promoted > 0
    assert agents.reads > 0
    assert sum(len(v) for v in agents.released.values()) > 0
    assert any(agents.final.values())

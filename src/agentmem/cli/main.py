"""``agentmem`` entry point: parses the command line and dispatches to one command module."""

from __future__ import annotations

import argparse
import errno
import os
import pathlib
import sys
from collections.abc import Sequence

from agentmem import __version__


def _bench_store(args: argparse.Namespace) -> int:
    from agentmem.bench import store as bench_store

    bench_store.run(corpus=args.corpus, json_path=args.json, md_path=args.md, repeats=args.repeats)
    return 0


def _bench_daemon(args: argparse.Namespace) -> int:
    from agentmem.bench import daemon as bench_daemon

    bench_daemon.run(
        json_path=args.json,
        md_path=args.md,
        repeats=args.repeats,
        quick=args.quick,
        corpus=args.corpus,
    )
    return 0


def _bench_tiers(args: argparse.Namespace) -> int:
    from agentmem.bench import tiers as bench_tiers

    bench_tiers.run(
        corpus=args.corpus,
        json_path=args.json,
        md_path=args.md,
        agents=args.agents,
        quick=args.quick,
    )
    return 0


def _size(text: str) -> int:
    """``512M``, ``2G``, ``65536``: a byte count for the command line."""
    from agentmem.config.settings import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _daemon(args: argparse.Namespace) -> int:
    from agentmem.config import default_socket_path
    from agentmem.daemon.run import run_daemon

    metrics = None
    if args.metrics is not None:
        from agentmem.daemon.metrics import parse_address

        try:
            metrics = parse_address(args.metrics, public=args.metrics_public)
        except ValueError as exc:
            print(f"agentmem daemon: --metrics: {exc}", file=sys.stderr)
            return 2
    import dataclasses

    from agentmem.config import Config, config_file

    path = args.config or config_file()
    try:
        config = Config.from_env(base=Config.from_file(path) if path else None)
    except ValueError as exc:
        print(f"agentmem daemon: {exc}", file=sys.stderr)
        return 2
    if args.hot_budget is not None:
        config = dataclasses.replace(config, hot_budget_bytes=args.hot_budget)
    if args.policy is not None:
        config = dataclasses.replace(config, lru_policy=args.policy == "lru")
    if args.warm_budget is not None:
        config = dataclasses.replace(config, warm_budget_bytes=args.warm_budget)
    if args.durability is not None:
        config = dataclasses.replace(config, durable_sync=args.durability == "strict")
    socket_path = args.socket or default_socket_path()
    state = None
    if args.state_dir != "none":
        from agentmem.daemon.run import daemon_state_dir

        state = args.state_dir or daemon_state_dir(socket_path)
    return run_daemon(
        socket_path,
        config=config,
        detach=args.detach,
        if_absent=args.if_absent,
        allowed_uids=args.allow_uid,
        stats_file=not args.no_stats_file,
        metrics=metrics,
        state_dir=state,
    )


def _stats(args: argparse.Namespace) -> int:
    from agentmem.cli import stats

    return stats.run(
        args.socket, as_json=args.json, agent=args.agent, sort=args.sort, recent=args.recent
    )


def _top(args: argparse.Namespace) -> int:
    from agentmem.cli import top

    return top.run(args.socket)


def _flamegraph(args: argparse.Namespace) -> int:
    from agentmem.cli import flamegraph

    return flamegraph.run(
        args.socket,
        svg_path=args.output,
        collapsed_path=args.collapsed,
        reset=args.reset,
    )


def _check(args: argparse.Namespace) -> int:
    from agentmem.cli import check

    return check.run(args.socket, args.state_dir, repair=args.repair)


def _add_observe_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``stats``, ``top`` and ``flamegraph``: they read the daemon's statistics replies."""
    from agentmem.statstext import SORT_KEYS

    sock_help = "the daemon's socket (default: $AGENTMEM_SOCKET or the runtime directory's)"
    st = sub.add_parser("stats", help="memory per tier and per agent, as the daemon reports it")
    st.add_argument("--socket", help=sock_help)
    st.add_argument("--json", action="store_true", help="the statistics reply as JSON")
    st.add_argument("--agent", metavar="NAME", help="one agent only")
    st.add_argument("--sort", choices=SORT_KEYS, default="logical", help="order of the agents")
    st.add_argument(
        "--recent",
        action="store_true",
        help="the daemon's last once-a-second statistics (free for it) instead of computing "
        "them now, which holds a daemon of millions of chunks for seconds",
    )
    st.set_defaults(func=_stats)

    top = sub.add_parser("top", help="live view of memory per agent (s: sort, f: filter, q: quit)")
    top.add_argument("--socket", help=sock_help)
    top.set_defaults(func=_top)

    fg = sub.add_parser(
        "flamegraph",
        help="bytes allocated by Python stack (agents run with AGENTMEM_PROFILE_ALLOCS)",
    )
    fg.add_argument("--socket", help=sock_help)
    fg.add_argument("-o", "--output", required=True, metavar="FILE.svg", help="write the SVG here")
    fg.add_argument(
        "--collapsed", metavar="FILE.txt", help="also write collapsed stacks (speedscope format)"
    )
    fg.add_argument("--reset", action="store_true", help="start a new profile after this one")
    fg.set_defaults(func=_flamegraph)

    ck = sub.add_parser(
        "check", help="verify every stored chunk against its id and the refcounts (mark-sweep)"
    )
    ck.add_argument("--socket", help=sock_help)
    ck.add_argument(
        "--state-dir", metavar="DIR", help="with no daemon running: the state directory to check"
    )
    ck.add_argument("--repair", action="store_true", help="fix what can be fixed, name the rest")
    ck.set_defaults(func=_check)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentmem", description="Agent-aware memory manager: dedup, sharing, compression."
    )
    parser.add_argument("--version", action="version", version=f"agentmem {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    daemon = sub.add_parser("daemon", help="serve the store to agent processes on a Unix socket")
    daemon.add_argument("--socket", help="socket path (default: $XDG_RUNTIME_DIR/agentmem/...)")
    daemon.add_argument("--detach", action="store_true", help="run in the background")
    daemon.add_argument(
        "--if-absent", action="store_true", help="exit 0 quietly if a daemon already serves"
    )
    daemon.add_argument(
        "--allow-uid",
        type=int,
        action="append",
        metavar="UID",
        help="also serve this uid, in a domain of its own (repeatable)",
    )
    daemon.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics here (off by default; a loopback address)",
    )
    daemon.add_argument(
        "--metrics-public",
        action="store_true",
        help="allow a --metrics address that is not loopback",
    )
    daemon.add_argument(
        "--no-stats-file",
        action="store_true",
        help="do not keep the agent_stats file next to the socket",
    )
    daemon.add_argument(
        "--hot-budget",
        type=_size,
        metavar="BYTES",
        help="keep at most this many hot bytes (e.g. 2G, 512M); over it, demote (default: none)",
    )
    daemon.add_argument(
        "--policy",
        choices=["semantic", "lru"],
        help="what to demote first over the budget (default: semantic)",
    )
    daemon.add_argument(
        "--config",
        metavar="FILE.toml",
        help="settings (Config field = value; default $XDG_CONFIG_HOME/agentmem/config.toml "
        "if present); AGENTMEM_* variables and these flags override it",
    )
    daemon.add_argument(
        "--warm-budget",
        type=_size,
        metavar="BYTES",
        help="keep at most this many bytes of warm frames; over it, move to disk (default: none)",
    )
    daemon.add_argument(
        "--state-dir",
        metavar="DIR",
        help="journal and cold-tier packs (default: $XDG_STATE_HOME/agentmem/socket-<id>; "
        "'none': RAM only, no cold tier, appends not durable)",
    )
    daemon.add_argument(
        "--durability",
        choices=["strict", "relaxed"],
        help="strict (default): acknowledge an append once fdatasync'ed; relaxed: once "
        "written, synced every second (a power loss can lose that second; a crash of the "
        "daemon loses nothing)",
    )
    daemon.set_defaults(func=_daemon)
    _add_observe_commands(sub)

    bench = sub.add_parser("bench", help="run a benchmark and print its table")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    store = bench_sub.add_parser("store", help="the in-process store: dedup, compression, speed")
    store.add_argument(
        "--corpus",
        type=pathlib.Path,
        help="a directory laid out like ../shared/corpus (default: generated data)",
    )
    store.add_argument("--json", type=pathlib.Path, help="write the results as JSON here")
    store.add_argument("--md", type=pathlib.Path, help="write the markdown table here")
    store.add_argument("--repeats", type=int, default=5, help="timing repeats (median is kept)")
    store.set_defaults(func=_bench_store)

    corpus_env = os.environ.get("AGENTMEM_CORPUS")
    bd = bench_sub.add_parser(
        "daemon", help="the daemon: round trips, throughput, 1000 connections, spawn, PSS"
    )
    bd.add_argument("--json", type=pathlib.Path, help="write the results as JSON here")
    bd.add_argument("--md", type=pathlib.Path, help="write the markdown tables here")
    bd.add_argument("--repeats", type=int, default=5, help="timing repeats (median is kept)")
    bd.add_argument("--quick", action="store_true", help="small sizes: seconds, not minutes")
    bd.add_argument(
        "--corpus",
        type=pathlib.Path,
        default=pathlib.Path(corpus_env) if corpus_env else None,
        help="take the prompt text from this corpus (default: $AGENTMEM_CORPUS, else generated)",
    )
    bd.set_defaults(func=_bench_daemon)

    bt = bench_sub.add_parser(
        "tiers", help="the semantic eviction policy against LRU on one agent activity trace"
    )
    bt.add_argument(
        "--corpus",
        type=pathlib.Path,
        help="a directory laid out like ../shared/corpus (default: generated data)",
    )
    bt.add_argument("--json", type=pathlib.Path, help="write the results as JSON here")
    bt.add_argument("--md", type=pathlib.Path, help="write the markdown tables here")
    bt.add_argument("--agents", type=int, help="agents in the trace (default: 100; quick: 40)")
    bt.add_argument("--quick", action="store_true", help="small sizes: seconds, not a minute")
    bt.set_defaults(func=_bench_tiers)

    from agentmem.cli import swarm

    swarm.add_parser(sub)
    return parser


#: Where each kind of corpus data lies under ``--corpus DIR`` (as in ../shared/corpus): the
#: benchmarks and the swarm read conversations, ``bench daemon`` only system prompts.
CORPUS_FILES = {"conversations": "conversations/*/*", "prompts": "system_prompts/asgeirtj/*"}


def _corpus_problem(corpus: pathlib.Path, what: str) -> str | None:
    """Why ``corpus`` holds no ``what`` (a key of CORPUS_FILES) to read, or None."""
    if not corpus.is_dir():
        return "not a directory"
    pattern = CORPUS_FILES[what]
    if not any(p.is_file() for p in corpus.glob(pattern)):
        return f"no files at {pattern} (a corpus is laid out like ../shared/corpus)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "repeats", 1) < 1:
        parser.error("--repeats must be >= 1")
    agents = getattr(args, "agents", None)
    if agents is not None and agents < 1:
        parser.error("--agents must be >= 1")
    corpus = getattr(args, "corpus", None)
    if corpus is not None:
        what = "prompts" if getattr(args, "bench", None) == "daemon" else "conversations"
        problem = _corpus_problem(corpus, what)
        if problem is not None:
            parser.error(f"--corpus {corpus}: {problem}")
    from agentmem.cli.outputs import unwritable

    for flag in ("json", "md", "plot"):  # checked now, not after a run of minutes
        path = getattr(args, flag, None)
        if isinstance(path, pathlib.Path) and (problem := unwritable(path, make_parents=True)):
            parser.error(f"--{flag} {path}: {problem}")
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # here, where a failure can still be reported
    except KeyboardInterrupt:  # Ctrl-C: the command's own cleanup has run; no traceback
        print(f"agentmem {args.command}: interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports it
    except OSError as exc:
        if exc.errno not in (errno.EPIPE, errno.ENOSPC):
            raise
        # The output cannot be written: its reader went away (| head) or its disk is full.
        # What is still buffered goes nowhere, not to a second error at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if exc.errno == errno.EPIPE:
            return 141  # 128 + SIGPIPE, as a shell reports a writer its reader left
        print(f"agentmem {args.command}: cannot write the output: {exc.strerror}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())

"""``agentmem swarm``: run N agents against a mock LLM in each mode and print the memory table.

Only the parser lives here; the swarm (and matplotlib, for ``--plot``) is imported when the
command runs.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

MODES = ("plain", "ksm", "agentmem")
PROFILES = ("corpus", "seed")


def _modes(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(f"modes are a comma-separated subset of {MODES}")
    return tuple(m for m in MODES if m in modes)


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of agent counts") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("agent counts must be >= 1")
    return counts


def _scale(text: str) -> float:
    # Imported here, as json below: every process that parses a command line (the daemon
    # too) builds this parser, and fractions pulls in decimal (~0.5 MiB of PSS with json).
    from fractions import Fraction

    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError("a number or a fraction such as 1/10") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError("the scale must be in (0, 1]")
    return value


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be >= {least}")
    return value


def _positive(text: str) -> int:
    return _whole(text, 1)


def _natural(text: str) -> int:
    return _whole(text, 0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be >= 0 seconds")
    return value


def _mib(text: str) -> int:
    """MiB (a positive number) as bytes."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of MiB") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0 MiB")
    return int(value * 2**20)


def _png(text: str) -> pathlib.Path:
    path = pathlib.Path(text)
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"{text!r}: the plot is a PNG; name it FILE.png")
    return path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``swarm`` command to ``sub``."""
    corpus_env = os.environ.get("AGENTMEM_CORPUS")
    p = sub.add_parser(
        "swarm", help="N agent processes against a mock LLM: memory of plain, KSM and agentmem"
    )
    p.add_argument("--agents", type=_positive, default=20, help="agents (default 20)")
    p.add_argument(
        "--mode",
        type=_modes,
        default=MODES,
        help="comma-separated modes, measured in this order (default plain,ksm,agentmem)",
    )
    p.add_argument("--profile", choices=PROFILES, default="corpus", help="sizes (default corpus)")
    p.add_argument(
        "--corpus",
        type=pathlib.Path,
        default=pathlib.Path(corpus_env) if corpus_env else None,
        help="recorded data from this corpus (default: $AGENTMEM_CORPUS, else generated)",
    )
    p.add_argument(
        "--scale", type=_scale, default=0.1, help="seed profile sizes times this (default 1/10)"
    )
    p.add_argument("--processes", type=_positive, help="spread the agents over this many processes")
    p.add_argument("--turns", type=_positive, default=5, help="turns per agent (default 5)")
    p.add_argument(
        "--think", type=_seconds, default=0.5, help="mean idle seconds between turns (default 0.5)"
    )
    p.add_argument(
        "--sweep", type=_counts, default=(), help="also run these agent counts (e.g. 10,25,50,100)"
    )
    p.add_argument(
        "--no-demote",
        action="store_true",
        help="agentmem: keep conversations hot (the daemon does not demote idle agents' ones)",
    )
    p.add_argument(
        "--warm-budget",
        type=_mib,
        default=0,
        metavar="MIB",
        help="agentmem: MiB of warm (compressed) frames the daemon keeps in RAM; past it, idle "
        "agents' conversations go to its cold tier on disk (default: no budget)",
    )
    p.add_argument(
        "--concurrency",
        type=_natural,
        default=2 * (os.cpu_count() or 1),
        help="turns in flight at once over all agents, in every mode (default: twice the "
        "CPUs; 0: no limit)",
    )
    p.add_argument("--json", type=pathlib.Path, help="write the results as JSON here")
    p.add_argument("--md", type=pathlib.Path, help="write the markdown table here")
    p.add_argument(
        "--plot", type=_png, metavar="FILE.png", help="write the PNG plot of total PSS here"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the swarm, print the table, write what was asked for."""
    from agentmem.swarm import report
    from agentmem.swarm.measure import unwind_on_signals
    from agentmem.swarm.run import Options
    from agentmem.swarm.run import run as run_swarm

    if args.processes is not None and args.processes > args.agents:
        print("agentmem swarm: --processes cannot exceed --agents", file=sys.stderr)
        return 2
    sweep = args.sweep or ((10, 25, 50, 100) if args.plot is not None else ())
    options = Options(
        agents=args.agents,
        modes=args.mode,
        profile=args.profile,
        corpus=args.corpus,
        scale=args.scale,
        processes=args.processes,
        turns=args.turns,
        think=args.think,
        sweep=tuple(sweep),
        demote=not args.no_demote,
        concurrency=args.concurrency,
        warm_budget=args.warm_budget,
    )
    unwind_on_signals()  # a kill puts KSM's settings back too
    res = run_swarm(options)
    markdown = report.render_markdown(res)
    print(markdown)
    if args.json is not None:
        import json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    if args.md is not None:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(markdown)
    if args.plot is not None:
        report.plot(res, args.plot)
    failed = [m for m, r in res["modes"].items() if "failed" in r]
    return 1 if failed and len(failed) == len(res["modes"]) else 0

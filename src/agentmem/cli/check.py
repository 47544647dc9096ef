"""``agentmem check [--repair]``: verify stored bytes and refcounts, and say what is wrong.

With a daemon answering on the socket, the check runs inside it, on the live domain. With
none, the state directory is restored and checked offline (``agentmem.daemon.checkup``).
Exit status: 0 when everything is consistent (after repairs), 1 when problems remain, 2 when
there is nothing to check.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from agentmem.errors import AgentmemError, DaemonRunning, DaemonUnavailable


def render(report: dict[str, Any], out: TextIO, title: str) -> bool:
    """Print one domain's report; True if it is consistent."""
    tiers = ", ".join(f"{k} {v}" for k, v in report["tiers"].items())
    state = "OK" if report["ok"] else "PROBLEMS"
    out.write(
        f"{title}: {state}: {report['verified']} of {report['chunks']} chunks verified "
        f"({tiers}); {report['smus']} SMUs, {report['messages']} messages, "
        f"{report['refs']} handles\n"
    )
    sections = (
        ("fixed", "fixed"),
        ("unfixable", "cannot fix"),
        ("drift", "refcount drift"),
        ("orphans", "unreachable"),
        ("corrupt", "corrupt"),
        ("restore_problems", "journal records not applied"),
        ("tier_errors", "recent tier errors"),
    )
    for key, label in sections:
        for line in report.get(key) or ():
            out.write(f"  {label}: {line}\n")
    if report.get("truncated_bytes"):
        out.write(
            f"  torn tails cut at start: {report['truncated_bytes']} bytes (never acknowledged)\n"
        )
    return bool(report["ok"])


def run(
    socket_path: str | None,
    state_dir: str | None,
    *,
    repair: bool = False,
    out: TextIO | None = None,
) -> int:
    out = out if out is not None else sys.stdout
    from agentmem.cli.stats import connect_observer
    from agentmem.config import default_socket_path

    socket_path = socket_path or default_socket_path()
    try:
        client = connect_observer(socket_path, "check")
    except DaemonUnavailable as exc:
        if isinstance(exc.__cause__, TimeoutError):  # a daemon is there, and does not answer
            print(f"agentmem check: {exc}", file=sys.stderr)
            return 1
        client = None  # none there: check its state directory
    except AgentmemError as exc:  # something else answers there
        print(f"agentmem check: {exc}", file=sys.stderr)
        return 1
    if client is not None:
        try:
            report = client.check(repair=repair)
        except AgentmemError as exc:
            print(f"agentmem check: {exc}", file=sys.stderr)
            return 1
        finally:
            client.close()
        return 0 if render(report, out, "domain (live daemon)") else 1
    from agentmem.daemon.checkup import check_state_dir
    from agentmem.daemon.run import daemon_state_dir

    state_dir = state_dir or daemon_state_dir(socket_path)
    if not os.path.isdir(state_dir):
        print(
            f"agentmem check: no daemon on {socket_path} and no state directory {state_dir}",
            file=sys.stderr,
        )
        return 2
    try:
        reports = check_state_dir(state_dir, repair=repair)
    except DaemonRunning:
        print(f"agentmem check: a daemon holds {state_dir}; check through it", file=sys.stderr)
        return 1
    except (OSError, AgentmemError) as exc:
        print(f"agentmem check: {exc}", file=sys.stderr)
        return 1
    if not reports:
        out.write(f"{state_dir}: nothing stored\n")
        return 0
    ok = True
    for uid, report in reports.items():
        ok = render(report, out, f"uid {uid} ({state_dir}, offline)") and ok
    return 0 if ok else 1

"""A benchmark's figures and their output: per-call timing, percentiles, targets, markdown
tables, and the JSON and markdown files.

A benchmark builds one JSON-able dict (``meta``, one entry per section, ``targets``); these
helpers produce its figures and turn it into what is printed and written.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple


class Target(NamedTuple):
    """A goal for one figure of the results."""

    key: str
    """Dotted path into the results, e.g. ``ops.alloc_1kib.ratio_to_echo``."""
    op: str
    """``<=`` or ``>=``."""
    target: float
    what: str
    """What the figure is, for the table."""


def progress(bench: str, msg: str) -> None:
    """One line of progress on stderr (the tables go to stdout)."""
    print(f"[bench {bench}] {msg}", file=sys.stderr, flush=True)


def lookup(results: dict[str, Any], key: str) -> Any:
    """The value at dotted ``key`` (``KeyError`` if a part is missing)."""
    value: Any = results
    for part in key.split("."):
        value = value[part]
    return value


def evaluate(results: dict[str, Any], targets: Sequence[Target]) -> list[dict[str, Any]]:
    """One entry per target: its key, value and whether it is met (a missing value is not)."""
    out = []
    for t in targets:
        try:
            value = lookup(results, t.key)
        except (KeyError, TypeError):
            value = None
        met = value is not None and (value >= t.target if t.op == ">=" else value <= t.target)
        out.append({**t._asdict(), "value": value, "met": bool(met)})
    return out


def timed(call: Callable[[int], object], calls: int, warmup: int) -> list[int]:
    """Per-call times (ns) of ``call(i)`` for ``warmup <= i < warmup + calls``, after
    ``call(0 .. warmup - 1)`` untimed."""
    for i in range(warmup):
        call(i)
    clock = time.perf_counter_ns
    out = []
    for i in range(warmup, warmup + calls):
        t = clock()
        call(i)
        out.append(clock() - t)
    return out


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        raise ValueError("no values")
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[i])


def latency_us(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50, p99 and mean of one run's per-call times, in microseconds."""
    s = sorted(samples_ns)
    return {
        "p50_us": round(percentile(s, 0.50) / 1000, 2),
        "p99_us": round(percentile(s, 0.99) / 1000, 2),
        "mean_us": round(statistics.fmean(s) / 1000, 2),
        "calls": len(s),
    }


def median_of_runs(runs: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Each figure's median over runs (``calls`` summed), with every run's p50 kept."""
    keys = [k for k in runs[0] if k != "calls"]
    out: dict[str, Any] = {k: round(statistics.median(r[k] for r in runs), 2) for k in keys}
    out["calls"] = int(sum(r.get("calls", 0) for r in runs))
    out["runs_p50_us"] = [r["p50_us"] for r in runs] if "p50_us" in runs[0] else []
    return out


def cell(v: object) -> str:
    """A value as a markdown table cell."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.2f}"
    return str(v).replace("|", "\\|")


def table(head: Sequence[str], rows: Sequence[Sequence[object]], right: int = 1) -> list[str]:
    """A markdown table; the ``right`` columns after the first are right-aligned."""
    align = ["---"] + ["---:" if i < right else "---" for i in range(len(head) - 1)]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def flat_rows(section: dict[str, Any], skip: Sequence[str] = ("notes",)) -> list[list[object]]:
    """A section as ``[field, value]`` rows, nested dicts one level deep as ``a.b``."""
    rows: list[list[object]] = []
    for k, v in section.items():
        if k in skip:
            continue
        if isinstance(v, dict):
            for kk, vv in v.items():
                if isinstance(vv, dict):
                    rows += [[f"{k}.{kk}.{kkk}", compact(vvv)] for kkk, vvv in vv.items()]
                else:
                    rows.append([f"{k}.{kk}", compact(vv)])
        else:
            rows.append([k, compact(v)])
    return rows


def compact(v: object) -> object:
    """A list as one ``; ``-joined cell; anything else as it is."""
    if isinstance(v, list):
        return "; ".join(cell(x) for x in v) or "-"
    return v


def write(
    results: dict[str, Any], markdown: str, json_path: Path | None, md_path: Path | None
) -> None:
    """Write the results as JSON and the markdown, each only if a path is given."""
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    if md_path is not None:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(markdown)

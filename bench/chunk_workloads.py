"""Workloads for ``chunk_sizes.py``: near-duplicate prompts, prompt versions, conversations.

Each comes from the corpus when it is there and from generated text otherwise. Generated text is
words of a fixed pseudo-vocabulary in lines and headings, so it is text-like (low entropy, line
structured) and deterministic for a seed; results on it describe that text only.
"""

from __future__ import annotations

import json
import random
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Agents in the near-duplicate scenario, one copy of the prompt each.
AGENTS = 100


@dataclass(frozen=True)
class AgentEnv:
    """The session fields one agent's copy of a prompt carries."""

    cwd: str
    slug: str
    scratchpad: str
    branch: str
    status: str
    date: str
    model_name: str
    model_id: str
    kernel: str


_MODELS = [
    ("Opus 4.8 (1M context)", "claude-opus-4-8[1m]"),
    ("Sonnet 5", "claude-sonnet-5"),
    ("Haiku 4.5", "claude-haiku-4-5-20251001"),
    ("Fable 5", "claude-fable-5"),
]
_PROJECTS = ["billing-api", "web-console", "ml-pipeline", "docs-site", "infra", "agentmem"]
_FILES = ["src/app.py", "src/db.py", "README.md", "tests/test_api.py", "pyproject.toml", "a.ts"]


def agent_env(i: int) -> AgentEnv:
    rng = random.Random(1000 + i)
    cwd = f"/home/dev/src/{_PROJECTS[i % len(_PROJECTS)]}/wt-{i:03d}"
    slug = cwd.replace("/", "-")
    session = rng.randbytes(8).hex()
    status = "\n".join(
        f"{rng.choice([' M', 'M ', 'A ', '??'])} {f}" for f in rng.sample(_FILES, rng.randint(1, 3))
    )
    name, mid = rng.choice(_MODELS)
    return AgentEnv(
        cwd=cwd,
        slug=slug,
        scratchpad=f"/tmp/claude-1000/{slug}/{session}/scratchpad",
        branch=f"agent/{i:03d}-{rng.choice(['fix', 'feat', 'refactor'])}",
        status=status,
        date=f"2026-07-{rng.randint(1, 28):02d}",
        model_name=name,
        model_id=mid,
        kernel=f"Linux 6.8.0-{rng.randint(40, 90)}-generic",
    )


def _model_line(e: AgentEnv) -> str:
    return f"You are powered by the model named {e.model_name}. The exact model ID is {e.model_id}."


def _env_block(e: AgentEnv) -> str:
    """A contiguous block in the shape of Claude Code 2.0's ``<env>``, with the git status."""
    return (
        f"<env>\nWorking directory: {e.cwd}\nIs directory a git repo: Yes\nPlatform: linux\n"
        f"OS Version: {e.kernel}\nToday's date: {e.date}\n</env>\n{_model_line(e)}\n"
        f"gitStatus: Current branch: {e.branch}\nStatus:\n{e.status}"
    )


@dataclass(frozen=True)
class Scenario:
    """One prompt made into one copy per agent. ``render(i)`` is agent i's copy."""

    name: str
    source: str
    where: str
    render: Callable[[int], bytes]
    per_agent_bytes: int


def _replace_all(text: str, old: str, new: str) -> str:
    """``text.replace``, but a missing ``old`` (a prompt edited upstream) is an error."""
    if old not in text:
        raise LookupError(old)
    return text.replace(old, new)


def cc_in_place(path: Path) -> Scenario:
    """Claude Code (Opus 4.8 build): every session field replaced where the prompt has it."""
    text = path.read_text()
    fields = {
        "<project-dir>": "cwd",
        "<project-slug>": "slug",
        "<scratchpad-dir>": "scratchpad",
        "Current branch: main": "branch",
        "Today's date is 2026-07-16.": "date",
        "You are powered by the model named Opus 4.8 (1M context). "
        "The exact model ID is claude-opus-4-8[1m].": "model",
    }
    for old, key in fields.items():
        text = _replace_all(text, old, f"@@{key}@@")
    status = re.search(r"Status:\n(.*?)\n\nRecent commits:", text, re.S)
    if status is None:
        raise LookupError("Status block")
    text = text[: status.start(1)] + "@@status@@" + text[status.end(1) :]
    sites = [m.start() for m in re.finditer("@@[a-z]+@@", text)]

    def values(e: AgentEnv) -> dict[str, str]:
        return {
            "cwd": e.cwd,
            "slug": e.slug,
            "scratchpad": e.scratchpad,
            "branch": f"Current branch: {e.branch}",
            "date": f"Today's date is {e.date}.",
            "model": _model_line(e),
            "status": e.status,
        }

    def render(i: int) -> bytes:
        out = text
        for key, value in values(agent_env(i)).items():
            out = out.replace(f"@@{key}@@", value)
        return out.encode()

    per_agent = statistics.mean(
        sum(len(v) * text.count(f"@@{k}@@") for k, v in values(agent_env(i)).items())
        for i in range(AGENTS)
    )
    return Scenario(
        name="Claude Code, fields in place",
        source="/".join(path.parts[-3:]),
        where=f"{len(sites)} sites at bytes {min(sites)}-{max(sites)} of {len(text)}: memory "
        "path, Environment list (cwd, model), scratchpad, gitStatus (branch, status), date",
        render=render,
        per_agent_bytes=round(per_agent),
    )


def cc_env_block(path: Path) -> Scenario:
    """Claude Code 2.0: the ``<env>`` block after the intro replaced by one per-agent block."""
    text = path.read_text()
    m = re.search(r"<env>\n.*?</env>\nYou are powered by[^\n]*", text, re.S)
    if m is None:
        raise LookupError("<env> block")
    head, tail = text[: m.start()], text[m.end() :]
    return Scenario(
        name="Claude Code 2.0, one `<env>` block",
        source="/".join(path.parts[-3:]),
        where=f"one block at byte {m.start()} of {len(text)} (its own `<env>` + model line)",
        render=lambda i: (head + _env_block(agent_env(i)) + tail).encode(),
        per_agent_bytes=round(statistics.mean(len(_env_block(agent_env(i))) for i in range(10))),
    )


# Generated text: words from a fixed pseudo-vocabulary, so runs without a corpus still have
# text-like (low-entropy, line-structured) input. Deterministic for a seed.
_SYLLABLES = ["ka", "to", "ri", "en", "sa", "mo", "lu", "ve", "ning", "st", "or", "al", "ex"]


def generated_text(seed: int, nbytes: int) -> str:
    rng = random.Random(seed)
    vocab = ["".join(rng.choices(_SYLLABLES, k=rng.randint(1, 4))) for _ in range(3000)]
    lines: list[str] = []
    size = 0
    while size < nbytes:
        if rng.random() < 0.05:
            line = "## " + " ".join(rng.choices(vocab, k=3)).title() + "\n"
        else:
            line = " ".join(rng.choices(vocab, k=rng.randint(4, 30))) + ".\n"
        lines.append(line)
        size += len(line)
    return "".join(lines)


def generated_scenario() -> Scenario:
    base = generated_text(1, 130_000)
    at = base.index("\n", 12_000) + 1
    head, tail = base[:at], base[at:]
    return Scenario(
        name="generated prompt, one `<env>` block",
        source="generated text (no corpus)",
        where=f"one block at byte {at} of {len(base)}",
        render=lambda i: (head + _env_block(agent_env(i)) + "\n" + tail).encode(),
        per_agent_bytes=round(statistics.mean(len(_env_block(agent_env(i))) for i in range(10))),
    )


_VERSION = re.compile(r"^(?P<stem>.+?)__v?(?P<k>\d{2,3})_")


def history_folders(corpus: Path) -> dict[str, list[list[bytes]]]:
    """``folder -> groups``; a group is the versions of one prompt, oldest first.

    Files are named ``<stem>__v01_<date>_<sha>`` (or ``<stem>__01_<tag>_<date>_<sha>``).
    """
    out: dict[str, list[list[bytes]]] = {}
    for folder in sorted(
        [*corpus.glob("system_prompts/*-history"), *corpus.glob("tool_defs/*-history")]
    ):
        groups: dict[str, list[tuple[int, bytes]]] = {}
        for f in sorted(folder.iterdir()):
            m = _VERSION.match(f.name)
            if m:
                groups.setdefault(m["stem"], []).append((int(m["k"]), f.read_bytes()))
        key = f"{folder.parent.name}/{folder.name}"
        out[key] = [[b for _, b in sorted(g)] for g in groups.values()]
    return out


def generated_history() -> dict[str, list[list[bytes]]]:
    """Three prompts of 2, 20 and 100 KB, eight versions each, a few line edits apart."""
    groups = []
    for seed, size in [(11, 2_000), (12, 20_000), (13, 100_000)]:
        rng = random.Random(seed)
        lines = generated_text(seed, size).splitlines(keepends=True)
        spare = generated_text(seed + 100, size).splitlines(keepends=True)
        versions = []
        for _ in range(8):
            versions.append("".join(lines).encode())
            for _ in range(4):
                at = rng.randrange(len(lines))
                op = rng.random()
                if op < 0.4:
                    lines[at] = rng.choice(spare)
                elif op < 0.7:
                    lines.insert(at, rng.choice(spare))
                elif len(lines) > 2:
                    del lines[at]
        groups.append(versions)
    return {"generated": groups}


def conversations(corpus: Path, limit: int) -> list[bytes]:
    """Agent trajectory JSON files, in name order, up to ``limit`` bytes."""
    out: list[bytes] = []
    total = 0
    for f in sorted(corpus.glob("conversations/*/*.json")) + sorted(
        corpus.glob("conversations/*/*.traj")
    ):
        if total >= limit:
            break
        data = f.read_bytes()
        out.append(data)
        total += len(data)
    return out


def messages(files: Sequence[bytes]) -> list[bytes]:
    """Each message of each trajectory as its own JSON value (how a conversation is appended)."""
    out: list[bytes] = []
    for data in files:
        try:
            doc = json.loads(data)
        except ValueError:
            continue
        # A file is one conversation or a list of them; the turns sit under one of these keys.
        for conv in doc if isinstance(doc, list) else [doc]:
            if not isinstance(conv, dict):
                continue
            turns: list[Any] = next(
                (conv[k] for k in _TURN_KEYS if isinstance(conv.get(k), list)), []
            )
            out.extend(json.dumps(m).encode() for m in turns)
    return out


_TURN_KEYS = ("messages", "conversations", "trajectory")


def generated_conversations(limit: int) -> list[bytes]:
    rng = random.Random(7)
    pool = generated_text(21, 2_000_000)
    out: list[bytes] = []
    total = 0
    while total < limit:
        msgs = []
        for turn in range(rng.randint(10, 60)):
            at = rng.randrange(len(pool) - 9000)
            msgs.append(
                {
                    "role": ["user", "assistant"][turn % 2],
                    "content": pool[at : at + rng.randint(80, 8000)],
                }
            )
        data = json.dumps({"messages": msgs}, indent=1).encode()
        out.append(data)
        total += len(data)
    return out

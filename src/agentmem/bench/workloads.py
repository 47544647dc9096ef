"""Workloads of ``agentmem bench store``: corpus loaders and deterministic generated look-alikes.

Nothing here touches the store: every function returns plain bytes (or a renderer of bytes), so
the benchmark measures the store and not the loaders.

Why the generated data looks the way it does: a benchmark without the corpus must still say
something about agent memory, so it must compress and deduplicate in the range real agent data
does, not like random bytes (1.0x) nor like one repeated text (100x and more). Generated
trajectories therefore copy the shape of the corpus's mini-swe-agent trajectories (zstd -3: 7.5x
file by file, 9.9x concatenated; see the corpus's STATS.md): one system prompt and task template
shared by every conversation, THOUGHT + one-command turns in English-like words, tool output that
shows slices of the same source files again and again, and per-response metadata that repeats
the message and carries an incompressible encrypted-reasoning blob. Everything is a pure function
of its seed.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import math
import random
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from blake3 import blake3

from agentmem.chunking import default_chunker
from agentmem.states import SMUType

#: Agents in the near-duplicate prompt scenario, one copy of the prompt each.
PROMPT_AGENTS = 100

#: Keys under which a record of the corpus keeps its turns, in the order they are tried.
#: (swe-agent's ``.traj`` has both ``history``, the model's view, and ``trajectory``, the
#: environment's; ``history`` is what an agent holds in memory.)
TURN_KEYS = ("messages", "history", "conversations", "trajectory")


def encode_message(message: object) -> bytes:
    """One message as stored by the benchmark: compact JSON, UTF-8 kept as is."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


# --- conversations ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Conversation:
    """One conversation: a name (``folder/file#k``) and its messages, oldest first."""

    name: str
    messages: list[bytes]


@dataclasses.dataclass(frozen=True, slots=True)
class ConversationSet:
    """Conversations, the files they came from, and how each was recognised."""

    source: str
    """``corpus: <dir>`` or ``generated``."""
    conversations: list[Conversation]
    files: list[tuple[str, bytes]]
    """The files as stored (``folder/name``, bytes), sorted by path."""
    parsed_as: dict[str, int]
    """How many conversations were found under each turn key, or as ``fields`` / ``lines``."""
    folders: dict[str, dict[str, int]]
    """Per folder: files, conversations, messages, file bytes, message bytes."""
    notes: list[str]


def _is_message(item: object) -> bool:
    return isinstance(item, dict) and ("role" in item or "from" in item)


def _turns(record: object) -> tuple[str, list[Any]] | None:
    """The turn list of one record of a corpus file, and the key it was found under."""
    if isinstance(record, list) and record and all(_is_message(m) for m in record):
        return "list", record
    if not isinstance(record, dict):
        return None
    for key in TURN_KEYS:
        turns = record.get(key)
        if isinstance(turns, list) and turns:
            return key, turns
    # ToolBench DFS answers: train_messages holds successive prefixes of one conversation.
    answer = record.get("answer_generation")
    if isinstance(answer, dict):
        prefixes = answer.get("train_messages")
        if isinstance(prefixes, list) and prefixes:
            longest = max((p for p in prefixes if isinstance(p, list)), key=len, default=None)
            if longest:
                return "train_messages", longest
    return None


def parse_conversations(data: bytes) -> list[tuple[str, list[bytes]]]:
    """The conversations of one corpus file as ``(how, messages)`` pairs.

    A JSON file holds one record or a list of records; a record's turns are found under
    :data:`TURN_KEYS` (or ToolBench's longest ``train_messages`` prefix). A record with no list
    of turns is a conversation of its fields, one ``{key: value}`` message each (e.g. a
    prompt/response pair). A file that is not JSON, or holds no record, is read as lines.
    """
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    out: list[tuple[str, list[bytes]]] = []
    if isinstance(doc, dict | list):
        whole = _turns(doc)
        records: list[Any] = [doc] if isinstance(doc, dict) or whole is not None else doc
        for record in records:
            found = _turns(record)
            if found is not None:
                out.append((found[0], [encode_message(m) for m in found[1]]))
            elif isinstance(record, dict) and record:
                out.append(("fields", [encode_message({k: v}) for k, v in record.items()]))
    if not out:
        lines = [line for line in data.splitlines() if line.strip()]
        if lines:
            out.append(("lines", lines))
    return out


def load_conversations(corpus: Path, fraction: float = 1.0) -> ConversationSet:
    """Every conversation under ``corpus/conversations/*/`` (files in sorted path order).

    With ``fraction`` < 1, only the first ``ceil(fraction * n)`` files of each folder are read
    (for quick runs; the result says so in ``notes``).
    """
    root = corpus / "conversations"
    conversations: list[Conversation] = []
    files: list[tuple[str, bytes]] = []
    parsed_as: dict[str, int] = {}
    folders: dict[str, dict[str, int]] = {}
    notes: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        paths = sorted(p for p in folder.iterdir() if p.is_file())
        keep = len(paths) if fraction >= 1 else min(len(paths), math.ceil(len(paths) * fraction))
        if keep < len(paths):
            notes.append(f"{folder.name}: first {keep} of {len(paths)} files only")
        row = dict.fromkeys(
            ("files", "conversations", "messages", "file_bytes", "message_bytes"), 0
        )
        for path in paths[:keep]:
            data = path.read_bytes()
            rel = f"{folder.name}/{path.name}"
            files.append((rel, data))
            row["files"] += 1
            row["file_bytes"] += len(data)
            for k, (how, messages) in enumerate(parse_conversations(data)):
                if not messages:
                    continue
                parsed_as[how] = parsed_as.get(how, 0) + 1
                conversations.append(Conversation(f"{rel}#{k}", messages))
                row["conversations"] += 1
                row["messages"] += len(messages)
                row["message_bytes"] += sum(len(m) for m in messages)
        folders[folder.name] = row
    return ConversationSet(f"corpus: {corpus}", conversations, files, parsed_as, folders, notes)


# --- generated text --------------------------------------------------------------------------

_COMMON_WORDS = (
    "the to a of and is in that this it for we be with not on as should can file function "
    "test error value need check fix issue will now let me run code see if when return which "
    "call method class line output expected case use from by are an but so then first look "
    "at change result data model type argument module script problem correctly instead "
    "because there where also only new all make sure input path object list string default "
    "option current behavior implementation I it's does do has have was were into handle"
)
_SYLLABLES = ("ka", "to", "ri", "en", "sa", "mo", "lu", "ve", "ning", "st", "or", "al", "ex", "in")


class TextMaker:
    """English-like words with a Zipf-like frequency, and code-like lines. Deterministic.

    Not thread-safe (it owns a ``random.Random``).
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        pseudo = ["".join(rng.choices(_SYLLABLES, k=rng.randint(1, 3))) for _ in range(1500)]
        self.words = _COMMON_WORDS.split() + pseudo
        self.cum = list(itertools.accumulate(1.0 / (r + 1) for r in range(len(self.words))))
        self.idents = sorted({"_".join(rng.sample(pseudo, rng.randint(1, 3))) for _ in range(400)})

    def sentence(self, n: int | None = None) -> str:
        rng = self.rng
        words = rng.choices(self.words, cum_weights=self.cum, k=n or rng.randint(5, 24))
        if rng.random() < 0.3:
            words[rng.randrange(len(words))] = f"`{rng.choice(self.idents)}`"
        first = words[0]
        words[0] = first[:1].upper() + first[1:]
        return " ".join(words) + rng.choice((".", ".", ".", ":", "?"))

    def prose(self, nbytes: int) -> str:
        parts: list[str] = []
        size = 0
        while size < nbytes:
            s = self.sentence()
            parts.append(s)
            size += len(s) + 1
            if self.rng.random() < 0.15:
                parts.append("\n\n")
        return " ".join(parts).replace(" \n\n ", "\n\n")

    def code_lines(self, n: int, idents: Sequence[str]) -> list[str]:
        """``n`` lines of Python-looking code over the identifiers ``idents``."""
        rng = self.rng
        out: list[str] = []
        indent = 0
        for _ in range(n):
            a, b, c = rng.choice(idents), rng.choice(idents), rng.choice(idents)
            r = rng.random()
            if r < 0.08:
                indent = 0
                line = f"def {a}({b}, {c}=None):" if rng.random() < 0.7 else f"class {a.title()}:"
                indent = 4
            elif r < 0.18:
                line = " " * indent + f"if {a} is None:"
                indent = min(indent + 4, 12)
            elif r < 0.28:
                line = " " * indent + f"return {a}.{b}({c})"
                indent = max(indent - 4, 4 if indent else 0)
            elif r < 0.36:
                line = " " * indent + "# " + self.sentence(rng.randint(4, 12))
            elif r < 0.42:
                line = ""
            elif r < 0.48:
                line = f"from {a} import {b}, {c}" if indent == 0 else " " * indent + "pass"
            else:
                line = (
                    " " * indent + f"{a} = self.{b}({c}, {rng.choice(idents)}={rng.randint(0, 99)})"
                )
            out.append(line)
        return out


# --- generated conversations -----------------------------------------------------------------

_COMMANDS = ("view", "view", "view", "grep", "run", "run", "edit", "ls")


@dataclasses.dataclass(frozen=True, slots=True)
class _Project:
    name: str
    files: dict[str, list[str]]
    idents: list[str]


class TrajectoryMaker:
    """Generated agent trajectories in the shape of mini-swe-agent's (see the module docstring)."""

    def __init__(self, seed: int = 7) -> None:
        self.text = TextMaker(seed)
        t = self.text
        self.system_prompt = (
            "You are a helpful assistant that can interact multiple times with a computer shell "
            "to solve programming tasks.\nYour response must contain exactly ONE bash code block "
            "with ONE command (or commands connected with && or ||).\n\n" + t.prose(2200)
        )
        self.template = (
            "<pr_description>\nConsider the following PR description:\n{task}\n"
            "</pr_description>\n\n<instructions>\n" + t.prose(1800) + "\n</instructions>"
        )
        self.projects = [self._project(i) for i in range(12)]

    def _project(self, i: int) -> _Project:
        t = self.text
        rng = t.rng
        name = rng.choice(t.idents).split("_")[0] + f"{i}"
        idents = rng.sample(t.idents, 90)
        files = {
            f"{name}/{rng.choice(idents)}/{rng.choice(idents)}.py": t.code_lines(
                rng.randint(60, 400), idents
            )
            for _ in range(14)
        }
        return _Project(name, files, idents)

    def _output(self, project: _Project, focus: list[tuple[str, int]], cmd: str) -> tuple[str, str]:
        """A command and its output. Agents keep returning to a few places of a few files."""
        rng = self.text.rng
        if rng.random() < 0.8:
            path, centre = rng.choice(focus)
        else:
            path, centre = rng.choice(list(project.files)), -1
        lines = project.files[path]
        if cmd == "view":
            if centre < 0:
                centre = rng.randrange(len(lines))
            a = max(0, min(len(lines) - 1, centre + rng.randint(-30, 10)))
            b = min(len(lines), a + rng.randint(20, 80))
            out = "\n".join(f"{n + 1:6d}\t{lines[n]}" for n in range(a, b))
            return f"nl -ba {path} | sed -n '{a + 1},{b}p'", out
        if cmd == "grep":
            word = rng.choice(project.idents)
            hits = [
                f"{p}:{n + 1}:{line}"
                for p, ls in project.files.items()
                for n, line in enumerate(ls)
                if word in line
            ]
            return f'grep -rn "{word}" {project.name}', "\n".join(hits[:25])
        if cmd == "run":
            frames = "\n".join(
                f'  File "/testbed/{p}", line {c + 1}, in {project.idents[c % 7]}\n'
                f"    {project.files[p][c].strip()}"
                for p, c in rng.sample(focus, len(focus))
            )
            return "python reproduce_issue.py", (
                f"Traceback (most recent call last):\n{frames}\n"
                f"{rng.choice(('ValueError', 'TypeError', 'AttributeError'))}: "
                f"{project.idents[len(path) % 11]} is not supported"
            )
        if cmd == "edit":
            old, new = rng.choice(project.idents), rng.choice(project.idents)
            return f"sed -i 's/{old}/{new}/g' {path}", ""
        return f"ls {project.name}", "\n".join(sorted(project.files))

    def _extra(self, index: int, content: str) -> dict[str, Any]:
        """Response metadata as an API gateway returns it: the content again, usage and cost
        fields, and now and then the model's reasoning with an encrypted (random) part."""
        t = self.text
        rng = t.rng
        reasoning: str | None = None
        details: list[dict[str, Any]] = []
        if rng.random() < 0.3:
            reasoning = t.prose(rng.randint(100, 500))
            details.append({"type": "reasoning.text", "text": reasoning, "index": 0})
            if rng.random() < 0.5:
                blob = base64.b64encode(rng.randbytes(rng.randint(100, 400))).decode()
                details.append({"type": "reasoning.encrypted", "data": blob, "index": 0})
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content,
            "refusal": None,
            "reasoning": reasoning,
        }
        if details:
            message["reasoning_details"] = details
        prompt = rng.randint(2000, 60000)
        completion = rng.randint(20, 900)
        return {
            "response": {
                "id": f"gen-{1763500000 + index}-{rng.randbytes(10).hex()}",
                "provider": "Generated",
                "model": "generated/agent-model",
                "object": "chat.completion",
                "created": 1763500000 + index * 100 + rng.randint(0, 99),
                "choices": [
                    {
                        "logprobs": None,
                        "finish_reason": "stop",
                        "native_finish_reason": "STOP",
                        "index": 0,
                        "message": message,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                    "cost": round(prompt * 3.2e-7 + completion * 1.2e-5, 6),
                    "is_byok": False,
                    "prompt_tokens_details": {
                        "cached_tokens": prompt - rng.randint(0, 800),
                        "audio_tokens": 0,
                        "video_tokens": 0,
                    },
                    "cost_details": {
                        "upstream_inference_cost": None,
                        "upstream_inference_prompt_cost": round(prompt * 3.2e-7, 6),
                        "upstream_inference_completions_cost": round(completion * 1.2e-5, 6),
                    },
                    "completion_tokens_details": {"reasoning_tokens": 0, "image_tokens": 0},
                },
            }
        }

    def conversation(self, index: int) -> tuple[str, list[dict[str, Any]], bytes]:
        """Conversation ``index``: its name, its messages, and the trajectory file it came in."""
        t = self.text
        rng = t.rng
        project = self.projects[index % len(self.projects)]
        focus = [
            (p, rng.randrange(len(project.files[p])))
            for p in rng.sample(list(project.files), rng.randint(1, 3))
        ]
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": self.template.format(task=t.prose(rng.randint(300, 1500)))},
        ]
        for _ in range(rng.randint(10, 60)):
            cmd, out = self._output(project, focus, rng.choice(_COMMANDS))
            content = f"THOUGHT: {t.prose(rng.randint(40, 400))}\n\n```bash\n{cmd}\n```"
            messages.append(
                {"role": "assistant", "content": content, "extra": self._extra(index, content)}
            )
            messages.append(
                {
                    "role": "user",
                    "content": f"<returncode>0</returncode>\n<output>\n{out}\n</output>",
                }
            )
        name = f"generated/{project.name}-{index:05d}.traj.json"
        doc = {"info": {"exit_status": "Submitted"}, "messages": messages, "instance_id": name}
        return name, messages, json.dumps(doc, indent=2).encode()


def generated_conversations(nbytes: int, seed: int = 7) -> ConversationSet:
    """Generated conversations until their trajectory files reach ``nbytes``."""
    maker = TrajectoryMaker(seed)
    conversations: list[Conversation] = []
    files: list[tuple[str, bytes]] = []
    total = 0
    for i in itertools.count():
        if total >= nbytes:
            break
        name, messages, data = maker.conversation(i)
        conversations.append(Conversation(name, [encode_message(m) for m in messages]))
        files.append((name, data))
        total += len(data)
    n_msgs = sum(len(c.messages) for c in conversations)
    folders = {
        "generated": {
            "files": len(files),
            "conversations": len(conversations),
            "messages": n_msgs,
            "file_bytes": total,
            "message_bytes": sum(len(m) for c in conversations for m in c.messages),
        }
    }
    return ConversationSet(
        "generated", conversations, files, {"messages": len(conversations)}, folders, []
    )


def concatenated(files: Sequence[tuple[str, bytes]], nbytes: int) -> bytes:
    """The first ``nbytes`` of the files concatenated in order, repeated if they are shorter."""
    if not files:
        raise ValueError("no files to concatenate")
    out = bytearray()
    for _, data in itertools.cycle(files):
        out += data
        if len(out) >= nbytes:
            break
    return bytes(out[:nbytes])


def kib_messages(text: bytes, n: int, size: int = 1024) -> list[bytes]:
    """``n`` distinct messages of exactly ``size`` bytes: a JSON head naming the message
    (so no two are equal) and a slice of ``text`` (wrapping around)."""
    out: list[bytes] = []
    span = max(1, len(text) - size)
    stride = 977  # odd and prime: slices do not repeat a phase of the text
    for i in range(n):
        head = b'{"role":"tool","tool_call_id":"call_%08d","content":"' % i
        off = (i * stride) % span
        body = text[off : off + size - len(head) - 2]
        msg = head + body + b'"}'
        out.append(msg.ljust(size, b" ")[:size])
    return out


# --- near-duplicate prompts ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class AgentEnv:
    """The session fields one agent's copy of a prompt carries."""

    cwd: str
    slug: str
    session: str
    kernel: str
    date: str
    month: str
    model_line: str
    branch: str
    status: str
    commits: str


_MODELS = (
    ("Opus 4.8 (1M context)", "claude-opus-4-8[1m]"),
    ("Sonnet 5", "claude-sonnet-5"),
    ("Haiku 4.5", "claude-haiku-4-5-20251001"),
    ("Fable 5", "claude-fable-5"),
)
_PROJECTS = ("billing-api", "web-console", "ml-pipeline", "docs-site", "infra", "agentmem")
_FILES = ("src/app.py", "src/db.py", "README.md", "tests/test_api.py", "pyproject.toml", "a.ts")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August")


def agent_env(i: int) -> AgentEnv:
    """Agent ``i``'s session fields (deterministic)."""
    rng = random.Random(1000 + i)
    cwd = f"/Users/dev/src/{_PROJECTS[i % len(_PROJECTS)]}/wt-{i:03d}"
    name, model_id = rng.choice(_MODELS)
    month = rng.randrange(len(_MONTHS))
    status = "\n".join(
        f"{rng.choice((' M', 'M ', 'A ', '??'))} {f}" for f in rng.sample(_FILES, rng.randint(1, 3))
    )
    return AgentEnv(
        cwd=cwd,
        slug=cwd.replace("/", "-"),
        session=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        kernel=f"Darwin 25.{rng.randint(0, 6)}.0",
        date=f"2026-{month + 1:02d}-{rng.randint(1, 28):02d}",
        month=f"{_MONTHS[month]} 2026",
        model_line=f"You are powered by the model named {name}. The exact model ID is {model_id}.",
        branch=f"agent/{i:03d}-{rng.choice(('fix', 'feat', 'refactor'))}",
        status=status,
        commits=f"{rng.randbytes(4).hex()[:7]} {rng.choice(('Fix', 'Add', 'Refactor'))} "
        f"{rng.choice(_FILES)}",
    )


def env_block(e: AgentEnv) -> str:
    """A contiguous environment block in the shape of Claude Code 2.0's ``<env>``."""
    return (
        f"<env>\nWorking directory: {e.cwd}\nIs directory a git repo: Yes\nPlatform: darwin\n"
        f"OS Version: {e.kernel}\nToday's date: {e.date}\n</env>\n{e.model_line}\n"
        f"gitStatus: Current branch: {e.branch}\nStatus:\n{e.status}\n"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class PromptScenario:
    """One prompt, one copy per agent, each with its own session fields.

    ``render(i)`` is agent ``i``'s copy; ``per_agent_bytes(i)`` the bytes of its own fields.
    """

    source: str
    base_bytes: int
    sites: str
    render: Callable[[int], bytes]
    per_agent_bytes: Callable[[int], int]


# Where Claude Code puts each session field, as (pattern, field). Applied in place: an agent's
# copy differs from another's exactly where the product's copies differ.
_CC_FIELDS: tuple[tuple[str, Callable[[AgentEnv], str]], ...] = (
    (r"<project-slug>", lambda e: e.slug),
    (r"<project-dir>", lambda e: e.cwd),
    (r"<session-uuid>", lambda e: e.session),
    (r"(?<=OS Version: )[^\n]+", lambda e: e.kernel),
    (r"You are powered by the model named [^\n]*", lambda e: e.model_line),
    (r"(?<=Current branch: )main", lambda e: e.branch),
    (r"\[live working-tree status injected here\]", lambda e: e.status),
    (r"\[live recent commits injected here\]", lambda e: e.commits),
    (r"(?<=The current month is )[A-Z][a-z]+ \d{4}", lambda e: e.month),
    (r"(?<=Today's date is )\d{4}-\d{2}-\d{2}", lambda e: e.date),
)
_CC_ENV_BLOCK = re.compile(r"<env>\n.*?</env>\nYou are powered by[^\n]*\n", re.S)


def _templated(
    text: str, sites: list[tuple[int, int, Callable[[AgentEnv], str]]]
) -> tuple[Callable[[int], bytes], Callable[[int], int]]:
    sites = sorted(sites, key=lambda s: s[0])
    pieces: list[str] = []
    at = 0
    for start, end, _ in sites:
        pieces.append(text[at:start])
        at = end
    pieces.append(text[at:])
    fields = [f for _, _, f in sites]

    def values(i: int) -> list[str]:
        env = agent_env(i)
        return [f(env) for f in fields]

    def render(i: int) -> bytes:
        vals = values(i)
        out = [pieces[0]]
        for v, p in zip(vals, pieces[1:], strict=True):
            out.append(v)
            out.append(p)
        return "".join(out).encode()

    return render, lambda i: sum(len(v.encode()) for v in values(i))


def scenario_from_text(text: str, source: str) -> PromptScenario:
    """Session fields put where the prompt has them (Claude Code's sites), or as one ``<env>``
    block replacing the prompt's own, or, if it has neither, inserted a tenth of the way in."""
    sites: list[tuple[int, int, Callable[[AgentEnv], str]]] = []
    taken: list[tuple[int, int]] = []
    for pattern, field in _CC_FIELDS:
        for m in re.finditer(pattern, text):
            if not any(s < m.end() and m.start() < e for s, e in taken):
                sites.append((m.start(), m.end(), field))
                taken.append((m.start(), m.end()))
    nbytes = len(text.encode())
    if len(sites) >= 3:
        where = f"{len(sites)} fields in place at chars {min(taken)[0]}-{max(taken)[1]}"
    else:
        block = _CC_ENV_BLOCK.search(text)
        if block is not None:
            sites = [(block.start(), block.end(), env_block)]
            where = f"one <env> block replacing the prompt's own at char {block.start()}"
        else:
            at = text.find("\n", len(text) // 10) + 1
            sites = [(at, at, env_block)]
            where = f"one <env> block inserted at char {at}"
    render, per_agent = _templated(text, sites)
    return PromptScenario(source, nbytes, where + f" of {len(text)}", render, per_agent)


def claude_code_prompt(corpus: Path) -> Path | None:
    """The largest Claude Code prompt of the corpus's asgeirtj and x1xhlol folders."""
    found = [
        p
        for folder in ("asgeirtj", "x1xhlol")
        for p in (corpus / "system_prompts" / folder).glob("*")
        if p.is_file() and re.search(r"claude[- ]code", p.name, re.I)
    ]
    return max(found, key=lambda p: (p.stat().st_size, p.name), default=None)


def generated_markdown(seed: int, nbytes: int) -> str:
    """Generated prompt-like markdown: headings, paragraphs, bullet lists."""
    t = TextMaker(seed)
    parts: list[str] = []
    size = 0
    while size < nbytes:
        head = f"# {t.sentence(3).rstrip('.:?')}\n\n"
        body = "\n".join(f"- {t.sentence()}" for _ in range(t.rng.randint(2, 8)))
        para = t.prose(t.rng.randint(300, 2500))
        block = head + para + "\n\n" + body + "\n\n"
        parts.append(block)
        size += len(block)
    return "".join(parts)


def generated_prompt() -> PromptScenario:
    """A generated ~130 KB prompt with one ``<env>`` block a tenth of the way in."""
    return scenario_from_text(generated_markdown(3, 130_000), "generated prompt")


# --- prompt versions -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Version:
    """One version of a prompt or tool catalogue, as a file."""

    name: str
    smu_type: SMUType
    data: bytes


def corpus_versions(corpus: Path) -> list[Version]:
    """Every file of ``system_prompts/*-history`` and ``tool_defs/*-history``, sorted by path."""
    out: list[Version] = []
    for top, smu_type in (
        ("system_prompts", SMUType.SYSTEM_PROMPT),
        ("tool_defs", SMUType.TOOL_DEF),
    ):
        for folder in sorted((corpus / top).glob("*-history")):
            for f in sorted(folder.iterdir()):
                if f.is_file():
                    out.append(Version(f"{top}/{folder.name}/{f.name}", smu_type, f.read_bytes()))
    return out


def generated_versions() -> list[Version]:
    """Six prompts of 2-100 KB, eight versions each, a few line edits apart (one a tool_def)."""
    out: list[Version] = []
    sizes = ((11, 2_000), (12, 6_000), (13, 20_000), (14, 40_000), (15, 100_000), (16, 30_000))
    for k, (seed, size) in enumerate(sizes):
        t = TextMaker(seed)
        rng = t.rng
        lines = t.prose(size).splitlines(keepends=True)
        spare = t.prose(size).splitlines(keepends=True)
        smu_type = SMUType.TOOL_DEF if k == len(sizes) - 1 else SMUType.SYSTEM_PROMPT
        for v in range(8):
            out.append(
                Version(f"generated/prompt-{seed}/v{v + 1:02d}", smu_type, "".join(lines).encode())
            )
            for _ in range(4):
                at = rng.randrange(len(lines))
                op = rng.random()
                if op < 0.4:
                    lines[at] = rng.choice(spare)
                elif op < 0.7:
                    lines.insert(at, rng.choice(spare))
                elif len(lines) > 2:
                    del lines[at]
    return out


def prompt_text(corpus: Path | None, nbytes: int) -> bytes:
    """``nbytes`` of system-prompt text with no chunk repeated, so it is stored contiguously.

    From the corpus: asgeirtj prompts in name order, skipping any that shares a chunk with one
    already taken (the folder holds many near-duplicates). Otherwise: generated markdown.
    """
    out = bytearray()
    if corpus is not None:
        chunker = default_chunker()
        seen: set[bytes] = set()
        for p in sorted((corpus / "system_prompts" / "asgeirtj").glob("*")):
            data = p.read_bytes() if p.is_file() else b""
            view = memoryview(data)
            ends = chunker.cut(view)
            ids = {blake3(view[a:b]).digest() for a, b in zip([0, *ends], ends, strict=False)}
            if ids & seen:
                continue
            seen |= ids
            out += data
            if len(out) >= nbytes:
                return bytes(out[:nbytes])
    seed = 100
    while len(out) < nbytes:
        out += generated_markdown(seed, 130_000).encode()
        seed += 1
    return bytes(out[:nbytes])


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` in pieces of ``size`` bytes (the last may be shorter)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]

"""The store's tunables (a frozen dataclass) and how the environment sets them."""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping

from agentmem import constants


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """Tunables of a store. Frozen; derive variants with ``dataclasses.replace``."""

    #: zstd level for warm frames other than conversations. Level 3: ~470 MB/s on 64 KiB blocks.
    zstd_level: int = 3
    #: zstd level for conversation frames. Conversations are the bulk of agent memory and are
    #: demoted when idle, so ratio beats speed: on the corpus's 691 conversations (86 MB, 256 KiB
    #: groups, 8 MiB-trained dictionary) level 3 gives 7.45x at ~115 MB/s of demote including the
    #: one-time training, level 6 8.12x at ~63 MB/s, level 9 8.39x at ~47 MB/s
    #: (`agentmem bench store --corpus` at each level, when warm groups were 256 KiB; its record,
    #: bench/results/store.md, has 7.96x at level 6 in 1 MiB groups). Reads decode at
    #: the same speed whatever the level.
    conversation_zstd_level: int = 6
    #: Decode and re-hash every frame before its chunk counts as stored (STYLE principle 11).
    verify_frames: bool = True
    #: Bytes of one SMU type seen before a dictionary is trained for it. A 112 KiB dictionary
    #: wants ~100x its size of samples (zstd's guidance). Measured on the corpus's conversations
    #: at level 3, 256 KiB groups: trained on 2 MiB 6.70x, on 8 MiB 7.42x, on 16 MiB 7.41x.
    #: Training 8 MiB takes ~0.5 s once per type; the frames made until then are the samples
    #: (decoded for training), so no copies wait in memory.
    dict_train_bytes: int = 8 << 20
    #: Dictionary size. 112 KiB lifted 1 KiB messages from 2.3x to 4.7x (DESIGN.md).
    dict_size: int = 112 << 10
    #: Raw bytes compressed together in one warm frame (see ``constants.WARM_GROUP_BYTES``).
    warm_group_bytes: int = constants.WARM_GROUP_BYTES
    #: Private content (not a system prompt or tool definition) larger than this gets a hot
    #: segment of its own, so it can be mapped by its readers without exposing anything else.
    #: Equal to the daemon's inline limit: smaller content is always copied, never mapped.
    exclusive_min_bytes: int = 16 << 10
    #: Hot bytes the daemon keeps at most (0: no budget). Checked on every placement in the hot
    #: tier: over it, the eviction policy chooses what to demote to the warm tier.
    hot_budget_bytes: int = 0
    #: Content of a handle unused for this many seconds goes warm whatever the budget (the
    #: original design's default: 5 minutes); 0 turns it off.
    warm_after_seconds: int = 300
    #: Content of a handle of an agent in the ``idle`` state, unused for this many seconds, goes
    #: warm even with room in the hot budget (0, the default: idle agents go first only under
    #: pressure, as the policy orders them; ``agentmem swarm`` sets it just above the longest
    #: gap between an agent's turns, 5 s at its default think time, to show memory at rest).
    idle_agent_warm_seconds: int = 0
    #: Content of a handle unused for this many seconds goes cold (to disk) whatever the
    #: budgets (the original design's default: a day); 0 turns it off. Needs a state directory.
    cold_after_seconds: int = 86400
    #: Bytes of warm frames kept at most (0: no budget). Over it, the eviction policy chooses
    #: what goes cold. Needs a state directory (the cold tier's packs live there).
    warm_budget_bytes: int = 0
    #: Acknowledge a conversation append only once ``fdatasync`` made it durable (strict);
    #: False: once written, synced within a second (relaxed: a power loss may lose that second).
    durable_sync: bool = True
    #: The journal is not rewritten below this size, whatever its share of dead records
    #: (``store/journal.py``): a rewrite copies every live conversation, which is not worth
    #: it for a few megabytes of dead ones. Crash tests set ~1 MiB to have it rewritten often.
    journal_rewrite_min_bytes: int = 64 << 20
    #: Conversations restored from the journal after a crash wait this long for their agent to
    #: reconnect (under the same name) before they are released.
    orphan_keep_seconds: int = 86400
    #: Use the plain LRU eviction policy instead of the semantic one (for comparison).
    lru_policy: bool = False
    #: Largest SMU accepted.
    max_smu_bytes: int = constants.MAX_SMU_BYTES
    #: Hot segment size.
    segment_bytes: int = constants.SEGMENT_BYTES
    #: Per-agent quota of logical bytes held (0: unlimited).
    agent_quota_bytes: int = 0
    #: Per-agent quota of live handles (0: unlimited).
    agent_quota_handles: int = 0
    #: Domain quota of physical bytes stored (0: unlimited).
    domain_quota_bytes: int = 0

    def __post_init__(self) -> None:
        for level in (self.zstd_level, self.conversation_zstd_level):
            if not 1 <= level <= 22:
                raise ValueError(f"zstd levels must be 1..22, got {level}")
        for name in (
            "dict_train_bytes",
            "agent_quota_bytes",
            "agent_quota_handles",
            "domain_quota_bytes",
            "hot_budget_bytes",
            "warm_after_seconds",
            "idle_agent_warm_seconds",
            "cold_after_seconds",
            "warm_budget_bytes",
            "orphan_keep_seconds",
            "journal_rewrite_min_bytes",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.dict_size < 1024:
            raise ValueError("dict_size must be >= 1024")
        if not 4096 <= self.warm_group_bytes <= 64 << 20:
            raise ValueError("warm_group_bytes must be 4 KiB .. 64 MiB")
        if self.max_smu_bytes <= 0:
            raise ValueError("max_smu_bytes must be > 0")
        if self.segment_bytes < 65536 or self.segment_bytes % 4096:
            raise ValueError("segment_bytes must be a multiple of 4096 and >= 64 KiB")

    @classmethod
    def from_file(cls, path: str, base: Config | None = None) -> Config:
        """``base`` (default: the defaults) with the fields a TOML file sets, e.g.
        ``hot_budget_bytes = 2_147_483_648``; sizes may also be strings with a unit
        (``hot_budget_bytes = "2G"``). ``ValueError`` names the file and the bad key."""
        import tomllib

        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"config file {path}: {exc}") from exc
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, object] = {}
        for key, raw in data.items():
            field = fields.get(key)
            if field is None:
                hint = _did_you_mean(key, list(fields), "")
                raise ValueError(f"config file {path}: unknown setting {key!r}{hint}")
            if isinstance(field.default, bool):
                if not isinstance(raw, bool):
                    raise ValueError(f"config file {path}: {key} must be true or false")
                values[key] = raw
            elif isinstance(raw, str) and key.endswith("_bytes"):
                values[key] = parse_size(raw)
            elif isinstance(raw, int) and not isinstance(raw, bool):
                values[key] = raw
            else:
                raise ValueError(f"config file {path}: {key} must be an integer")
        try:
            return dataclasses.replace(base if base is not None else cls(), **values)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"config file {path}: {exc}") from exc

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, base: Config | None = None
    ) -> Config:
        """Build a config from ``AGENTMEM_<FIELD>`` variables (e.g. ``AGENTMEM_ZSTD_LEVEL=6``,
        ``AGENTMEM_HOT_BUDGET_BYTES=2G``, ``AGENTMEM_DURABLE_SYNC=off``). ``ValueError`` names
        the variable and its bad value, or an ``AGENTMEM_`` variable that is neither a setting
        nor one of :data:`OTHER_VARIABLES`."""
        env = os.environ if environ is None else environ
        fields = dataclasses.fields(cls)
        known = OTHER_VARIABLES | {"AGENTMEM_" + f.name.upper() for f in fields}
        for name in env:
            if name.startswith("AGENTMEM_") and name not in known:
                # As a config file's unknown key: a misspelt budget must not quietly not apply.
                # Compared without the prefix, which every name shares.
                hint = _did_you_mean(name[9:], [k[9:] for k in known], "AGENTMEM_")
                raise ValueError(f"{name} is not an agentmem setting{hint}")
        values: dict[str, object] = {}
        for field in fields:
            name = "AGENTMEM_" + field.name.upper()
            raw = env.get(name)
            if raw is None:
                continue
            if isinstance(field.default, bool):
                word = raw.strip().lower()
                if word not in _TRUE and word not in _FALSE:
                    # Never a silent False: "strict" for durable_sync must not mean relaxed.
                    raise ValueError(f"{name}={raw!r}: give one of 1, 0, true, false, on, off")
                values[field.name] = word in _TRUE
                continue
            try:
                # Sizes as in a config file ("2G"); other settings are plain integers.
                values[field.name] = parse_size(raw) if field.name.endswith("_bytes") else int(raw)
            except ValueError as exc:
                raise ValueError(f"{name}={raw!r} is not valid: {exc}") from exc
        return dataclasses.replace(base if base is not None else cls(), **values)  # type: ignore[arg-type]


#: The ``AGENTMEM_`` variables that are not settings (``agentmem.config``, the CLI).
OTHER_VARIABLES = frozenset(
    {
        "AGENTMEM_CONFIG",
        "AGENTMEM_CORPUS",
        "AGENTMEM_PROFILE_ALLOCS",
        "AGENTMEM_RUNTIME_DIR",
        "AGENTMEM_SOCKET",
        "AGENTMEM_STATE_DIR",
        "AGENTMEM_TRIM_ON_IDLE",
    }
)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _did_you_mean(word: str, choices: list[str], prefix: str) -> str:
    """`` (did you mean <prefix><the closest choice>?)``, or "" when none is close."""
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def parse_size(text: str) -> int:
    """``"512M"`` -> 536870912; a plain number is bytes; ``ValueError`` otherwise."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    number = t[: len(t) - len(unit)] if unit else t
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (e.g. 512M, 2G, 1048576)") from None
    if value < 0:
        raise ValueError(f"a size is >= 0, not {text!r}")
    return int(value * _UNITS[unit])

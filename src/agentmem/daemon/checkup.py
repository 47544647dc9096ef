"""``agentmem check``: verify a domain's bytes and refcounts, live or from its state directory.

Through a running daemon (the ``check`` operation) it checks the caller's domain as it is in
memory: every chunk in every tier re-hashed against its id (cold ones read back from their
packs), refcounts recomputed by mark-sweep and compared. With no daemon running it restores
each domain of the state directory the way a starting daemon would (replaying the journal,
scanning the packs, cutting torn tails) and checks the result, holding the directory's lock so
no daemon starts meanwhile. ``repair`` fixes drifted refcounts and unreachable index entries
(see ``Store.repair``); what it cannot fix it names.
"""

from __future__ import annotations

import dataclasses
import os

from agentmem.config import Config
from agentmem.daemon import lifecycle
from agentmem.store import Store


def check_store(store: Store, *, repair: bool = False) -> dict[str, object]:
    """One domain's report as a plain map (the ``check`` reply)."""
    fixed: list[str] = []
    unfixable: list[str] = []
    if repair:
        _before, fixed, unfixable = store.repair()
    report = store.check(verify_bytes=True)
    tiers = {t.tier: t.chunks for t in (store.hot.stats(), store.warm.stats())}
    if store.cold is not None:
        tiers["cold"] = store.cold.stats().chunks
    restored = store.restored
    out = dataclasses.asdict(report)
    out.update(
        ok=report.ok,
        tiers=tiers,
        fixed=fixed,
        unfixable=unfixable,
        restore_problems=list(restored.problems),
        truncated_bytes=restored.truncated_bytes,
        tier_errors=list(store.tier_errors),
        journal_bytes=store.journal.size if store.journal is not None else None,
    )
    return out


def check_state_dir(state_dir: str, *, repair: bool = False) -> dict[int, dict[str, object]]:
    """Restore and check every domain of ``state_dir`` (no daemon may be running on it:
    ``DaemonRunning`` otherwise); reports by uid."""
    lock = lifecycle.Lock(os.path.join(state_dir, "daemon"))
    lock.acquire()
    try:
        reports: dict[int, dict[str, object]] = {}
        for name in sorted(os.listdir(state_dir)):
            if not (name.startswith("uid-") and name[4:].isdigit()):
                continue
            store = Store(Config.from_env(), state_dir=os.path.join(state_dir, name))
            try:
                reports[int(name[4:])] = check_store(store, repair=repair)
            finally:
                # Orphans stay in the journal: closing writes nothing, so the next daemon
                # restores exactly what this check saw.
                store.close()
        return reports
    finally:
        lock.release()

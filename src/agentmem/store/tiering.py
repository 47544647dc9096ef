"""Moving content between tiers: budgets, ages and the policy that orders them.

The policy (``store/policy.py``) decides what goes, in what order; these functions ask it and
have the store act. Three triggers:

* **pressure**, on every placement in the hot tier: when hot bytes would pass
  ``hot_budget_bytes``, demote (to warm) what the policy chooses until they are at a low-water
  mark an eighth of the budget below it, so the next allocations do not each pay for a pass
  over the candidates. An allocation larger than the room made is itself demoted right
  after, and a read that would not fit is served decoded, without a promotion: hot bytes
  exceed the budget only by pinned content (``mark_hot``).
* **age**, once a second from the daemon (:func:`maintain`): handles unused for
  ``warm_after_seconds`` (5 minutes) go warm, or for ``idle_agent_warm_seconds`` (off by
  default) when their agent says it is idle; unused for ``cold_after_seconds`` (a day) they go cold.
* **warm pressure**: warm frames past ``warm_budget_bytes`` go cold in the policy's order, down
  to an eighth below it; while the warm tier is at its budget, the age pass sends what came
  due straight to cold.

Moves to cold need a cold tier (a state directory); without one the warm budget and the cold
age are not enforced, and ``stats`` says the cold tier is off.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

from agentmem.errors import DiskFull, PackUnreadable
from agentmem.ids import Handle
from agentmem.states import AgentState, SMUType, Tier
from agentmem.store import steps
from agentmem.store.hot import tier_level
from agentmem.store.records import ConversationRef

if TYPE_CHECKING:
    from collections.abc import Generator

    from agentmem.store.records import ChunkEntry
    from agentmem.store.store import AnyRef, Store

#: The hot tier is brought this fraction of its budget below the budget when it is enforced.
LOW_WATER_FRACTION = 1 / 8
#: Seconds one maintenance pass spends demoting idle handles before it leaves the rest to the
#: next (which the daemon runs within ``maintenance.BACKLOG_INTERVAL``, once it has answered
#: the requests waiting meanwhile): a request that arrives during a pass waits about this
#: long, plus at most one warm group's step (~6 ms).
IDLE_PASS_SECONDS = 0.01
#: Times :func:`make_room` asks the policy before its last resort.
_ROUNDS = 3
_CONVERSATION = SMUType.CONVERSATION


def make_room(store: Store, incoming: int, exclude: Handle | None = None) -> int:
    """Demote until ``incoming`` more hot bytes fit in the budget with low-water room to
    spare; returns plain bytes moved. No-op without a budget or when they fit already.

    The policy is asked again while its choices moved less than it counted on (a prompt held
    through several handles is listed once per handle, but moves once); when it has nothing
    left, conversations' shared chunks go too, least recently used first, whatever the policy:
    the budget holds either way.
    """
    budget = store.config.hot_budget_bytes
    if not budget or store.hot.live_bytes + incoming <= budget:
        return 0
    target = max(budget - int(budget * LOW_WATER_FRACTION) - incoming, 0)
    moved = 0
    for _round in range(_ROUNDS):
        need = store.hot.live_bytes - target
        candidates = [c for c in store.candidates() if c.handle != exclude]
        chosen = store.policy.choose(candidates, need, store.clock())
        if not chosen:
            break
        before = moved
        for c in chosen:
            moved += store.demote(c.handle, keep=c.keep, own_only=c.smu_type is _CONVERSATION)
            if store.hot.live_bytes <= target:
                return moved
        if moved == before:
            break
    for ref in sorted(store.refs.values(), key=lambda r: r.touched):  # the last resort
        if store.hot.live_bytes <= target:
            break
        if ref.handle != exclude and not ref.pinned:
            moved += store.demote(ref.handle)
    return moved


def enforce_budget(store: Store) -> int:
    """Bring the hot tier within its budget (for a budget lowered at run time, or content
    promoted past it); returns plain bytes moved."""
    return make_room(store, 0)


def demote_idle(store: Store, deadline: float | None = None) -> int:
    """Demote to warm every unpinned handle unused for ``warm_after_seconds``, and those of
    agents in the ``idle`` state unused for ``idle_agent_warm_seconds`` (not with the LRU
    policy, which knows no agent states); plain bytes moved.
    Content several handles hold (a shared prompt) is left to the budget: one agent's
    idleness says nothing of the others'.

    O(handles + the messages of the handles that came due since the last pass), not
    O(messages held): a handle this pass has taken down is remembered with its ``touched``
    (``Store.aged``) and skipped until it is used again. Measured: listing the candidates of
    10 conversations of 15,000 messages costs 36 ms, so a scan of everything each second
    would cost a daemon with 100 such agents ~35 % of a core while they all sit hot.

    ``deadline`` (``time.monotonic()``): take due handles oldest first, a warm group at a
    time (:func:`_demotion`), and stop once it has passed (at least one step a pass); a
    handle left part-way goes on from there next pass (``Store.demoting``), unless it was
    used meanwhile. ``Store.idle_backlog`` says whether some are left. Demoting a 30 MB
    history takes ~0.15 s: 100 agents going idle together once made one pass of ~20 s in
    which the daemon answered nobody, and passes of whole handles held it for one history."""
    after = store.config.warm_after_seconds
    # LRU is what a page cache does: it knows no agent states, so the idle-agent rule is off.
    idle_after = 0 if store.config.lru_policy else store.config.idle_agent_warm_seconds
    if not after and not idle_after:
        store.aged.clear()
        store.aged_shared.clear()
        return 0
    now = store.clock()
    cutoff = now - after if after else float("-inf")
    idle_cutoff = now - idle_after if idle_after else float("-inf")
    idle = AgentState.IDLE
    aged = store.aged
    kept: dict[int, float] = {}
    due = []
    for h, ref in store.refs.items():
        touched = ref.touched
        if ref.pinned or not (
            touched <= cutoff or (ref.agent.state is idle and touched <= idle_cutoff)
        ):
            continue
        if aged.get(h) == touched:  # taken down already, unused since
            kept[h] = touched
            continue
        if ref.smu_type is not _CONVERSATION and ref.smu.refs > 1:  # type: ignore[union-attr]
            continue  # held by other handles too: left to the budget
        due.append(ref)
    moved = 0
    target = _idle_target(store)
    moving = store.demoting
    # A demotion left part-way by the last pass goes on only while its handle stays due and
    # unused (read since, its chunks may be hot again anywhere: listed afresh).
    due_at: dict[int, float] = {ref.handle: ref.touched for ref in due}
    for h in [h for h, (at, _) in moving.items() if due_at.get(h) != at]:
        moving.pop(h)[1].close()
    finished: list[AnyRef] = []
    if deadline is None:
        for ref in due:
            demotion = moving.pop(ref.handle, (0.0, None))[1] or _demotion(store, ref, target)
            moved += sum(demotion)
            finished.append(ref)
    else:
        # Oldest first, a warm group at a time, until the deadline: the rest next pass, from
        # where this one stopped (listing a handle's chunks walks its messages: once).
        due.sort(key=lambda r: r.touched)
        started = False
        for ref in due:
            if started and time.monotonic() >= deadline:
                break
            started = True
            h = ref.handle
            state = moving.get(h)
            demotion = state[1] if state is not None else _demotion(store, ref, target)
            moving[h] = (ref.touched, demotion)
            complete = False
            try:
                for n in demotion:
                    moved += n
                    if time.monotonic() >= deadline:
                        break
                else:
                    complete = True
            except BaseException:  # a full disk (cold): listed afresh next pass, not "done"
                del moving[h]
                raise
            if not complete:
                break
            del moving[h]
            finished.append(ref)
    store.idle_backlog = len(finished) < len(due)
    for ref in finished:  # every such handle's own content is down now (or it had none)
        kept[ref.handle] = ref.touched
    store.aged = kept
    return moved + _demote_shared(store, finished)


def _demotion(store: Store, ref: AnyRef, to: Tier) -> Generator[int, None, None]:
    """Demote ``ref``'s own unpinned chunks to ``to`` (those no other content holds), a warm
    group's bytes at a time: each step moves one group (~6 ms at level 6 with its check) and
    yields the plain bytes moved. A chunk shared, freed or moved since the list was made is
    left where it is; a conversation's open segment is closed once it is all down (as
    ``Store.demote`` does)."""
    if not any(c.holders == 1 for c in store.candidates(refs=[ref])):
        return
    pins = store.pins
    moved_any = False
    # Cut as ``warm.group_spans`` cuts: a step is one group, as one call would have made it.
    for batch in steps.batches(
        store.demotable(ref, to=to, own_only=True),
        store.config.warm_group_bytes,
        lambda e: e.refs == 1 and tier_level(e.loc) < to and e.id not in pins,
    ):
        moved_any = True
        yield store.demote_chunks(batch, ref.smu_type, to)
    if moved_any and ref.smu_type is _CONVERSATION:
        store.hot.close_owned(ref.handle)


def _near_hot(e: ChunkEntry) -> bool:
    """Is the chunk hot in near RAM (not freed, not already in far memory)?"""
    return e.loc is not None and tier_level(e.loc) is Tier.HOT


def _demote_shared(store: Store, due: list[AnyRef]) -> int:
    """Demote the hot chunks that several conversations hold once every one of their claims
    comes from a conversation the age rules have taken down (all its holders idle or unused),
    as one idle agent's own content is; plain bytes moved.

    A claim is a message of a conversation's own (after its last fork point) on a chunk: each
    conversation taken down keeps the list of its claims on shared hot chunks
    (``Store.aged_shared``, dropped when it is used again), so a pass that takes down new ones
    counts claims over those lists, O(shared claims), and walks only the new conversations'
    messages. A chunk some other content holds too (an SMU, a conversation still in use, a
    shared prefix) has a claim not counted and stays."""
    lists: dict[int, list[ChunkEntry]] = {
        h: claims for h, claims in store.aged_shared.items() if h in store.aged
    }
    fresh = False
    for ref in due:
        if ref.__class__ is not ConversationRef:
            continue
        claims = [e for e in store._entries_of(ref, own_only=True) if e.refs > 1 and _near_hot(e)]
        if claims:
            lists[ref.handle] = claims
            fresh = True
    store.aged_shared = lists
    if not fresh:  # nothing new: every chunk these lists name was weighed already
        return 0
    counts = Counter(e for claims in lists.values() for e in claims)  # entries hash by identity
    pins = store.pins
    ready = [e for e, n in counts.items() if n >= e.refs and _near_hot(e) and e.id not in pins]
    if not ready:
        return 0
    return store.demote_chunks(ready, _CONVERSATION, _idle_target(store))


def _idle_target(store: Store) -> Tier:
    """Where the age pass sends what came due: warm, or straight to cold when the warm tier is
    at its budget (the warm-pressure pass would move it, or older content, on to cold at once:
    a decode and a second encode, and a listing of every warm candidate, saved)."""
    budget = store.config.warm_budget_bytes
    if store.cold is not None and budget and store.warm.frame_bytes >= budget:
        return Tier.COLD
    return Tier.WARM


def demote_cold(store: Store) -> int:
    """Move to the cold tier what has been unused for ``cold_after_seconds`` and, past
    ``warm_budget_bytes``, warm content in the policy's order; returns plain bytes moved.
    A full disk stops the pass (the content stays warm) and is reported by the caller."""
    if store.cold is None:
        return 0
    moved = 0
    after = store.config.cold_after_seconds
    if after:
        cutoff = store.clock() - after
        # Only the handles old enough are listed: O(handles), not O(messages), when none is.
        old = [r for r in store.refs.values() if r.touched <= cutoff]
        for c in store.candidates(Tier.WARM, refs=old) if old else ():
            if c.holders == 1:
                moved += store.demote(c.handle, to=Tier.COLD, own_only=True)
    budget = store.config.warm_budget_bytes
    if budget and store.warm.frame_bytes + store.warm.shadow_bytes > budget:
        # Frames kept for clean copies of hot content are the first RAM to give back.
        store.warm.drop_all_clean()
    # Down to an eighth below the budget, as for the hot tier: the next demotions to warm do
    # not each bring a listing of every warm candidate.
    low = budget - int(budget * LOW_WATER_FRACTION)
    over = store.warm.frame_bytes - low
    if budget and store.warm.frame_bytes > budget:
        # Warm candidates count plain bytes; frames are ~4-8x smaller: ask for enough plain.
        ratio = store.warm.stats().raw_bytes / max(store.warm.frame_bytes, 1)
        for c in store.policy.choose(store.candidates(Tier.WARM), int(over * ratio), store.clock()):
            moved += store.demote(c.handle, to=Tier.COLD, own_only=c.smu_type is _CONVERSATION)
            if store.warm.frame_bytes <= low:
                break
    return moved


def expire_orphans(store: Store) -> int:
    """Release the conversations of agents restored from the journal and not reclaimed for
    ``orphan_keep_seconds``; returns agents dropped."""
    keep = store.config.orphan_keep_seconds
    now = store.clock()
    stale = [
        a for a in store.agents.values() if a.orphaned is not None and now - a.orphaned >= keep
    ]
    for agent in stale:
        store.unregister_agent(agent)
    return len(stale)


def maintain(store: Store) -> dict[str, int]:
    """One maintenance pass (the daemon's, once a second): ages, budgets, orphans, pack and
    journal compaction, the relaxed-mode sync. Returns what it did, for the log and stats;
    ``backlog`` 1 when the age pass stopped at its deadline with handles still due (the daemon
    then runs the next pass as soon as it has answered what is waiting)."""
    deadline = time.monotonic() + IDLE_PASS_SECONDS
    done = {"warm": demote_idle(store, deadline), "pressure": enforce_budget(store)}
    done["backlog"] = int(store.idle_backlog)
    try:
        done["cold"] = demote_cold(store)
        if store.cold is not None:
            done["packs_reclaimed"] = store.cold.compact()
    except (DiskFull, PackUnreadable) as exc:
        store.tier_errors.append(str(exc))
        del store.tier_errors[:-16]
    done["orphans"] = expire_orphans(store)
    done["segments_retired"] = store.hot.retire_idle_open(store.clock())
    journal = store.journal
    if journal is not None:
        journal.sync(force=True)  # relaxed mode: at most a second of appends at risk
        try:
            done["journal_reclaimed"] = _compact_journal(
                store, time.monotonic() + IDLE_PASS_SECONDS
            )
        except DiskFull as exc:  # the old journal stays; tried again at a later pass
            store.tier_errors.append(str(exc))
            del store.tier_errors[:-16]
        if store.journal_rewrite is not None:
            done["backlog"] = 1
    return done


def _compact_journal(store: Store, deadline: float) -> int:
    """Go on with the journal's rewrite (start it when due) until ``deadline``; bytes saved
    once it ends. Rewriting 1.4 GB of live histories is seconds of work (~6 ms a MB here),
    which one pass used to do at once, answering nobody meanwhile."""
    rewrite = store.journal_rewrite
    if rewrite is None:
        rewrite = store.journal_rewrite = store.compact_journal_steps()
        if rewrite is None:
            return 0

    def ended() -> None:
        store.journal_rewrite = None

    return steps.resume(rewrite, deadline, time.monotonic, ended) or 0

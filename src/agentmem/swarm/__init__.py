"""``agentmem swarm``: many real agent loops against a mock LLM, and what their memory costs.

N agents in P processes hold a system prompt, a tool catalogue and a growing conversation, and
each turn send the whole request to a mock LLM on loopback that replays recorded trajectories.
The same swarm runs in three modes, measured in one run: ``plain`` (Python objects), ``ksm``
(plain with KSM merging pages) and ``agentmem`` (prompt and tools shared through the daemon,
conversations in it). Modules: :mod:`~agentmem.swarm.trajectories` and
:mod:`~agentmem.swarm.profiles` (the data), :mod:`~agentmem.swarm.llm` (the mock LLM),
:mod:`~agentmem.swarm.agent` (one agent process), :mod:`~agentmem.swarm.measure` (PSS, CPU,
KSM), :mod:`~agentmem.swarm.run` (the rounds), :mod:`~agentmem.swarm.report` (table, plot).
"""

from __future__ import annotations

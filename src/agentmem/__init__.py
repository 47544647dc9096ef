"""agentmem: an agent-aware memory manager.

Content-addressed, shared zero-copy, compressed and tiered by meaning. See docs/design.md.
"""

from __future__ import annotations

from agentmem.errors import AgentmemError
from agentmem.states import AgentState, SMUType, Tier

__version__ = "0.1.0"

__all__ = ["AgentState", "AgentmemError", "SMUType", "Tier", "__version__"]

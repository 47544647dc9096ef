"""Allocation sampling: the caller's Python stack, collapsed, for one ``alloc_smu`` in N.

Light on purpose, because it runs inside agent processes: ``sys._getframe`` and string joins
only (no ``traceback``, no ``inspect``: they import linecache and read source files). ``random``
is imported only when sampling 1 in N > 1. Walking 32 frames and joining them costs a few
microseconds, against a ~25 us round trip, and only on sampled calls.

A stack is ``file:function;file:function;...`` from the outermost frame to the caller of
``alloc_smu`` (``file`` is the base name, ``function`` the qualified name), the format
flamegraph.pl and speedscope read. At most :data:`MAX_DEPTH` frames, the innermost; frames are
dropped from the root side until it fits the daemon's :data:`MAX_STACK_BYTES`.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import random

#: Frames kept, innermost first.
MAX_DEPTH: Final = 32
#: The daemon's bound on a stack (``agentmem.daemon.profile.MAX_STACK_BYTES``).
MAX_STACK_BYTES: Final = 1024


def collapsed_stack(frame: FrameType | None, max_depth: int = MAX_DEPTH) -> str:
    """``frame`` and its callers as one collapsed stack string, root first."""
    parts: list[str] = []
    while frame is not None and len(parts) < max_depth:
        code = frame.f_code
        name = f"{code.co_filename.rpartition('/')[2]}:{code.co_qualname}"
        parts.append(name.replace(";", ":"))
        frame = frame.f_back
    parts.reverse()
    stack = ";".join(parts)
    while len(stack.encode("utf-8", "replace")) > MAX_STACK_BYTES and len(parts) > 1:
        parts.pop(0)
        stack = ";".join(parts)
    return stack.encode("utf-8", "replace")[:MAX_STACK_BYTES].decode("utf-8", "ignore")


class Sampler:
    """Decides which allocations carry a stack: every one (``every=1``) or one in ``every``
    at random (no aliasing with a loop that allocates every k-th iteration). Not thread-safe
    (one per client)."""

    __slots__ = ("_random", "every")

    def __init__(self, every: int) -> None:
        if every < 1:
            raise ValueError("sample one allocation in N >= 1")
        self.every = every
        self._random: random.Random | None = None
        if every > 1:
            import random

            self._random = random.Random()

    def stack(self, depth: int = 2) -> str | None:
        """The collapsed stack of the frame ``depth`` levels up (2: the caller of the method
        that calls this), or None when this allocation is not sampled."""
        if self._random is not None and self._random.random() * self.every >= 1.0:
            return None
        return collapsed_stack(sys._getframe(depth))

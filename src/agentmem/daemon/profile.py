"""Allocation profile: bytes allocated per Python call stack, sampled by clients, per domain.

A client that profiles (``AGENTMEM_PROFILE_ALLOCS=N``) attaches to one ``alloc_smu`` in N a
collapsed stack (``file:function;file:function;...``, root first) and ``sample: N``; the daemon
adds the content's size times N to that stack, so the totals estimate every allocation's bytes.
``alloc_profile`` returns the table; ``agentmem flamegraph`` draws it.

Bounded, because clients choose the stacks: at most :data:`MAX_STACKS` distinct stacks of at
most :data:`MAX_STACK_BYTES` each, the rest counted under :data:`OTHER`. The whole table then
fits one reply: 10,001 x ~1 KiB is ~10 MiB, under the 16 MiB frame limit.
"""

from __future__ import annotations

from typing import Final

from agentmem.errors import InvalidArgument
from agentmem.protocol import messages as m

#: Distinct stacks kept per domain; bytes of any further stack go to :data:`OTHER`.
MAX_STACKS: Final = 10_000
#: Longest stack accepted, in UTF-8 bytes (the client drops root-side frames to fit).
MAX_STACK_BYTES: Final = 1024
#: Largest sampling weight accepted (a client sampling 1 in N sends N).
MAX_SAMPLE: Final = 1 << 20
#: The stack that holds the bytes of stacks past :data:`MAX_STACKS`.
OTHER: Final = "[other]"


def parse(msg: dict[str, object]) -> tuple[str, int] | None:
    """The ``(stack, sample)`` an ``alloc_smu`` request carries, or None without ``stack``.

    ``InvalidArgument`` for a stack that is not a non-empty str of at most
    :data:`MAX_STACK_BYTES` bytes, or a ``sample`` outside 1..:data:`MAX_SAMPLE`.
    """
    stack = msg.get("stack")
    if stack is None:
        return None
    if not isinstance(stack, str) or not stack:
        raise InvalidArgument("'stack' must be a non-empty str")
    if len(stack) > MAX_STACK_BYTES or len(stack.encode("utf-8", "surrogatepass")) > (
        MAX_STACK_BYTES
    ):
        raise InvalidArgument(f"'stack' exceeds {MAX_STACK_BYTES} bytes")
    sample = m.optional(msg, "sample", int, 1)
    if not 1 <= sample <= MAX_SAMPLE:
        raise InvalidArgument(f"'sample' must be 1..{MAX_SAMPLE}")
    return stack, sample


class AllocProfile:
    """One domain's bytes by stack. Not thread-safe (the daemon's loop owns it)."""

    __slots__ = ("bytes_by_stack", "samples", "total_bytes")

    def __init__(self) -> None:
        #: Estimated bytes allocated under each stack (sampled bytes times their weight).
        self.bytes_by_stack: dict[str, int] = {}
        #: Allocations that carried a stack.
        self.samples = 0
        #: Sum of ``bytes_by_stack``.
        self.total_bytes = 0

    def add(self, stack: str, nbytes: int, sample: int = 1) -> None:
        """Count ``nbytes * sample`` bytes under ``stack`` (or :data:`OTHER` when full)."""
        table = self.bytes_by_stack
        weighted = nbytes * sample
        if stack not in table and len(table) >= MAX_STACKS:
            stack = OTHER
        table[stack] = table.get(stack, 0) + weighted
        self.samples += 1
        self.total_bytes += weighted

    def to_wire(self) -> dict[str, object]:
        """``{"stacks": [[stack, bytes], ...] (most bytes first), "samples", "bytes"}``."""
        stacks = sorted(self.bytes_by_stack.items(), key=lambda kv: (-kv[1], kv[0]))
        return {
            "stacks": [[s, n] for s, n in stacks],
            "samples": self.samples,
            "bytes": self.total_bytes,
        }

"""Giving the heap that freed memory leaves behind back to the system (``malloc_trim``).

Two users. The daemon's warm frames are ``bytes`` objects of tens of kilobytes in glibc's
heap. When many go at once (idle conversations moved to the cold tier, agents released),
``free`` keeps the pages: only the top of the heap is ever returned, and one live object above
the holes pins them. Measured, ten seed-profile agents whose 270 MB of conversations went to
the cold tier left the daemon 46 MiB larger than after a ``malloc_trim``. The maintenance
tick calls :func:`give_back` after ``maintenance.TRIM_AFTER_BYTES`` of tier moves or dropped
frames: ``malloc_trim(0)`` returns every free page in the heap (madvise), costing a walk of
the heap's free lists (about a millisecond for ~100 MB). On a C library without it (musl)
this is a no-op.

And the client, when its agent reports itself idle (``Client.set_state``): an agent process
frees large buffers all the time (request bodies, replies, parsed tool output) and glibc keeps
their pages for the same reason. Measured with 20 seed-profile agents: 11.5 -> 10.8 MiB an
agent process (p50; max 13.6 -> 11.1), the swarm's total 395.7 -> 372.3 MiB. ``ctypes`` is
imported on the first call only (~0.33 MiB of PSS), so importing the client stays light.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: the client imports this module (see ids.py)

if TYPE_CHECKING:
    from collections.abc import Callable

_trim: Callable[[int], int] | None = None
_resolved = False


def give_back() -> bool:
    """Return the heap's free pages to the system; False where the C library cannot."""
    global _trim, _resolved
    if not _resolved:
        _resolved = True
        import ctypes

        try:
            _trim = ctypes.CDLL(None).malloc_trim
        except (AttributeError, OSError):
            _trim = None
    if _trim is None:
        return False
    _trim(0)
    return True

"""Giving the heap that freed content leaves behind back to the system.

The daemon's warm frames are ``bytes`` objects of tens of kilobytes in glibc's heap. When many
go at once (idle conversations moved to the cold tier, agents released), ``free`` keeps the
pages: only the top of the heap is ever returned, and one live object above the holes pins
them. Measured, ten seed-profile agents whose 270 MB of conversations went to the cold tier
left the daemon 46 MiB larger than after a ``malloc_trim``. The maintenance tick calls
:func:`give_back` after ``maintenance.TRIM_AFTER_BYTES`` of tier moves or dropped frames:
``malloc_trim(0)`` returns every free page in the heap (madvise), costing a walk of the
heap's free lists (about a millisecond for ~100 MB). On a C library without it (musl) this
is a no-op.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
_resolved = False


def give_back() -> bool:
    """Return the heap's free pages to the system; False where the C library cannot."""
    global _trim, _resolved
    if not _resolved:
        _resolved = True
        try:
            _trim = ctypes.CDLL(None).malloc_trim
        except (AttributeError, OSError):
            _trim = None
    if _trim is None:
        return False
    _trim(0)
    return True

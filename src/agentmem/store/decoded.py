"""The decoded groups a compressed tier keeps for its next reads (warm and cold alike).

Reading a conversation in order touches each group's members one after the other, so the
group decoded last is the one asked for next: keeping a few spares every member a decode and
a digest check. The cache is bounded by plain bytes, not by groups, because a group's size is
a setting (``constants.WARM_GROUP_BYTES``): at least the group read last is kept, however
large. Keys are ``id(group)``; an entry whose group was freed and its id reused is dropped
when found. Not thread-safe: one per tier, used by the store's thread.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from agentmem import constants


class DecodedGroups:
    """Decoded groups by ``id(group)``, least recently read first, at most
    ``constants.DECODED_CACHE_BYTES`` of them (and at least one)."""

    __slots__ = ("_items", "nbytes")

    def __init__(self) -> None:
        self._items: OrderedDict[int, tuple[object, memoryview]] = OrderedDict()
        #: Plain bytes held.
        self.nbytes = 0

    def get(self, group: object) -> memoryview | None:
        """The group's decoded bytes if kept (it becomes the most recently read), else None."""
        key = id(group)
        hit = self._items.get(key)
        if hit is None:
            return None
        if hit[0] is not group:  # a freed group's, its id reused
            self.drop(hit[0])
            return None
        self._items.move_to_end(key)
        return hit[1]

    def put(self, group: object, plain: bytes) -> memoryview:
        """Keep ``plain`` as the group's decoded bytes; return a read-only view of them. Drops
        the least recently read groups past the budget."""
        view = memoryview(plain)
        items = self._items
        items[id(group)] = (group, view)
        self.nbytes += view.nbytes
        while self.nbytes > constants.DECODED_CACHE_BYTES and len(items) > 1:
            self.nbytes -= items.popitem(last=False)[1][1].nbytes
        return view

    def drop(self, group: object) -> None:
        """Forget the group's decoded bytes, if kept."""
        hit = self._items.pop(id(group), None)
        if hit is not None:
            self.nbytes -= hit[1].nbytes

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = 0

    def values(self) -> Iterator[tuple[object, memoryview]]:
        """(group, decoded view) of every group kept, least recently read first."""
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

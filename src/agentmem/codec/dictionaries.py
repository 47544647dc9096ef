"""Compression dictionaries: content-addressed ids, training, and the per-SMU-type set.

Why dictionaries: a single ~1 KiB agent message compresses poorly on its own because zstd has
nothing to match it against. Measured on the mini-swe-agent corpus (500 conversations, 41k
messages as role/content JSON; 2781 test messages of 0.5-2 KiB, mean 1021 B, from 100
conversations not trained on), whole frames including the 12-byte header, zstd level 3:

    no dictionary                                      2.08x
    112 KiB dictionary, trained on  2 MiB of samples   3.02x   (training: 0.12 s)
    112 KiB dictionary, trained on 11 MiB of samples   3.06x   (training: 0.68 s)

Messages logged with their API response metadata (the corpus's ``extra`` field, 4760 test
messages of 0.5-2 KiB) gain more: 2.18x -> 5.10x (DESIGN.md's 2.3x -> 4.7x does not say which
form it measured). The dictionary holds the JSON scaffolding, role names, tool-call
boilerplate and prompt phrases that every message repeats.

Why ids are content-addressed: a frame names its dictionary by a 32-bit id, and that frame may be
read by another process or after a restart. Deriving the id from the dictionary's bytes (BLAKE3)
makes it the same everywhere with no registry to keep in sync, and training is deterministic
(same samples, same dictionary, same id).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import TypeAlias, TypeVar, overload

import zstandard
from blake3 import blake3

from agentmem.errors import InvalidArgument, UnknownDictionary
from agentmem.states import SMUType

Buffer: TypeAlias = bytes | bytearray | memoryview
"""Bytes-like input the codec reads (and never keeps); one alias for the whole package."""

_T = TypeVar("_T")

#: zstd ignores dictionaries shorter than 8 bytes (``ZSTD_compress_usingDict``: "dictSize < 8:
#: no dictionary is used"), so a shorter one would silently change nothing.
MIN_DICT_BYTES = 8
#: Smallest dictionary zstd's trainer can produce (``ZDICT_DICTSIZE_MIN``); smaller targets fail
#: with "Destination buffer is too small".
MIN_TRAIN_DICT_BYTES = 256
#: A sample longer than this is truncated to its first 64 KiB before it is kept for training.
#: Frames hold chunks (at most CDC_MAX_SIZE) or warm groups (WARM_GROUP_BYTES), so a
#: longer sample teaches little its head does not; and the cap bounds one unit's share of the
#: training set: with the default 8 MiB of samples (``Config.dict_train_bytes``) at least 128
#: distinct units contribute.
MAX_SAMPLE_BYTES = 64 << 10
#: Ids are 32-bit (the frame header's dict_id field); 0 is reserved for "no dictionary".
NO_DICTIONARY = 0


def dictionary_id(data: bytes) -> int:
    """The id of a dictionary: the first 4 bytes of BLAKE3(``data``), little-endian.

    0 means "no dictionary" in a frame header, so a digest starting with four zero bytes maps
    to 1 (one in 2**32 dictionaries shares id 1 with it; :class:`DictionarySet` refuses such a
    collision rather than mixing the two up). Stable across processes and restarts.
    """
    # The same BLAKE3-256 as ``hashing.chunk_id``, called directly: codec and hashing are
    # independent layers (import-linter), neither imports the other.
    ident = int.from_bytes(blake3(data).digest()[:4], "little")
    return ident or 1


@dataclasses.dataclass(frozen=True)
class Dictionary:
    """A compression dictionary for one SMU type. Immutable; safe to share between threads.

    ``dict_id`` must equal ``dictionary_id(data)`` (checked: ``InvalidArgument``), and ``data``
    must be at least :data:`MIN_DICT_BYTES` long. ``data`` is either a trained zstd dictionary
    or raw content (e.g. a system prompt); zstd tells them apart by the dictionary magic, the
    same way when compressing and when decompressing.

    The parsed zstd forms are built on first use and cached on the instance (not part of
    equality or hashing). Two threads racing to build one both succeed; one result is kept.
    """

    dict_id: int
    smu_type: SMUType
    data: bytes
    # level (None: the plain form used for decompression) -> parsed dictionary
    _zstd: dict[int | None, zstandard.ZstdCompressionDict] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            raise InvalidArgument("dictionary data must be bytes")
        if len(self.data) < MIN_DICT_BYTES:
            raise InvalidArgument(f"dictionary shorter than {MIN_DICT_BYTES} bytes")
        if not isinstance(self.smu_type, SMUType):
            raise InvalidArgument(f"smu_type must be an SMUType, got {self.smu_type!r}")
        expected = dictionary_id(self.data)
        if self.dict_id != expected:
            raise InvalidArgument(
                f"dictionary id {self.dict_id:#010x} does not match its content ({expected:#010x})"
            )

    @classmethod
    def from_data(cls, data: bytes, smu_type: SMUType) -> Dictionary:
        """A dictionary over ``data`` with its content-addressed id (e.g. loaded from disk)."""
        return cls(dictionary_id(data), smu_type, data)

    @property
    def zstd(self) -> zstandard.ZstdCompressionDict:
        """The parsed zstd dictionary, for decompression (and compressors at any level)."""
        parsed = self._zstd.get(None)
        if parsed is None:
            parsed = zstandard.ZstdCompressionDict(self.data, dict_type=zstandard.DICT_TYPE_AUTO)
            self._zstd[None] = parsed
        return parsed

    def release_digests(self) -> None:
        """Drop the parsed and digested forms (built again on next use): a dictionary digested
        for compression holds far more than its 112 KiB while the codec keeps it."""
        self._zstd.clear()

    def zstd_for_level(self, level: int) -> zstandard.ZstdCompressionDict:
        """The zstd dictionary digested once for compression at ``level`` (not 0).

        Digesting a 112 KiB dictionary costs ~360 us at level 3; a compressor built on the
        digested form then costs ~9 us instead of ~200 us. The digest fixes the compression
        parameters: one digested at level 1 and used at level 19 compresses like level 1
        (measured 16.1 KB vs 12.1 KB), hence one per level.
        """
        parsed = self._zstd.get(level)
        if parsed is None:
            parsed = zstandard.ZstdCompressionDict(self.data, dict_type=zstandard.DICT_TYPE_AUTO)
            parsed.precompute_compress(level=level)
            self._zstd[level] = parsed
        return parsed


def train_dictionary(samples: Sequence[bytes], smu_type: SMUType, size: int) -> Dictionary | None:
    """Train a zstd dictionary of at most ``size`` bytes on ``samples``; None if zstd cannot.

    zstd needs enough material: with fewer than ~7 samples (or too few bytes in them) training
    fails, and this returns None rather than raising; the caller keeps compressing without a
    dictionary. zstd's guidance for a useful dictionary is a few thousand samples totalling
    ~100x ``size``; with less it returns a dictionary smaller than ``size`` (measured: 20
    samples of ~330 B gave 5 KB for an 8 KiB target). Empty samples are ignored.

    Deterministic: the same samples in the same order give the same bytes, hence the same id.
    Costs ~0.12 s for 2 MiB and ~0.65 s for 11 MiB of samples (112 KiB target, one thread).
    The samples are only read. ``size`` below :data:`MIN_TRAIN_DICT_BYTES` raises
    ``InvalidArgument``.
    """
    if size < MIN_TRAIN_DICT_BYTES:
        raise InvalidArgument(f"dictionary size must be >= {MIN_TRAIN_DICT_BYTES}, got {size}")
    # zstd's trainer accepts exactly ``bytes`` (a memoryview is refused with ValueError); the
    # annotation is its stub's, which is wider than what it accepts.
    material: list[Buffer] = [bytes(s) for s in samples if len(s)]
    if not material:
        return None
    try:
        trained = zstandard.train_dictionary(size, material)
    except zstandard.ZstdError:
        return None
    data = trained.as_bytes()
    if len(data) < MIN_DICT_BYTES:
        return None
    return Dictionary.from_data(data, smu_type)


class DictionarySet(Mapping[int, Dictionary]):
    """Every dictionary a store knows, by id, plus the current one per SMU type.

    The current dictionary of a type is the one new frames of that type use. Every dictionary
    ever added stays readable by id, because frames written with it may still be stored.

    The set also collects training samples per type (:meth:`observe`) until ``train_bytes`` of
    them are seen, then trains once for that type. Samples are truncated to
    :data:`MAX_SAMPLE_BYTES`, so pending samples of one type stay below
    ``train_bytes + MAX_SAMPLE_BYTES`` during a call and below ``train_bytes`` between calls;
    at most four types train (``blob`` never does: arbitrary bytes share no vocabulary), so the
    pending total is bounded by ``4 * train_bytes``, and freed once a type has trained.

    A :class:`~collections.abc.Mapping` from id to :class:`Dictionary`, usable as
    ``decode_frame(frame, dictionaries=the_set)``; iteration yields ids. One deviation from a
    plain mapping: looking up an id that is not held raises ``UnknownDictionary`` (a frame that
    names a dictionary nobody holds is corrupt, not a miss) from both ``set[id]`` and
    ``set.get(id)``; ``set.get(id, default)`` returns the default, and ``in`` works as usual.

    Not thread-safe: the owner serialises calls. Dictionaries it hands out are immutable.
    """

    def __init__(self, *, train_bytes: int, dict_size: int) -> None:
        if train_bytes <= 0:
            raise InvalidArgument(f"train_bytes must be > 0, got {train_bytes}")
        if dict_size < MIN_TRAIN_DICT_BYTES:
            raise InvalidArgument(f"dict_size must be >= {MIN_TRAIN_DICT_BYTES}, got {dict_size}")
        self.train_bytes = train_bytes
        self.dict_size = dict_size
        self._all: dict[int, Dictionary] = {}
        self._current: dict[SMUType, Dictionary] = {}
        self._samples: dict[SMUType, list[bytes]] = {}
        self._sample_bytes: dict[SMUType, int] = {}
        # Types whose training was attempted (successfully or not); they collect no more.
        self._trained: set[SMUType] = set()

    # --- mapping ---------------------------------------------------------------------------

    def __getitem__(self, dict_id: int) -> Dictionary:
        found = self._all.get(dict_id)
        if found is None:
            raise UnknownDictionary(f"no dictionary with id {dict_id:#010x}")
        return found

    def __contains__(self, dict_id: object) -> bool:
        return dict_id in self._all

    def __iter__(self) -> Iterator[int]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def release_digests(self) -> None:
        """:meth:`Dictionary.release_digests` for every dictionary of the set."""
        for dictionary in self._all.values():
            dictionary.release_digests()

    @overload
    def get(self, dict_id: int, /) -> Dictionary: ...
    @overload
    def get(self, dict_id: int, default: Dictionary, /) -> Dictionary: ...
    @overload
    def get(self, dict_id: int, default: _T, /) -> Dictionary | _T: ...

    def get(self, dict_id: int, /, *default: object) -> object:
        """The dictionary with ``dict_id``; ``UnknownDictionary`` if none (unless a default)."""
        found = self._all.get(dict_id)
        if found is not None:
            return found
        if default:
            return default[0]
        raise UnknownDictionary(f"no dictionary with id {dict_id:#010x}")

    # --- current dictionaries and training -------------------------------------------------

    def current(self, smu_type: SMUType) -> Dictionary | None:
        """The dictionary new frames of ``smu_type`` should use, or None."""
        return self._current.get(smu_type)

    def add(self, dictionary: Dictionary, *, current: bool = True) -> None:
        """Hold ``dictionary``; with ``current`` (default) it becomes its type's current one.

        Earlier dictionaries stay readable. Adding one already held is a no-op apart from
        ``current``. A different dictionary with the same id (a 1 in 2**32 BLAKE3 prefix
        collision) raises ``InvalidArgument``: frames could not tell the two apart. A type
        given a dictionary this way stops collecting training samples.
        """
        held = self._all.get(dictionary.dict_id)
        if held is not None and held.data != dictionary.data:
            raise InvalidArgument(f"dictionary id collision on {dictionary.dict_id:#010x}")
        if held is None:
            self._all[dictionary.dict_id] = dictionary
            held = dictionary
        if current:
            self._current[dictionary.smu_type] = held
            self._drop_samples(dictionary.smu_type)
            self._trained.add(dictionary.smu_type)

    def observe(self, smu_type: SMUType, sample: Buffer) -> Dictionary | None:
        """Offer ``sample`` for training ``smu_type``'s dictionary; the new one if trained now.

        The first :data:`MAX_SAMPLE_BYTES` of ``sample`` are copied (the caller's buffer is not
        kept). When the samples of a type reach ``train_bytes`` they are trained on once
        (~0.12 s per 2 MiB: the caller may want to call this off its latency path), freed, and
        the result, if zstd could train one, becomes the type's current dictionary and is
        returned. A type that has a dictionary, or whose training failed, ignores samples, as
        does ``blob`` always. Empty samples are ignored.
        """
        if smu_type is SMUType.BLOB or smu_type in self._trained or not len(sample):
            return None
        view = memoryview(sample).cast("B")
        kept = bytes(view[:MAX_SAMPLE_BYTES])
        self._samples.setdefault(smu_type, []).append(kept)
        total = self._sample_bytes.get(smu_type, 0) + len(kept)
        self._sample_bytes[smu_type] = total
        if total < self.train_bytes:
            return None
        samples = self._samples[smu_type]
        self._drop_samples(smu_type)
        self._trained.add(smu_type)
        trained = train_dictionary(samples, smu_type, self.dict_size)
        if trained is not None:
            self.add(trained)
        return trained

    def pending_bytes(self, smu_type: SMUType) -> int:
        """Bytes of samples held for ``smu_type``, not yet trained on."""
        return self._sample_bytes.get(smu_type, 0)

    @property
    def memory_bytes(self) -> int:
        """Bytes held: dictionary contents plus pending samples.

        Not counted: zstd's digested forms, built on use (~400 KiB per 112 KiB dictionary and
        compression level in use, measured with ``ZstdCompressor.memory_size``).
        """
        return sum(len(d.data) for d in self._all.values()) + sum(self._sample_bytes.values())

    def _drop_samples(self, smu_type: SMUType) -> None:
        self._samples.pop(smu_type, None)
        self._sample_bytes.pop(smu_type, None)

"""Packs: many small payload objects in one remote file, so that a push or a clone makes a
few requests (and fsyncs) instead of one per tensor.

A pack is two files in the remote store's ``packs/`` folder::

    pack-<id>.pack   the objects' raw (compressed) forms, one after another
    pack-<id>.idx    "bgit-pack-index v1 <pack bytes>", then "<oid> <offset> <length>" lines

``<id>`` is the BLAKE3 of the index text, so a torn or altered index is refused by name.
The .pack is written first and the .idx last: a pack is visible only once its index is,
and by then every byte the index names is in place. Each object read from a pack is
verified by its own id, as a loose one is; the index only says where to look.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bgit.util.files import hash_bytes

from .errors import RemoteError

PACK_DIR = "packs"
INDEX_MAGIC = "bgit-pack-index v1"
# An index lists at most a pack's objects: 32 MiB of objects of a few KiB each is well
# under this. Anything longer did not come from bgit.
MAX_INDEX_BYTES = 16 << 20
NAME_RE = re.compile(r"pack-[0-9a-f]{64}\Z")
_LINE_RE = re.compile(r"([0-9a-f]{64}) (0|[1-9][0-9]{0,14}) (0|[1-9][0-9]{0,14})\Z")


class CorruptPackIndexError(RemoteError):
    def __init__(self, url: str, name: str, reason: str) -> None:
        super().__init__(f"pack index {name}.idx on payload store {url} is corrupt ({reason})")


@dataclass(frozen=True)
class PackEntry:
    pack: str      # pack-<id>
    offset: int
    length: int


@dataclass
class Pack:
    name: str
    data: bytes                      # the .pack file
    index: bytes                     # the .idx file
    entries: dict[str, PackEntry]


def build_pack(objects: list[tuple[str, bytes]]) -> Pack:
    """One pack holding ``objects`` ((oid, raw form) pairs, each id once), in that order."""
    offsets, offset = [], 0
    for oid, raw in objects:
        offsets.append((oid, offset, len(raw)))
        offset += len(raw)
    index = "".join([f"{INDEX_MAGIC} {offset}\n"] + [f"{o} {start} {length}\n" for o, start, length in offsets])
    index_bytes = index.encode()
    name = f"pack-{hash_bytes(index_bytes)}"
    entries = {oid: PackEntry(name, start, length) for oid, start, length in offsets}
    return Pack(name, b"".join(raw for _, raw in objects), index_bytes, entries)


def parse_index(url: str, name: str, data: bytes) -> dict[str, PackEntry]:
    """The entries of index ``name`` read from store ``url``; CorruptPackIndexError unless
    it is exactly what :func:`build_pack` writes (name, bounds, one entry per id)."""
    def bad(reason: str):
        return CorruptPackIndexError(url, name, reason)

    if len(data) > MAX_INDEX_BYTES:
        raise bad(f"more than {MAX_INDEX_BYTES} bytes")
    if f"pack-{hash_bytes(data)}" != name:
        raise bad("content does not match its name")
    try:
        lines = data.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise bad("not ASCII") from None
    head, *rows = lines
    if not head.startswith(INDEX_MAGIC + " ") or rows[-1:] != [""]:
        raise bad("not a bgit pack index")
    try:
        pack_size = int(head[len(INDEX_MAGIC) + 1:])
    except ValueError:
        raise bad("bad pack size") from None
    entries: dict[str, PackEntry] = {}
    end = 0
    for number, row in enumerate(rows[:-1], start=2):
        match = _LINE_RE.match(row)
        if match is None:
            raise bad(f"line {number} is not '<id> <offset> <length>'")
        oid, offset, length = match[1], int(match[2]), int(match[3])
        if offset != end or oid in entries:
            raise bad(f"line {number}: entries must follow one another, each id once")
        end = offset + length
        entries[oid] = PackEntry(name, offset, length)
    if end != pack_size:
        raise bad(f"entries cover {end} bytes, the header says {pack_size}")
    return entries

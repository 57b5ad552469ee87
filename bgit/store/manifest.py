"""Manifests: the small text file that stands in a git tree for a payload.

    bgit-manifest v1
    {"blake3": "<whole-file id>", "kind": "safetensors", "pieces": [["<oid>", size], ...],
     "size": 123, "tensors": [...]}

The JSON has sorted keys and no whitespace, so equal files give equal manifests (and equal
git blobs). ``pieces`` concatenated in order are the file. For safetensors the first piece
is the header (8-byte length + JSON) and each tensor lists its own pieces, dtype, shape,
data offsets and L2 norm, so diffs need no payload reads. Manifests are untrusted input:
:meth:`Manifest.from_bytes` validates every field and raises a one-line ManifestError,
including that the numbers fit together (pieces add up to the size, each tensor's dtype x
shape fills its byte range, ranges lie inside the data section without overlapping, and a
tensor's pieces sit exactly at its offsets). Whether the tensor entries agree with the
header bytes in the store is checked by fsck (maintenance.check_manifest_content).
"""

import json
import math
from dataclasses import dataclass, field

from .codecs import MAX_OBJECT_SIZE
from .errors import ManifestError
from .objects import OID_RE
from .safetensors_split import DTYPE_WIDTH

MAGIC_LINE = b"bgit-manifest v1\n"
KINDS = ("safetensors", "chunks", "blob")
MAX_MANIFEST_BYTES = 64 << 20


def is_manifest(data: bytes) -> bool:
    """True when ``data`` starts like a bgit manifest (content is checked by from_bytes)."""
    return bytes(data[: len(MAGIC_LINE)]) == MAGIC_LINE


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    norm: float | None          # L2 norm in float64; None for non-numeric dtypes or non-finite
    offsets: tuple[int, int]    # safetensors data_offsets (relative to the data section)
    pieces: tuple[str, ...]     # object ids holding this tensor's bytes, in order

    @property
    def nbytes(self) -> int:
        return self.offsets[1] - self.offsets[0]

    def to_json(self) -> dict:
        return {"dtype": self.dtype, "name": self.name, "norm": self.norm,
                "offsets": list(self.offsets), "pieces": list(self.pieces), "shape": list(self.shape)}


@dataclass(frozen=True)
class Manifest:
    kind: str
    size: int
    blake3: str
    pieces: tuple[tuple[str, int], ...]
    tensors: tuple[TensorEntry, ...] = ()
    metadata: dict = field(default_factory=dict)  # safetensors __metadata__ (string map)

    def object_ids(self) -> set[str]:
        return {oid for oid, _ in self.pieces}

    def to_json(self) -> dict:
        doc = {"blake3": self.blake3, "kind": self.kind, "size": self.size,
               "pieces": [[oid, size] for oid, size in self.pieces]}
        if self.kind == "safetensors":
            doc["tensors"] = [t.to_json() for t in self.tensors]
            doc["metadata"] = dict(self.metadata)
        return doc

    def to_bytes(self) -> bytes:
        body = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return MAGIC_LINE + body.encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> "Manifest":
        if not is_manifest(data):
            raise ManifestError("missing 'bgit-manifest v1' first line")
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError("manifest too large")
        try:
            doc = json.loads(bytes(data[len(MAGIC_LINE):]).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ManifestError(f"bad JSON ({str(e).splitlines()[0]})") from None
        return _parse(doc)


# -- validation -------------------------------------------------------------------------------

def _need(cond, reason):
    if not cond:
        raise ManifestError(reason)


def _int(value, what, minimum=0):
    _need(type(value) is int and value >= minimum, f"{what} must be an integer >= {minimum}")
    return value


def _oid(value, what):
    _need(isinstance(value, str) and OID_RE.match(value) is not None,
          f"{what} must be 64 lowercase hex digits")
    return value


def _parse(doc) -> Manifest:
    _need(isinstance(doc, dict), "body must be a JSON object")
    kind = doc.get("kind")
    _need(kind in KINDS, f"kind must be one of {', '.join(KINDS)}")
    size = _int(doc.get("size"), "size")
    whole = _oid(doc.get("blake3"), "blake3")
    pieces = _parse_pieces(doc.get("pieces"), size)
    if kind == "blob":
        _need(len(pieces) <= 1, "a blob has at most one piece")
    tensors, metadata = (), {}
    if kind == "safetensors":
        _need(len(pieces) >= 1 and pieces[0][1] > 8, "a safetensors file starts with its header piece")
        tensors = _parse_tensors(doc.get("tensors"), pieces, size)
        metadata = doc.get("metadata", {})
        _need(isinstance(metadata, dict), "metadata must be an object")
    return Manifest(kind, size, whole, tuple(pieces), tensors, metadata)


def _parse_pieces(raw, size: int) -> list[tuple[str, int]]:
    _need(isinstance(raw, list), "pieces must be a list")
    pieces = []
    for i, p in enumerate(raw):
        _need(isinstance(p, list) and len(p) == 2, f"pieces[{i}] must be [oid, size]")
        pieces.append((_oid(p[0], f"pieces[{i}] id"), _int(p[1], f"pieces[{i}] size", 1)))
        _need(pieces[-1][1] <= MAX_OBJECT_SIZE, f"pieces[{i}] size is larger than any object bgit writes")
    _need(sum(s for _, s in pieces) == size, "piece sizes do not add up to size")
    seen = {}
    for oid, s in pieces:
        _need(seen.setdefault(oid, s) == s, f"object {oid} is listed with two sizes")
    return pieces


def _parse_tensors(raw, pieces, size: int) -> tuple[TensorEntry, ...]:
    _need(isinstance(raw, list), "tensors must be a list")
    header_size = pieces[0][1]
    # File offset where each piece starts -> its index, to find a tensor's first piece.
    starts, pos = {}, 0
    for index, (_, piece_size) in enumerate(pieces):
        starts.setdefault(pos, index)
        pos += piece_size
    sizes = dict(pieces)
    out, names = [], set()
    for i, t in enumerate(raw):
        entry = _parse_tensor(i, t)
        _need(entry.name not in names, f"tensors[{i}] name {entry.name[:80]!r} appears twice")
        names.add(entry.name)
        begin, end = entry.offsets
        _need(all(p in sizes for p in entry.pieces), f"tensors[{i}] names a piece not in the file")
        _need(sum(sizes[p] for p in entry.pieces) == end - begin,
              f"tensors[{i}] pieces do not match its offsets")
        _need(math.prod(entry.shape) * DTYPE_WIDTH[entry.dtype] == end - begin,
              f"tensors[{i}] shape and dtype do not match its offsets")
        _need(header_size + end <= size, f"tensors[{i}] offsets lie outside the file")
        if entry.pieces:
            first = starts.get(header_size + begin)
            _need(first is not None and tuple(oid for oid, _ in pieces[first:first + len(entry.pieces)])
                  == entry.pieces, f"tensors[{i}] pieces are not where its offsets point")
        out.append(entry)
    ranges = sorted((t.offsets, i) for i, t in enumerate(out))
    for ((_, prev_end), _), ((begin, _), i) in zip(ranges, ranges[1:]):
        _need(begin >= prev_end, f"tensors[{i}] overlaps another tensor")
    return tuple(out)


def _parse_tensor(i: int, t) -> TensorEntry:
    _need(isinstance(t, dict), f"tensors[{i}] must be an object")
    name, dtype = t.get("name"), t.get("dtype")
    _need(isinstance(name, str) and isinstance(dtype, str), f"tensors[{i}] needs name and dtype")
    _need(dtype in DTYPE_WIDTH, f"tensors[{i}] has unknown dtype {dtype[:20]!r}")
    shape = t.get("shape")
    _need(isinstance(shape, list), f"tensors[{i}] shape must be a list")
    shape = tuple(_int(d, f"tensors[{i}] shape") for d in shape)
    offs = t.get("offsets")
    _need(isinstance(offs, list) and len(offs) == 2, f"tensors[{i}] offsets must be [begin, end]")
    begin, end = _int(offs[0], f"tensors[{i}] offsets"), _int(offs[1], f"tensors[{i}] offsets")
    _need(begin <= end, f"tensors[{i}] offsets are reversed")
    tp = t.get("pieces")
    _need(isinstance(tp, list), f"tensors[{i}] pieces must be a list")
    tp = tuple(_oid(p, f"tensors[{i}] piece") for p in tp)
    norm = t.get("norm")
    _need(norm is None or (isinstance(norm, (int, float)) and not isinstance(norm, bool)
                           and math.isfinite(norm)), f"tensors[{i}] norm must be a number or null")
    return TensorEntry(name, dtype, shape, None if norm is None else float(norm), (begin, end), tp)

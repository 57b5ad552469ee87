"""bgit's content-addressed payload store (knows nothing of git, torch or click).

On-disk layout, under ``root`` = ``<repo>/.git/bgit``::

    .git/bgit/
    ├── objects/
    │   ├── 3f/
    │   │   └── a9c0...e1        one object: id = BLAKE3 hex of the uncompressed bytes,
    │   └── ...                  file = 16-byte header + zstd (or raw) payload, read-only
    ├── tmp/                     temp files of writes in progress (fsync, then os.replace
    │                            into objects/); gc removes old leftovers
    └── lock                     flock'ed by the one writer; holds {"pid", "holder", "since"}

Higher layers keep their own state beside it: ``statcache.json`` (repo), ``phases/`` (the
pipeline's phase cache, see bgit/pipeline/phases.py), ``staging/`` (bakes being committed),
``cache/adapters/`` (adapters materialised for PEFT), ``remotes/<name>/known`` (remote).

A file enters the store through :meth:`Store.store_file`, which returns a :class:`Manifest`
(the small text that the git tree holds in the file's place); :meth:`Store.materialise`
writes the file back byte for byte. Modules: ``objects`` (put/get), ``codecs`` (header,
zstd, byte grouping, bf16 bit split and packing), ``kernels`` (the codecs' and norms' loops
in C), ``chunking`` (content-defined cuts), ``safetensors_split`` (header parsing, pieces,
norms), ``manifest``, ``files``
(store_file/materialise), ``writers`` (durable writes, O_DIRECT), ``reads`` (object reads,
O_DIRECT), ``lock``, ``maintenance`` (fsck/gc).
"""

from .errors import (CorruptObjectError, FileCorruptError, InvalidObjectIdError, LockedError,
                     ManifestError, ObjectNotFoundError, StoreError, StoreNotFoundError)
from .maintenance import FsckProblem, FsckReport, GcReport, ManifestProblem
from .manifest import Manifest, TensorEntry, is_manifest
from .objects import hash_bytes
from .store import Store

__all__ = ["Store", "Manifest", "TensorEntry", "is_manifest", "hash_bytes", "FsckProblem",
           "FsckReport", "GcReport", "ManifestProblem", "StoreError", "StoreNotFoundError",
           "InvalidObjectIdError", "ObjectNotFoundError", "CorruptObjectError", "ManifestError",
           "FileCorruptError", "LockedError"]

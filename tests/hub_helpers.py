"""A real Hugging Face hub cache on disk, laid out as huggingface_hub's snapshot_download leaves it.

    <cache>/models--ORG--NAME/
      blobs/<etag>                      the bytes; etag = sha256 for LFS files (weights),
                                        the git blob id (sha1 of "blob N\\0" + bytes) for the rest
      snapshots/<commit>/<file>         relative symlinks: ../../blobs/<etag>
      refs/main                         the commit, no newline

No network: the tests resolve from it with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def etag(path: Path) -> str:
    if path.suffix in LFS_SUFFIXES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        return digest.hexdigest()
    return git_blob_id(path.read_bytes())


def repo_path(cache: Path, repo: str) -> Path:
    return cache / f"models--{repo.replace('/', '--')}"


def add_snapshot(cache: Path, repo: str, source: Path, *, commit: str | None = None, refs=("main",),
                 extra: dict[str, bytes] | None = None, skip=(), links: bool = True) -> str:
    """Put ``source``'s files (plus ``extra`` {name: bytes}, minus ``skip``) in the cache as
    snapshot ``commit`` of ``repo``; point ``refs`` at it. -> the commit."""
    root = repo_path(cache, repo)
    staging = root / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    files = {p.relative_to(source).as_posix(): p for p in sorted(source.rglob("*"))
             if p.is_file() and not p.name.startswith(".") and p.relative_to(source).as_posix() not in skip}
    for name, data in (extra or {}).items():
        (staging / name).write_bytes(data)
        files[name] = staging / name
    tags = {name: etag(path) for name, path in files.items()}
    commit = commit or hashlib.sha1(repr(sorted(tags.items())).encode() + repo.encode()).hexdigest()
    for name, path in files.items():
        blob = root / "blobs" / tags[name]
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            try:
                os.link(path, blob)  # same bytes, no copy (the embedded model is 540 MB)
            except OSError:
                shutil.copyfile(path, blob)
        target = root / "snapshots" / commit / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if links:
            os.symlink(os.path.relpath(blob, target.parent), target)
        else:  # HF_HUB_DISABLE_SYMLINKS: the snapshot holds copies
            shutil.copyfile(path, target)
    shutil.rmtree(staging)
    for ref in refs:
        (root / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (root / "refs" / ref).write_text(commit)  # huggingface_hub reads it without stripping
    return commit


def move_ref(cache: Path, repo: str, commit: str, ref: str = "main") -> None:
    (repo_path(cache, repo) / "refs" / ref).write_text(commit)


class FakeHub:
    """A Hugging Face hub on loopback, enough of its HTTP API for snapshot_download and
    list_repo_files: repo info, the file tree and file downloads (HEAD + GET), each served
    from a dict of files per repo. ``downloads`` records every file GET."""

    def __init__(self):
        self.repos: dict[str, tuple[str, dict[str, bytes]]] = {}   # repo -> (commit, {path: bytes})
        self.downloads: list[str] = []
        self.server = None

    def add(self, repo: str, files: dict[str, bytes], commit: str | None = None) -> str:
        commit = commit or hashlib.sha1(repr(sorted(files)).encode() + repo.encode()).hexdigest()
        self.repos[repo] = (commit, files)
        return commit

    def __enter__(self):
        import threading
        from http.server import ThreadingHTTPServer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def lookup(self, repo: str, revision: str):
        if repo not in self.repos:
            return None, None, "RepoNotFound"
        commit, files = self.repos[repo]
        if revision not in ("main", commit):
            return None, None, "RevisionNotFound"
        return commit, files, None


def _entry(path: str, data: bytes) -> dict:
    entry = {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(data)}
    if path.endswith(LFS_SUFFIXES):
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


def _handler(hub: FakeHub):
    import json
    import re
    from http.server import BaseHTTPRequestHandler
    from urllib.parse import unquote, urlparse

    api = re.compile(r"/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)(?:/.*)?")
    resolve = re.compile(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
            self.send_response(status)
            for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _error(self, code: str, head: bool = False):
            self._send(404, b'{"error": "not found"}', {"X-Error-Code": code, "X-Error-Message": code}, head)

        def _file(self, head: bool):
            match = resolve.fullmatch(unquote(urlparse(self.path).path))
            if not match:
                return self._error("EntryNotFound", head)
            commit, files, error = hub.lookup(match[1], match[2])
            if error or match[3] not in files:
                return self._error(error or "EntryNotFound", head)
            data = files[match[3]]
            entry = _entry(match[3], data)
            tag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
            headers = {"X-Repo-Commit": commit, "ETag": f'"{tag}"', "Content-Type": "application/octet-stream"}
            if "lfs" in entry:
                headers.update({"X-Linked-Etag": f'"{tag}"', "X-Linked-Size": str(len(data))})
            if not head:
                hub.downloads.append(match[3])
            self._send(200, data, headers, head)

        def do_HEAD(self):
            self._file(head=True)

        def do_GET(self):
            match = api.fullmatch(unquote(urlparse(self.path).path))
            if not match:
                return self._file(head=False)
            commit, files, error = hub.lookup(match[1], match[3])
            if error:
                return self._error(error)
            if match[2] == "revision":
                body = {"id": match[1], "sha": commit, "siblings": [{"rfilename": f} for f in sorted(files)]}
            else:
                body = [_entry(path, data) for path, data in sorted(files.items())]
            self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    return Handler

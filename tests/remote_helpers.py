"""Fixtures for the remote tests and benchmark: bgit repos with adapter-like safetensors
files and datasets, a git daemon and a moto S3 server on loopback, a store remote that
counts (and can fail) its transfers."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from bgit.remote.stores import StoreRemote


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str = "BF16") -> None:
    """A real safetensors file; arrays are uint16 bit patterns for BF16 (numpy has no bf16)."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def bf16_like(rng: np.random.Generator, shape) -> np.ndarray:
    """Small normal values as bf16 bit patterns (upper half of float32)."""
    values = (rng.standard_normal(shape) * 0.02).astype(np.float32)
    return (values.view(np.uint32) >> 16).astype(np.uint16)


def adapter_tensors(seed: int, layers: int = 4, dim: int = 512, rank: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for layer in range(layers):
        for module in ("q_proj", "k_proj", "v_proj", "o_proj"):
            base = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            out[f"{base}.lora_A.weight"] = bf16_like(rng, (rank, dim))
            out[f"{base}.lora_B.weight"] = bf16_like(rng, (dim * 4, rank))
    return out


def write_rollout(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for i in range(rows):
            ids = rng.integers(0, 49152, 64).tolist()
            f.write(json.dumps({"stim_id": f"{i:012x}", "traj": 0, "response": f"answer {i}",
                                "response_ids": ids}) + "\n")


def make_bake(root: Path, seed: int, tensors=None, rollout_rows: int = 3000) -> None:
    """Write adapter/ and targets/x/ files of one bake into a work tree."""
    (root / "adapter").mkdir(parents=True, exist_ok=True)
    write_safetensors(root / "adapter" / "adapter_model.safetensors",
                      tensors if tensors is not None else adapter_tensors(seed))
    (root / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 32}))
    (root / "targets" / "x").mkdir(parents=True, exist_ok=True)
    rollout = root / "targets" / "x" / "rollout.jsonl"
    if not rollout.exists():
        write_rollout(rollout, rollout_rows)
    (root / "input.yml").write_text(f"# bake {seed}\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GitDaemon:
    """``git daemon`` serving ``base`` on 127.0.0.1 with push enabled."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", f"--base-path={base}", "--export-all",
             "--enable=receive-pack", "--listen=127.0.0.1", f"--port={self.port}", str(base)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("git daemon did not start")

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class MotoS3:
    """moto's S3 server on loopback, with dummy credentials in the environment."""

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "BGIT_S3_ENDPOINT_URL": self.endpoint}

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=name)

    def stop(self) -> None:
        self.server.stop()


class CountingStore(StoreRemote):
    """Wraps a real store remote; counts put requests (a loose object or a pack), the
    objects and bytes they carry, and gets; can fail after N put requests."""

    def __init__(self, inner: StoreRemote, fail_after_puts: int | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.url = inner.url
        self.fail_after_puts = fail_after_puts
        self.puts = self.gets = self.has_calls = 0
        self.bytes_put = self.bytes_got = 0
        self.put_oids: list[str] = []
        self.files_read: list[str] = []
        self._count_lock = threading.Lock()

    def _count_put(self, oids: list[str], nbytes: int) -> None:
        with self._count_lock:
            if self.fail_after_puts is not None and self.puts >= self.fail_after_puts:
                raise ConnectionError("simulated transport failure")
            self.puts += 1
            self.bytes_put += nbytes
            self.put_oids.extend(oids)

    def check(self):
        self.inner.check()

    def has_many(self, oids):
        with self._count_lock:
            self.has_calls += 1
        return super().has_many(oids)

    def put(self, oid, raw):
        self._count_put([oid], len(raw))
        self.inner.put(oid, raw)

    def put_pack(self, objects):
        self._count_put([oid for oid, _ in objects], sum(len(raw) for _, raw in objects))
        return super().put_pack(objects)

    def get(self, oid, max_bytes=None):
        raw = super().get(oid, max_bytes)
        with self._count_lock:
            self.gets += 1
            self.bytes_got += len(raw)
        return raw

    def read_pack(self, name, offset, length):
        data = super().read_pack(name, offset, length)
        with self._count_lock:
            self.gets += 1
            self.bytes_got += len(data)
        return data

    # the backend: the wrapped store's
    def _has_loose(self, oids):
        return self.inner._has_loose(oids)

    def _get_loose(self, oid, max_bytes):
        return self.inner._get_loose(oid, max_bytes)

    def _list_loose(self):
        return self.inner._list_loose()

    def _list_files(self, folder):
        return self.inner._list_files(folder)

    def _read_file(self, path, offset, length):
        with self._count_lock:
            self.files_read.append(path)
        return self.inner._read_file(path, offset, length)

    def _write_file(self, path, data):
        self.inner._write_file(path, data)


def set_env(monkeypatch, env: dict) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    os.environ.pop("AWS_ENDPOINT_URL", None)


# -- rewriting what a remote store holds (a hostile or damaged remote) -------------------------

def _remove_file(remote: StoreRemote, path: str) -> None:
    if hasattr(remote, "root"):
        (remote.root / path).unlink()
    else:
        remote.client.delete_object(Bucket=remote.bucket, Key=remote._file_key(path))


def replace_remote_object(remote: StoreRemote, oid: str, raw: bytes | None) -> bytes:
    """Make the remote hold ``raw`` for ``oid`` (or drop it when None), wherever it sits:
    a loose object is rewritten, a packed one's pack is rebuilt without its old copy.
    Returns the bytes it held."""
    entry = remote.packed().get(oid)
    original = remote.get(oid)
    if entry is None:
        path = f"{oid[:2]}/{oid[2:]}"
        _remove_file(remote, path)
        if raw is not None:
            remote._write_file(path, raw)
        return original
    members = [(other, e) for other, e in remote.packed().items() if e.pack == entry.pack]
    objects = [(other, remote.read_pack(e.pack, e.offset, e.length)) for other, e in
               sorted(members, key=lambda m: m[1].offset)]
    objects = [(other, raw if other == oid else data) for other, data in objects
               if other != oid or raw is not None]
    if objects:
        remote.put_pack(objects)
    for suffix in (".idx", ".pack"):
        _remove_file(remote, f"packs/{entry.pack}{suffix}")
    remote._packs, remote._pack_names = None, set()  # read the indexes again
    return original

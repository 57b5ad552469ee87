"""Push, re-push and clone of bakes, against a plain copy of the same files at the same
durability, in the same run.

    .venv/bin/python bench/remote_bench.py [--big-mb 500] [--rollout-mb 12] [--targets 2]

Remotes. directory: a bare git repository and its payload store on ANOTHER filesystem (a
loop-mounted ext4 image, else a tmpfs; the run says which, and fails when it can mount
neither: it must run as root), so that a push copies bytes as `cp` does; the same-filesystem
push, where bgit hard-links its immutable objects, is reported on its own line, labelled.
S3: moto's server on 127.0.0.1.

Peers. directory: `cp -r` of the bake's files onto the other filesystem, then `sync` of
those files (bgit fsyncs every object before it moves a ref, so the copy is made durable
too). S3: boto3 `upload_file` of each file (a PUT is durable once it returns; bgit PUTs).

Bakes, laid out as bgit bake writes them: adapter/adapter_model.safetensors and
adapter_config.json, bake.yml, input.yml, targets/<t>/stim.jsonl and rollout.jsonl (rows
from bgit.record.rollout_row: top-20 ids and log-probs, base64). Adapters: LoRA r=16 on
every linear layer of SmolLM2-135M (shapes from the embedded model's config.json, fp32) and
of a Llama-2-7B-shaped model (bf16, ~40M parameters); plus the previous bench's 500 MB bf16
adapter (400 tensors, no datasets) for bulk throughput. "re-bake" = the same bake after a
learning-rate change: every tensor new (same shapes), a new bake.yml, the same stim and
rollout files, whose content-defined chunks are already on the remote.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remote_helpers import MotoS3, bf16_like, write_safetensors  # noqa: E402

from bgit.record import BakeRecord, rollout_row, stim_id, write_jsonl  # noqa: E402
from bgit.remote import add_remote, clone, push  # noqa: E402
from bgit.repo import Repository  # noqa: E402

RANK = 16
LLAMA_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 128}


# -- bakes ------------------------------------------------------------------------------------

def lora_shapes(config: dict, rank: int = RANK) -> dict[str, tuple[int, int]]:
    """PEFT's tensor names and shapes for LoRA on every linear layer of a Llama-style model."""
    h, inter = config["hidden_size"], config["intermediate_size"]
    head = config.get("head_dim") or h // config["num_attention_heads"]
    q, kv = config["num_attention_heads"] * head, config["num_key_value_heads"] * head
    linear = {"self_attn.q_proj": (h, q), "self_attn.k_proj": (h, kv), "self_attn.v_proj": (h, kv),
              "self_attn.o_proj": (q, h), "mlp.gate_proj": (h, inter), "mlp.up_proj": (h, inter),
              "mlp.down_proj": (inter, h)}
    shapes = {}
    for layer in range(config["num_hidden_layers"]):
        for module, (fan_in, fan_out) in linear.items():
            base = f"base_model.model.model.layers.{layer}.{module}"
            shapes[f"{base}.lora_A.weight"] = (rank, fan_in)
            shapes[f"{base}.lora_B.weight"] = (fan_out, rank)
    return shapes


def trained_lora(shapes: dict, dtype: str, seed: int) -> dict[str, np.ndarray]:
    """Values shaped like a trained adapter: A ~ U(+-1/sqrt(fan_in)), B small and dense."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        if ".lora_A." in name:
            bound = 1 / np.sqrt(shape[1])
            values = rng.uniform(-bound, bound, shape).astype(np.float32)
        else:
            values = (rng.standard_normal(shape) * 2e-3).astype(np.float32)
        out[name] = values if dtype == "F32" else (values.view(np.uint32) >> 16).astype(np.uint16)
    return out


def big_adapter(total_mb: int, count: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    per = total_mb * 1_000_000 // 2 // count  # bf16 elements per tensor
    return {f"base_model.model.layers.{i // 4}.mlp.m{i % 4}.lora_{'AB'[i % 2]}.weight":
            bf16_like(rng, (RANK, per // RANK)) for i in range(count)}


def write_datasets(root: Path, targets: int, rollout_mb: float, seed: int = 0) -> None:
    """targets/<t>/stim.jsonl and rollout.jsonl (2 trajectories per stim, 32-160 tokens)."""
    rng = np.random.default_rng(seed)
    words = "the a model answer is of to and in that it for baked prompt we you yoda speaks".split()
    for t in range(targets):
        stims, rows, size = [], [], 0
        while size < rollout_mb * 1e6:
            text = " ".join(rng.choice(words, int(rng.integers(8, 40)))) + f" ({t}.{len(stims)})"
            stims.append({"id": stim_id(text), "text": text, "generator": "oneshot_qs"})
            for traj in range(2):
                n = int(rng.integers(32, 160))
                row = rollout_row(stims[-1]["id"], text, traj, " ".join(rng.choice(words, n)),
                                  rng.integers(0, 49152, n), rng.integers(0, 49152, (n, 20)),
                                  np.sort(-rng.exponential(2, (n, 20)), axis=1), -rng.exponential(5, n))
                rows.append(row)
                size += len(json.dumps(row))
        write_jsonl(root / "targets" / f"t{t}" / "stim.jsonl", stims)
        write_jsonl(root / "targets" / f"t{t}" / "rollout.jsonl", rows)


def write_bake(root: Path, tensors: dict, dtype: str, learning_rate: float, targets: int) -> None:
    (root / "adapter").mkdir(parents=True, exist_ok=True)
    write_safetensors(root / "adapter" / "adapter_model.safetensors", tensors, dtype)
    (root / "adapter" / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": RANK, "lora_alpha": 32, "target_modules": "all-linear"}))
    record = BakeRecord(targets=[f"t{t}" for t in range(targets)], seed=0,
                        hyperparameters={"learning_rate": learning_rate, "epochs": 3, "r": RANK})
    (root / "bake.yml").write_text(record.to_yaml())
    (root / "input.yml").write_text(f"BAKE:\n  optimizer:\n    learning_rate: {learning_rate}\n")


def bake_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts)


# -- the other filesystem ---------------------------------------------------------------------

@contextmanager
def other_filesystem(parent: Path, size_mb: int):
    """A directory on a filesystem other than ``parent``'s: loop-mounted ext4, else tmpfs."""
    mnt = parent / "other-fs"
    mnt.mkdir()
    image = parent / "other-fs.img"
    attempts = [("ext4 image, loop-mounted", [["truncate", "-s", f"{size_mb}M", str(image)],
                                              ["mkfs.ext4", "-q", "-F", str(image)],
                                              ["mount", "-o", "loop", str(image), str(mnt)]]),
                ("tmpfs", [["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mnt)]])]
    errors = []
    for label, steps in attempts:
        try:
            for step in steps:
                subprocess.run(step, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as e:
            errors.append(f"{label}: {getattr(e, 'stderr', '') or e}".strip())
            image.unlink(missing_ok=True)
            continue
        if os.stat(mnt).st_dev == os.stat(parent).st_dev:
            raise SystemExit(f"error: {mnt} is still on the same filesystem after mounting {label}")
        try:
            yield mnt, label
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
            image.unlink(missing_ok=True)
        return
    raise SystemExit("error: cannot mount another filesystem for the directory remote (run as root): "
                     + "; ".join(errors))


# -- peers and timing -------------------------------------------------------------------------

def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def cp_sync(files: list[Path], root: Path, dest: Path) -> float:
    """`cp` the files (keeping their paths) to dest, then `sync` them; seconds."""
    def run():
        dest.mkdir(parents=True)
        subprocess.run(["cp", "--parents", *[str(f.relative_to(root)) for f in files], str(dest)],
                       cwd=root, check=True)
        subprocess.run(["sync", *[str(dest / f.relative_to(root)) for f in files]], check=True)
    took, _ = timed(run)
    shutil.rmtree(dest)
    return took


def s3_upload(s3, files: list[Path], root: Path, prefix: str) -> float:
    took, _ = timed(lambda: [s3.upload_file(str(f), "bench", f"{prefix}/{f.relative_to(root)}") for f in files])
    return took


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Report:
    def __init__(self):
        self.rows = []

    def add(self, bake, remote, op, seconds, nbytes, wire, durability, plain=None):
        self.rows.append((bake, remote, op, seconds, nbytes, wire, durability, plain))
        vs = f"  ({plain / seconds:.2f}x the plain copy's speed)" if plain else ""
        print(f"  {remote:<28} {op:<34} {seconds:7.2f} s  {nbytes / 1e6 / seconds:8.0f} MB/s  "
              f"{wire / 1e6:8.1f} MB sent  [{durability}]{vs}", flush=True)


# -- scenarios --------------------------------------------------------------------------------

def push_timed(repo: Repository, remote: str, git_dir: Path):
    before = dir_bytes(git_dir / "objects") if git_dir.exists() else 0
    took, result = timed(lambda: push(repo, remote))
    return took, result.transfer.wire_bytes + dir_bytes(git_dir / "objects") - before, result


def run_bake(name, make_tensors, dtype, targets, rollout_mb, work, other, s3, report):
    """First push, re-bake push and clone of one bake to each remote."""
    src = work / f"{name}-src"
    src.mkdir()
    if targets:
        write_datasets(src, targets, rollout_mb)
    write_bake(src, make_tensors(0), dtype, 1e-4, targets)
    repo = Repository.init(src)
    took, _ = timed(lambda: (repo.add(all=True), repo.commit("bake lr=1e-4")))
    files = bake_files(src)
    size = sum(f.stat().st_size for f in files)
    adapter_mb = (src / "adapter" / "adapter_model.safetensors").stat().st_size / 1e6
    print(f"\n{name}: {len(files)} files, {size / 1e6:.1f} MB (adapter {adapter_mb:.1f} MB {dtype}); "
          f"bgit add+commit {took:.2f} s", flush=True)
    slug = name.split()[0]
    remotes = {"dir (other filesystem)": ("other", other / f"{slug}.git", str(other / f"{slug}-objects")),
               "dir (same fs: hard links)": ("samefs", work / f"{slug}-same.git", str(work / f"{slug}-same-objects")),
               "s3 (moto)": ("s3", work / f"{slug}-s3.git", f"s3://bench/{slug}")}
    for remote, url, store in remotes.values():
        add_remote(repo.git, remote, str(url), store)

    for step, lr in (("push", None), ("re-bake push", 3e-4)):
        if lr is not None:  # same datasets; a new adapter and bake.yml
            write_bake(src, make_tensors(1), dtype, lr, targets)
            repo.add(all=True)
            repo.commit(f"bake lr={lr}")
            files = bake_files(src)
            size = sum(f.stat().st_size for f in files)
        plain_dir = cp_sync(files, src, other / f"plain-{slug}")
        plain_s3 = s3_upload(s3, files, src, f"plain/{slug}/{step.replace(' ', '-')}")
        report.add(name, "dir (other filesystem)", f"plain cp + sync ({step})", plain_dir, size, size, "fsync")
        for label, (remote, url, _) in remotes.items():
            took, wire, result = push_timed(repo, remote, url)
            if label.startswith("s3"):
                report.add(name, label, f"plain upload_file ({step})", plain_s3, size, size, "PUT")
            plain = plain_dir if label.startswith("dir (other") else plain_s3 if label.startswith("s3") else None
            report.add(name, label, f"bgit {step}", took, size, wire,
                       "PUT" if label.startswith("s3") else "fsync", plain)
    for label in ("dir (other filesystem)", "s3 (moto)"):
        _, url, store = remotes[label]
        dest = work / f"{name}-clone"
        took, cloned = timed(lambda: clone(str(url), dest, store))
        assert (cloned.root / "adapter" / "adapter_model.safetensors").read_bytes() == \
            (src / "adapter" / "adapter_model.safetensors").read_bytes()
        report.add(name, label, "bgit clone + checkout", took, size, size, "fsync")
        shutil.rmtree(dest)
    shutil.rmtree(src)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mb", type=int, default=500, help="the bulk adapter's size (0: skip)")
    parser.add_argument("--rollout-mb", type=float, default=12, help="rollout.jsonl size per target")
    parser.add_argument("--targets", type=int, default=2)
    parser.add_argument("--dir", default=None, help="parent of the work dir (default: system temp)")
    args = parser.parse_args()
    from bgit.models import resolve_model

    smollm = json.loads((Path(resolve_model("smollm2-135m").path) / "config.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="bgit-remote-bench-", dir=args.dir))
    moto = MotoS3()
    os.environ.update(moto.env)
    moto.create_bucket("bench")
    import boto3
    s3 = boto3.client("s3", endpoint_url=moto.endpoint)
    report = Report()
    print(f"cpus: {os.cpu_count()}  load average (1 min) at start: {os.getloadavg()[0]:.1f}  MB = 1e6 bytes")
    try:
        need = 3 * args.big_mb + 600
        with other_filesystem(work, need) as (other, how):
            print(f"directory remote: {other} ({how}); same-filesystem remote: {work}")
            bakes = [("smollm2-135m r16 fp32", lambda s: trained_lora(lora_shapes(smollm), "F32", s), "F32",
                      args.targets),
                     ("7b-like r16 bf16", lambda s: trained_lora(lora_shapes(LLAMA_7B), "BF16", s), "BF16",
                      args.targets)]
            if args.big_mb:
                bakes.append((f"{args.big_mb} MB bf16 adapter", lambda s: big_adapter(args.big_mb, 400, s),
                              "BF16", 0))
            for i, (name, make, dtype, targets) in enumerate(bakes):
                run_bake(name, make, dtype, targets, args.rollout_mb, work, other, s3, report)
    finally:
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average (1 min) at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

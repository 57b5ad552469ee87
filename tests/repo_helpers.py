"""Real repositories, payload files and git cross-checks for the repository tests."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from bgit.repo import Repository

REPO_ROOT = Path(__file__).resolve().parents[1]
BGIT = [sys.executable, "-m", "bgit"]


def write_adapter(path: Path, seed: int = 0, rows: int = 64) -> dict:
    """A safetensors file with fp32, bf16, fp16 and int64 tensors (PEFT-like names)."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    tensors = {
        "base_model.model.layers.0.q_proj.lora_A.weight": torch.randn(16, rows, generator=g),
        "base_model.model.layers.0.q_proj.lora_B.weight": torch.randn(rows, 16, generator=g).to(torch.bfloat16),
        "base_model.model.layers.0.v_proj.lora_A.weight": torch.randn(16, rows, generator=g).to(torch.float16),
        "base_model.model.extra.index": torch.randint(-(2**40), 2**40, (rows,), generator=g, dtype=torch.int64),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return tensors


def write_jsonl(path: Path, n: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"{seed}-{i}", "text": f"row {i} of seed {seed} " * 4}) + "\n")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check)


def bgit_subprocess(cwd: Path, *args: str, env: dict | None = None, timeout: float = 60):
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    return subprocess.run([*BGIT, *args], cwd=cwd, capture_output=True, text=True, env=full_env, timeout=timeout)


# A small input.yml for repository tests (the real examples are bgit.config's, written by `bgit init`).
PLACEHOLDER_INPUT_YML = b"""\
# bgit input.yml: the prompt to bake and how.
PROMPT:
  teacher:
    messages:
      - {role: system, content: "You are Yoda. Speak like Yoda you must."}
TARGET:
  name: yoda
  generators:
    - type: hardcoded
      stims: ["What is the capital of France?", "How do I boil an egg?"]
  max_tokens: 64
BAKE:
  name: yoda
  epochs: 2
"""


def new_repo(tmp_path: Path, name: str = "repo") -> Repository:
    return Repository.init(tmp_path / name, example={"input.yml": PLACEHOLDER_INPUT_YML})


def store_files(repo: Repository) -> set[str]:
    return set(repo.store.iter_object_ids())


# -- "nothing lost" checks shared by the trust tests ----------------------------------------


def snapshot(repo: Repository) -> dict[str, str]:
    """sha256 of every file HEAD tracks, read from the work tree (symlinks: their target)."""
    out = {}
    for path in repo.tree_entries("HEAD"):
        full = repo.root / path
        out[path] = "link:" + os.readlink(full) if full.is_symlink() else sha256(full)
    return out


def temp_leftovers(root: Path) -> list[str]:
    """Temporary files anywhere under the repository: work tree, .git/bgit, the store's tmp/."""
    from bgit.repo.worktree import is_temp_name

    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        if rel == ".git":
            dirnames[:] = [d for d in dirnames if d == "bgit"]
        for name in filenames + dirnames:
            if is_temp_name(name) or ".tmp-" in name or (rel == ".git/bgit/tmp"):
                found.append(f"{rel}/{name}")
    return found


def assert_nothing_lost(root: Path, commits: dict[str, dict[str, str]]) -> None:
    """bgit fsck and git fsck clean, no temporary file left anywhere, and every commit in
    ``commits`` (id -> snapshot) checks out byte-identical; HEAD's branch is restored."""
    fsck = git(root, "fsck", "--full", "--strict", "--no-dangling", check=False)
    assert fsck.returncode == 0 and fsck.stdout == "", fsck.stdout + fsck.stderr
    repo = Repository.open(root)
    result = repo.fsck(all_objects=True)
    assert result.ok, result.problems
    assert temp_leftovers(root) == []
    branch = repo.current_branch()
    back = branch or str(repo.head_commit().id)
    for commit, files in commits.items():
        repo.checkout(commit, force=True)
        assert snapshot(repo) == files, commit
    repo.checkout(back, force=True)

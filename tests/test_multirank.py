"""Several training processes through the real launcher: ``torchrun --nproc_per_node 2`` with
gloo on CPU, plain torch (DDP) and DeepSpeed ZeRO-2 and ZeRO-3, on tiny random Llamas.

The global batch is micro_batch_size x gradient_accumulation_steps x ranks
(bgit/train/distributed.py): one process with micro_batch_size 4 and two with 2 train on the
same steps. What is compared:

- trainer level (tests/multirank_worker.py): one step's gradient summed over 2 ranks against
  one process's, for a ragged step, in each mode (max abs diff <= 1e-6; measured 2.2e-8 plain
  torch and ZeRO-2, 8.2e-8 ZeRO-3, 3.0e-8 plain torch with ``loss: full``, gradients up to
  0.15 and 0.20); a resumed run reproduces an uninterrupted one exactly; the parent model comes
  back unchanged.
- bake level: `torchrun ... -m bgit.cli.main bake` commits once (rank 0), and its adapter
  equals the one-process bake's: after 24 Adam steps (8 epochs, lr 5e-3, fp32, values up to
  0.23) the max abs diff measured 1.3e-7 (DDP, and ZeRO-2 killed and resumed) and 2.3e-7
  (ZeRO-3); the tests allow 1e-5. (Adam can turn float rounding of a near-zero gradient into
  an lr-sized step: one process with micro-batches of 4 vs 2 x 2 differed by 1.5e-4 on another
  tiny model, so the tolerance is for this scenario, not a general bound.) A lost rank leaves
  no commit and the rerun resumes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evaluate_helpers import make_base_model

# found, not imported: DeepSpeed's import patches torch in the process that imports it
pytestmark = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                reason="DeepSpeed is not installed (pip install 'bgit[deepspeed]')")

TESTS = Path(__file__).parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
ENV = {**os.environ, "DS_ACCELERATOR": "cpu"}
STIMS = ["hi there", "why is it so?", "the sky", "tea or coffee", "a song", "the sea", "ok then", "go on",
         "more", "less", "yes", "no"]
EPOCHS = 8
ADAPTER_TOLERANCE = 1e-5


def test_two_ranks_sum_to_one_process_gradient_resume_exactly_and_report_a_lost_rank(tmp_path):
    proc = subprocess.run([*TORCHRUN, str(TESTS / "multirank_worker.py"), str(tmp_path),
                           "torch", "zero2", "zero3", "full", "lost"], capture_output=True, text=True, env=ENV, timeout=600)
    assert (tmp_path / "result.json").is_file(), proc.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world"] == 2
    reference = result["torch"]["eval_kl"]
    assert reference[-1] < 0.5 * reference[0]
    for mode in ("torch", "zero2", "zero3", "full"):
        r = result[mode]
        assert r["gradient_max_abs"] > 0.05 and r["gradient_max_diff"] <= 1e-6, (mode, r)
        assert r["resumed_from"].endswith("epoch-0002") and r["resume_max_diff"] <= 1e-7, (mode, r)
        assert r["unchanged"], mode
        if mode != "full":  # the full loss's KL is over the whole vocabulary, not top-k + tail
            assert r["eval_kl"] == pytest.approx(reference, abs=1e-5), mode
    assert result["full"]["eval_kl"][-1] < 0.5 * result["full"]["eval_kl"][0]

    assert proc.returncode != 0  # rank 1 left with exit code 3
    assert (tmp_path / "lost.txt").is_file(), proc.stderr[-4000:]
    report = (tmp_path / "lost.txt").read_text()
    assert report.startswith("LostRankError: rank 0 of 2: lost contact with the other training processes: ")
    assert "\n" not in report and "gloo/transport" not in report, report


def test_a_checkpoint_of_another_number_of_ranks_is_refused(tmp_path):
    from bgit.train import train_adapter
    from bgit.train.checkpoint import load_latest
    from bgit.train.errors import CheckpointMismatchError
    from train_helpers import bake_settings, baking_examples, tiny_llama

    model = tiny_llama(seed=0)
    examples = baking_examples(model, 4, seed=0)
    train_adapter(model, None, examples, [], bake_settings(epochs=2), tmp_path)
    (found,) = (tmp_path / "checkpoints").iterdir()
    with pytest.raises(CheckpointMismatchError) as err:
        load_latest(tmp_path / "checkpoints", "any", world=2)
    assert str(err.value) == (f"checkpoint {found} was written with WORLD_SIZE=1, this run has WORLD_SIZE=2; "
                              "relaunch with WORLD_SIZE=1 or remove it to start over")


def test_other_ranks_wait_for_rank_zeros_phase_instead_of_computing_it(tmp_path, base_model, monkeypatch):
    import threading

    from bgit.config import load_config
    from bgit.pipeline.bake import Baker
    from bgit.record import read_jsonl, write_jsonl
    from bgit.repo import Repository
    from bgit.util.files import hash_file

    repo = Repository.init(tmp_path / "repo", example={})
    write_config(repo.root, base_model, 2)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    runner = Baker(repo, load_config(repo.root / "input.yml", root=repo.root)).runner
    target = runner.config.targets[0]
    got = {}
    waiter = threading.Thread(target=lambda: got.update(result=runner.run_stim(target)))
    waiter.start()
    waiter.join(1.5)
    assert waiter.is_alive()  # rank 1 waits: it never generates stims itself
    key = runner.stim_key(target)  # rank 0 seals the phase
    tmp = runner.cache.begin(key)
    write_jsonl(tmp / "stim.jsonl", [{"text": "written by rank 0"}])
    runner.cache.finish(key, tmp, hash_file(tmp / "stim.jsonl"))
    waiter.join(30)
    stim_dir, outcome = got["result"]
    assert outcome.cached and read_jsonl(stim_dir / "stim.jsonl") == [{"text": "written by rank 0"}]


# ------------------------------------------------------------------------------ bakes


def write_config(root: Path, base: Path, micro_batch_size: int, **bake) -> None:
    config = {
        "MODEL": {"base": str(base)},
        "PROMPT": {"teacher": {"messages": [{"role": "system", "content": "Answer in capitals."}]}},
        "TARGET": {"name": "caps", "max_tokens": 10, "num_traj_per_stimulus": 1, "augment": 0,
                   "generators": [{"type": "hardcoded", "stims": STIMS}]},
        # 9 trained trajectories, global batch 4: steps of 4, 4 and 1 (rank 1 idles through the last)
        # fp32 (autocast off): the ranks must equal one process to float rounding, not bf16's
        "BAKE": {"epochs": EPOCHS, "micro_batch_size": micro_batch_size, "optimizer": {"learning_rate": 5e-3},
                 "autocast": "off",
                 "data": {"train_eval_split": 0.75}, "model": {"baked_adapter_config": {"r": 4}}, **bake},
    }
    (root / "input.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def run(cwd, *args, check=True, **kwargs):
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=ENV, timeout=600, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def bgit(cwd, *args, check=True):
    return run(cwd, sys.executable, "-m", "bgit", *args, check=check)


def git(cwd, *args) -> str:
    return run(cwd, "git", *args).stdout.strip()


def new_repo(parent: Path, name: str, base: Path, micro_batch_size: int, phases_from: Path | None = None, **bake):
    """A repository with the bake's input.yml; ``phases_from``: a repository whose stim and
    rollout phases are copied in (the same keys: only BAKE settings differ)."""
    root = parent / name
    bgit(parent, "init", str(root))
    write_config(root, base, micro_batch_size, **bake)
    if phases_from is not None:
        for phase in ("stim", "rollout"):
            shutil.copytree(phases_from / ".git/bgit/phases" / phase, root / ".git/bgit/phases" / phase)
    return root


def adapter(root: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(root / "adapter" / "adapter_model.safetensors"))


def adapter_max_diff(a: Path, b: Path) -> float:
    x, y = adapter(a), adapter(b)
    assert x.keys() == y.keys()
    diff = max(float((x[k] - y[k]).abs().max()) for k in x)
    print(f"{b.name} vs {a.name}: adapter max abs diff {diff:.3g} (values up to "
          f"{max(float(v.abs().max()) for v in x.values()):.3g})")
    return diff


def finished_phases(root: Path, phase: str) -> list[str]:
    return sorted(p.name for p in (root / ".git/bgit/phases" / phase).iterdir())


def assert_one_clean_commit(root: Path, message: str) -> dict:
    assert git(root, "log", "--format=%s") == message  # exactly one commit
    assert bgit(root, "fsck").returncode == 0
    run(root, "git", "fsck", "--strict")
    assert len(git(root, "notes", "--ref=bgit-eval", "list").splitlines()) == 1  # one eval note
    record = yaml.safe_load((root / "bake.yml").read_text())
    assert record["device"].endswith(" x 2 processes")
    return record


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return make_base_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, base_model):
    """The reference: one process, micro_batch_size 4."""
    root = new_repo(tmp_path_factory.mktemp("alone"), "repo", base_model, 4)
    bgit(root, "bake", "-m", "alone")
    return root


def test_ddp_bake_on_two_ranks_commits_once_and_equals_one_process(tmp_path, base_model, one_process):
    root = new_repo(tmp_path, "ddp", base_model, 2)
    result = run(root, *TORCHRUN, "-m", "bgit.cli.main", "bake", "-m", "two ranks")
    assert [line for line in result.stdout.splitlines() if line.startswith("[")] == \
        [f"[{git(root, 'rev-parse', '--short=12', 'HEAD')}] two ranks"]
    record = assert_one_clean_commit(root, "two ranks")
    # stim and rollout ran once (rank 0), the other rank waited; nothing half-written is left
    assert [len(finished_phases(root, p)) for p in ("stim", "rollout", "train")] == [1, 1, 1]
    for phase in ("stim", "rollout"):
        assert finished_phases(root, phase) == finished_phases(one_process, phase)
    diff = adapter_max_diff(one_process, root)
    assert diff <= ADAPTER_TOLERANCE, diff
    reference = yaml.safe_load((one_process / "bake.yml").read_text())
    assert record["tokens"]["train"] == reference["tokens"]["train"]
    assert record["metrics"]["final_eval_kl"] == pytest.approx(reference["metrics"]["final_eval_kl"], abs=1e-4)
    assert record["phase_keys"]["train"] != reference["phase_keys"]["train"]  # 2 ranks: another key


def test_zero3_bake_on_two_ranks_equals_one_process(tmp_path, base_model, one_process):
    root = new_repo(tmp_path, "zero3", base_model, 2, phases_from=one_process,
                    deepspeed={"zero_optimization": {"stage": 3}})
    run(root, *TORCHRUN, "-m", "bgit.cli.main", "bake", "-m", "zero-3")
    assert_one_clean_commit(root, "zero-3")
    diff = adapter_max_diff(one_process, root)
    assert diff <= ADAPTER_TOLERANCE, diff


def worker_pid(launcher: int, rank: int) -> int | None:
    """The pid of the torchrun worker with RANK=rank (a child of the launcher), or None."""
    for task in Path(f"/proc/{launcher}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in env:
                return int(child)
    return None


def test_a_rank_killed_mid_training_leaves_no_commit_and_the_rerun_resumes(tmp_path, base_model, one_process):
    root = new_repo(tmp_path, "killed", base_model, 2, phases_from=one_process,
                    deepspeed={"zero_optimization": {"stage": 2}})
    launcher = subprocess.Popen([*TORCHRUN, "-m", "bgit.cli.main", "bake", "-m", "resumed"], cwd=root, env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    train = root / ".git/bgit/phases/train"
    deadline = time.monotonic() + 300
    while not list(train.glob("*.work/checkpoints/step-*")):
        assert launcher.poll() is None, "the bake ended before a checkpoint could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(worker_pid(launcher.pid, 1), signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=300)
    assert launcher.returncode != 0
    assert "[rank0]: Traceback" not in stderr  # stopped by torchrun, or "Error: rank 0 of 2: lost contact ..."

    assert run(root, "git", "rev-parse", "--verify", "HEAD", check=False).returncode != 0  # no commit
    assert bgit(root, "fsck").returncode == 0
    assert [p for p in finished_phases(root, "train") if not p.endswith(".work")] == []  # no sealed train phase

    run(root, *TORCHRUN, "-m", "bgit.cli.main", "bake", "-m", "resumed")
    record = assert_one_clean_commit(root, "resumed")
    assert record["train_resumed_from_epoch"] >= 1
    diff = adapter_max_diff(one_process, root)
    assert diff <= ADAPTER_TOLERANCE, diff

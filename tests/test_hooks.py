"""bgit.repo.hooks and the sample hooks shipped in hooks/, on real repositories."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

from bgit.repo import Repository
from bgit.repo.hooks import (
    HookError,
    disable_hook,
    enable_hook,
    hooks_dir,
    install_sample_hooks,
    list_hooks,
    run_hook,
    sample_hooks_dir,
)

ZERO = "0" * 40


@pytest.fixture
def repo(tmp_path):
    from bgit.config.examples import example_files

    return Repository.init(tmp_path / "repo", example=example_files("yoda"))


def write_hook(repo, name: str, body: str) -> Path:
    path = hooks_dir(repo) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_missing_or_non_executable_hook_does_not_run(repo):
    assert run_hook(repo, "pre-bake", {}) is False
    path = write_hook(repo, "pre-bake", "exit 1\n")
    path.chmod(0o644)
    assert run_hook(repo, "pre-bake", {}) is False


def test_hook_gets_env_cwd_and_stdin(repo, tmp_path):
    out = tmp_path / "seen.json"
    write_hook(repo, "pre-push", f"""python3 -c 'import json, os, sys
json.dump({{"cwd": os.getcwd(), "env": {{k: v for k, v in os.environ.items() if k.startswith("BGIT_")}},
           "stdin": sys.stdin.read()}}, open("{out}", "w"))'
""")
    stdin = f"refs/heads/main {'a' * 40} refs/heads/main {ZERO}\n"
    assert run_hook(repo, "pre-push", {"BGIT_REMOTE": "origin", "BGIT_REMOTE_URL": "/srv/x.git"}, stdin=stdin)
    seen = json.loads(out.read_text())
    assert Path(seen["cwd"]).resolve() == repo.root
    assert seen["env"]["BGIT_HOOK"] == "pre-push"
    assert seen["env"]["BGIT_REPO"] == str(repo.root)
    assert seen["env"]["BGIT_CONFIG"] == str(repo.root / "input.yml")
    assert seen["env"]["BGIT_REMOTE"] == "origin" and seen["env"]["BGIT_REMOTE_URL"] == "/srv/x.git"
    assert seen["stdin"] == stdin


def test_failing_hook_raises_with_last_stderr_line(repo):
    write_hook(repo, "pre-bake", "echo first >&2\necho 'config is bad' >&2\nexit 3\n")
    with pytest.raises(HookError) as caught:
        run_hook(repo, "pre-bake", {})
    assert str(caught.value) == "pre-bake hook failed (exit 3): config is bad"
    write_hook(repo, "post-bake", "exit 1\n")
    with pytest.raises(HookError, match=r"^post-bake hook failed \(exit 1\)$"):
        run_hook(repo, "post-bake", {})


def test_install_list_enable_disable(repo):
    assert sample_hooks_dir() is not None
    assert install_sample_hooks(repo) == ["pre-bake", "post-bake", "pre-push"]
    assert install_sample_hooks(repo) == []  # never over existing copies
    states = {h.name: h.enabled for h in list_hooks(repo)}
    assert states == {"post-bake": False, "pre-bake": False, "pre-push": False}
    assert run_hook(repo, "post-bake", {"BGIT_EVAL_CLOSURE": "0.0"}) is False  # disabled: not run
    enable_hook(repo, "post-bake")
    assert {h.name: h.enabled for h in list_hooks(repo)}["post-bake"] is True
    assert os.access(hooks_dir(repo) / "post-bake", os.X_OK)
    disable_hook(repo, "post-bake")
    assert (hooks_dir(repo) / "post-bake.disabled").is_file() and not (hooks_dir(repo) / "post-bake").exists()
    with pytest.raises(HookError, match=r"^no hook named nope in "):
        enable_hook(repo, "nope")
    with pytest.raises(HookError, match=r"^invalid hook name"):
        enable_hook(repo, "../x")


def test_hooks_cli(repo, monkeypatch):
    from click.testing import CliRunner

    from bgit.cli.main import cli

    install_sample_hooks(repo)
    monkeypatch.chdir(repo.root)
    runner = CliRunner()
    assert runner.invoke(cli, ["hooks", "enable", "pre-push"]).output == "enabled pre-push\n"
    listing = runner.invoke(cli, ["hooks", "list"]).output.splitlines()
    assert listing == ["post-bake    disabled", "pre-bake     disabled", "pre-push     enabled"]
    assert runner.invoke(cli, ["hooks", "disable", "pre-push"]).exit_code == 0
    failed = runner.invoke(cli, ["hooks", "enable", "nope"])
    assert failed.exit_code == 1 and failed.output.startswith("Error: no hook named nope in ")


# -- the sample hooks ---------------------------------------------------------------------------

def test_post_bake_gate_blocks_a_bad_bake_and_passes_a_good_one(repo, tmp_path, monkeypatch):
    install_sample_hooks(repo)
    enable_hook(repo, "post-bake")
    monkeypatch.delenv("BGIT_MIN_CLOSURE", raising=False)
    bake_dir = tmp_path / "staging"
    bake_dir.mkdir()
    env = {"BGIT_BAKE_DIR": str(bake_dir), "BGIT_FINAL_EVAL_KL": "0.3"}
    assert run_hook(repo, "post-bake", {**env, "BGIT_EVAL_CLOSURE": "0.82"})
    with pytest.raises(HookError) as bad:
        run_hook(repo, "post-bake", {**env, "BGIT_EVAL_CLOSURE": "0.21"})
    assert str(bad.value) == "post-bake hook failed (exit 1): post-bake: eval closure 0.21 is below the minimum 0.5; bake refused"
    with pytest.raises(HookError, match="no eval closure for this bake"):
        run_hook(repo, "post-bake", {**env, "BGIT_EVAL_CLOSURE": ""})
    with pytest.raises(HookError, match="not a number"):
        run_hook(repo, "post-bake", {**env, "BGIT_EVAL_CLOSURE": "nan; rm -rf"})
    assert run_hook(repo, "post-bake", {**env, "BGIT_EVAL_CLOSURE": "0.21", "BGIT_MIN_CLOSURE": "0.2"})
    with pytest.raises(HookError):
        run_hook(repo, "post-bake", {**env, "BGIT_EVAL_CLOSURE": "-1.5e-1"})


def test_pre_bake_sample_validates_input_yml(repo, monkeypatch):
    install_sample_hooks(repo)
    enable_hook(repo, "pre-bake")
    monkeypatch.setenv("BGIT", f"{sys.executable} -m bgit")
    assert run_hook(repo, "pre-bake", {})  # bgit init's example input.yml validates
    (repo.root / "input.yml").write_text("MODEL:\n  base: smollm2-135m\nBAKE:\n  epochs: many\n")
    with pytest.raises(HookError, match=r"^pre-bake hook failed \(exit 1\): pre-bake: .*input.yml does not validate$"):
        run_hook(repo, "pre-bake", {})


def _bake_commit(repo, tmp_path, message: str) -> str:
    record = tmp_path / f"{message}.yml"
    record.write_text(yaml.safe_dump({"bgit_bake": 1, "base_model": {"name": "x", "fingerprint": "y"},
                                      "message": message}))
    return repo.commit_files({"bake.yml": record}, message)


def test_pre_push_sample_refuses_bakes_without_eval(repo, tmp_path):
    from bgit.evaluate import EvalResult, write_eval

    install_sample_hooks(repo)
    enable_hook(repo, "pre-push")
    first = _bake_commit(repo, tmp_path, "one")
    second = _bake_commit(repo, tmp_path, "two")
    env = {"BGIT_REMOTE": "origin", "BGIT_REMOTE_URL": str(tmp_path / "remote.git")}
    new_branch = f"refs/heads/main {second} refs/heads/main {ZERO}\n"
    write_eval(repo, second, EvalResult(closure=0.9))
    with pytest.raises(HookError) as caught:
        run_hook(repo, "pre-push", env, stdin=new_branch)
    assert str(caught.value) == (f"pre-push hook failed (exit 1): pre-push: bakes without eval results: "
                                 f"{first[:7]} (run: bgit eval REF)")
    # only the commits beyond the remote's tip are checked
    assert run_hook(repo, "pre-push", env, stdin=f"refs/heads/main {second} refs/heads/main {first}\n")
    write_eval(repo, first, EvalResult(closure=0.7))
    assert run_hook(repo, "pre-push", env, stdin=new_branch)
    assert run_hook(repo, "pre-push", env, stdin=f"(delete) {ZERO} refs/heads/old {first}\n")

"""input.yml from people bgit should not trust blindly: files a config names stay inside the
repository (read-time too), YAML alias bombs are refused fast, trust_remote_code is honoured
only where the user asked for it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from bgit.cli.main import cli
from bgit.config import ConfigError, load_config, parse_config

SECRET = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def config_text(path: str) -> str:
    return textwrap.dedent(f"""\
        PROMPT:
          teacher: {{messages: [{{role: system, content: Be brief.}}]}}
        TARGET:
          name: t
          generators:
            - type: from_dataset
              path: {path}
        """)  # the path is on line 7


@pytest.fixture
def repo(tmp_path):
    """tmp/secret.txt next to a real git repository tmp/repo with data/q.jsonl."""
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    root = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "data").mkdir()
    (root / "data" / "q.jsonl").write_text('{"q": "What is the sea?"}\n')
    return root


def error_for(root: Path, path: str) -> str:
    (root / "input.yml").write_text(config_text(path))
    with pytest.raises(ConfigError) as info:
        load_config(root / "input.yml")
    assert len(info.value.issues) == 1
    return str(info.value)


def where(root: Path) -> str:
    return f"{root / 'input.yml'}:7: TARGET.generators[0].path"


# -- files a config names ---------------------------------------------------------------------


def test_absolute_path_is_refused(repo):
    assert error_for(repo, "/proc/self/environ") == (
        f"{where(repo)}: '/proc/self/environ' is an absolute path; write it relative to the config file, "
        "inside the repository")
    assert error_for(repo, "~/secret.txt").startswith(f"{where(repo)}: '~/secret.txt' is an absolute path")


def test_dotdot_escape_is_refused(repo):
    assert error_for(repo, "../secret.txt") == (
        f"{where(repo)}: '../secret.txt' resolves outside the repository ({repo.parent / 'secret.txt'})")


def test_symlink_to_proc_environ_is_refused(repo):
    (repo / "data" / "env.jsonl").symlink_to("/proc/self/environ")
    assert error_for(repo, "data/env.jsonl") == (
        f"{where(repo)}: 'data/env.jsonl' resolves to {Path('/proc/self/environ').resolve()}: "
        "/proc and /sys are never read")


def test_symlink_chain_leaving_the_repository_is_refused(repo):
    (repo / "data" / "hop2").symlink_to("../../secret.txt")
    (repo / "data" / "hop1.jsonl").symlink_to("hop2")  # a link inside the repo, to a link out of it
    assert error_for(repo, "data/hop1.jsonl") == (
        f"{where(repo)}: 'data/hop1.jsonl' resolves outside the repository ({repo.parent / 'secret.txt'})")


def test_fifo_is_refused_without_blocking(repo):
    os.mkfifo(repo / "data" / "pipe.jsonl")  # opening it would block until a writer came
    assert error_for(repo, "data/pipe.jsonl") == (
        f"{where(repo)}: 'data/pipe.jsonl' is not a regular file or directory")


def test_sys_path_is_refused(repo):
    (repo / "data" / "kernel").symlink_to("/sys/kernel")
    assert error_for(repo, "data/kernel") == (
        f"{where(repo)}: 'data/kernel' resolves to /sys/kernel: /proc and /sys are never read")


def test_a_dataset_directory_holding_a_link_out_is_refused(repo):
    saved = repo / "data" / "saved"
    saved.mkdir()
    (saved / "part-0.arrow").symlink_to(repo.parent / "secret.txt")
    assert error_for(repo, "data/saved") == (
        f"{where(repo)}: 'data/saved' contains part-0.arrow, which resolves outside the repository "
        f"({repo.parent / 'secret.txt'})")


def test_a_file_deeper_in_the_repository_is_fine_and_outside_a_repository_the_config_dir_bounds(repo, tmp_path):
    sub = repo / "configs"
    sub.mkdir()
    (sub / "input.yml").write_text(config_text("../data/q.jsonl"))  # leaves configs/, stays in the repo
    assert load_config(sub / "input.yml").targets[0].generators[0].path == "../data/q.jsonl"
    loose = tmp_path / "loose"  # in no repository: the config's own directory is the bound
    loose.mkdir()
    (loose / "input.yml").write_text(config_text("../secret.txt"))
    with pytest.raises(ConfigError) as info:
        load_config(loose / "input.yml")
    assert str(info.value) == (f"{loose / 'input.yml'}:7: TARGET.generators[0].path: '../secret.txt' resolves "
                               f"outside the config file's directory ({tmp_path / 'secret.txt'})")


def test_bgit_validate_refuses_the_credential_leak(repo, monkeypatch):
    (repo / "data" / "env.jsonl").symlink_to("/proc/self/environ")
    (repo / "input.yml").write_text(config_text("data/env.jsonl"))
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: input.yml:7: TARGET.generators[0].path: 'data/env.jsonl' resolves to "
                             f"{Path('/proc/self/environ').resolve()}: /proc and /sys are never read\n")


def test_a_link_swapped_after_validation_is_refused_when_the_bake_reads_it(repo):
    """The bake resolves again right before reading: it never reads, caches or commits the secret."""
    from bgit.pipeline.bake import Baker
    from bgit.pipeline.stim import StimError, generate_stims
    from bgit.repo import Repository

    repository = Repository.init(repo, example={})
    (repo / "input.yml").write_text(config_text("data/q.jsonl"))
    config = load_config(repo / "input.yml")  # valid now
    (repo / "data" / "q.jsonl").unlink()
    (repo / "data" / "q.jsonl").symlink_to("../../secret.txt")  # swapped afterwards
    message = (f"{repo / 'input.yml'}: from_dataset path: 'data/q.jsonl' resolves outside the repository "
               f"({repo.parent / 'secret.txt'})")
    with pytest.raises(ConfigError) as info:
        Baker(repository, config).bake()
    assert str(info.value) == message
    with pytest.raises(StimError) as info:  # the stim phase on its own refuses it too
        generate_stims(config.targets[0], config.prompt, seed=0, base_dir=repo, root=repo)
    assert str(info.value) == (f"from_dataset: 'data/q.jsonl' resolves outside the repository "
                               f"({repo.parent / 'secret.txt'})")
    assert repository.head_commit() is None
    leaked = [p for p in (repo / ".git").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []


def test_template_path_is_resolved_checked_and_bounded(repo):
    (repo / "prompts").mkdir()
    template = repo / "prompts" / "qs.txt"

    def error_with(text: str | bytes, path: str = "prompts/qs.txt") -> str:
        template.write_bytes(text if isinstance(text, bytes) else text.encode())
        (repo / "input.yml").write_text(config_text("data/q.jsonl").replace(
            "- type: from_dataset\n      path: data/q.jsonl",
            f"- type: oneshot_qs\n      numq: 3\n      template_path: {path}"))
        try:
            config = load_config(repo / "input.yml")
        except ConfigError as error:
            return str(error)
        return "ok: " + "; ".join(str(n) for n in config.notices)

    prefix = f"{repo / 'input.yml'}:8: TARGET.generators[0].template_path"
    assert error_with("Write ${numq} questions about: ${prompt_u}") == "ok: "  # used, so no notice
    assert error_with("Write ${numq} questions.") == f"{prefix}: template is missing ${{prompt_u}}"
    assert error_with(b"\xff\xfe ${numq} ${prompt_u}") == (
        f"{prefix}: 'prompts/qs.txt' is not UTF-8 text (invalid start byte)")
    assert error_with("${numq} ${prompt_u}" + " " * (1 << 20)) == f"{prefix}: 'prompts/qs.txt' is over 1048576 bytes"
    assert error_with("x", "../secret.txt") == (
        f"{prefix}: '../secret.txt' resolves outside the repository ({repo.parent / 'secret.txt'})")


# -- YAML alias bombs ---------------------------------------------------------------------------

# 393 bytes that expand to 9**9 (387 million) strings once aliases are followed.
BOMB = (
    "# expands to 9**9 lol string\n"
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "PROMPT: {teacher: {tools: [*h,*h,*h,*h,*h,*h,*h,*h,*h]}}\n"
)
BOMB_MESSAGE = "bomb.yml: yaml: YAML expands to more than 200000 nodes (alias bomb?)"
MEASURE = """
import json, re, resource, subprocess, sys, time
from bgit.config import ConfigError, parse_config  # imported before the clock starts
started = time.perf_counter()
{body}
if "{who}" == "self":  # VmHWM starts afresh at exec; ru_maxrss would carry the forking pytest's peak
    peak_kb = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
else:
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({{"seconds": time.perf_counter() - started, "output": output, "peak_mb": peak_kb / 1024}}))
"""


def measured(body: str, who: str, cwd: Path) -> dict:
    script = MEASURE.format(body=textwrap.dedent(body), who=who)
    proc = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_the_bomb_is_small():
    assert len(BOMB.encode()) == 393


def test_parse_config_refuses_an_alias_bomb_fast_and_small(tmp_path):
    (tmp_path / "bomb.yml").write_text(BOMB)
    result = measured("""
        try:
            parse_config(open("bomb.yml").read(), "bomb.yml")
            output = "accepted"
        except ConfigError as error:
            output = str(error)
        """, "self", tmp_path)
    assert result["output"] == BOMB_MESSAGE
    assert result["seconds"] < 5 and result["peak_mb"] < 200, result


def test_bgit_validate_refuses_an_alias_bomb_fast_and_small(tmp_path):
    (tmp_path / "bomb.yml").write_text(BOMB)
    result = measured("""
        proc = subprocess.run([sys.executable, "-m", "bgit", "validate", "bomb.yml"], capture_output=True, text=True)
        output = [proc.returncode, proc.stdout, proc.stderr]
        """, "children", tmp_path)
    assert result["output"] == [1, "", f"Error: {BOMB_MESSAGE}\n"]
    assert result["seconds"] < 5 and result["peak_mb"] < 300, result


def test_diffing_a_commit_whose_input_yml_is_a_bomb_is_refused(tmp_path):
    """The incident: `bgit diff` on a cloned commit ran past 120 s at 3 GB."""
    import time

    from bgit.evaluate.bakes import Bake
    from bgit.evaluate.datasets import config_changes
    from bgit.repo import Repository
    from bgit.util.yaml import YamlLimitError

    repository = Repository.init(tmp_path / "repo", example={})
    (tmp_path / "input.yml").write_text(BOMB)
    sha = repository.commit_files({"input.yml": tmp_path / "input.yml"}, "a clone's commit")
    bomb = Bake(repository, "HEAD", repository.resolve(sha))
    started = time.perf_counter()
    with pytest.raises(YamlLimitError) as info:
        config_changes(bomb, bomb)
    assert time.perf_counter() - started < 5
    assert str(info.value) == f"{sha[:8]}:input.yml: YAML expands to more than 200000 nodes (alias bomb?)"


def test_an_oversized_file_is_refused_before_parsing():
    text = "PROMPT: {}\n# " + "x" * (4 << 20)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "big.yml")
    assert str(info.value) == f"big.yml: yaml: YAML of {len(text)} bytes is over the limit of 4194304"


# -- trust_remote_code ----------------------------------------------------------------------------

CUSTOM_CODE = '''
import os
from pathlib import Path

from transformers import LlamaForCausalLM


class MarkedLlama(LlamaForCausalLM):
    bgit_marker = "custom code"

    def __init__(self, config):
        super().__init__(config)
        Path(os.environ["BGIT_TEST_CODE_RAN"]).touch()  # evidence that the model's own code ran
'''


@pytest.fixture(scope="module")
def custom_code_model(tmp_path_factory):
    """A tiny local model whose config.json points AutoModelForCausalLM at its own custom.py."""
    from evaluate_helpers import make_base_model

    directory = make_base_model(tmp_path_factory.mktemp("model") / "custom")
    (directory / "custom.py").write_text(CUSTOM_CODE)
    config = json.loads((directory / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "custom.MarkedLlama"}
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def remote_code_config(model: Path, trust: bool) -> str:
    return textwrap.dedent(f"""\
        MODEL: {{base: {model}, trust_remote_code: {str(trust).lower()}}}
        PROMPT: {{teacher: {{messages: [{{role: system, content: x}}]}}}}
        TARGET: {{generators: [{{type: hardcoded, stims: [hello there]}}]}}
        """)


@pytest.mark.parametrize("trust", [False, True])
def test_bake_honours_trust_remote_code(tmp_path, custom_code_model, trust, monkeypatch):
    from bgit.pipeline.bake import Baker
    from bgit.repo import Repository

    ran = tmp_path / "ran"
    monkeypatch.setenv("BGIT_TEST_CODE_RAN", str(ran))
    repository = Repository.init(tmp_path / "repo", example={})
    (tmp_path / "repo" / "input.yml").write_text(remote_code_config(custom_code_model, trust))
    baker = Baker(repository, load_config(tmp_path / "repo" / "input.yml"))
    model, _ = baker.parent.load()
    if trust:
        assert getattr(model, "bgit_marker", None) == "custom code" and ran.exists()
    else:
        assert type(model).__name__ == "LlamaForCausalLM" and not ran.exists()
    writer_model = tmp_path / "writer"  # a stim writer model is loaded the same way
    shutil.copytree(custom_code_model, writer_model)
    writer, _ = baker.parent.model_loader(str(writer_model))
    assert (getattr(writer, "bgit_marker", None) == "custom code") == trust


def test_a_commit_asking_for_remote_code_needs_a_local_opt_in(tmp_path, custom_code_model, monkeypatch):
    from bgit.evaluate.bakes import Bake, StagedBake
    from bgit.evaluate.errors import EvaluateError
    from bgit.evaluate.models import trusts_remote_code
    from bgit.repo import Repository

    repository = Repository.init(tmp_path / "repo", example={})
    (tmp_path / "input.yml").write_text(remote_code_config(custom_code_model, True))
    sha = repository.commit_files({"input.yml": tmp_path / "input.yml"}, "a clone's commit")
    committed = Bake(repository, "HEAD", repository.resolve(sha))
    with pytest.raises(EvaluateError) as info:
        trusts_remote_code(committed)
    assert str(info.value) == ("HEAD: its input.yml sets MODEL.trust_remote_code; to run the model's own code, "
                               "first `git config bgit.trustRemoteCode true`")
    subprocess.run(["git", "config", "bgit.trustRemoteCode", "true"], cwd=tmp_path / "repo", check=True)
    assert trusts_remote_code(committed) is True
    staged = StagedBake({"input.yml": tmp_path / "input.yml"}, {})  # the bake being made: the user's own file
    assert trusts_remote_code(staged) is True
    (tmp_path / "input.yml").write_text(remote_code_config(custom_code_model, False))
    assert trusts_remote_code(StagedBake({"input.yml": tmp_path / "input.yml"}, {})) is False

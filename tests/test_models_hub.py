"""Hugging Face hub ids: resolved from a real hub cache layout offline, downloaded from a hub on
loopback online, listed by `bgit models`, baked on, and recorded with their commit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bgit.errors import BgitError
from bgit.models import (IncompleteModelError, ModelNotCachedError, PickleWeightsError, list_models, load_model,
                         render_context, resolve_adapter_base, resolve_model)
from evaluate_helpers import make_base_model
from hub_helpers import FakeHub, add_snapshot, move_ref, repo_path

REPO = "testorg/tiny-llama"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two tiny random Llamas (different weights, same config and tokenizer)."""
    root = tmp_path_factory.mktemp("tiny")
    return make_base_model(root / "a", seed=0), make_base_model(root / "b", seed=1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return cache


def hub_env(cache: Path, **extra) -> dict:
    return {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", **extra}


def bgit(cwd, *args, env=None, check=True):
    result = subprocess.run([sys.executable, "-m", "bgit", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"bgit {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


# --- offline resolution from the cache ----------------------------------------------------------


def test_hub_id_resolves_offline_to_its_snapshot_and_loads(cache, tiny):
    from huggingface_hub import scan_cache_dir

    commit = add_snapshot(cache, REPO, tiny[0])
    # huggingface_hub itself reads the layout the helper wrote
    (scanned,) = scan_cache_dir(cache).repos
    assert scanned.repo_id == REPO and [(r.commit_hash, set(r.refs)) for r in scanned.revisions] == [(commit, {"main"})]

    resolved = resolve_model(REPO)
    assert resolved.path == repo_path(cache, REPO) / "snapshots" / commit
    assert (resolved.revision, resolved.source, resolved.hub_repo) == (commit, "hub", REPO)
    assert len(resolved.fingerprint) == 64
    model, tokenizer = load_model(resolved)
    reference, _ = load_model(resolve_model(str(tiny[0])))
    ids = torch.tensor([render_context(tokenizer, [], user="hi")])
    assert torch.equal(model(input_ids=ids).logits, reference(input_ids=ids).logits)
    assert model.name_or_path == REPO  # what adapters trained on it will name as their base


def test_revision_pins_a_snapshot_and_the_fingerprint_follows_the_weights(cache, tiny):
    first = add_snapshot(cache, REPO, tiny[0])
    second = add_snapshot(cache, REPO, tiny[1])               # main moves on: new weights
    assert resolve_model(REPO).revision == second
    pinned = resolve_model(f"{REPO}@{first}")
    assert (pinned.path.name, pinned.revision) == (first, first)
    assert pinned.fingerprint != resolve_model(REPO).fingerprint
    assert resolve_model(REPO, revision=first) == pinned.__class__(REPO, pinned.path, pinned.fingerprint, first, "hub")
    # a commit that only adds a README keeps config and weights, so the fingerprint (and phase cache)
    readme = add_snapshot(cache, REPO, tiny[1], extra={"README.md": b"# tiny\n"})
    assert readme != second and resolve_model(REPO).revision == readme
    assert resolve_model(REPO).fingerprint == resolve_model(f"{REPO}@{second}").fingerprint
    # a tag names a commit too
    move_ref(cache, REPO, first, "v1")
    assert resolve_model(f"{REPO}@v1").revision == first


def test_missing_model_fails_in_one_line_naming_the_id_and_the_cache(cache, tiny):
    with pytest.raises(ModelNotCachedError) as caught:
        resolve_model("testorg/absent")
    assert str(caught.value) == (f"model testorg/absent is not in the Hugging Face cache at {cache} "
                                 "and the hub cannot be reached (HF_HUB_OFFLINE=1)")
    commit = add_snapshot(cache, REPO, tiny[0])
    other = "0" * 40
    with pytest.raises(ModelNotCachedError) as caught:
        resolve_model(f"{REPO}@{other}")
    assert str(caught.value) == (f"model {REPO}@{other} is not in the Hugging Face cache at {cache} and the hub "
                                 f"cannot be reached (HF_HUB_OFFLINE=1); cached: {REPO}@{commit}")


def test_hf_home_locates_the_cache_when_hf_hub_cache_is_unset(tmp_path, monkeypatch, tiny):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = add_snapshot(tmp_path / "home" / "hub", REPO, tiny[0])
    assert resolve_model(REPO).revision == commit
    with pytest.raises(ModelNotCachedError, match=f"cache at {tmp_path / 'home' / 'hub'} and"):
        resolve_model("testorg/absent")


def test_pickle_only_weights_are_refused(cache, tiny, tmp_path):
    add_snapshot(cache, "testorg/pickled", tiny[0], skip=("model.safetensors",),
                 extra={"pytorch_model.bin": b"\x80\x04 not unpickled"})
    with pytest.raises(PickleWeightsError) as caught:
        resolve_model("testorg/pickled")
    assert str(caught.value) == ("model testorg/pickled has only pickle weights (pytorch_model.bin); "
                                 "bgit loads safetensors weights only")
    local = tmp_path / "local-pickled"
    local.mkdir()
    (local / "config.json").write_bytes((tiny[0] / "config.json").read_bytes())
    (local / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(PickleWeightsError, match="has only pickle weights"):
        resolve_model(str(local))


def sharded(tmp_path, source: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(source).save_pretrained(out, max_shard_size="60KB")
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    assert len(list(out.glob("model-*.safetensors"))) >= 2
    return out


def test_sharded_snapshot_loads_and_a_missing_shard_is_named(cache, tiny, tmp_path):
    source = sharded(tmp_path, tiny[0])
    add_snapshot(cache, "testorg/sharded", source)
    resolved = resolve_model("testorg/sharded")
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(load_model(resolved)[0](input_ids=ids).logits,
                       load_model(resolve_model(str(tiny[0])))[0](input_ids=ids).logits)
    shards = sorted(p.name for p in source.glob("model-*.safetensors"))
    commit = add_snapshot(cache, "testorg/broken", source, skip=(shards[-1],))
    with pytest.raises(IncompleteModelError) as caught:
        resolve_model("testorg/broken")
    assert str(caught.value) == (f"model testorg/broken is incomplete in the Hugging Face cache at {cache} "
                                 f"({shards[-1]} missing) and the hub cannot be reached (HF_HUB_OFFLINE=1)")
    listed = {m.name: m for m in list_models().models}
    assert listed["testorg/sharded"].loadable and listed["testorg/broken"].revision == commit
    broken = listed["testorg/broken"]
    assert (broken.loadable, broken.note) == (False, f"incomplete: {shards[-1]} missing")


def test_an_index_naming_paths_outside_the_snapshot_is_refused(cache, tiny):
    index = {"metadata": {}, "weight_map": {"lm_head.weight": "../../../../etc/passwd.safetensors"}}
    add_snapshot(cache, "testorg/evil", tiny[0], extra={"model.safetensors.index.json": json.dumps(index).encode()})
    with pytest.raises(BgitError) as caught:
        resolve_model("testorg/evil")
    assert str(caught.value) == ("model testorg/evil: model.safetensors.index.json names an invalid weight file "
                                 "'../../../../etc/passwd.safetensors'")


def test_snapshot_of_copies_is_fingerprinted_by_content(cache, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("BGIT_CACHE", str(tmp_path / "bgit-cache"))
    commit = add_snapshot(cache, REPO, tiny[0], links=False)  # HF_HUB_DISABLE_SYMLINKS layout
    before = resolve_model(REPO)
    assert before.revision == commit
    weights = before.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert resolve_model(REPO).fingerprint != before.fingerprint


def test_an_adapter_names_its_hub_base_with_a_revision(cache, tiny, tmp_path):
    first = add_snapshot(cache, REPO, tiny[0])
    add_snapshot(cache, REPO, tiny[1])
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": REPO, "revision": first}))
    assert resolve_adapter_base(adapter).revision == first
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": None}))
    with pytest.raises(BgitError, match="names no base model"):
        resolve_adapter_base(adapter)


# --- the embedded SmolLM2 as a hub model ----------------------------------------------------------


def test_embedded_smollm2_served_from_a_hub_cache(cache):
    embedded = resolve_model("smollm2-135m")
    commit = add_snapshot(cache, "HuggingFaceTB/SmolLM2-135M-Instruct", embedded.path)
    resolved = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert resolved.revision == commit and resolved.path != embedded.path
    model, tokenizer = load_model(resolved)
    text = tokenizer.decode(render_context(tokenizer, [], user="Hi"))
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"  # no injected SmolLM system text
    assert model.config.model_type == "llama" and model.name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"


# --- bgit models --------------------------------------------------------------------------------


def test_models_command_lists_embedded_cached_and_local_models(cache, tiny, tmp_path):
    first = add_snapshot(cache, REPO, tiny[0])
    second = add_snapshot(cache, REPO, tiny[1])
    add_snapshot(cache, "testorg/pickled", tiny[0], skip=("model.safetensors",), extra={"pytorch_model.bin": b"x"})
    result = bgit(tmp_path, "models", "--json", "--path", str(tiny[0].parent), env=hub_env(cache))
    listing = json.loads(result.stdout)
    assert listing["hub_cache"] == str(cache) and listing["offline"] is True
    by_name = {m["name"]: m for m in listing["models"]}
    assert by_name["smollm2-135m"]["source"] == "embedded"
    main = by_name[REPO]
    assert (main["source"], main["revision"], main["refs"], main["loadable"]) == ("hub", second, ["main"], True)
    assert main["path"] == str(repo_path(cache, REPO) / "snapshots" / second)
    assert main["size"] == sum((tiny[1] / f).stat().st_size for f in os.listdir(tiny[1]) if not f.startswith("."))
    assert by_name[f"{REPO}@{first}"]["refs"] == [] and by_name[f"{REPO}@{first}"]["loadable"]
    assert (by_name["testorg/pickled"]["loadable"], by_name["testorg/pickled"]["note"]) == (
        False, "only pickle weights (pytorch_model.bin): refused")
    assert {by_name[str(tiny[0])]["source"], by_name[str(tiny[1])]["source"]} == {"local"}

    text = bgit(tmp_path, "models", env=hub_env(cache)).stdout.splitlines()
    assert text[0] == f"Hugging Face cache: {cache}, offline"
    assert text[1].split() == ["NAME", "SOURCE", "REVISION", "SIZE", "LOADABLE"]
    assert any(line.split()[:4] == [REPO, "hub", second[:12], "(main)"] for line in text)

    missing = bgit(tmp_path, "models", "--path", str(tmp_path / "nowhere"), env=hub_env(cache), check=False)
    assert missing.returncode == 1
    assert missing.stderr == (f"Error: {tmp_path / 'nowhere'}: not a model directory, a .gguf file or a "
                              "directory holding them\n")


def test_api_models_returns_typed_entries(cache, tiny):
    from bgit import api

    add_snapshot(cache, REPO, tiny[0])
    listing = api.models([tiny[0]])
    assert isinstance(listing, api.ModelsListing) and all(isinstance(m, api.ModelEntry) for m in listing.models)
    assert [m.source for m in listing.models] == ["embedded", "hub", "local"]


# --- baking on a hub model ------------------------------------------------------------------------


def write_config(root: Path, base: str) -> None:
    config = {
        "MODEL": {"base": base},
        "PROMPT": {"teacher": {"messages": [{"role": "system", "content": "Answer in capitals."}]}},
        "TARGET": {"name": "caps", "max_tokens": 6, "num_traj_per_stimulus": 1, "augment": 0,
                   "generators": [{"type": "hardcoded", "stims": ["hi", "why?", "sky", "tea"]}]},
        "BAKE": {"epochs": 1, "micro_batch_size": 2, "model": {"baked_adapter_config": {"r": 2}},
                 "data": {"train_eval_split": 0.75}},
    }
    (root / "input.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def test_bake_on_a_hub_model_records_its_commit(cache, tiny, tmp_path):
    from bgit import api

    first = add_snapshot(cache, REPO, tiny[0])
    env = hub_env(cache)
    root = tmp_path / "repo"
    api.init(root)
    write_config(root, REPO)
    bgit(root, "bake", "-m", "caps", env=env)
    record = yaml.safe_load((root / "bake.yml").read_text())
    assert record["base_model"] == {"name": REPO, "fingerprint": resolve_model(REPO).fingerprint, "revision": first}
    assert json.loads((root / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == REPO
    assert [entry.cached for entry in api.bake_plan(root)] == [True, True, True]

    # main moves to other weights: the bake still loads the commit it was baked on
    before = api.generate(root, ["hello"], max_tokens=5).answers
    move_ref(cache, REPO, add_snapshot(cache, REPO, tiny[1], refs=()))
    after = api.generate(root, ["hello"], max_tokens=5)
    assert after.answers == before and after.notes == []  # else: "base model ... has changed since the bake"
    assert [entry.cached for entry in api.bake_plan(root)] == [True, False, False]  # new base weights

    write_config(root, "testorg/absent")
    failed = bgit(root, "bake", "--dry-run", env=env, check=False)
    assert failed.returncode == 1
    assert failed.stderr == (f"Error: model testorg/absent is not in the Hugging Face cache at {cache} "
                             "and the hub cannot be reached (HF_HUB_OFFLINE=1)\n")


def test_a_question_writer_named_by_hub_id_keys_the_stim_phase(cache, tiny, tmp_path):
    from bgit import api

    add_snapshot(cache, REPO, tiny[0])
    root = tmp_path / "repo"
    api.init(root)
    write_config(root, str(tiny[0]))
    config = yaml.safe_load((root / "input.yml").read_text())
    config["TARGET"]["generators"] = [{"type": "oneshot_qs", "numq": 2, "model": REPO}]
    (root / "input.yml").write_text(yaml.safe_dump(config))
    stim_key = api.bake_plan(root)[0].key
    move_ref(cache, REPO, add_snapshot(cache, REPO, tiny[1], refs=()))  # the writer's weights change
    assert api.bake_plan(root)[0].key != stim_key
    config["TARGET"]["generators"][0]["model"] = "testorg/absent"
    (root / "input.yml").write_text(yaml.safe_dump(config))
    with pytest.raises(ModelNotCachedError, match="^model testorg/absent is not in the Hugging Face cache"):
        api.bake_plan(root)


# --- online: a hub on loopback ------------------------------------------------------------------


RESOLVE = """
import json, sys
from bgit.models import resolve_model
for name in sys.argv[1:]:
    try:
        r = resolve_model(name)
        print(json.dumps({"revision": r.revision, "fingerprint": r.fingerprint, "path": str(r.path)}))
    except Exception as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
"""


def resolve_online(endpoint: str, cache: Path, *names) -> list[dict]:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "0",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_TOKEN": ""}
    result = subprocess.run([sys.executable, "-c", RESOLVE, *names], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_download_once_only_what_loading_needs_then_offline(tmp_path, tiny):
    source = sharded(tmp_path, tiny[0])
    files = {p.name: p.read_bytes() for p in source.iterdir() if p.is_file()}
    extras = {"pytorch_model.bin": b"\x80\x04pickle", "README.md": b"# sharded\n", "modeling_evil.py": b"import os\n",
              "consolidated.safetensors": b"not loaded"}
    cache = tmp_path / "hub"
    with FakeHub() as hub:
        commit = hub.add("testorg/sharded", {**files, **extras})
        hub.add("testorg/pickled", {"config.json": files["config.json"], "pytorch_model.bin": b"\x80\x04"})
        first, again, pickled, absent, bad_revision = resolve_online(
            hub.url, cache, "testorg/sharded", "testorg/sharded", "testorg/pickled", "testorg/absent",
            "testorg/sharded@v9")
        assert sorted(hub.downloads) == sorted([*files, "config.json"])  # each once; pickled's config only
    assert first == again and first["revision"] == commit
    assert pickled["error"] == ("PickleWeightsError: model testorg/pickled has only pickle weights "
                                "(pytorch_model.bin); bgit loads safetensors weights only")
    assert absent["error"] == ("HubModelError: model testorg/absent is not on the Hugging Face hub "
                               "(if it is private: hf auth login or set HF_TOKEN)")
    assert bad_revision["error"] == "HubModelError: model testorg/sharded@v9: no revision 'v9' on the Hugging Face hub"

    # what snapshot_download wrote is what the offline tests build by hand: same fingerprint
    add_snapshot(tmp_path / "by-hand", "testorg/sharded", source)
    offline = subprocess.run([sys.executable, "-c", RESOLVE, "testorg/sharded"], capture_output=True, text=True,
                             env=hub_env(tmp_path / "by-hand"))
    assert json.loads(offline.stdout)["fingerprint"] == first["fingerprint"]

    # the hub gone (a closed port, not offline mode): the cache still serves; an uncached id names the error
    cached, missing = resolve_online("http://127.0.0.1:9", cache, "testorg/sharded", "testorg/absent")
    assert cached == first
    assert missing["error"].startswith(f"ModelNotCachedError: model testorg/absent is not in the Hugging Face "
                                       f"cache at {cache} and the hub cannot be reached (")

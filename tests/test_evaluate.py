"""bgit.evaluate on real bake commits (tiny random Llama, real PEFT adapters, real repos)."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
import torch

from evaluate_helpers import (
    HELD_OUT_STIMS,
    SYSTEM,
    TRAIN_STIMS,
    adapter_tensors,
    build_history,
    commit_bake,
    make_adapter,
    png_ok,
    rollout_rows,
)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    return build_history(tmp_path_factory.mktemp("evaluate"))


def _dense_deltas(adapter_dir):
    from bgit.evaluate.lora import factors_from_tensors

    tensors, config = adapter_tensors(adapter_dir)
    factors = factors_from_tensors(tensors, config)
    return {m: f.scale * (f.b @ f.a) for m, f in factors.items()}, factors


# -- LoRA algebra ---------------------------------------------------------------------------

def test_inner_product_without_forming_delta_matches_dense():
    from bgit.evaluate.lora import Factor, dense_delta, inner, norm
    from bgit.evaluate.weights import compare_factors

    gen = torch.Generator().manual_seed(0)
    f1 = Factor("m", torch.randn(3, 7, generator=gen, dtype=torch.float64),
                torch.randn(5, 3, generator=gen, dtype=torch.float64), 2.0)
    f2 = Factor("m", torch.randn(6, 7, generator=gen, dtype=torch.float64),  # different rank
                torch.randn(5, 6, generator=gen, dtype=torch.float64), 0.5)
    d1, d2 = dense_delta(f1), dense_delta(f2)
    assert inner(f1, f2) == pytest.approx(float((d1 * d2).sum()), rel=1e-10)
    assert norm(f1) == pytest.approx(float(d1.norm()), rel=1e-10)
    (delta,) = compare_factors({"m": f1}, {"m": f2})
    assert delta.relative == pytest.approx(float((d2 - d1).norm() / d1.norm()), rel=1e-10)
    assert delta.cosine == pytest.approx(float((d1 * d2).sum() / (d1.norm() * d2.norm())), rel=1e-10)
    (only_b,) = compare_factors({}, {"m": f2})
    assert only_b.relative is None and only_b.cosine is None and only_b.norm_b == pytest.approx(float(d2.norm()))


def test_scale_honours_rslora_and_alpha_pattern():
    from bgit.train.lora import lora_scale

    assert lora_scale({"r": 16, "lora_alpha": 32}, "layers.0.self_attn.q_proj", 16) == 2.0
    assert lora_scale({"r": 16, "lora_alpha": 32, "use_rslora": True}, "x.q_proj", 16) == 8.0
    config = {"r": 4, "lora_alpha": 8, "alpha_pattern": {"v_proj": 2}, "rank_pattern": {"v_proj": 2}}
    assert lora_scale(config, "model.layers.1.self_attn.v_proj", 2) == 1.0
    assert lora_scale(config, "model.layers.1.self_attn.q_proj", 4) == 2.0


def test_weight_diff_of_commits_matches_dense_computation(history):
    from bgit.evaluate import diff_bakes

    repo, _, adapters, _ = history
    dense_a, _ = _dense_deltas(adapters["a"])
    dense_b, _ = _dense_deltas(adapters["b"])
    weights = diff_bakes(repo, "HEAD~1", "HEAD").weights
    assert len(weights.modules) == len(dense_a) == 8
    for module in weights.modules:
        da, db = dense_a[module.module], dense_b[module.module]
        assert module.norm_a == pytest.approx(float(da.norm()), rel=1e-6)
        assert module.relative == pytest.approx(float((db - da).norm() / da.norm()), rel=1e-6, abs=1e-9)
        assert module.cosine == pytest.approx(float((da * db).sum() / (da.norm() * db.norm())), rel=1e-6)
        changed = "q_proj" in module.module or "layers.1.mlp" in module.module
        assert module.changed is changed
        if not changed:
            assert module.relative == 0.0
    # per layer: each layer's modules as one concatenated vector
    for layer in weights.layers:
        keys = [m for m in dense_a if f"layers.{layer.layer}." in m]
        va = torch.cat([dense_a[k].flatten() for k in keys])
        vb = torch.cat([dense_b[k].flatten() for k in keys])
        assert layer.relative == pytest.approx(float((vb - va).norm() / va.norm()), rel=1e-6)
        assert layer.cosine == pytest.approx(float(va @ vb / (va.norm() * vb.norm())), rel=1e-6)
    assert weights.total.changed == 3 and weights.total.modules == 8


def test_config_and_dataset_changes(history):
    from bgit.evaluate import diff_bakes

    repo, _, _, _ = history
    from bgit.evaluate import ConfigChange

    result = diff_bakes(repo, "HEAD~1", "HEAD")
    changes = {c.key: c for c in result.config}
    assert changes["BAKE.optimizer.learning_rate"].old == "1e-3"
    assert changes["BAKE.optimizer.learning_rate"].new == "5e-4"
    assert changes["TARGET.generators[0].stims[6]"] == ConfigChange("TARGET.generators[0].stims[6]", None,
                                                                    "new one", "added")
    (dataset,) = result.datasets
    assert [s["text"] for s in dataset.stims_added] == ["new one"] and dataset.stims_removed == []
    assert dataset.rollout_rows == {"a": 6, "b": 7}
    assert dataset.rollout_tokens == {"a": 30, "b": 35}
    same = diff_bakes(repo, "HEAD", "HEAD")
    assert same.config == [] and same.weights.total.relative == 0.0
    assert same.weights.total.cosine == pytest.approx(1.0)
    assert json.loads(json.dumps(result.to_json()))["datasets"][0]["rollout_rows"] == {"a": 6, "b": 7}


def test_heatmap_png(history, tmp_path):
    from bgit.evaluate import diff_bakes
    from bgit.evaluate.plots import heatmap_grid, plot_weight_heatmap

    repo, _, _, _ = history
    modules = diff_bakes(repo, "HEAD~1", "HEAD").weights.modules
    layers, kinds, grid = heatmap_grid(modules)
    assert layers == ["0", "1"] and kinds == ["down_proj", "o_proj", "q_proj", "v_proj"]
    assert grid[0][kinds.index("v_proj")] == 0.0 and grid[1][kinds.index("down_proj")] > 0
    assert png_ok(plot_weight_heatmap(modules, tmp_path / "heat.png"))


# -- eval -------------------------------------------------------------------------------------

def _log_probs(model, tokenizer, messages, stim, response):
    """log-probs [T, V] predicting each response token, plain transformers, full vocabulary."""
    text = tokenizer.apply_chat_template([*messages, {"role": "user", "content": stim}],
                                         add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids + response])).logits[0]
    return torch.log_softmax(logits[len(ids) - 1: len(ids) - 1 + len(response)].double(), -1)


def _independent_kls(base_dir, rows, baked_adapter, parent_adapter=None, start=0):
    """(KL(prompted‖parent), KL(prompted‖baked)) per response token from token ``start`` on,
    without bgit's eval code: the parent is the base model, or the base with ``parent_adapter``
    merged into its weights; the baked model is the base with ``baked_adapter``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    parent = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
    if parent_adapter is not None:
        parent = PeftModel.from_pretrained(parent, str(parent_adapter)).merge_and_unload().eval()
    baked = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base_dir)), str(baked_adapter)).eval()
    system = [{"role": "system", "content": SYSTEM}]
    sums, tokens = [0.0, 0.0], 0
    for row in rows:
        p = _log_probs(parent, tokenizer, system, row["stim"], row["response_ids"])[start:]
        for i, model in enumerate((parent, baked)):
            q = _log_probs(model, tokenizer, [], row["stim"], row["response_ids"])[start:]
            sums[i] += float((p.exp() * (p - q)).sum())
        tokens += len(p)
    return sums[0] / tokens, sums[1] / tokens


def test_forced_logits_run_the_shared_prompt_once_and_match_one_row_at_a_time(monkeypatch):
    """Batched teacher forcing (right padding, the system prompt's KV cache shared, the output
    layer at response positions only) gives each row's logits of a plain unbatched forward."""
    from peft import LoraConfig, get_peft_model
    from rollout_helpers import char_tokenizer, tiny_llama

    from bgit.evaluate import forcing
    from bgit.models import render_context
    from bgit.train import data
    from bgit.train import prefix as prefix_module

    tokenizer = char_tokenizer()
    model = get_peft_model(tiny_llama(len(tokenizer)), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                   init_lora_weights=False)).eval()
    system = [{"role": "system", "content": "You are a pirate who answers in rhyme."}]
    contexts = [render_context(tokenizer, system, user=s) for s in ("Hi", "What is the capital of France?", "x")]
    generator = torch.Generator().manual_seed(0)
    responses = [torch.randint(5, len(tokenizer), (n,), generator=generator).tolist() for n in (7, 1, 12)]
    shared = []
    original = prefix_module.prefix_cache
    monkeypatch.setattr(prefix_module, "prefix_cache",
                        lambda model, ids, rows: shared.append(ids[0].tolist()) or original(model, ids, rows))

    logits = forcing.forced_logits(model, contexts, responses)

    prompt = render_context(tokenizer, system, user="")[:-len("<|im_end|>\n<|im_start|>assistant\n")]
    assert shared == [contexts[0][:len(shared[0])]] and len(shared[0]) >= len(prompt) > 16
    assert logits.shape == (sum(len(r) for r in responses), len(tokenizer))
    for part, context, response in zip(logits.split([len(r) for r in responses]), contexts, responses):
        with torch.no_grad():
            plain = model(input_ids=torch.tensor([context + response])).logits[0]
        torch.testing.assert_close(part, plain[len(context) - 1: len(context) - 1 + len(response)],
                                   atol=1e-5, rtol=1e-5)

    monkeypatch.setattr(data, "BATCH_LOGITS", 10 * 50)  # 10 response tokens per batch at vocab 50
    assert data.token_chunks([1, 7, 3, 12, 2], 50) == [range(0, 2), range(2, 3), range(3, 4), range(4, 5)]
    assert data.token_chunks([1, 7, 3, 12, 2], 50, min_items=2) == [range(0, 2), range(2, 4), range(4, 5)]
    assert data.token_chunks([], 50) == []


def test_eval_on_held_out_stims_matches_independent_kl(history):
    from bgit.evaluate import evaluate_bake, open_bake

    repo, base_dir, adapters, _ = history
    bake = open_bake(repo, "HEAD")
    results = evaluate_bake(bake)
    held_out_rows = [r for r in bake.read_jsonl("targets/terse/rollout.jsonl") if r["stim"] in HELD_OUT_STIMS]
    assert results.source == "eval_stims" and results.stims == 2 and results.teacher == "base"
    assert results.tokens == sum(len(r["response_ids"]) for r in held_out_rows)
    kl_base, kl_baked = _independent_kls(base_dir, held_out_rows, adapters["b"])
    assert results.kl_prompted_base == pytest.approx(kl_base, rel=1e-4)
    assert results.kl_prompted_baked == pytest.approx(kl_baked, rel=1e-4)
    assert results.closure == pytest.approx(1 - kl_baked / kl_base, rel=1e-3, abs=1e-4)
    assert results.kl_prompted_baked != pytest.approx(results.kl_prompted_base)
    assert results.kl_prompted_reprompted > 0
    json.dumps(results.to_json())


def test_chained_bake_is_evaluated_against_its_parent(history, tmp_path):
    """BAKE.parent: head trains against base + HEAD's adapter; eval must use the same teacher."""
    from bgit.evaluate import evaluate_bake, open_bake
    from bgit.record import BakeRecord
    from bgit.train import concat_adapters

    repo, base_dir, adapters, shas = history
    second = make_adapter(base_dir, tmp_path / "second", seed=5, scale_b=0.2)
    chain = concat_adapters([adapters["b"], second], tmp_path / "chain")
    repo.checkout(shas["b"], new_branch="chained")
    sha = commit_bake(repo, base_dir, chain, tmp_path / "work", "chained bake")
    record = BakeRecord.from_yaml(repo.read_file(sha, "bake.yml"))
    record.parent.mode, record.parent.commit = "head", shas["b"]
    (tmp_path / "bake.yml").write_text(record.to_yaml())
    sha = repo.commit_files({"bake.yml": tmp_path / "bake.yml"}, "record the parent")
    bake = open_bake(repo, sha)
    results = evaluate_bake(bake)
    rows = [r for r in bake.read_jsonl("targets/terse/rollout.jsonl") if r["stim"] in HELD_OUT_STIMS]
    kl_parent, kl_baked = _independent_kls(base_dir, rows, chain, parent_adapter=adapters["b"])
    assert results.teacher == f"parent {shas['b'][:8]}"
    assert results.kl_prompted_base == pytest.approx(kl_parent, rel=1e-3)
    assert results.kl_prompted_baked == pytest.approx(kl_baked, rel=1e-3)
    assert results.closure == pytest.approx(1 - kl_baked / kl_parent, rel=1e-3, abs=1e-4)
    # the base model as teacher (the old, wrong teacher) gives a different answer
    kl_base, _ = _independent_kls(base_dir, rows, chain)
    assert abs(kl_base - kl_parent) > 1e-3
    repo.checkout("main")


def test_closure_past_the_trained_length(history, tmp_path):
    """Responses longer than TARGET.max_tokens (6 here) get the tokens past it scored apart."""
    from bgit.evaluate import EvalResult, evaluate_bake, open_bake
    from bgit.repo import Repository

    _, base_dir, adapters, _ = history
    assert evaluate_bake(open_bake(history[0], "HEAD")).past_trained_length is None  # rollouts of 5 tokens
    repo = Repository.init(tmp_path / "repo")
    rows = rollout_rows(base_dir, TRAIN_STIMS + HELD_OUT_STIMS, length=10)
    commit_bake(repo, base_dir, adapters["b"], tmp_path / "work", "long responses", rows=rows)
    results = evaluate_bake(open_bake(repo, "HEAD"))
    held_out = [r for r in rows if r["stim"] in HELD_OUT_STIMS]
    past = results.past_trained_length
    assert past.tokens == sum(len(r["response_ids"]) - 6 for r in held_out) and past.stims == 2
    kl_base, kl_baked = _independent_kls(base_dir, held_out, adapters["b"], start=6)
    assert past.kl_prompted_base == pytest.approx(kl_base, rel=1e-4)
    assert past.kl_prompted_baked == pytest.approx(kl_baked, rel=1e-4)
    assert past.closure == pytest.approx(1 - kl_baked / kl_base, rel=1e-3, abs=1e-4)
    all_base, all_baked = _independent_kls(base_dir, held_out, adapters["b"])
    n_all, n_past = results.tokens, past.tokens
    within = 1 - (all_baked * n_all - kl_baked * n_past) / (all_base * n_all - kl_base * n_past)
    assert results.closure_within_trained_length() == pytest.approx(within, rel=1e-3, abs=1e-4)
    assert results.targets["terse"].past_trained_length == past
    assert EvalResult.from_json(json.loads(json.dumps(results.to_json()))) == results  # as the git note stores it


def test_zero_adapter_has_zero_closure_and_fallback_without_eval_stims(tmp_path, history):
    from bgit.evaluate import evaluate_bake, open_bake
    from bgit.repo import Repository

    _, base_dir, _, _ = history
    repo = Repository.init(tmp_path / "repo")
    zero = make_adapter(base_dir, tmp_path / "zero", seed=3, zero=True)
    commit_bake(repo, base_dir, zero, tmp_path / "work", "zero bake", with_eval_stims=False,
                rows=rollout_rows(base_dir, ["hi", "sky"], length=3))
    results = evaluate_bake(open_bake(repo, "HEAD"))
    assert results.source == "all_stims" and results.stims == 2
    assert any("no eval_stims" in note for note in results.notes)
    assert results.closure == pytest.approx(0.0, abs=1e-6)
    assert results.kl_prompted_reprompted == pytest.approx(0.0, abs=1e-6)


def test_eval_with_stims_file_samples_seeded_responses(history, tmp_path):
    from bgit.evaluate import evaluate_bake, open_bake, read_stims_file

    repo, _, _, _ = history
    path = tmp_path / "stims.jsonl"
    path.write_text('{"text": "why so?"}\n"and then"\n')
    stims = read_stims_file(path)
    assert stims == ["why so?", "and then"]
    first = evaluate_bake(open_bake(repo, "HEAD"), stims, max_tokens=4, seed=7)
    again = evaluate_bake(open_bake(repo, "HEAD"), stims, max_tokens=4, seed=7)
    assert first.source == "file" and first.stims == 2 and 2 <= first.tokens <= 8
    assert first.kl_prompted_baked == again.kl_prompted_baked


def test_stims_file_errors(tmp_path):
    from bgit.evaluate import BadStimsFileError, read_stims_file

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{broken\n')
    with pytest.raises(BadStimsFileError, match=r"bad.jsonl: line 2: not valid JSON$"):
        read_stims_file(bad)
    with pytest.raises(BadStimsFileError, match="cannot be read|No such file"):
        read_stims_file(tmp_path / "missing.txt")
    plain = tmp_path / "plain.txt"
    plain.write_text("one\n\ntwo\n")
    assert read_stims_file(plain) == ["one", "two"]


# Characters str.splitlines() breaks lines at, all of which a JSON string may hold unescaped.
LINE_BREAKERS = "\u2028\u2029\x85\x1c\x1d\x1e\x0b\x0c"


def test_dataset_rows_holding_unicode_line_separators_read_back_whole(history, tmp_path):
    """A sampled response may hold U+2028 (a bake once failed at its commit on one)."""
    from bgit.evaluate import open_bake, read_stims_file
    from bgit.repo import Repository

    _, base_dir, adapters, _ = history
    repo = Repository.init(tmp_path / "repo")  # not the shared history: its HEAD stays
    rows = rollout_rows(base_dir, ["Why?"])
    rows[0]["response"] = f"a{LINE_BREAKERS}b"
    sha = commit_bake(repo, base_dir, adapters["a"], tmp_path / "work", "odd characters", rows=rows,
                      stims=["Why?"], held_out=["Why?"])
    assert (tmp_path / "work" / "rollout.jsonl").read_text(encoding="utf-8").count("\n") == 1  # one row, raw
    assert open_bake(repo, sha).read_jsonl("targets/terse/rollout.jsonl") == rows
    stims = tmp_path / "stims.jsonl"
    stims.write_text(json.dumps({"text": f"one{LINE_BREAKERS}two"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_stims_file(stims) == [f"one{LINE_BREAKERS}two"]


def test_eval_note_round_trip_and_git_log_shows_it(history):
    from bgit.evaluate import EvalResult, read_eval, write_eval

    repo, _, _, shas = history
    assert read_eval(repo, shas["a"]) is None
    write_eval(repo, shas["a"], EvalResult(closure=0.75, kl_prompted_baked=0.1))
    write_eval(repo, repo.resolve("HEAD~1"), EvalResult(closure=0.8))  # replaces, by commit object
    assert read_eval(repo, "HEAD~1") == EvalResult(closure=0.8)
    assert read_eval(repo, shas["b"]) is None
    log = subprocess.run(["git", "log", "--notes=bgit-eval", "-1", shas["a"]], cwd=repo.root,
                         capture_output=True, text=True, check=True).stdout
    assert '"closure": 0.8' in log
    assert str(repo.resolve("HEAD").id) == shas["b"]  # history untouched


def test_behaviour_kl(history):
    from bgit.evaluate import behaviour_kl, open_bake

    repo, _, _, _ = history
    b = open_bake(repo, "HEAD")
    assert behaviour_kl(b, b).kl_a_b == pytest.approx(0.0, abs=1e-6)
    result = behaviour_kl(open_bake(repo, "HEAD~1"), b)
    assert result.kl_a_b > 1e-4 and result.stims == 2


# -- models: scaling, export ------------------------------------------------------------------

def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def test_scale_zero_is_base_and_scale_one_is_the_bake(history):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from bgit.evaluate import open_bake
    from bgit.evaluate.models import load_baked

    repo, base_dir, adapters, _ = history
    ids = [256, 84, 82, 68, 81, 198, 71, 72]
    base = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
    base_logits = _logits(base, ids)
    reference = PeftModel.from_pretrained(base, str(adapters["b"])).eval()
    baked_logits = _logits(reference, ids)
    assert not torch.allclose(base_logits, baked_logits, atol=1e-3)
    bake = open_bake(repo, "HEAD")
    zero, _, _ = load_baked(bake, scale=0.0, device="cpu")
    torch.testing.assert_close(_logits(zero, ids), base_logits, atol=1e-5, rtol=0)
    one, _, _ = load_baked(bake, scale=1.0, device="cpu")
    torch.testing.assert_close(_logits(one, ids), baked_logits, atol=1e-5, rtol=0)
    half, _, _ = load_baked(bake, scale=0.5, device="cpu")
    half_logits = _logits(half, ids)
    assert (half_logits - base_logits).abs().max() < (baked_logits - base_logits).abs().max()
    assert not torch.allclose(half_logits, base_logits, atol=1e-4)


def test_export_merged_equals_base_plus_adapter_and_peft_export(history, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bgit.evaluate import ExportError, export_bake, open_bake

    repo, base_dir, adapters, _ = history
    bake = open_bake(repo, "HEAD")
    merged_dir = export_bake(bake, tmp_path / "merged", "merged")
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval()
    assert AutoTokenizer.from_pretrained(str(merged_dir)).chat_template
    assert list(merged_dir.glob("*.safetensors"))
    base = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
    reference = PeftModel.from_pretrained(base, str(adapters["b"])).eval()
    ids = [256, 84, 82, 68, 81, 198, 71, 72, 257]
    torch.testing.assert_close(_logits(merged, ids), _logits(reference, ids), atol=1e-4, rtol=0)

    peft_dir = export_bake(bake, tmp_path / "peft", "peft")
    assert (peft_dir / "adapter_model.safetensors").read_bytes() == \
        (adapters["b"] / "adapter_model.safetensors").read_bytes()
    readme = (peft_dir / "README.md").read_text()
    assert bake.base_fingerprint in readme and str(base_dir) in readme
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base_dir)), str(peft_dir)).eval()
    torch.testing.assert_close(_logits(loaded, ids), _logits(reference, ids), atol=1e-5, rtol=0)

    with pytest.raises(ExportError, match=r"peft exists and is not empty$"):
        export_bake(bake, peft_dir, "peft")
    (tmp_path / "empty").mkdir()
    assert export_bake(bake, tmp_path / "empty", "peft").is_dir()


# -- metrics ----------------------------------------------------------------------------------

def test_metrics_chart_and_png(history, tmp_path):
    from bgit.evaluate import open_bake
    from bgit.evaluate.metrics import plot_metrics, read_metrics, render_chart, sparkline

    repo, _, _, _ = history
    data = read_metrics(open_bake(repo, "HEAD"))
    assert [s for s, _ in data["train"]] == list(range(1, 9))
    assert [(s, e) for s, e, _ in data["eval"]] == [(4, 0), (8, 1)]
    chart = render_chart(data)
    assert chart.splitlines()[0] == "train_kl  █▄▃▂▂▁▁▁"  # 2/step rounded to 8 levels between .25 and 2
    assert "epoch 1: 0.35" in chart
    assert sparkline([1.0, 1.0]) == "▅▅" and sparkline([]) == ""
    assert len(sparkline(list(map(float, range(500))), width=40)) == 40
    assert png_ok(plot_metrics(data, tmp_path / "kl.png"))
    assert math.isclose(data["train"][-1][1], 0.25)


def test_staged_bake_evaluates_like_its_commit(history):
    """The lead evaluates a bake before committing it (for the post-bake hook)."""
    from bgit.evaluate import StagedBake, evaluate_bake, open_bake

    repo, _, adapters, _ = history
    committed = open_bake(repo, "HEAD")
    staging = repo.root.parent / "staging"
    staging.mkdir(exist_ok=True)
    files = {}
    for path in ("input.yml", "targets/terse/rollout.jsonl", "targets/terse/stim.jsonl"):
        (staging / path.replace("/", "_")).write_bytes(committed.read(path))
        files[path] = staging / path.replace("/", "_")
    files["adapter/adapter_config.json"] = adapters["b"] / "adapter_config.json"
    files["adapter/adapter_model.safetensors"] = adapters["b"] / "adapter_model.safetensors"
    staged = evaluate_bake(StagedBake(files, committed.record))
    from_commit = evaluate_bake(committed)
    assert staged.commit is None and from_commit.commit == committed.sha
    for key in ("kl_prompted_base", "kl_prompted_baked", "closure", "tokens", "stims"):
        assert getattr(staged, key) == getattr(from_commit, key)


def test_eval_summary_line():
    from bgit.evaluate import EvalResult

    line = EvalResult(closure=0.8312, kl_prompted_base=0.41, kl_prompted_baked=0.0693, stims=8).summary()
    assert line == "eval: closure 0.831 (KL 0.41 -> 0.0693, 8 stims)"
    assert EvalResult().summary() == "eval: closure - (KL - -> -, 0 stims)"
    # notes written by older bgit (plain JSON) read back with defaults for what they lack
    assert EvalResult.from_json({"closure": 0.5, "extra": 1, "targets": {"t": {"closure": 0.4}}}).targets["t"].closure == 0.4

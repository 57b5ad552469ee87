"""HF rollout backend: the shared backend suite, truncation at EOS, batching, progress, the tail.

The vLLM backend's tests run in their own environment: tests/backend_vllm/ (make test-vllm)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bgit.config.schema import PromptConfig, TargetConfig
from bgit.errors import BgitError
from bgit.models import ResolvedModel, render_context
from bgit.pipeline.records import RolloutRecord, decode_array, encode_array, read_jsonl, write_jsonl
from bgit.pipeline.rollout import (TAIL_FLOOR, HFRolloutBackend, TeacherSource, make_backend, select_backend,
                                   topk_with_tail)
from bgit.pipeline.stim import stim_id
from rollout_contract import RolloutBackendContract
from rollout_helpers import char_tokenizer, one_thread, tiny_llama

PROMPT = PromptConfig(teacher_messages=[{"role": "system", "content": "You are a pirate."}])
TEXTS = ["Hello there", "What is the capital of France? Tell me please.", "x"]
STIMS = [{"id": stim_id(t), "text": t, "generator": "hardcoded"} for t in TEXTS]

EOS_SCALE = 2.0  # measured: stops 7 of 12 trajectories early with seed 3
HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tokenizer = char_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    model = tiny_llama(len(tokenizer), eos_token_id=tokenizer.eos_token_id)
    directory = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    with one_thread():
        yield model, tokenizer, directory


def run(backend, tiny, target, seed=1, batch_size=4, stims=STIMS, progress=None):
    model, tokenizer, directory = tiny
    assert backend == "hf"
    source = TeacherSource(ResolvedModel("tiny", directory, "-"))  # the model is already loaded
    hf = HFRolloutBackend(source, load=lambda: (model, tokenizer), batch_size=batch_size)
    return hf.rollout(stims, PROMPT, target, seed=seed, progress=progress)


def reference_logprobs(model, tokenizer, row):
    """Log-probs of every response position from one unpadded forward pass."""
    import torch

    context = render_context(tokenizer, PROMPT.teacher_messages, user=row["stim"])
    ids = torch.tensor([context + row["response_ids"]])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    start = len(context) - 1  # logits at position p predict token p + 1
    return torch.log_softmax(logits, -1)[start : start + len(row["response_ids"])]


class TestHFBackend(RolloutBackendContract):
    """The shared rollout-backend suite (tests/rollout_contract.py) on a tiny random Llama."""

    MAX_TOKENS = 12

    @pytest.fixture
    def backend(self, tiny):
        model, tokenizer, directory = tiny
        source = TeacherSource(ResolvedModel("tiny", directory, "-"))
        return HFRolloutBackend(source, load=lambda: (model, tokenizer), batch_size=4)

    @pytest.fixture
    def reference(self, tiny):
        return tiny[0], tiny[1]

    @pytest.fixture
    def stims(self):
        return STIMS


def eos_prone(tokenizer):
    """A tiny model whose EOS logit follows the average hidden state, so it often stops."""
    import torch

    model = tiny_llama(len(tokenizer), seed=5, eos_token_id=tokenizer.eos_token_id)
    ids = torch.tensor([render_context(tokenizer, PROMPT.teacher_messages, user=t) for t in TEXTS[:1]])
    with torch.no_grad():
        hidden = model.model(ids).last_hidden_state[0].mean(0)
        model.lm_head.weight[tokenizer.eos_token_id] = hidden / hidden.norm() * EOS_SCALE
    return model


def test_responses_stop_after_eos_and_hold_no_padding(tiny):
    _, tokenizer, _ = tiny
    model = eos_prone(tokenizer)
    rows = run("hf", (model, tokenizer, None), TargetConfig(max_tokens=40, num_traj_per_stimulus=4, top_k=2), seed=3)
    eos = tokenizer.eos_token_id
    stopped = 0
    for row in rows:
        ids = row["response_ids"]
        assert eos not in ids[:-1]
        assert ids[-1] == eos or len(ids) == 40
        stopped += ids[-1] == eos
        assert row["response"] == tokenizer.decode(ids, skip_special_tokens=True)
    assert 0 < stopped < len(rows), "expected some trajectories to stop early and some to run out"
    assert len({len(row["response_ids"]) for row in rows}) > 1


def test_greedy_rollout_is_independent_of_batch_size(tiny):
    target = TargetConfig(max_tokens=8, temperature=0.0, num_traj_per_stimulus=2, top_k=4)
    batched = run("hf", tiny, target, batch_size=6)
    single = run("hf", tiny, target, batch_size=1)
    assert [r["response_ids"] for r in batched] == [r["response_ids"] for r in single]
    assert batched[0]["response_ids"] == batched[1]["response_ids"]  # greedy trajectories agree
    for a, b in zip(batched, single):
        np.testing.assert_allclose(
            RolloutRecord.from_row(a).topk_logprobs, RolloutRecord.from_row(b).topk_logprobs, atol=1e-4
        )


def test_progress_advances_to_the_announced_total(tiny):
    calls = []
    run("hf", tiny, TargetConfig(max_tokens=6, num_traj_per_stimulus=1, top_k=2), batch_size=2,
        progress=lambda advance, total, **info: calls.append((advance, total, info)))
    assert calls and all(total == 3 * 6 and info["phase"] == "rollout" for _, total, info in calls)
    assert sum(advance for advance, _, _ in calls) == 3 * 6


def test_rows_come_from_the_decoding_logits_without_a_second_pass(tiny, monkeypatch):
    """The teacher samples from its own context: no teacher-forcing pass runs, and the rows are
    the raw logits' even under processors that change the sampling distribution."""
    from bgit.pipeline import rollout as rollout_module

    model, tokenizer, _ = tiny

    def forbidden(*args, **kwargs):
        raise AssertionError("teacher_topk ran although the decoding logits hold the rows")

    monkeypatch.setattr(rollout_module, "teacher_topk", forbidden)
    target = TargetConfig(max_tokens=10, temperature=0.7, num_traj_per_stimulus=2, top_k=6,
                          extra_kwargs={"repetition_penalty": 1.5, "top_p": 0.9})
    rows = rollout_module.rollout(model, tokenizer, STIMS, PROMPT, target, seed=4, batch_size=4, min_new_tokens=3)
    assert not model._forward_hooks  # the hook lives only as long as generate
    for row in rows:
        record = RolloutRecord.from_row(row)
        reference = reference_logprobs(model, tokenizer, row)
        assert record.topk_ids.shape == (len(row["response_ids"]), 6)
        np.testing.assert_array_equal(record.topk_ids[:, 0], reference.argmax(-1).numpy())
        np.testing.assert_allclose(record.topk_logprobs, reference.topk(6, dim=-1).values.numpy(), atol=1e-4)


def test_the_shared_prompt_prefix_runs_once_and_changes_nothing(tiny, monkeypatch):
    """Rows laid out as prefix, pads, rest with the prefix's cache shared: the same greedy samples
    and rows as plain left padding, and the layout puts every token where it sits unpadded."""
    import torch

    from bgit.pipeline import rollout as rollout_module
    from bgit.train import prefix as prefix_module

    model, tokenizer, _ = tiny
    contexts = [render_context(tokenizer, PROMPT.teacher_messages, user=t) for t in TEXTS]
    prefix = rollout_module.shared_prefix(model, contexts)
    assert prefix >= prefix_module.MIN_SHARED_PREFIX and all(c[:prefix] == contexts[0][:prefix] for c in contexts)
    assert prefix < min(len(c) for c in contexts)  # every row keeps a token of its own
    ids, mask, positions = rollout_module.pad_after_prefix(contexts, prefix, 0, "cpu")
    for row, context in enumerate(contexts):
        assert ids[row][mask[row].bool()].tolist() == context
        assert positions[row][mask[row].bool()].tolist() == list(range(len(context)))

    prefix_tokens = []
    original = rollout_module.prefix_cache
    monkeypatch.setattr(rollout_module, "prefix_cache",
                        lambda model, ids, rows: prefix_tokens.append(ids.shape[1]) or original(model, ids, rows))
    target = TargetConfig(max_tokens=10, temperature=0.0, num_traj_per_stimulus=2, top_k=5)
    shared = run("hf", tiny, target, batch_size=6)
    assert prefix_tokens == [prefix]
    monkeypatch.setattr(prefix_module, "MIN_SHARED_PREFIX", 10**6)  # plain left padding
    plain = run("hf", tiny, target, batch_size=6)
    assert prefix_tokens == [prefix]
    assert [r["response_ids"] for r in shared] == [r["response_ids"] for r in plain]
    for a, b in zip(shared, plain):
        np.testing.assert_allclose(RolloutRecord.from_row(a).topk_logprobs, RolloutRecord.from_row(b).topk_logprobs,
                                   atol=1e-5)
        assert torch.equal(torch.as_tensor(RolloutRecord.from_row(a).topk_ids[:, 0]),
                           torch.as_tensor(RolloutRecord.from_row(b).topk_ids[:, 0]))


def test_only_conditioned_stims_take_the_teacher_forcing_pass(tiny, monkeypatch):
    from bgit.pipeline import rollout as rollout_module

    model, tokenizer, _ = tiny
    forced = []
    original = rollout_module.teacher_topk

    def counting(model, contexts, responses, k):
        forced.extend(contexts)
        return original(model, contexts, responses, k)

    monkeypatch.setattr(rollout_module, "teacher_topk", counting)
    stims = [dict(stim, conditioned=True) if i == 1 else stim for i, stim in enumerate(STIMS)]
    student = PromptConfig(teacher_messages=PROMPT.teacher_messages,
                           student_messages=[{"role": "system", "content": "Be brief."}])
    rows = rollout_module.rollout(model, tokenizer, stims, student, TargetConfig(max_tokens=8, top_k=4), seed=2,
                                  batch_size=4)
    assert forced == [render_context(tokenizer, PROMPT.teacher_messages, user=STIMS[1]["text"])]
    for row in rows:
        reference = reference_logprobs(model, tokenizer, row)
        np.testing.assert_allclose(RolloutRecord.from_row(row).topk_logprobs,
                                   reference.topk(4, dim=-1).values.numpy(), atol=1e-4)


def test_tail_is_finite_when_top_k_covers_the_vocabulary():
    import torch

    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 50.0]])
    ids, logprobs, tail = topk_with_tail(logits, 5)
    assert ids.shape == (2, 3) and np.all(tail == TAIL_FLOOR)
    ids, logprobs, tail = topk_with_tail(logits, 1)
    # Exact: log(sum of the non-top probabilities); naive log1p(-p_top) would give -inf for row 2.
    expected = [np.log(np.exp(1.0) + np.exp(0.0)) - np.log(np.exp(2.0) + np.exp(1.0) + 1.0), np.log(2.0) - 50.0]
    np.testing.assert_allclose(tail, expected, rtol=1e-5)


def test_records_round_trip(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    assert np.array_equal(decode_array(encode_array(arr), np.float32, (3, 4)), arr)
    big_endian = arr.astype(">f4")
    assert encode_array(big_endian) == encode_array(arr)  # always little-endian on disk
    with pytest.raises(BgitError, match="does not fit shape"):
        decode_array(encode_array(arr), np.float32, (5, 4))
    rows = [{"a": 1, "text": "héllo"}, {"a": 2}]
    path = write_jsonl(tmp_path / "d" / "x.jsonl", rows)
    assert read_jsonl(path) == rows
    assert [p.name for p in path.parent.iterdir()] == ["x.jsonl"]
    path.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(BgitError, match=r"x.jsonl:2: invalid JSON"):
        read_jsonl(path)


def test_backend_selection(tiny):
    import torch

    assert select_backend("hf") == "hf"
    assert select_backend(None) == ("vllm" if HAS_VLLM and torch.cuda.is_available() else "hf")
    if not HAS_VLLM:
        with pytest.raises(BgitError) as caught:
            select_backend("vllm")
        assert str(caught.value) == ("backend vllm needs the vllm package: pip install 'bgit[vllm]' "
                                     "(on CPU: make setup-vllm, which builds .venv-vllm)")
    with pytest.raises(BgitError, match="unknown rollout backend 'tpu'"):
        select_backend("tpu")
    source = TeacherSource(ResolvedModel("tiny", tiny[2], "-"))
    backend = make_backend("hf", source)
    assert isinstance(backend, HFRolloutBackend) and backend.source is source


def test_hf_backend_loads_the_teacher_from_its_source_with_the_adapter_merged(tiny, tmp_path):
    """Given only directories (no loaded model), the HF backend loads base + adapter itself."""
    from peft import LoraConfig, get_peft_model

    model, tokenizer, directory = tiny
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(tiny_llama(len(tokenizer), eos_token_id=tokenizer.eos_token_id), lora)
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = peft_model.merge_and_unload().eval()
    target = TargetConfig(max_tokens=6, temperature=1.0, num_traj_per_stimulus=1, top_k=4)
    with HFRolloutBackend(TeacherSource(ResolvedModel("tiny", directory, "-"), tmp_path / "adapter")) as backend:
        rows = backend.rollout(STIMS[:2], PROMPT, target, seed=2)
    for row in rows:
        record = RolloutRecord.from_row(row)
        reference = reference_logprobs(merged, tokenizer, row)
        np.testing.assert_allclose(record.topk_logprobs, reference.topk(4, dim=-1).values.numpy(), atol=1e-4)
        base = reference_logprobs(model, tokenizer, row).topk(4, dim=-1).values.numpy()
        assert np.abs(base - record.topk_logprobs).max() > 1e-2  # the adapter changed the teacher


@pytest.mark.slow
def test_embedded_model_rollout_matches_fresh_forward_pass():
    from bgit.models import load_model, resolve_model

    model, tokenizer = load_model(resolve_model("smollm2-135m"))
    stims = STIMS[:2]
    with one_thread():
        rows = run("hf", (model, tokenizer, None), TargetConfig(max_tokens=16, top_k=20), stims=stims)
        for row in rows:
            record = RolloutRecord.from_row(row)
            reference = reference_logprobs(model, tokenizer, row)
            np.testing.assert_allclose(record.topk_logprobs, reference.topk(20, dim=-1).values.numpy(), atol=1e-4)
            total = np.logaddexp.reduce(np.concatenate([record.topk_logprobs, record.tail_logprob[:, None]], 1), axis=1)
            np.testing.assert_allclose(total, 0.0, atol=1e-4)
    assert all(row["response"] for row in rows)


def test_vllm_settings_that_need_no_engine(monkeypatch, tmp_path):
    """The vLLM backend's checks that run before any engine (the engine: tests/backend_vllm/)."""
    from bgit.models.vllm_engine import adapter_rank, env_engine_args
    from bgit.pipeline.rollout_vllm import _vllm_lora_rank

    monkeypatch.delenv("BGIT_VLLM_ENGINE_ARGS", raising=False)
    assert env_engine_args() == {}
    monkeypatch.setenv("BGIT_VLLM_ENGINE_ARGS", '{"enforce_eager": true, "max_model_len": 2048}')
    assert env_engine_args() == {"enforce_eager": True, "max_model_len": 2048}
    monkeypatch.setenv("BGIT_VLLM_ENGINE_ARGS", "[1]")
    with pytest.raises(BgitError) as caught:
        env_engine_args()
    assert str(caught.value) == "$BGIT_VLLM_ENGINE_ARGS must be a JSON object of vLLM engine arguments"
    monkeypatch.setenv("BGIT_VLLM_ENGINE_ARGS", "{enforce_eager}")
    with pytest.raises(BgitError, match=r"^\$BGIT_VLLM_ENGINE_ARGS is not valid JSON: "):
        env_engine_args()

    (tmp_path / "adapter_config.json").write_text('{"r": 16, "rank_pattern": {"q_proj": 40}}')
    assert adapter_rank(tmp_path) == 40 and _vllm_lora_rank(40) == 64  # a chain of bakes: summed ranks
    assert _vllm_lora_rank(16) == 16 and _vllm_lora_rank(4) == 8
    with pytest.raises(BgitError) as caught:
        _vllm_lora_rank(600)
    assert str(caught.value) == "the parent adapter has LoRA rank 600; vLLM serves at most 512 (use --backend hf)"

"""KL closure of a bake on held-out stims (per response token, full vocabulary).

For each held-out stim x and a teacher-sampled response y (the rollout's, or sampled
here from the prompted base model, seeded), with t = teacher prompt, s = student prompt:

    KL(prompted‖base)       = KL(P0(·|t,x,y<i) ‖ P0(·|s,x,y<i))     how far the prompt moves the model
    KL(prompted‖baked)      = KL(P0(·|t,x,y<i) ‖ Pθ(·|s,x,y<i))     what is left after baking
    closure                 = 1 − KL(prompted‖baked) / KL(prompted‖base)
    KL(prompted‖reprompted) = KL(P0(·|t,x,y<i) ‖ Pθ(·|t,x,y<i))     the prompt re-applied to the baked model

averaged over all response tokens. Contexts and responses are aligned on the response
tokens (logits at position i predict token i+1), as in training.

P0 is the *parent* model the bake was trained against (DESIGN §2): the base model, or for a
sequential bake (BAKE.parent: head) the base model with the parent bake's adapter. Pθ is the
base model with the committed adapter (for a sequential bake, the whole chain).

A distill bake (BAKE.model.student_model_path) has two models: the teacher P0 (bake.yml
base_model, its contexts rendered by its own tokenizer) and the student S, the adapter's base:
KL(prompted‖base) compares P0 with S without the adapter, Pθ is S with it.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bgit import __version__
from bgit.evaluate.bakes import Bake
from bgit.evaluate.errors import BadStimsFileError, BaseModelMismatchError, NoEvalStimsError
from bgit.evaluate.forcing import forced_logits
from bgit.evaluate.models import load_base, load_teacher_model, with_adapter
from bgit.evaluate.results import BehaviourResult, EvalResult, KlSums
from bgit.models import render_context
from bgit.record import jsonl_lines, stim_id as text_stim_id
from bgit.train.data import token_chunks, vocab_size
from bgit.util.progress import SILENT

DEFAULT_MAX_STIMS = 64


@dataclass
class EvalItem:
    target: str
    stim_id: str
    stim: str
    teacher_ids: list[int]
    student_ids: list[int]
    response_ids: list[int] | None  # None: to be sampled from the prompted base model


def read_stims_file(path) -> list[str]:
    """User messages from a JSONL file (strings or objects with text/stim/content) or plain lines."""
    path = Path(path)
    try:
        lines = [line for line in jsonl_lines(path.read_text(encoding="utf-8")) if line.strip()]
    except OSError as error:
        raise BadStimsFileError(path, error.strerror or "cannot be read") from None
    stims = []
    for number, line in enumerate(lines, 1):
        if path.suffix.lower() in (".jsonl", ".json") or line.lstrip().startswith(("{", '"')):
            try:
                value = json.loads(line)
            except ValueError:
                raise BadStimsFileError(path, f"line {number}: not valid JSON") from None
            if isinstance(value, dict):
                value = next((value[k] for k in ("text", "stim", "content", "question") if k in value), None)
            if not isinstance(value, str):
                raise BadStimsFileError(path, f"line {number}: expected a string or an object with 'text'")
            stims.append(value)
        else:
            stims.append(line.strip())
    if not stims:
        raise BadStimsFileError(path, "no stims in the file")
    return stims


def held_out_items(bake: Bake, tokenizer, stims: list[str] | None = None, max_stims: int = DEFAULT_MAX_STIMS,
                   teacher_tokenizer=None) -> tuple[list[EvalItem], str, str | None]:
    """-> (items, source, note). source: 'eval_stims' | 'all_stims' | 'file'. Teacher contexts
    are rendered by ``teacher_tokenizer`` (a distill bake's teacher), else by ``tokenizer``."""

    config = bake.config()
    if config is None:
        from bgit.evaluate.errors import NotABakeError
        raise NotABakeError(bake.ref, "input.yml (eval needs the teacher prompt: pass --config FILE)")
    names = list(bake.record.targets or bake.targets())
    if not names and stims is not None:  # an adapter committed by hand: the config's targets
        names = [t.name for t in config.targets]
    eval_stims = bake.record.eval_stims
    note = None
    if stims is not None:
        source = "file"
    elif isinstance(eval_stims, dict):
        source = "eval_stims"
    else:
        source = "all_stims"
        note = "bake.yml has no eval_stims: evaluated on every stim of the targets, training stims included"
    items: list[EvalItem] = []
    for name in names:
        try:
            prompt = config.prompt_for(config.target(name))
        except KeyError:
            raise NoEvalStimsError(f"{bake.ref}: target '{name}' is not in {config.source}") from None

        def item(stim_id, text, response_ids):
            return EvalItem(name, stim_id, text,
                            render_context(teacher_tokenizer or tokenizer, prompt.teacher_messages, user=text,
                                           tools=prompt.teacher_tools),
                            render_context(tokenizer, prompt.student_messages, user=text),
                            response_ids)

        if source == "file":
            items.extend(item(text_stim_id(text), text, None) for text in stims[:max_stims])
            continue
        wanted = set(eval_stims.get(name) or []) if source == "eval_stims" else None
        seen: list[str] = []
        for row in bake.read_jsonl(f"targets/{name}/rollout.jsonl"):
            stim_id = row.get("stim_id")
            if wanted is not None and stim_id not in wanted:
                continue
            if stim_id not in seen:
                if len(seen) >= max_stims:
                    continue
                seen.append(stim_id)
            items.append(item(stim_id, row.get("stim", ""), list(row.get("response_ids") or [])))
    items = [i for i in items if i.response_ids is None or i.response_ids]
    if not items:
        raise NoEvalStimsError(f"{bake.ref}: no held-out stims to evaluate on (bake.yml names none); "
                               "pass --stims FILE")
    return items, source, note


def sample_response(model, tokenizer, context_ids: list[int], max_tokens: int, temperature: float,
                    seed: int) -> list[int]:
    """One seeded sample from ``model`` (the prompted base); EOS kept when emitted."""
    import torch

    device = next(model.parameters()).device
    input_ids = torch.tensor([context_ids], device=device)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                max_new_tokens=max_tokens, do_sample=temperature > 0,
                                temperature=temperature if temperature > 0 else None, top_k=0, top_p=1.0,
                                pad_token_id=tokenizer.pad_token_id)
    finally:
        torch.random.set_rng_state(generator_state)
    response = output[0, len(context_ids):].tolist()
    eos = tokenizer.eos_token_id
    if eos is not None and eos in response:
        response = response[: response.index(eos) + 1]
    return response


def batches(items: list[EvalItem], vocab: int) -> list[list[EvalItem]]:
    """Items with responses in teacher-forcing batches (:func:`bgit.train.data.token_chunks`), ordered
    by target and length: one target's rows share its teacher prompt, rows of similar
    lengths pad little."""
    ordered = sorted(items, key=lambda i: (i.target, len(i.teacher_ids) + len(i.response_ids)))
    return [[ordered[i] for i in chunk] for chunk in token_chunks([len(i.response_ids) for i in ordered], vocab)]


def _kl(p_logits, q_logits):
    from bgit.train.loss import full_kl  # torch: imported when used

    return full_kl(q_logits, p_logits)  # full_kl(student, teacher) = KL(teacher ‖ student)


class _Sums:
    def __init__(self):
        self.tokens = 0
        self.stims: set[str] = set()
        self.sums = {"kl_prompted_base": 0.0, "kl_prompted_baked": 0.0, "kl_prompted_reprompted": 0.0}
        self.past: _Sums | None = None  # the tokens past the trained length

    def add(self, stim_id: str, kls: dict, trained_length: int | None = None) -> None:
        """``kls``: name -> per-token KL tensor [T] of one response; the tokens past
        ``trained_length`` are also summed apart."""
        length = len(next(iter(kls.values())))
        self.tokens += length
        self.stims.add(stim_id)
        for key, values in kls.items():
            self.sums[key] += float(values.sum())
        if trained_length is not None and length > trained_length:
            self.past = self.past or _Sums()
            self.past.add(stim_id, {key: values[trained_length:] for key, values in kls.items()})

    def result(self) -> KlSums:
        means = {k: (v / self.tokens if self.tokens else None) for k, v in self.sums.items()}
        base, baked = means["kl_prompted_base"], means["kl_prompted_baked"]
        return KlSums(**means, closure=1 - baked / base if base else None, tokens=self.tokens,
                      stims=len(self.stims), past_trained_length=self.past.result() if self.past else None)


@dataclass
class _EvalModels:
    """The models of one eval: ``model`` (adapter 'baked' [+ 'parent']) on the adapter's base,
    and a distill bake's separate ``teacher`` (model, tokenizer)."""

    model: object
    tokenizer: object
    notes: list[str]
    label: str          # EvalResult.teacher: base | parent <sha> | model <name>
    teacher: tuple | None = None

    @property
    def has_parent(self) -> bool:
        return self.label.startswith("parent ")

    @property
    def teacher_tokenizer(self):
        return self.teacher[1] if self.teacher else self.tokenizer

    @contextmanager
    def parent(self):
        """P0 inside the block (for a distill bake: the student without its adapter)."""
        if not self.has_parent:
            with self.model.disable_adapter():
                yield
            return
        self.model.set_adapter("parent")
        try:
            yield
        finally:
            self.model.set_adapter("baked")

    def teacher_logits(self, items: list[EvalItem]):
        """P0's logits [sum of T, V] on the items' teacher contexts and responses."""
        contexts, responses = [i.teacher_ids for i in items], [i.response_ids for i in items]
        if self.teacher is not None:
            return forced_logits(self.teacher[0], contexts, responses)
        with self.parent():
            return forced_logits(self.model, contexts, responses)

    def sample(self, item: EvalItem, max_tokens: int, temperature: float, seed: int) -> list[int]:
        """A response of the prompted teacher P0."""
        if self.teacher is not None:
            return sample_response(self.teacher[0], self.teacher[1], item.teacher_ids, max_tokens, temperature, seed)
        with self.parent():
            return sample_response(self.model, self.tokenizer, item.teacher_ids, max_tokens, temperature, seed)


def _load_eval_model(bake: Bake, device, dtype) -> _EvalModels:

    base, tokenizer, notes = load_base(bake, device=device, dtype=dtype)
    model = with_adapter(base, bake.adapter_dir(), name="baked")
    if bake.teacher_model is not None:
        teacher, teacher_tokenizer, teacher_notes = load_teacher_model(bake, device=device, dtype=dtype)
        return _EvalModels(model, tokenizer, notes + teacher_notes, f"model {bake.teacher_model.name}",
                           (teacher, teacher_tokenizer))
    parent = bake.parent_bake()
    if parent is None:
        return _EvalModels(model, tokenizer, notes, "base")
    model.load_adapter(str(parent.adapter_dir()), adapter_name="parent", is_trainable=False)
    model.set_adapter("baked")
    return _EvalModels(model, tokenizer, notes, f"parent {parent.short}")


def _batch_kls(models: _EvalModels, items: list[EvalItem]) -> list[dict]:
    """Per item: name -> KL per response token [T]."""
    responses, students = [i.response_ids for i in items], [i.student_ids for i in items]
    teacher = models.teacher_logits(items)
    with models.parent():
        base = _kl(teacher, forced_logits(models.model, students, responses))
    baked = _kl(teacher, forced_logits(models.model, students, responses))
    reprompted = _kl(teacher, forced_logits(models.model, [i.teacher_ids for i in items], responses))
    lengths = [len(r) for r in responses]
    return [{"kl_prompted_base": b, "kl_prompted_baked": k, "kl_prompted_reprompted": r}
            for b, k, r in zip(base.split(lengths), baked.split(lengths), reprompted.split(lengths))]


def _sample_missing(models: _EvalModels, items: list[EvalItem], config, max_tokens: int | None, seed: int,
                    reporter) -> None:
    """Responses of the prompted teacher for the items that have none (``--stims``); item n's
    is seeded with seed + n."""
    missing = [(n, item) for n, item in enumerate(items) if item.response_ids is None]
    if not missing:
        return
    task = reporter.task("sample", total=len(missing), unit="traj")
    try:
        for n, item in missing:
            target = config.target(item.target)
            item.response_ids = models.sample(item, max_tokens or target.max_tokens, target.temperature, seed + n)
            task(advance=1)
    finally:
        task.close()


def evaluate_bake(bake: Bake, stims: list[str] | None = None, *, max_stims: int = DEFAULT_MAX_STIMS,
                  max_tokens: int | None = None, seed: int = 0, device: str | None = None,
                  dtype: str = "auto", reporter=SILENT) -> EvalResult:
    """Eval results of a bake (see the module docstring)."""

    started = time.monotonic()
    models = _load_eval_model(bake, device, dtype)
    items, source, note = held_out_items(bake, models.tokenizer, stims, max_stims, models.teacher_tokenizer)
    notes = models.notes + ([note] if note else [])
    config = bake.config()
    _sample_missing(models, items, config, max_tokens, seed, reporter)
    items = [i for i in items if i.response_ids]
    totals, per_target = _Sums(), {}
    task = reporter.task("eval", total=len(items), unit="traj")
    try:
        for batch in batches(items, vocab_size(models.model)):
            for item, kls in zip(batch, _batch_kls(models, batch)):
                trained_length = config.target(item.target).max_tokens
                totals.add(item.stim_id, kls, trained_length)
                per_target.setdefault(item.target, _Sums()).add(item.stim_id, kls, trained_length)
            task(advance=len(batch))
    finally:
        task.close()
    return EvalResult(
        **vars(totals.result()), commit=bake.sha, base_model=bake.base_model_name, source=source,
        teacher=models.label, notes=notes, targets={name: sums.result() for name, sums in per_target.items()},
        seed=seed, seconds=round(time.monotonic() - started, 2),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), bgit=__version__)


def behaviour_kl(a: Bake, b: Bake, *, max_stims: int = DEFAULT_MAX_STIMS, device: str | None = None,
                 dtype: str = "auto") -> BehaviourResult:
    """KL(P_A ‖ P_B) per response token between two baked models, student context, on B's held-out
    rollout rows (A or B without an adapter is the base model)."""

    if a.base_model_name and b.base_model_name and a.base_model_name != b.base_model_name \
            or (a.base_fingerprint and b.base_fingerprint and a.base_fingerprint != b.base_fingerprint):
        raise BaseModelMismatchError(a.base_model_name or "?", b.base_model_name or "?")
    base, tokenizer, notes = load_base(b, device=device, dtype=dtype)
    items, source, note = held_out_items(b, tokenizer, None, max_stims)
    if note:
        notes.append(note)
    model = with_adapter(base, b.adapter_dir(), name="second")
    has_a = a.has_adapter()
    if has_a:
        model.load_adapter(str(a.adapter_dir()), adapter_name="first", is_trainable=False)
    total, tokens, stims = 0.0, 0, set()
    for batch in batches(items, vocab_size(model)):
        contexts, responses = [i.student_ids for i in batch], [i.response_ids for i in batch]
        if has_a:
            model.set_adapter("first")
            logits_a = forced_logits(model, contexts, responses)
        else:
            with model.disable_adapter():
                logits_a = forced_logits(model, contexts, responses)
        model.set_adapter("second")
        logits_b = forced_logits(model, contexts, responses)
        total += float(_kl(logits_a, logits_b).sum())
        tokens += sum(len(r) for r in responses)
        stims.update(i.stim_id for i in batch)
    return BehaviourResult(total / tokens if tokens else None, tokens, len(stims), source, notes)

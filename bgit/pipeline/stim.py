"""Stim generators: the user messages that provoke the behaviour being baked.

``generate_stims`` runs a target's generators in order and returns rows
``{"id": <12 hex of blake3(text)>, "text", "generator": <type>, "generator_index": <i>}``
(``generator_index``: the generator's position in ``TARGET.generators``, whose rollout settings
apply to the stim), deduplicated across generators (case and whitespace insensitive; the
first occurrence wins).

Generators (``GeneratorConfig.type``):

- ``hardcoded``: ``stims`` as given; ``numq`` keeps the first numq distinct ones (0: all).
- ``from_dataset``: a local JSONL/JSON-lines, CSV/TSV, plain text (one per line) file, or a
  directory saved with ``datasets.Dataset.save_to_disk``; or a named dataset
  (:mod:`bgit.pipeline.named_datasets`), from the ``datasets`` cache or, with ``path``, a
  local copy of it. ``numq`` rows sampled with the seed (0 = all), kept in dataset order.
- ``oneshot_qs``: a local model writes questions from a ``string.Template`` with
  ``${numq}`` and ``${prompt_u}`` (the teacher prompt's text), sent as a user message in the
  writer's chat template; sampled until ``numq`` unique questions are parsed, with a bounded
  number of attempts.
- ``persona``: like ``oneshot_qs`` once per persona (``${persona}`` in the template),
  ``numq`` questions each. With no personas listed, ``numq`` personas are drawn with the seed
  from the built-in ones (bgit/data/personas.txt), one question each.
- ``custom``: the user's template (required) is the whole prompt: filled like oneshot_qs's and
  given to the writer model as plain text, no chat template around it, then parsed the same
  way.

Templates come from ``template`` (``template_content``), ``template_path`` (a file read
through the containment resolver right before use, at most 1 MB, UTF-8), or bgit's own.

``model_loader(name)`` returns ``(model, tokenizer)``; ``name`` is the generator's
``model`` or None for the bake's base model, so the pipeline can share one loaded model.
"""

from __future__ import annotations

import csv
import json
import random
import re
import string
from pathlib import Path
from typing import Callable

from bgit.errors import BgitError
from bgit.record import jsonl_lines, stim_id

MIN_QUESTION_CHARS = 10
MAX_QUESTION_CHARS = 300
# Sequences sampled per generate call (one batch). With the early stop (_EnoughQuestions) one
# wide call usually holds all the questions: customer_service's 20 took 226 s in 5 calls of 8,
# 135 s in 3 of 16, 76 s in 1 of 32 (stopped at 368 of 512 tokens), 55 s in 1 of 40
# (bench/results/2026-11-30-x86_64-2core/writer_batch.txt).
QUESTIONS_PER_CALL = 32
MAX_TEMPLATE_BYTES = 1 << 20
WRITERS = ("oneshot_qs", "persona", "custom")


class StimError(BgitError):
    """A stim generator that cannot produce its stims."""


def normalise(text: str) -> str:
    """Dedupe key: case, whitespace and final punctuation do not make a stim new."""
    return " ".join(text.split()).casefold().rstrip(" .?!")


def generate_stims(target, prompt, *, seed: int, model_loader: Callable | None = None, progress=None, base_dir=Path("."),
                   root=None) -> list[dict]:
    """``root``: the repository root files named by generators must stay in (None: ``base_dir``)."""
    rows: list[dict] = []
    seen: set[str] = set()
    for index, generator in enumerate(target.generators):
        gen_seed = generator.seed if generator.seed is not None else seed
        texts = _run_generator(generator, prompt, gen_seed, model_loader, Path(base_dir), progress, root)
        for text in texts:
            key = normalise(text)
            if key and key not in seen:
                seen.add(key)
                rows.append({"id": stim_id(text), "text": text, "generator": generator.type,
                             "generator_index": index})
    if not rows:
        raise StimError(f"target {target.name!r}: the generators produced no stims")
    return rows


def _run_generator(generator, prompt, seed, model_loader, base_dir, progress, root=None) -> list[str]:
    kind = generator.type
    if kind == "hardcoded":
        texts = hardcoded_stims(generator)
    elif kind == "from_dataset":
        texts = from_dataset(generator, seed=seed, base_dir=base_dir, root=root)
    elif kind in WRITERS:
        if model_loader is None:
            raise StimError(f"{kind} needs a model to write questions")
        template = load_template(generator, base_dir, root)
        model, tokenizer = model_loader(generator.model)
        write = {"oneshot_qs": oneshot_questions, "persona": persona_questions, "custom": custom_questions}[kind]
        return write(model, tokenizer, generator, prompt, seed=seed, progress=progress, template=template)
    else:
        raise StimError(f"unknown generator type {kind!r} (hardcoded, from_dataset, oneshot_qs, persona, custom)")
    if progress is not None:
        progress(len(texts), None, phase="stim", generator=kind)
    return texts


def hardcoded_stims(generator) -> list[str]:
    """The listed stims, the first ``numq`` distinct ones (0 or None: all)."""
    texts, seen = [], set()
    for text in (t.strip() for t in generator.stims if isinstance(t, str)):
        if normalise(text) and normalise(text) not in seen:
            seen.add(normalise(text))
            texts.append(text)
    return texts[: generator.numq] if generator.numq else texts


# --- from_dataset -----------------------------------------------------------------------


def from_dataset(generator, *, seed: int, base_dir: Path, root=None) -> list[str]:
    """The generator's messages: ``numq`` of them drawn with ``seed`` (0: all), in dataset order."""
    if generator.path:
        texts = _read_data_path(generator, base_dir, root)
    elif generator.dataset:
        from bgit.pipeline.named_datasets import named_texts

        texts = named_texts(generator.dataset, generator.field)
    else:
        raise StimError("from_dataset needs a path or a named dataset")
    unique = _dedupe(t for t in texts if t)
    if generator.numq and generator.numq < len(unique):
        chosen = sorted(random.Random(seed).sample(range(len(unique)), generator.numq))
        unique = [unique[i] for i in chosen]
    return unique


def _read_data_path(generator, base_dir: Path, root) -> list[str]:
    from bgit.config import ConfigPathError, resolve_config_file

    try:  # the one resolver of config-named files, again right before reading (DESIGN §5)
        path = resolve_config_file(generator.path, Path(base_dir), Path(root) if root else None)
    except ConfigPathError as error:
        raise StimError(f"from_dataset: {error.reason}") from None
    pick = _picker(generator.field, generator.dataset)
    if path.is_dir():
        return _read_saved_dataset(path, pick)
    if not path.is_file():
        raise StimError(f"from_dataset: no such file or directory: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return _read_jsonl_texts(path, pick)
    if suffix in (".csv", ".tsv"):
        column = generator.field
        if column is None and generator.dataset:
            from bgit.pipeline.named_datasets import NAMED

            column = NAMED[generator.dataset].columns[0]
        return _read_csv_texts(path, column, "\t" if suffix == ".tsv" else ",")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]


def _picker(field: str | None, dataset: str | None) -> Callable[[dict, str], str | None]:
    """How one record gives its message: ``field``, else the named dataset's columns, else the
    first text value."""
    if field is None and dataset:
        from bgit.pipeline.named_datasets import message_of

        return lambda record, where: message_of(record, dataset, where)
    return lambda record, where: _pick(record, field, where)


def _dedupe(texts) -> list[str]:
    seen, out = set(), []
    for text in texts:
        key = normalise(text)
        if key and key not in seen:
            seen.add(key)
            out.append(" ".join(text.split()) if "\n" not in text else text.strip())
    return out


def _pick(record: dict, field: str | None, where: str) -> str | None:
    if field is not None:
        if field not in record:
            raise StimError(f"{where}: no field {field!r} (fields: {', '.join(map(str, record)) or 'none'})")
        value = record[field]
        return value.strip() if isinstance(value, str) else None
    for value in record.values():
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _read_jsonl_texts(path: Path, pick) -> list[str]:
    texts = []
    for number, line in enumerate(jsonl_lines(path.read_text(encoding="utf-8")), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise StimError(f"{path}:{number}: invalid JSON") from None
        if isinstance(record, str):
            texts.append(record.strip())
        elif isinstance(record, dict):
            texts.append(pick(record, f"{path}:{number}") or "")
        else:
            raise StimError(f"{path}:{number}: expected an object or a string")
    return texts


def _read_csv_texts(path: Path, field: str | None, delimiter: str) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if field is not None and reader.fieldnames is not None and field not in reader.fieldnames:
            raise StimError(f"{path}: no column {field!r} (columns: {', '.join(reader.fieldnames)})")
        column = field or (reader.fieldnames or [None])[0]
        if column is None:
            return []
        return [(row.get(column) or "").strip() for row in reader]


def _read_saved_dataset(path: Path, pick) -> list[str]:
    try:
        import datasets
    except ImportError:
        raise StimError(f"from_dataset: {path} is a directory; reading it needs the datasets package (pip install datasets)") from None
    try:
        data = datasets.load_from_disk(str(path))
    except Exception as error:  # datasets raises FileNotFoundError and its own errors
        raise StimError(f"from_dataset: cannot load {path}: {(str(error).splitlines() or [''])[0]}") from None
    if isinstance(data, datasets.DatasetDict):
        data = data["train"] if "train" in data else data[next(iter(data))]
    return [pick(record, str(path)) or "" for record in data]


# --- oneshot_qs, persona and custom ------------------------------------------------------

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def default_template(kind: str) -> str:
    name = "persona_template.txt" if kind == "persona" else "oneshot_qs_template.txt"
    return (DATA_DIR / name).read_text(encoding="utf-8")


def builtin_personas() -> list[str]:
    """bgit's own user personas (bgit/data/personas.txt), for persona generators that list none."""
    lines = (DATA_DIR / "personas.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def load_template(generator, base_dir: Path, root=None) -> str | None:
    """The generator's template: inline, or its template_path read now through the containment
    resolver (at most 1 MB, UTF-8, the placeholders its type needs); None: bgit's default."""
    if not generator.template_path:
        return generator.template
    from bgit.config import ConfigPathError, resolve_config_file
    from bgit.config.load import template_problem

    written = generator.template_path
    try:
        path = resolve_config_file(written, Path(base_dir), Path(root) if root else None)
    except ConfigPathError as error:
        raise StimError(f"template_path: {error.reason}") from None
    if not path.is_file():
        raise StimError(f"template_path: {written!r} is not a file")
    if path.stat().st_size > MAX_TEMPLATE_BYTES:
        raise StimError(f"template_path: {written!r} is over {MAX_TEMPLATE_BYTES} bytes")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise StimError(f"template_path: {written!r} is not UTF-8 text ({error.reason})") from None
    problem = template_problem(text, generator.type)
    if problem:
        raise StimError(f"template_path: {written!r}: {problem}")
    return text


def prompt_text(prompt) -> str:
    """The teacher prompt as plain text: its system messages (else all messages), joined."""
    messages = prompt.teacher_messages or []
    system = [m.get("content") or "" for m in messages if m.get("role") == "system"]
    return "\n\n".join(system or [m.get("content") or "" for m in messages]).strip()


def fill_template(template: str, kind: str, **values) -> str:
    try:
        return string.Template(template).substitute(**values)
    except KeyError as error:
        known = ", ".join("${" + k + "}" for k in values)
        raise StimError(f"{kind} template: unknown variable ${{{error.args[0]}}} (known: {known})") from None
    except ValueError as error:
        raise StimError(f"{kind} template: {error}") from None


def oneshot_questions(model, tokenizer, generator, prompt, *, seed: int, progress=None,
                      template: str | None = None) -> list[str]:
    template = template or generator.template or default_template("oneshot_qs")
    request = fill_template(template, "oneshot_qs", numq=generator.numq, prompt_u=prompt_text(prompt))
    return sample_questions(model, tokenizer, request, generator, seed=seed, kind="oneshot_qs", progress=progress)


def custom_questions(model, tokenizer, generator, prompt, *, seed: int, progress=None,
                     template: str | None = None) -> list[str]:
    """The user's template is the whole prompt: the writer model continues it as plain text."""
    template = template or generator.template
    if not template:
        raise StimError("custom generators need template_path or template_content")
    request = fill_template(template, "custom", numq=generator.numq, prompt_u=prompt_text(prompt))
    return sample_questions(model, tokenizer, request, generator, seed=seed, kind="custom", progress=progress,
                            raw=True)


def persona_questions(model, tokenizer, generator, prompt, *, seed: int, progress=None,
                      template: str | None = None) -> list[str]:
    """``numq`` questions per listed persona; none listed: ``numq`` built-in personas drawn with
    the seed (cycling through all of them before repeating one), one question each."""
    template = template or generator.template or default_template("persona")
    personas, per_persona = generator.personas, generator.numq
    if not personas:
        builtin = builtin_personas()
        rng = random.Random(seed)
        personas = []
        while len(personas) < generator.numq:
            personas += rng.sample(builtin, min(len(builtin), generator.numq - len(personas)))
        per_persona = 1
    questions: list[str] = []
    for number, persona in enumerate(personas):
        request = fill_template(template, "persona", numq=per_persona, prompt_u=prompt_text(prompt), persona=persona)
        questions += sample_questions(model, tokenizer, request, generator, seed=seed * 7919 + number,
                                      kind="persona", progress=progress, numq=per_persona)
    return questions


def max_attempts(numq: int) -> int:
    """Sampled completions allowed per request: small models often write no usable line."""
    return max(16, 2 * numq)


def sample_questions(model, tokenizer, request: str, generator, *, seed: int, kind: str, progress=None,
                     numq: int | None = None, raw: bool = False) -> list[str]:
    """Sample completions of ``request`` until ``numq`` (default: the generator's) unique
    questions are parsed. ``raw``: ``request`` is the whole prompt, not a chat user message."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

    from bgit.models import render_context
    from bgit.models.sampling import sampling_processors
    from bgit.pipeline.rollout import eos_ids, left_pad

    numq = generator.numq if numq is None else numq
    if numq < 1:
        raise StimError(f"{kind}: numq must be >= 1, got {numq}")
    context = tokenizer(request)["input_ids"] if raw else render_context(tokenizer, [], user=request)
    eos = eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    greedy = generator.temperature <= 0
    config = GenerationConfig(max_new_tokens=generator.max_tokens, do_sample=False, temperature=None, top_k=None,
                              top_p=None, eos_token_id=eos, pad_token_id=pad_id)
    sampling = LogitsProcessorList([] if greedy else sampling_processors(float(generator.temperature)))
    attempts_allowed = 1 if greedy else max_attempts(numq)  # greedy repeats itself
    found: list[str] = []
    seen = {normalise(q) for q in parse_questions(request)}  # never echo the template's examples
    attempts = 0
    while len(found) < numq and attempts < attempts_allowed:
        rows = min(QUESTIONS_PER_CALL, attempts_allowed - attempts)
        torch.manual_seed(seed * 1_000_003 + attempts)
        input_ids, mask, _ = left_pad([context] * rows, pad_id, model.device)
        enough = _EnoughQuestions(tokenizer, input_ids.shape[1], set(eos), seen, numq - len(found))
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config,
                                 logits_processor=sampling, stopping_criteria=StoppingCriteriaList([enough]))
        attempts += rows
        for question in enough.questions(out):
            key = normalise(question)
            if key not in seen and len(found) < numq:
                seen.add(key)
                found.append(question)
        if progress is not None:
            progress(0, numq, phase="stim", generator=kind, found=len(found))
    if len(found) < numq:
        raise StimError(f"{kind} produced {len(found)} of {numq} questions after {attempts} attempts")
    if progress is not None:
        progress(numq, numq, phase="stim", generator=kind, found=len(found))
    return found


class _EnoughQuestions:
    """A stopping criterion for one question-writing ``generate`` call: every
    :data:`CHECK_EVERY` steps it parses the rows' finished lines and stops the call once they
    hold ``needed`` new questions (a row usually lists many; the rest of its budget would be
    spent on questions nobody takes). :meth:`questions` reads the finished lines of the output:
    a row cut by this stop or by its token budget loses its unfinished last line."""

    CHECK_EVERY = 16

    def __init__(self, tokenizer, prompt_length: int, eos: set[int], seen: set[str], needed: int):
        self.tokenizer, self.prompt_length, self.eos = tokenizer, prompt_length, eos
        self.seen, self.needed, self.steps = seen, needed, 0

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        self.steps += 1
        done = self.steps % self.CHECK_EVERY == 0 and self._new(self.questions(input_ids)) >= self.needed
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    def _new(self, questions: list[str]) -> int:
        return len({normalise(q) for q in questions} - self.seen)

    def questions(self, sequences) -> list[str]:
        found = []
        for row in sequences[:, self.prompt_length:].tolist():
            finished = any(token in self.eos for token in row)
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            found += parse_questions(text if finished else text[: text.rfind("\n") + 1])
        return found


_LIST_MARKER = re.compile(
    r"""^(?:
        [-*\u2022+>]+                                  # bullets, quote marks
      | \(?\d{1,3}\s*[.):\]]                           # 1.  1)  (1)  1:
      | \d{1,3}\s+(?=(?:q|question)\s*\d*\s*[:.])         # "5 Q: ..." 
      | \(?[a-zA-Z][.)]\s                              # a)  b.
      | (?:q|a|question|user|prompt|message)\s*\d*\s*[:.)-]   # Q:  Question 3:  User:
      | \#+                                            # markdown headings
    )\s*""",
    re.IGNORECASE | re.VERBOSE,
)
# Requests without a question mark must start like one ("Explain ...", "Please ...").
_REQUEST_START = re.compile(
    r"^(?:explain|describe|write|tell|give|list|name|compare|summari[sz]e|suggest|recommend|help|show"
    r"|create|make|find|define|imagine|share|translate|calculate|convert|draft|compose|plan|teach|outline|discuss"
    r"|please|i need|i want|i'd like|i would like|let's|walk me)\b",
    re.IGNORECASE,
)
_QUOTES = "\"'\u201c\u201d\u2018\u2019`"


def parse_questions(text: str) -> list[str]:
    """Questions/requests found in a model's list-like output, in order, deduplicated."""
    found, seen = [], set()
    for line in text.splitlines():
        question = _clean_line(line)
        if question is None:
            continue
        key = normalise(question)
        if key not in seen:
            seen.add(key)
            found.append(question)
    return found


def _clean_line(line: str) -> str | None:
    text = line.strip()
    for _ in range(3):  # '"1. - Q: ...' has stacked markers
        stripped = _LIST_MARKER.sub("", text.lstrip(_QUOTES + "*"), count=1).strip()
        if stripped == text:
            break
        text = stripped
    text = text.replace("**", "").replace("__", "").strip()
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    text = text.strip(_QUOTES).strip()
    text = " ".join(text.split())
    if not (MIN_QUESTION_CHARS <= len(text) <= MAX_QUESTION_CHARS) or len(text.split()) < 3:
        return None
    if text.endswith(":"):  # "Here are 10 questions:"
        return None
    if text.endswith("?") or (_REQUEST_START.match(text) and text[-1] not in ",;-"):
        return text
    return None

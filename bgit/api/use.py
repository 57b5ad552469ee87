"""Using bakes: diff, eval, generate, chat, export, metrics."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bgit.api._open import RepoLike, open_repo
from bgit.evaluate import (DiffResult, EvalResult, diff_views, empty_bake, evaluate_bake, export_bake, open_bake,
                           open_commit, read_stims_file, work_tree_bake, write_eval)
from bgit.evaluate.chat import ChatSession, answer
from bgit.evaluate.metrics import plot_metrics, read_metrics
from bgit.evaluate.models import load_baked
from bgit.evaluate.plots import plot_weight_heatmap
from bgit.util.progress import SILENT, Reporter
from bgit.repo.sync import uncommitted_paths


def diff(repo: RepoLike = ".", ref_a: str | None = None, ref_b: str | None = None, behaviour: bool = False,
         plot: str | os.PathLike | None = None, base: str | None = None) -> DiffResult:
    """Config, datasets, metrics and adapter deltas between two bakes (and the KL between the
    two baked models with ``behaviour``); ``plot`` writes a per-layer heatmap PNG.

    As git diff: no ref compares HEAD with the work tree when tracked files changed (else
    HEAD~1 with HEAD: what the last bake changed); one ref compares it with the work tree;
    two compare them. Before a first commit (or for the first commit's parent) the other
    side is nothing: every file added."""
    repo = open_repo(repo)
    a, b = _diff_sides(repo, ref_a, ref_b)
    result = diff_views(a, b, behaviour=behaviour, base=base)
    if plot:
        plot_weight_heatmap(result.weights.modules, plot, title=f"{a.ref} .. {b.ref}: relative change")
        result.plot = str(plot)
    return result


def _diff_sides(repo, ref_a: str | None, ref_b: str | None):
    head = repo.head_commit()
    if ref_a is None:
        if head is None or uncommitted_paths(repo):
            return (empty_bake() if head is None else open_commit(repo, "HEAD")), work_tree_bake(repo)
        first = not head.parents
        return (empty_bake() if first else open_commit(repo, "HEAD~1")), open_commit(repo, "HEAD")
    return open_commit(repo, ref_a), (work_tree_bake(repo) if ref_b is None else open_commit(repo, ref_b))


def eval(repo: RepoLike = ".", ref: str = "HEAD", stims: str | os.PathLike | list[str] | None = None,
         max_stims: int = 64, max_tokens: int | None = None, seed: int = 0, save: bool = True,
         base: str | None = None, config: str | os.PathLike | None = None, reporter: Reporter = SILENT) -> EvalResult:
    """KL closure of a bake on its held-out stims (or ``stims``: a file or a list of messages);
    stored as a git note on refs/notes/bgit-eval unless ``save=False``. An adapter committed
    by hand (no bake.yml) works too: ``base`` or its adapter_config.json names the base model,
    ``config`` (or the commit's input.yml) the teacher prompt."""
    repo = open_repo(repo, reporter)
    bake = open_bake(repo, ref, require_record=False, base=base)
    if config is not None:
        bake.config_path = Path(config)
    if isinstance(stims, (str, os.PathLike)):
        stims = read_stims_file(stims)
    results = evaluate_bake(bake, stims, max_stims=max_stims, max_tokens=max_tokens, seed=seed, reporter=reporter)
    if save:
        write_eval(repo, bake.commit, results)
    return results


@dataclass
class GenerateResult:
    commit: str
    scale: float
    system: str | None
    seed: int | None
    answers: list[dict]                     # {prompt, response, tokens}
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return vars(self).copy()


def generate(repo: RepoLike = ".", prompts: list[str] = (), ref: str = "HEAD", max_tokens: int = 128,
             scale: float = 1.0, system: str | None = None, seed: int | None = None,
             base: str | None = None) -> GenerateResult:
    """One answer per prompt from the baked model (greedy, or sampled at T=1 with ``seed``);
    ``scale`` multiplies the adapter's delta (0 = base model); ``base``: the base model of an
    adapter committed by hand whose adapter_config.json names none."""
    bake = open_bake(open_repo(repo), ref, require_record=False, base=base)
    model, tokenizer, notes = load_baked(bake, scale=scale)
    answers = [answer(model, tokenizer, prompt, system=system, max_tokens=max_tokens, seed=seed,
                      temperature=1.0 if seed is not None else 0.0) for prompt in prompts]
    return GenerateResult(bake.sha, scale, system, seed, answers, notes)


def chat_session(repo: RepoLike = ".", ref: str = "HEAD", scale: float = 1.0, system: str | None = None,
                 max_tokens: int = 256, base: str | None = None) -> tuple[ChatSession, list[str]]:
    """A chat session with a baked model, and notes about its loading."""
    bake = open_bake(open_repo(repo), ref, require_record=False, base=base)
    model, tokenizer, notes = load_baked(bake, scale=scale)
    session = ChatSession(model, tokenizer, label=f"{bake.short} ({bake.base_model_name})", scale=scale,
                          system=system, max_tokens=max_tokens)
    return session, notes


def export(repo: RepoLike = ".", ref: str = "HEAD", out: str | os.PathLike = "export",
           format: str = "peft", base: str | None = None) -> Path:
    """The bake as a PEFT adapter directory or a merged transformers model directory."""
    return export_bake(open_bake(open_repo(repo), ref, require_record=False, base=base), out, format)


@dataclass
class MetricsResult:
    commit: str
    summary: str
    train: list[tuple[float, float]]          # (step, train KL)
    eval: list[tuple[float, float | None, float]]   # (step, epoch, eval KL)
    rows: int
    final: dict
    plot: str | None = None

    def to_json(self) -> dict:
        return {"commit": self.commit, "train": [{"step": s, "train_kl": k} for s, k in self.train],
                "eval": [{"step": s, "epoch": e, "eval_kl": k} for s, e, k in self.eval],
                "final": self.final, "plot": self.plot}

    def as_dict(self) -> dict:
        """The shape bgit.evaluate.metrics' chart and plot functions take."""
        return {"train": self.train, "eval": self.eval, "rows": self.rows, "final": self.final}


def metrics(repo: RepoLike = ".", ref: str = "HEAD", plot: str | os.PathLike | None = None) -> MetricsResult:
    """A bake's KL curve (train KL per step, eval KL per epoch); ``plot`` writes it as a PNG."""
    bake = open_bake(open_repo(repo), ref, require_adapter=False)
    data = read_metrics(bake)
    summary = bake.message.splitlines()[0] if bake.message.strip() else ""
    result = MetricsResult(bake.sha, summary, data["train"], data["eval"], data["rows"], data["final"])
    if plot:
        plot_metrics(data, plot, title=f"{bake.short}: {summary}")
        result.plot = str(plot)
    return result

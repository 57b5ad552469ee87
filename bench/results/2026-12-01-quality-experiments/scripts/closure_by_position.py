"""Closure of a bake by response position on the quality bench's held-out file: tokens 1-32
(the length the bake trained on) against 33-64, on quality_lab's cached held-out responses.

    .venv/bin/python bench/results/2026-12-01-quality-experiments/scripts/closure_by_position.py \
        REPO REV CASE EVAL_CACHE     # e.g. /tmp/lab20/w/french 10f549d french /tmp/lab20/w/eval-cache/french.json
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # this checkout's bgit and benches
import quality_bench as qb
import quality_lab as ql
from bgit.evaluate import open_bake, read_stims_file
from bgit.evaluate.closure import _kl, _load_eval_model, held_out_items, response_logits
from bgit.repo import Repository

repo, rev, case = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
cache = json.loads(Path(sys.argv[4]).read_text())
bake = open_bake(Repository.open(repo), rev)
models = _load_eval_model(bake, None, "auto")
items, _, _ = held_out_items(bake, models.tokenizer, read_stims_file(qb.HELDOUT / f"{case}.jsonl"), 10_000, models.teacher_tokenizer)
config = bake.config()
sums = {}
for n, item in enumerate(items):
    target = config.target(item.target)
    key = ql._item_key(bake, item, 64, target.temperature, n)
    item.response_ids, _ = cache[key]
    if not item.response_ids:
        continue
    teacher = models.teacher_logits(item)
    with models.parent():
        base_kl = _kl(teacher, response_logits(models.model, item.student_ids, item.response_ids))
    baked_kl = _kl(teacher, response_logits(models.model, item.student_ids, item.response_ids))
    for name, sl in (("1-32", slice(0, 32)), ("33-64", slice(32, 64))):
        s = sums.setdefault(name, [0.0, 0.0, 0])
        s[0] += float(base_kl[sl].sum()); s[1] += float(baked_kl[sl].sum()); s[2] += len(item.response_ids[sl])
for name, (b, k, t) in sums.items():
    print(f"{rev} {case} tokens {name}: {t} tokens, KL(prompted||base) {b / t:.4f} -> baked {k / t:.4f}, closure {1 - k / b:.3f}")

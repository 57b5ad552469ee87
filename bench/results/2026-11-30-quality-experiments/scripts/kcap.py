import json, sys, numpy as np, torch
sys.path.insert(0, "/work/main/bench"); sys.path.insert(0, "/work/main")
torch.set_num_threads(1)
from bgit.evaluate import open_bake, read_stims_file
from bgit.evaluate.closure import _kl, _load_eval_model, held_out_items, response_logits
from bgit.train.loss import topk_kl
from bgit.repo import Repository
import quality_lab as ql
case, rev = sys.argv[1], sys.argv[2]
bake = open_bake(Repository.open(f"/tmp/ql/{case}"), rev)
models = _load_eval_model(bake, None, "auto")
items, _, _ = held_out_items(bake, models.tokenizer, read_stims_file(f"/work/main/bench/data/heldout/{case}.jsonl"), 10000, models.teacher_tokenizer)
cache = json.load(open(f"/tmp/ql/eval-cache/{case}.json"))
cfg = bake.config()
Ks = [20, 50, 100, 200, 500]
full = 0.0; binned = {k: 0.0 for k in Ks}; mass = {k: 0.0 for k in Ks}; ntok = 0
for n, item in enumerate(items):
    key = ql._item_key(bake, item, 64, cfg.target(item.target).temperature, n)
    item.response_ids = cache[key][0]
    teacher = models.teacher_logits(item)
    s1 = response_logits(models.model, item.student_ids, item.response_ids)
    full += float(_kl(teacher, s1).sum()); ntok += len(item.response_ids)
    lp = torch.log_softmax(teacher, -1)
    for k in Ks:
        top = lp.topk(k, -1)
        m = top.values.exp().sum(-1)
        tail = torch.log1p(-m.clamp(max=1-1e-7))
        binned[k] += float(topk_kl(s1, top.indices, top.values, tail).sum()); mass[k] += float((1 - m).sum())
print(f"full KL/token {full/ntok:.4f}")
for k in Ks:
    print(f"K={k:3d}: binned KL/token {binned[k]/ntok:.4f} ({binned[k]/full:.2f} of full)  teacher tail mass {mass[k]/ntok:.3f}")

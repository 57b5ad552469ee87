import json, sys, numpy as np, torch
sys.path.insert(0, "/work/main/bench"); sys.path.insert(0, "/work/main")
torch.set_num_threads(1)
from bgit.evaluate import open_bake, read_stims_file
from bgit.evaluate.closure import _kl, _load_eval_model, held_out_items, response_logits
from bgit.train.loss import topk_kl
from bgit.repo import Repository
import quality_lab as ql
case, rev = sys.argv[1], sys.argv[2]
repo = f"/tmp/ql/{case}"
bake = open_bake(Repository.open(repo), rev)
models = _load_eval_model(bake, None, "auto")
items, _, _ = held_out_items(bake, models.tokenizer, read_stims_file(f"/work/main/bench/data/heldout/{case}.jsonl"), 10000, models.teacher_tokenizer)
cache = json.load(open(f"/tmp/ql/eval-cache/{case}.json"))
cfg = bake.config()
base = np.zeros(64); baked = np.zeros(64); cnt = np.zeros(64); binned = np.zeros(64)
for n, item in enumerate(items):
    t = cfg.target(item.target)
    key = ql._item_key(bake, item, 64, t.temperature, n)
    item.response_ids = cache[key][0]
    T = len(item.response_ids)
    teacher = models.teacher_logits(item)
    with models.parent():
        s0 = response_logits(models.model, item.student_ids, item.response_ids)
    s1 = response_logits(models.model, item.student_ids, item.response_ids)
    k0 = _kl(teacher, s0).numpy(); k1 = _kl(teacher, s1).numpy()
    lp = torch.log_softmax(teacher, -1); top = lp.topk(20, -1)
    tail = torch.log1p(-top.values.exp().sum(-1).clamp(max=1-1e-7))
    kb = topk_kl(s1, top.indices, top.values, tail).numpy()
    base[:T] += k0; baked[:T] += k1; cnt[:T] += 1; binned[:T] += kb
for lo, hi in [(0,1),(1,2),(2,4),(4,8),(8,16),(16,32),(32,64)]:
    print(f"pos {lo:2d}-{hi:2d}: base {base[lo:hi].sum()/cnt[lo:hi].sum():.3f} baked {baked[lo:hi].sum()/cnt[lo:hi].sum():.3f} binned {binned[lo:hi].sum()/cnt[lo:hi].sum():.3f}  share of baked KL {baked[lo:hi].sum()/baked.sum():.2f} share base {base[lo:hi].sum()/base.sum():.2f}")
print("total closure", 1 - baked.sum()/base.sum(), "binned-only closure", 1 - binned.sum()/base.sum())

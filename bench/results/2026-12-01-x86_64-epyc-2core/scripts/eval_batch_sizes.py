"""The eval's KL passes (bgit.evaluate.closure._batch_kls) at several batch sizes (BATCH_LOGITS = 2**N
logit floats), on one bake's held-out items, in one process after one model load.

    cd BAKE_REPO && python eval_batch_sizes.py REF 20 22 24 26
"""
import time, sys, resource
from bgit.evaluate import open_bake
from bgit.evaluate import closure, forcing
from bgit.repo import Repository
bake = open_bake(Repository.open("."), sys.argv[1])
models=closure._load_eval_model(bake, None, "auto")
items,_,_=closure.held_out_items(bake, models.tokenizer, None, 64, models.teacher_tokenizer)
for budget in [int(a) for a in sys.argv[2:]]:
    forcing.BATCH_LOGITS = 1 << budget
    bs=closure.batches(items, models.vocab)
    r0=resource.getrusage(resource.RUSAGE_SELF); t3=time.time()
    for b in bs: closure._batch_kls(models, b)
    r1=resource.getrusage(resource.RUSAGE_SELF)
    print(budget, len(bs), "wall", round(time.time()-t3,1), "user", round(r1.ru_utime-r0.ru_utime,1), "sys", round(r1.ru_stime-r0.ru_stime,1), "maxrss MB", r1.ru_maxrss//1024, flush=True)

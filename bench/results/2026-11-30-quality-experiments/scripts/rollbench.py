import time, sys, torch
sys.path.insert(0, "/work/main")
from bgit.models.resolve import resolve_model
from bgit.models.loading import load_model
from bgit.pipeline.rollout import rollout
from bgit.pipeline.augment import bundled_messages
from bgit.config.schema import PromptConfig, TargetConfig
from bgit.record import stim_id
torch.set_num_threads(int(sys.argv[1]))
m, tok = load_model(resolve_model("smollm2-135m"), "float32", "cpu")
texts = list(bundled_messages())[:64]
stims = [{"id": stim_id(t), "text": t} for t in texts]
prompt = PromptConfig(teacher_messages=[{"role": "system", "content": "You are a pirate."}])
target = TargetConfig(max_tokens=64, num_traj_per_stimulus=1)
for ac in [False, True, False, True]:
    t = time.time()
    rows = rollout(m, tok, stims, prompt, target, seed=0, batch_size=64, autocast=ac, min_new_tokens=64)
    n = sum(len(r["response_ids"]) for r in rows)
    print("autocast" if ac else "fp32", f"{n/(time.time()-t):.1f} tok/s", flush=True)

import time, torch, sys, copy
sys.path.insert(0, "/work/main")
torch.set_num_threads(1)
from bgit.models.resolve import resolve_model
from bgit.models.loading import load_model
m, tok = load_model(resolve_model("smollm2-135m"), "float32", "cpu")
mb = copy.deepcopy(m).to(torch.bfloat16)
msgs = [[{"role":"user","content":f"Tell me about topic number {i} in a few sentences."}] for i in range(32)]
enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", padding=True, return_dict=True)
for name in ["fp32", "autocast", "copy"]:
    t = time.time()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=(name=="autocast")):
        out = (mb if name=="copy" else m).generate(**enc, max_new_tokens=32, do_sample=True, min_new_tokens=32, pad_token_id=tok.pad_token_id)
    print(name, f"{32*32/(time.time()-t):.1f} tok/s", flush=True)

import runpy, sys
from pathlib import Path
sys.argv = ["train_step_profile.py", "none"]
g = runpy.run_path(str(Path(__file__).with_name("train_step_profile.py")))
from torch.profiler import profile, ProfilerActivity
step = g["step"]
with g["training_setup"](g["peft"], g["bake"].model, False):
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for j in range(23, 28):
            step(j)
rows = [e for e in prof.key_averages(group_by_input_shape=True) if e.key == "aten::mm"]
rows.sort(key=lambda e: -e.self_cpu_time_total)
tot = sum(e.self_cpu_time_total for e in rows)
lora = sum(e.self_cpu_time_total for e in rows if any(16 in s for s in e.input_shapes if s))
for e in rows[:25]:
    print(round(e.self_cpu_time_total/1e3), "ms", e.count, e.input_shapes)
print("mm total ms", round(tot/1e3), "with a rank-16 dim", round(lora/1e3))

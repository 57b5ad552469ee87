cd /work/wt/lab
LOG=/tmp/lab28/experiments.jsonl
.venv/bin/python bench/quality_lab.py --cases french --threads 2 --eval-max-tokens 64 --workdir /tmp/lab20/w --log $LOG --set 'BAKE.model.peft_config={"layers_to_transform": [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29]}' --label "E28 LoRA on layers 10-29 only" > /tmp/lab28/E28.out 2>&1
.venv/bin/python bench/quality_lab.py --cases french --threads 2 --eval-max-tokens 64 --workdir /tmp/lab20/w --log $LOG --set BAKE.model.baked_adapter_config.r=64 --set BAKE.model.baked_adapter_config.lora_alpha=64 --label "E29 LoRA r 64, alpha 64 (r 16's step size, rsLoRA's rule)" > /tmp/lab28/E29.out 2>&1
.venv/bin/python bench/quality_lab.py --cases french --threads 2 --eval-max-tokens 64 --workdir /tmp/lab20/w --log $LOG --set TARGET.max_tokens=64 --label "E30 1,000 stims x 64 tokens (the held-out responses' length)" > /tmp/lab28/E30.out 2>&1

cd /work/wt/lp
LOG=/tmp/lab15/experiments.jsonl
.venv/bin/python bench/quality_lab.py --cases french --threads 2 --eval-max-tokens 64 --workdir /tmp/lab15/w --log $LOG --label "E15 defaults (rerun, 2026-12-01)" > /tmp/lab15/E15.out 2>&1
LAB_LORAPLUS=16 .venv/bin/python bench/quality_lab.py --cases french --threads 2 --eval-max-tokens 64 --workdir /tmp/lab15/w --log $LOG --set BAKE.optimizer.max_grad_norm=1.00001 --label "E16 LoRA+ ratio 16" > /tmp/lab15/E16.out 2>&1
LAB_LORAPLUS=4 .venv/bin/python bench/quality_lab.py --cases french --threads 2 --eval-max-tokens 64 --workdir /tmp/lab15/w --log $LOG --set BAKE.optimizer.max_grad_norm=1.00002 --label "E17 LoRA+ ratio 4" > /tmp/lab15/E17.out 2>&1
cd /work/wt/lp
LOG=/tmp/lab15/experiments.jsonl
.venv/bin/python bench/quality_lab.py --cases french --threads 2 --eval-max-tokens 64 --workdir /tmp/lab15/w --log $LOG --set "BAKE.optimizer.betas=[0.9, 0.95]" --label "E18 Adam betas 0.9/0.95" > /tmp/lab15/E18.out 2>&1
cd /work/wt/lp
.venv/bin/python bench/quality_lab.py --cases customer_service --threads 2 --eval-max-tokens 64 --workdir /tmp/lab15/w --log /tmp/lab15/experiments.jsonl --label "E19 customer_service: 120 written questions (example numq 40 -> 120)" > /tmp/lab15/E19.out 2>&1

# The trainer bench, bgit against TRL's GKDTrainer in one invocation, on the Intel Xeon
# (AVX-512 bf16, AMX, 2 cores), idle; tree 5a13ca3.
cd /work/wt/qb
.venv/bin/python bench/trainer_bench.py --examples 64 --eval-examples 8 --response-tokens 128 --lr 1e-3 \
  --runs base,bgit,trl,bgit-ckpt,trl-ckpt,bgit-bf16,trl-bf16,bgit-full

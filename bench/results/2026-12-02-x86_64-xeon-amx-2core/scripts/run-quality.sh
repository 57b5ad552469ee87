# The quality bench with bgit's defaults (1,000 stims per bake, 32-token rollouts, 2 epochs) on
# the Intel Xeon with AVX-512 bf16 and AMX (2 cores), idle; held-out responses of 64 tokens.
cd /work/wt/qb
.venv/bin/python bench/quality_bench.py --threads 2 --eval-max-tokens 64 --workdir /tmp/qb/w \
  --log /tmp/qb/quality.jsonl \
  --label "defaults on Intel Xeon (AVX-512 bf16, AMX), $(git rev-parse --short HEAD)" \
  > /tmp/qb/quality.log 2>&1

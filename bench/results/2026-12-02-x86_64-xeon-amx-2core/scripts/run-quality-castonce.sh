# The quality bench with bgit's defaults on fc89c59 (the frozen weights cast to bf16 once), a
# fresh work directory (every phase computed), on the Intel Xeon with AVX-512 bf16 and AMX
# (2 cores), idle; held-out responses of 64 tokens.
cd /work/wt/new
.venv/bin/python bench/quality_bench.py --threads 2 --eval-max-tokens 64 --workdir /tmp/qb/w2 \
  --log /tmp/qb/quality-castonce.jsonl \
  --label "defaults on Intel Xeon (AVX-512 bf16, AMX), $(git rev-parse --short HEAD)" \
  > /tmp/qb/quality-castonce.log 2>&1

cd /work/wt/d
.venv/bin/python bench/quality_bench.py --cases french --threads 2 --eval-max-tokens 64 --workdir /tmp/qb/w-old \
  --set TARGET.max_tokens=64 --set TARGET.augment.min_stims=512 \
  --log /tmp/qb/quality-old-defaults.jsonl \
  --label "the previous defaults (512 stims, 64 tokens) on AMD EPYC, paired with the run above, $(git rev-parse --short HEAD)" \
  > /tmp/qb/quality-old-defaults.log 2>&1

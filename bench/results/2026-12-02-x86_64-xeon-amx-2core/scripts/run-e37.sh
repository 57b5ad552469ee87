# E37: customer_service trained 4x the default epochs (8 instead of 2), the quality bench's stim
# and rollout phases reused: where does its closure level off? Intel Xeon (AVX-512 bf16, AMX),
# 2 cores, idle; tree 5a13ca3.
cd /work/wt/qb
.venv/bin/python bench/quality_lab.py --cases customer_service --threads 2 --eval-max-tokens 64 \
  --workdir /tmp/qb/w --log /tmp/qb/experiments.jsonl --set BAKE.epochs=8 \
  --label "E37 customer_service, 8 epochs"

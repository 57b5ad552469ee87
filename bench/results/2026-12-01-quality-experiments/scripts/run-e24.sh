# E24: today's defaults (1,000 stims x 32 tokens) + a third epoch, french; reuses the quality
# bench's stim and rollout phases (/tmp/qb/w/french), so only training differs.
cd /work/wt/d
.venv/bin/python bench/quality_lab.py --cases french --threads 2 --eval-max-tokens 64 --workdir /tmp/qb/w \
  --log /tmp/qb/experiments-e24.jsonl --set BAKE.epochs=3 \
  --label "E24 the new defaults (1000 x 32) + a third epoch" > /tmp/qb/E24.out 2>&1

# The quality bench with a third epoch (BAKE.epochs=3) on top of the defaults, the tree 271c716
# (a worktree; the code of 077dd00, whose defaults are 1,000 stims x 32 tokens). Idle AMD EPYC,
# 2 threads, held-out responses of 64 tokens. Started on all four cases; stopped after pirate
# (this machine ran ~45% slower than during the morning's bench, so the four would not fit the session),
# then two_targets alone.
cd /work/wt/e3
.venv/bin/python bench/quality_bench.py --threads 2 --eval-max-tokens 64 --set BAKE.epochs=3 \
  --workdir /tmp/qb3/w --log /tmp/qb3/quality.jsonl \
  --label "defaults + BAKE.epochs=3 on AMD EPYC, $(git rev-parse --short HEAD)" > /tmp/qb3/quality.log 2>&1
# (stopped after the pirate row)
.venv/bin/python bench/quality_bench.py --cases two_targets --threads 2 --eval-max-tokens 64 \
  --set BAKE.epochs=3 --workdir /tmp/qb3/w --log /tmp/qb3/quality-tt.jsonl \
  --label "defaults + BAKE.epochs=3 on AMD EPYC, $(git rev-parse --short HEAD)" > /tmp/qb3/quality-tt.log 2>&1
# then, after the test suite, customer_service alone
.venv/bin/python bench/quality_bench.py --cases customer_service --threads 2 --eval-max-tokens 64 \
  --set BAKE.epochs=3 --workdir /tmp/qb3/w --log /tmp/qb3/quality-cs.jsonl \
  --label "defaults + BAKE.epochs=3 on AMD EPYC, $(git rev-parse --short HEAD)" > /tmp/qb3/quality-cs.log 2>&1

# The quality bench with the new defaults (1,000 stims per bake, 32-token rollouts), before they
# were committed: a worktree of 60c7286 with only bgit/config/schema.py's two defaults changed
# (commit b404f16 on a scratch branch; the same two values main now has). Idle AMD EPYC, 2 threads;
# held-out responses of 64 tokens, as the earlier tables' (whose defaults sampled 64).
cd /work/wt/d
.venv/bin/python bench/quality_bench.py --threads 2 --eval-max-tokens 64 --workdir /tmp/qb/w \
  --log /tmp/qb/quality.jsonl \
  --label "E23 defaults (1000 stims/bake, 32 tokens) on AMD EPYC, $(git rev-parse --short HEAD)" \
  > /tmp/qb/quality.log 2>&1

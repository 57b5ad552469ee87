# E20 and E21, one after the other on the idle AMD EPYC machine (AVX2), tree e9fdd99
# (its bake code is eb04f1b's); E21 reuses E20's stim and rollout phases.
cd /work/wt/q
LOG=/tmp/lab20/experiments.jsonl
L=".venv/bin/python bench/quality_lab.py --cases french --threads 2 --eval-max-tokens 64 --workdir /tmp/lab20/w --log $LOG"
$L --label "E20 defaults on the AMD EPYC machine (2026-12-01)" > /tmp/lab20/E20.out 2>&1
$L --set BAKE.scheduler.type=constant --label "E21 constant schedule (after warm-up)" > /tmp/lab20/E21.out 2>&1

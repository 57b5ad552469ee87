# E20, E21 and E23, one after the other on the idle AMD EPYC machine (AVX2), tree e9fdd99
# (its bake code is eb04f1b's); E21 reuses E20's stim and rollout phases.
cd /work/wt/q
LOG=/tmp/lab20/experiments.jsonl
L=".venv/bin/python bench/quality_lab.py --cases french --threads 2 --eval-max-tokens 64 --workdir /tmp/lab20/w --log $LOG"
$L --label "E20 defaults on the AMD EPYC machine (2026-12-01)" > /tmp/lab20/E20.out 2>&1
$L --set BAKE.scheduler.type=constant --label "E21 constant schedule (after warm-up)" > /tmp/lab20/E21.out 2>&1
# E23, later (its own log, appended to experiments.jsonl), reusing nothing but the parent's
# cached held-out responses; a `pip install -e .` of a few seconds ran beside its training.
.venv/bin/python bench/quality_lab.py --cases french --threads 2 --eval-max-tokens 64 --workdir /tmp/lab20/w --log /tmp/lab20/experiments-e23.jsonl --set TARGET.max_tokens=32 --set TARGET.augment.min_stims=1000 --label "E23 1000 stims x 32 tokens (about the rollout tokens of 512 x 64)" > /tmp/lab20/E23.out 2>&1

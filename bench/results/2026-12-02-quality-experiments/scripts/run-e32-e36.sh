#!/bin/sh
# E32-E36 (2026-12-02), one after the other on the idle AMD EPYC (2 cores, AVX2), from a
# worktree of this repository with .venv linked; E32 on the tree f13f284, E33 on 53e9922 (the
# teacher prefix shared by loss: full). /tmp/qb/w holds the quality bench's repositories of
# 2026-12-01 (its customer_service stim and rollout phases are reused by E33).
set -e
# E32: the example's generators replaced by its 6 listed messages + 80 airline messages written
# for this experiment (scripts/cs-in-domain-stims.txt; none is a held-out message), topped up
# to 1,000 stims with the bundled messages as usual.
.venv/bin/python bench/quality_lab.py --cases customer_service --threads 2 --eval-max-tokens 64 \
  --workdir /tmp/s27/w --log experiments.jsonl --label 'E32 customer_service, 86 in-domain listed stims' \
  --set "TARGET.generators=$(cat bench/results/2026-12-02-quality-experiments/scripts/cs-in-domain-generators.yml)"
# E33: the defaults with the full-vocabulary loss (the teacher recomputed every step).
.venv/bin/python bench/quality_lab.py --cases customer_service --threads 2 --eval-max-tokens 64 \
  --workdir /tmp/qb/w --log experiments.jsonl \
  --label 'E33 customer_service, BAKE.loss full (teacher prefix shared)' --set BAKE.loss=full
# E34 (on ee3ff30, whose bake code is 53e9922's): the defaults with twice the learning rate.
.venv/bin/python bench/quality_lab.py --cases customer_service --threads 2 --eval-max-tokens 64 \
  --workdir /tmp/qb/w --log experiments.jsonl \
  --label 'E34 customer_service, learning rate 1e-3' --set BAKE.optimizer.learning_rate=0.001
# E35 (on 5db4cfe, whose bake code is 53e9922's; its store writes codec 3): the defaults with
# half the learning rate, E33's phases reused.
.venv/bin/python bench/quality_lab.py --cases customer_service --threads 2 --eval-max-tokens 64 \
  --workdir /tmp/qb/w --log experiments.jsonl \
  --label 'E35 customer_service, learning rate 2.5e-4' --set BAKE.optimizer.learning_rate=0.00025
# E36 (on a4b2c3e, the same bake code): LoRA r 64 with alpha 64 (r 16's step size by rsLoRA's
# rule, as E29 on french), E33's phases reused.
.venv/bin/python bench/quality_lab.py --cases customer_service --threads 2 --eval-max-tokens 64 \
  --workdir /tmp/qb/w --log experiments.jsonl \
  --label 'E36 customer_service, LoRA r 64, alpha 64' \
  --set BAKE.model.baked_adapter_config.r=64 --set BAKE.model.baked_adapter_config.lora_alpha=64

# The step A/B in one process, then the trainer bench's bf16 rows (bgit against TRL, same run)
# on a00660b. Intel Xeon (AVX-512 bf16, AMX), 2 cores, idle.
cd /work/wt/new
echo '$ OMP_NUM_THREADS=2 .venv/bin/python bench/results/2026-12-02-x86_64-xeon-amx-2core/scripts/train_step_frozen_bf16.py --profile'
OMP_NUM_THREADS=2 .venv/bin/python bench/results/2026-12-02-x86_64-xeon-amx-2core/scripts/train_step_frozen_bf16.py --profile 2>&1 | grep -v Warning | grep -v warnings.warn
echo '$ .venv/bin/python bench/trainer_bench.py --examples 64 --eval-examples 8 --response-tokens 128 --lr 1e-3 --runs base,bgit-bf16,trl-bf16,bgit'
.venv/bin/python bench/trainer_bench.py --examples 64 --eval-examples 8 --response-tokens 128 --lr 1e-3 --runs base,bgit-bf16,trl-bf16,bgit 2>&1 | grep -v Warning | grep -v warnings.warn

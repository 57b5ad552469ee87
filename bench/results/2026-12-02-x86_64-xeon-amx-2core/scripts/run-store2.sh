# Again, 6 runs per side, minutes after the first (store.log): tmpfs first this time, then the disk.
cd /work/wt/qb
.venv/bin/python bench/store_bench.py --jsonl-mb 0 --no-git --baseline a3ee89d --repeat 6 --dir /dev/shm
.venv/bin/python bench/store_bench.py --jsonl-mb 0 --no-git --baseline a3ee89d --repeat 6

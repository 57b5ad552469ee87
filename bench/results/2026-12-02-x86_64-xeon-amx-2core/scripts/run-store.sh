# The store bench, codec 3 (this tree) against a3ee89d (codec 2) alternating ABBA, on the
# Intel Xeon (AVX-512 bf16, AMX, 2 cores), idle: the disk, then tmpfs.
cd /work/wt/qb
.venv/bin/python bench/store_bench.py --jsonl-mb 0 --no-git --baseline a3ee89d --repeat 4
.venv/bin/python bench/store_bench.py --jsonl-mb 0 --no-git --baseline a3ee89d --repeat 4 --dir /dev/shm

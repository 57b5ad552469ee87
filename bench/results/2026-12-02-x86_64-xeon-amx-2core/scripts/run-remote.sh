# The remote bench (directory remote on a loop-mounted filesystem, S3 on moto), each peer in the
# same invocation, on the Intel Xeon (AVX-512 bf16, AMX, 2 cores), idle; tree 5a13ca3.
cd /work/wt/qb
.venv/bin/python bench/remote_bench.py

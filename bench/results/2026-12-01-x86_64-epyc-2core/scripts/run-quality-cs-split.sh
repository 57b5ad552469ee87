cd /work/wt/lab
.venv/bin/python bench/quality_bench.py --cases customer_service --threads 2 --eval-max-tokens 64 --workdir /tmp/qb31/w --log /tmp/qb31/quality.jsonl > /tmp/qb31/quality.log 2>&1

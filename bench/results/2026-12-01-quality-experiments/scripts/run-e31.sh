cd /work/wt/lab
LOG=/tmp/lab31/experiments.jsonl
.venv/bin/python bench/quality_lab.py --cases french --threads 2 --eval-max-tokens 64 --workdir /tmp/lab20/w --log $LOG --set TARGET.top_k=100 --label "E31 top-100 teacher log-probs (+ tail) instead of top-20" > /tmp/lab31/E31.out 2>&1

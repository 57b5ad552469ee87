# E32: BAKE.data.group_by_length on today's defaults (french); E23's stim and rollout phases reused
# from the lab's cache, so only training differs from E23 (0.8847 held out). Tree: 3c33be1.
cd /work/wt/lab32
LOG=/tmp/lab32/experiments.jsonl
mkdir -p /tmp/lab32
.venv/bin/python bench/quality_lab.py --cases french --threads 2 --eval-max-tokens 64 --workdir /tmp/lab20/w --log $LOG --set BAKE.data.group_by_length=true --label "E32 BAKE.data.group_by_length: steps of similar-length examples" > /tmp/lab32/E32.out 2>&1

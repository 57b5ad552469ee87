# A/B of the frozen bf16 weights: french's training phase retrained (the quality bench's stim and
# rollout phases reused; its cached train phase removed before each bake), before = 73f9ba9,
# after = a00660b (casts once), alternating ABBA. Intel Xeon (AVX-512 bf16, AMX), 2 cores, idle.
# its log: frozen-bf16-bake-ab.jsonl here (copied from /tmp/qb/frozen-ab.jsonl)
lab() {
  rm -rf /tmp/qb/w/french/.git/bgit/phases/train/*
  (cd $1 && .venv/bin/python bench/quality_lab.py --cases french --threads 2 --eval-max-tokens 64 \
    --workdir /tmp/qb/w --log /tmp/qb/frozen-ab.jsonl --label "$2")
  sha256sum /tmp/qb/w/french/adapter/adapter_model.safetensors
}
lab /work/wt/qb "before 73f9ba9 (1)"
lab /work/wt/new "after a00660b (1)"
lab /work/wt/new "after a00660b (2)"
lab /work/wt/qb "before 73f9ba9 (2)"

# E38-E40: customer_service's closure against the number of distinct stims, at the default's
# trained tokens (E38: 500 x 4 epochs, E39: 250 x 8) and at half of them (E40: 500 x 2).
# Intel Xeon (AVX-512 bf16, AMX), 2 cores, idle; tree 73f9ba9 (bake code of 4ecfe04).
cd /work/wt/qb
lab() { .venv/bin/python bench/quality_lab.py --cases customer_service --threads 2 --eval-max-tokens 64 \
  --workdir /tmp/qb/w --log /tmp/qb/experiments.jsonl "$@"; }
lab --set TARGET.augment.min_stims=500 --set BAKE.epochs=4 --label "E38 customer_service, 500 stims x 4 epochs"
lab --set TARGET.augment.min_stims=250 --set BAKE.epochs=8 --label "E39 customer_service, 250 stims x 8 epochs"
lab --set TARGET.augment.min_stims=500 --set BAKE.epochs=2 --label "E40 customer_service, 500 stims x 2 epochs"

#!/bin/sh
# bgit eval before (e84e03a: one item per forward pass) and after (batched teacher forcing, the
# shared prompt prefix run once), alternating, on two bakes of the quality experiments:
# french E23 (a one-line system prompt) and customer_service (a 330-token policy), each with
# its 64 held-out stims and their rollout responses: the same eval a bake runs before it commits.
# BEFORE: a worktree of e84e03a; AFTER: this tree.
set -e
BEFORE=${BEFORE:-/work/wt/before}
AFTER=${AFTER:-/work/main}
PY=/work/main/.venv/bin/python
run() {  # tree label repo ref
    cd "$3"
    start=$(date +%s.%N)
    PYTHONPATH=$1 $PY -m bgit eval "$4" --no-save --json > /tmp/eval-$2.json
    end=$(date +%s.%N)
    $PY -c "import json,sys; d=json.load(open('/tmp/eval-$2.json')); print(json.dumps({'run': '$2', 'repo': '$3', 'ref': '$4', 'wall_s': round($end-$start, 1), 'eval_seconds': d['seconds'], 'closure': d['closure'], 'kl_prompted_base': d['kl_prompted_base'], 'kl_prompted_baked': d['kl_prompted_baked'], 'kl_prompted_reprompted': d['kl_prompted_reprompted'], 'tokens': d['tokens'], 'stims': d['stims']}))"
}
echo "# $(date -u '+%Y-%m-%d %H:%M') UTC; $(uname -m), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg); after = $(git -C $AFTER rev-parse --short HEAD)"
run $BEFORE french-before /tmp/lab20/w/french 10f549d
run $AFTER french-after /tmp/lab20/w/french 10f549d
run $BEFORE cs-before /tmp/qb31/w/customer_service HEAD
run $AFTER cs-after /tmp/qb31/w/customer_service HEAD
run $AFTER cs-after-2 /tmp/qb31/w/customer_service HEAD
run $BEFORE cs-before-2 /tmp/qb31/w/customer_service HEAD
run $AFTER french-after-2 /tmp/lab20/w/french 10f549d
run $BEFORE french-before-2 /tmp/lab20/w/french 10f549d

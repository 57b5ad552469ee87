"""One-off: response lengths and micro-batch padding of a lab rollout; stim sources of a
lab target. Run as in ../rollout_shape.txt (reads the lab's workdir, /tmp/lab15/w)."""
import collections
import json
import sys

import numpy as np

rollout, stims = sys.argv[1], sys.argv[2]
rows = [json.loads(line) for line in open(rollout)]
resp = np.array([len(r["response_ids"]) for r in rows])
print(f"{rollout}: {len(rows)} responses, mean {resp.mean():.1f} tokens, "
      f"{(resp == resp.max()).mean():.1%} at the cap ({resp.max()})")
# Token count per example ~ response + stim (~4 characters a token) + ~30 of chat template;
# micro-batches of 4 in a random order, each padded to its longest.
total = resp + np.array([len(r["stim"]) for r in rows]) / 4 + 30
lengths = total[np.random.default_rng(0).permutation(len(total))].reshape(-1, 4)
print(f"padding in random micro-batches of 4: {1 - lengths.sum() / (lengths.max(1) * 4).sum():.1%}")
sources = collections.Counter(json.loads(line)["generator"] for line in open(stims))
print(f"{stims}: stims by generator {dict(sources)}")

"""The bake pipeline: stim generators, rollout backends, the phase cache and orchestration."""

"""The formats of a bake commit's files, one reader and one writer each.

    bake.yml                     BakeRecord (bgit.record.bake)
    targets/<name>/stim.jsonl    stim rows {id, text, generator}        (bgit.record.rows)
    targets/<name>/rollout.jsonl rollout rows with the teacher's top-K  (bgit.record.rows)

Nothing here loads a model or touches git: the pipeline writes these files, evaluate, serve
and the api read them.
"""

from bgit.record.bake import (ADAPTER_CONFIG, ADAPTER_DIR, ADAPTER_WEIGHTS, BAKE_RECORD, BAKE_RECORD_VERSION,
                              INPUT_YML, METRICS, TARGETS_DIR, BakeMetrics, BakeRecord, BakeRecordError, ModelRef,
                              ParentRef, PhaseKeys, rollout_path, stim_path)
from bgit.record.rows import (RecordError, RolloutRecord, decode_array, encode_array, iter_jsonl, jsonl_lines,
                              read_jsonl, rollout_row, stim_id, write_jsonl)

__all__ = ["ADAPTER_CONFIG", "ADAPTER_DIR", "ADAPTER_WEIGHTS", "BAKE_RECORD", "INPUT_YML", "METRICS",
           "TARGETS_DIR", "rollout_path", "stim_path", "BAKE_RECORD_VERSION", "BakeMetrics", "BakeRecord", "BakeRecordError", "ModelRef", "ParentRef",
           "PhaseKeys", "RecordError", "RolloutRecord", "decode_array", "encode_array", "iter_jsonl", "jsonl_lines",
           "read_jsonl", "rollout_row", "stim_id", "write_jsonl"]

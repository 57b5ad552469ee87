"""Moved to :mod:`bgit.record.rows`; kept while callers move over."""

from bgit.record.rows import (RecordError, RolloutRecord, decode_array, dumps_row, encode_array, iter_jsonl,
                              read_jsonl, rollout_row, stim_id, write_jsonl)

__all__ = ["RecordError", "RolloutRecord", "decode_array", "dumps_row", "encode_array", "iter_jsonl",
           "read_jsonl", "rollout_row", "stim_id", "write_jsonl"]

"""Helpers every layer may use; they know nothing of git, torch or bgit's other packages.

    bgit.util.files     atomic writes (temp file, fsync, rename, fsync dir), file hashing
    bgit.util.progress  how library code reports progress (Reporter, Task, SILENT)
    bgit.util.yaml      YAML read from untrusted places, bounded in size and alias expansion
"""

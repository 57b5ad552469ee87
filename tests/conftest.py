"""Test-wide set-up: subprocesses (``python -m bgit``) import this checkout's bgit.

Tests start ``python -m bgit`` in temporary directories; without this they would import
whatever bgit the virtual environment points at (an editable install of another checkout).
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]])

# No test may reach a model hub: hub ids resolve from the caches tests build (tests that
# exercise downloads point HF_ENDPOINT at a hub on loopback and say HF_HUB_OFFLINE=0).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

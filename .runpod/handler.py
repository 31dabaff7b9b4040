"""The RunPod Hub's entry point (its publishing guide looks for `handler.py` here or at the repository root).

It is the worker itself, `python -m tts_worker`: settings, models loaded and warmed, then
`runpod.serverless.start` with the handler of `tts_worker.handler`. The image (`.runpod/Dockerfile`, a
copy of `Dockerfile.runpod` kept identical by tests/test_hub_layout.py) runs the same entry point.
"""

import sys
from pathlib import Path

# From a checkout the package is under src/; the image already has PYTHONPATH=/app/src.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tts_worker.__main__ import main

if __name__ == "__main__":
    main()

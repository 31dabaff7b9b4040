"""tts-worker: F5-TTS voice cloning on RunPod serverless, with word timings and subtitles.

Importing the package is cheap: no model, torch or network is touched until
`tts_worker.__main__` starts the worker.
"""

__version__ = "0.1.0"

"""The TTS engine interface: what synthesis and batching need from a model family.

An engine turns (voice prompt, text) into audio. `tts.F5Engine` (F5-TTS and E2-TTS) is the one
implementation today; another model family implements `Engine` in a module of its own and is
listed in `ENGINES` under the `family` its manifest's TTS spec names, so `load_engine` picks it.

Contract of an engine:
- `prepare_reference(samples, text, ...)` validates a voice prompt (mono float32 at
  `sample_rate`) and its transcript and returns a `Reference` (whatever the model needs; cached
  per worker by content, so it must not be mutated).
- `max_chunk_bytes(ref, speed)` is the chunk budget: the most UTF-8 bytes of text one generation
  may speak with that reference and speed, so every generation stays inside the model's limits.
  `InvalidInput` naming the field when no text at all fits (a request, never the process, is wrong).
- `generate_batch(gens)` samples generations that share `Generation.batch_key` as one batch and
  returns one `ChunkAudio` per item, in order. Item i's noise comes from its own seed, so a result
  does not depend on what it was batched with beyond float rounding. A request that would exceed a
  model limit raises `InvalidInput` before sampling; a failure that may leave the device unusable
  raises `ModelError`.
- `warmup(batch_size)` readies kernels before the first job.

This module imports no torch: the voice library and the bake stage can use its rules.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tts_worker.errors import InvalidInput, ModelDirError
from tts_worker.manifest import BAKE_HINT, Manifest

# A transcript of speech runs at about 10-20 UTF-8 bytes per second in the languages F5-TTS speaks
# (English ~15; Chinese ~5 characters of 3 bytes). F5 sizes every generation by the reference's bytes
# per second, so a transcript far off that range inflates (or starves) every estimate: 2 characters
# for 12 s of audio asked for 75 s generations. Outside these bounds it cannot be the clip's text.
MIN_REFERENCE_BYTES_PER_SECOND = 2.5
MAX_REFERENCE_BYTES_PER_SECOND = 60.0


@dataclass(frozen=True)
class Reference:
    """A prepared voice prompt: the engine's form of the audio, its transcript, and facts about both."""

    audio: Any  # the engine's representation (F5: a (1, samples) tensor on its device)
    text: str
    rms: float
    seconds: float


@dataclass(frozen=True)
class SamplingParams:
    nfe_steps: int = 32
    cfg_strength: float = 2.0
    sway_sampling_coef: float = -1.0
    speed: float = 1.0


@dataclass(frozen=True)
class Generation:
    """One chunk to speak: the voice, the text, how to sample it and the seed of its noise."""

    ref: Reference
    text: str
    params: SamplingParams
    seed: int

    @property
    def batch_key(self) -> tuple[int, float, float]:
        """Generations batch together when these agree (one time grid and guidance for the whole batch)."""
        return (self.params.nfe_steps, self.params.cfg_strength, self.params.sway_sampling_coef)


@dataclass(frozen=True)
class ChunkAudio:
    wave: np.ndarray  # float32 at the engine's sample rate
    sample_seconds: float  # of the whole batch this chunk was sampled in
    vocoder_seconds: float  # of this chunk alone
    batch_size: int = 1  # generations sampled together with this one, itself included


class Engine(Protocol):
    name: str
    tiny: bool
    device: str
    sample_rate: int

    def prepare_reference(
        self, samples: np.ndarray, text: str, *, max_seconds: float, field: str = "voice", text_field: str = "ref_text"
    ) -> Reference: ...

    def max_chunk_bytes(self, ref: Reference, speed: float) -> int: ...

    def generate_batch(self, gens: Sequence[Generation]) -> list[ChunkAudio]: ...

    def warmup(self, batch_size: int = 1) -> None: ...


# family (TTSSpec.family) -> "module:class" of its Engine; imported only when a manifest asks for it.
ENGINES = {"f5-tts": "tts_worker.tts:F5Engine"}


def load_engine(model_dir: Path, manifest: Manifest, device: str) -> Engine:
    """The engine the manifest's TTS spec names, loaded from `model_dir`."""
    target = ENGINES.get(manifest.tts.family)
    if target is None:
        family = manifest.tts.family
        raise ModelDirError(f"the manifest's TTS family {family!r} is not one this worker serves; {BAKE_HINT}")
    module, _, cls = target.partition(":")
    engine: Engine = getattr(importlib.import_module(module), cls).load(model_dir, manifest, device)
    return engine


def check_reference_text(text: str, seconds: float, *, field: str) -> None:
    """`InvalidInput` naming `field` when `text` cannot be what `seconds` of speech say (see the bounds above)."""
    rate = len(text.encode("utf-8")) / max(seconds, 1e-3)
    if MIN_REFERENCE_BYTES_PER_SECOND <= rate <= MAX_REFERENCE_BYTES_PER_SECOND:
        return
    side = "short" if rate < MIN_REFERENCE_BYTES_PER_SECOND else "long"
    raise InvalidInput(
        f"{field}: {len(text)} characters for {seconds:.1f} s of reference audio is too {side} to be what the clip "
        f"says (speech runs at about {MIN_REFERENCE_BYTES_PER_SECOND:g}-{MAX_REFERENCE_BYTES_PER_SECOND:g} bytes of "
        "text per second); send the clip's exact transcript, or leave it out to have the clip transcribed"
    )

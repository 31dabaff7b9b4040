"""The F5-TTS engine: the only module that imports f5_tts.

Loads the DiT checkpoint, vocabulary and Vocos vocoder from a baked model
directory through f5_tts's own loaders, with the architecture taken from the
manifest (never from the hub or the packaged yaml). Generates one chunk of text
per call; the caller owns the chunk loop, which keeps results reproducible
(f5_tts's own loop runs chunks in threads that share torch's RNG) and leaves
room for progress and batching.

Never touches the network: explicit checkpoint, vocab and local vocoder, and a
non-empty reference text always (an empty one makes f5_tts download Whisper).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tts_worker.errors import InvalidAudio, ModelError
from tts_worker.manifest import Manifest

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
HOP_LENGTH = 256
TARGET_RMS = 0.1
MAX_GENERATION_SECONDS = 22.0  # reference + generated audio, per generation (F5-TTS's training length)
SHORT_TEXT_BYTES = 10
SHORT_TEXT_SPEED = 0.3  # f5_tts gives chunks under 10 bytes extra time; kept so short texts are not clipped

DEFAULT_VOICE_TEXT = "Some call me nature, others call me mother nature."


@dataclass(frozen=True)
class Reference:
    """A prepared voice prompt: loudness-normalised 24 kHz audio on the model's device, and its text."""

    audio: torch.Tensor  # (1, samples)
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
class ChunkAudio:
    wave: np.ndarray  # float32 at SAMPLE_RATE
    sample_seconds: float
    vocoder_seconds: float


def default_voice() -> tuple[bytes, str]:
    """The English reference clip that ships with f5_tts, and its transcript."""
    clip = files("f5_tts").joinpath("infer/examples/basic/basic_ref_en.wav")
    return clip.read_bytes(), DEFAULT_VOICE_TEXT


def _attention_backend(device: str) -> str:
    """F5-TTS's `attn_backend`: "flash_attn" when flash-attn imports and the model runs on a CUDA GPU it
    supports, else "torch" (SDPA). The manifest's value is ignored: one baked image serves both."""
    if not device.startswith("cuda"):
        return "torch"
    # FlashAttention-2 kernels exist for sm80+ only; f5_tts loads fp16 weights from sm70 up, so check.
    if torch.cuda.get_device_capability(device)[0] < 8:
        return "torch"
    try:
        import flash_attn  # noqa: F401
    except (ImportError, OSError) as exc:  # absent, or a wheel built for another torch/CUDA (undefined symbol)
        logger.info("flash-attn unavailable (%s); using torch SDPA", exc.__class__.__name__)
        return "torch"
    return "flash_attn"


class F5Engine:
    sample_rate = SAMPLE_RATE

    def __init__(self, model: Any, vocoder: Any, device: str, manifest: Manifest) -> None:
        self._model = model
        self._vocoder = vocoder
        self.device = device
        self.name = manifest.tts.name
        self.tiny = manifest.tiny
        # One generation at a time: the DiT caches text embeddings on itself during sampling and the
        # seed goes through torch's global RNG, so concurrent jobs must not interleave inside `sample`.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: Path, manifest: Manifest, device: str) -> F5Engine:
        from f5_tts import model as f5_model
        from f5_tts.infer.utils_infer import load_model, load_vocoder

        backbone = getattr(f5_model, manifest.tts.backbone)
        arch = {**manifest.tts.arch, "attn_backend": _attention_backend(device)}
        model = load_model(
            backbone,
            arch,
            str(model_dir / manifest.tts.checkpoint),
            mel_spec_type=manifest.tts.mel_spec_type,
            vocab_file=str(model_dir / manifest.tts.vocab),
            device=device,
        )
        vocoder = load_vocoder("vocos", is_local=True, local_path=str(model_dir / manifest.vocoder.dir), device=device)
        engine = cls(model, vocoder, device, manifest)
        logger.info(
            "loaded %s on %s (%s, attention %s)%s",
            engine.name,
            device,
            next(model.parameters()).dtype,
            arch["attn_backend"],
            " -- TINY RANDOM WEIGHTS: output is noise" if manifest.tiny else "",
        )
        return engine

    def prepare_reference(
        self, samples: np.ndarray, text: str, *, max_seconds: float, field: str = "voice"
    ) -> Reference:
        """Validate and normalise a mono 24 kHz reference clip and its transcript (errors name `field`)."""
        seconds = len(samples) / SAMPLE_RATE
        if seconds < 1.0:
            raise InvalidAudio(f"{field}: reference audio is {seconds:.2f} s long; it must be at least 1 s")
        if seconds > max_seconds:
            raise InvalidAudio(
                f"{field}: reference audio is {seconds:.1f} s long; at most {max_seconds:g} s is used for cloning "
                "(upload it with upload_voice to have it trimmed at a pause)"
            )
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
        if rms < 1e-5:
            raise InvalidAudio(f"{field}: reference audio is silent")
        audio = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)).unsqueeze(0)
        if rms < TARGET_RMS:
            audio = audio * (TARGET_RMS / rms)
        text = " ".join(text.split())
        if not text:
            raise InvalidAudio(f"{field}: the reference text is empty")
        # As f5_tts's preprocess: the prompt text ends with a sentence end and a space.
        if not text.endswith((".", "。", "!", "?")):
            text += "."
        if not text.endswith("。"):
            text += " "
        return Reference(audio=audio.to(self.device), text=text, rms=rms, seconds=seconds)

    def max_chunk_bytes(self, ref: Reference, speed: float) -> int:
        """Text per generation so that reference + output stays within F5-TTS's ~22 s (f5_tts's own rule)."""
        rate = len(ref.text.encode("utf-8")) / ref.seconds
        return max(20, int(rate * (MAX_GENERATION_SECONDS - ref.seconds) * speed))

    def generate(self, ref: Reference, text: str, params: SamplingParams, seed: int) -> ChunkAudio:
        from f5_tts.model.utils import convert_char_to_pinyin

        text = " ".join(text.split())
        speed = SHORT_TEXT_SPEED if len(text.encode("utf-8")) < SHORT_TEXT_BYTES else params.speed
        ref_frames = ref.audio.shape[-1] // HOP_LENGTH
        ref_bytes = len(ref.text.encode("utf-8"))
        duration = ref_frames + int(ref_frames / ref_bytes * len(text.encode("utf-8")) / speed)
        try:
            with self._lock, torch.inference_mode():
                t0 = time.perf_counter()
                mel, _ = self._model.sample(
                    cond=ref.audio,
                    text=convert_char_to_pinyin([ref.text + text]),
                    duration=duration,
                    steps=params.nfe_steps,
                    cfg_strength=params.cfg_strength,
                    sway_sampling_coef=params.sway_sampling_coef,
                    seed=seed,
                )
                mel = mel.to(torch.float32)[:, ref_frames:, :].permute(0, 2, 1)
                t1 = time.perf_counter()
                wave = self._vocoder.decode(mel)
                if ref.rms < TARGET_RMS:
                    wave = wave * (ref.rms / TARGET_RMS)
                out = wave.squeeze(0).cpu().numpy().astype(np.float32, copy=False)
                t2 = time.perf_counter()
        except torch.cuda.OutOfMemoryError as exc:
            raise ModelError("synthesis ran out of GPU memory; the worker will restart") from exc
        except RuntimeError as exc:
            logger.exception("synthesis failed")
            raise ModelError("synthesis failed in the model; the worker will restart") from exc
        return ChunkAudio(wave=out, sample_seconds=t1 - t0, vocoder_seconds=t2 - t1)

    def warmup(self) -> None:
        """One short generation so kernels, allocator and caches are ready before the first job."""
        samples = np.zeros(SAMPLE_RATE * 2, dtype=np.float32)
        samples[::100] = 0.5
        ref = self.prepare_reference(samples, "Warm up.", max_seconds=MAX_GENERATION_SECONDS)
        self.generate(ref, "Warming up the model.", SamplingParams(nfe_steps=2), seed=0)

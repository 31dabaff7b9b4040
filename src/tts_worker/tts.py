"""The F5-TTS engine (family `f5-tts`): with f5_loading.py, the only module that imports f5_tts.

`F5Engine` implements `tts_worker.engine.Engine` for f5_tts's flow-matching models: F5-TTS (DiT
backbone) and E2-TTS (UNetT), whichever the manifest names. It loads the checkpoint, vocabulary and
Vocos vocoder from a baked model directory (f5_loading: f5_tts's own classes, without the import and
initialisation cost of its loaders), with the architecture taken
from the manifest (never from the hub or the packaged yaml). Generates one chunk of text per item;
the caller owns the chunk loop, which keeps results reproducible (f5_tts's own loop runs chunks in
threads that share torch's RNG).

Frame budget: F5 sizes a generation from the reference's bytes of text per second of audio, and a
generation (reference + generated) must stay within the ~22 s the model was trained on, and never
past `MAX_FRAMES`. `max_chunk_bytes` gives chunking the text budget that keeps it there at any
speed, `prepare_reference` refuses a transcript that cannot match its clip (which would skew every
estimate; `engine.check_reference_text`), and `generate_batch` caps each item's generated frames at
the budget (only f5_tts's extra time for very short texts reaches the cap), so no request can run a
generation past the model's limit.

`generate_batch` samples several independent generations (other jobs' chunks
too; see batching.py) as one tensor batch. F5's `CFM.sample` takes a batch with
per-item lengths but seeds every item with the same seed, so `_sample` is our
copy of it with one noise generator per item; at batch size 1 it gives exactly
what `CFM.sample` gives (tests/test_batching.py holds it to that).

Never touches the network: explicit checkpoint, vocab and local vocoder, and a
non-empty reference text always (an empty one makes f5_tts download Whisper).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tts_worker import f5_loading
from tts_worker.engine import ChunkAudio, Generation, Reference, SamplingParams, check_reference_text
from tts_worker.errors import InvalidAudio, InvalidInput, ModelError
from tts_worker.manifest import Manifest

__all__ = ["SAMPLE_RATE", "ChunkAudio", "F5Engine", "Generation", "Reference", "SamplingParams"]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
HOP_LENGTH = 256
TARGET_RMS = 0.1
FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH
MAX_GENERATION_SECONDS = 22.0  # reference + generated audio, per generation (F5-TTS's training length)
MAX_FRAMES = 8192  # the most mel frames (reference + generated) f5_tts generates in one go (~87 s)
GENERATION_FRAMES = min(int(MAX_GENERATION_SECONDS * FRAMES_PER_SECOND), MAX_FRAMES)
SHORT_TEXT_BYTES = 10
SHORT_TEXT_SPEED = 0.3  # f5_tts gives chunks under 10 bytes extra time; kept so short texts are not clipped


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
    """`engine.Engine` for f5_tts models (F5-TTS, E2-TTS)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model: Any, vocoder: Any, device: str, manifest: Manifest) -> None:
        self._model = model.eval()  # f5_tts's loader leaves training mode (dropout) on; CFM.sample sets this
        self._vocoder = vocoder
        self._f5 = f5_loading.model_classes()  # the model code's helpers sampling calls (imported by now)
        self.device = device
        self.name = manifest.tts.name
        self.tiny = manifest.tiny
        # One generation at a time: the DiT caches text embeddings on itself during sampling and the
        # seed goes through torch's global RNG, so concurrent jobs must not interleave inside `sample`.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: Path, manifest: Manifest, device: str) -> F5Engine:
        # Attention masks on: a batch pads shorter items to the longest, and without the mask their
        # frames would attend to the padding. A single generation passes no mask, so it is unaffected.
        arch = {**manifest.tts.arch, "attn_backend": _attention_backend(device), "attn_mask_enabled": True}
        with warnings.catch_warnings():
            # "attn_mask_enabled=True with attn_backend='torch' can consume large GPU memory": it is
            # what batching costs without flash-attn; docs/PERFORMANCE.md sizes BATCH_MAX_SIZE for it.
            warnings.filterwarnings("ignore", message="attn_mask_enabled=True", category=UserWarning)
            model = f5_loading.load_cfm(
                manifest.tts.backbone,
                arch,
                model_dir / manifest.tts.checkpoint,
                model_dir / manifest.tts.vocab,
                manifest.tts.mel_spec_type,
                device,
            )
        vocoder = f5_loading.load_vocos(model_dir / manifest.vocoder.dir, device)
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
        self, samples: np.ndarray, text: str, *, max_seconds: float, field: str = "voice", text_field: str = "ref_text"
    ) -> Reference:
        """Validate and normalise a mono 24 kHz reference clip and its transcript (audio errors name
        `field`, transcript errors `text_field`)."""
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
        check_reference_text(text, seconds, field=text_field)
        # As f5_tts's preprocess: the prompt text ends with a sentence end and a space.
        if not text.endswith((".", "。", "!", "?")):
            text += "."
        if not text.endswith("。"):
            text += " "
        return Reference(audio=audio.to(self.device), text=text, rms=rms, seconds=seconds)

    def max_chunk_bytes(self, ref: Reference, speed: float) -> int:
        """Text per generation so that reference + output stays within F5-TTS's ~22 s (and `MAX_FRAMES`):
        the generated frames F5 estimates for it (`_generated_frames`) fit the budget at this speed."""
        budget = GENERATION_FRAMES - self._ref_frames(ref)
        size = int(budget * speed / self._frames_per_byte(ref))
        if size < 4:  # not even one character of any script (UTF-8: up to 4 bytes) fits
            raise InvalidInput("speed: with this reference, no text fits in one generation at this speed")
        return size

    @staticmethod
    def _ref_frames(ref: Reference) -> int:
        return int(ref.audio.shape[-1]) // HOP_LENGTH

    def _frames_per_byte(self, ref: Reference) -> float:
        return self._ref_frames(ref) / len(ref.text.encode("utf-8"))

    def _generated_frames(self, gen: Generation) -> int:
        """f5_tts's estimate of the frames to generate for `gen.text` (infer_batch_process's rule), capped at
        what the frame budget leaves after the reference: only its extra time for very short texts can
        reach the cap, which chunking (`max_chunk_bytes`) otherwise keeps every chunk within."""
        size = len(gen.text.encode("utf-8"))
        speed = SHORT_TEXT_SPEED if size < SHORT_TEXT_BYTES else gen.params.speed
        return min(int(self._frames_per_byte(gen.ref) * size / speed), GENERATION_FRAMES - self._ref_frames(gen.ref))

    def generate(self, ref: Reference, text: str, params: SamplingParams, seed: int) -> ChunkAudio:
        return self.generate_batch([Generation(ref, text, params, seed)])[0]

    def generate_batch(self, gens: Sequence[Generation]) -> list[ChunkAudio]:
        """Sample `gens` as one batch (they must share `batch_key`), then vocode each; in order."""
        if not gens or len({g.batch_key for g in gens}) != 1:
            raise ValueError("generate_batch needs one or more generations with the same sampling parameters")
        gens = [Generation(g.ref, " ".join(g.text.split()), g.params, g.seed) for g in gens]
        texts = [g.ref.text + g.text for g in gens]
        ref_frames = [self._ref_frames(g.ref) for g in gens]
        durations = [frames + self._generated_frames(g) for frames, g in zip(ref_frames, gens, strict=True)]
        if max(durations) > MAX_FRAMES or max(len(t) for t in texts) > MAX_FRAMES:  # chunking prevents it
            raise InvalidInput(f"text: a chunk needs more than the model's {MAX_FRAMES} frames; use shorter sentences")
        try:
            with self._lock, torch.inference_mode():
                t0 = time.perf_counter()
                mel, lengths = self._sample(gens, self._f5.convert_char_to_pinyin(texts), durations)
                sample_seconds = time.perf_counter() - t0
                out = []
                for i, g in enumerate(gens):
                    t1 = time.perf_counter()
                    spoken = mel[i : i + 1, ref_frames[i] : lengths[i], :].to(torch.float32).permute(0, 2, 1)
                    wave = self._vocoder.decode(spoken)
                    if g.ref.rms < TARGET_RMS:
                        wave = wave * (g.ref.rms / TARGET_RMS)
                    samples = wave.squeeze(0).cpu().numpy().astype(np.float32, copy=False)
                    out.append(ChunkAudio(samples, sample_seconds, time.perf_counter() - t1, len(gens)))
        except torch.cuda.OutOfMemoryError as exc:
            raise ModelError("synthesis ran out of GPU memory; the worker will restart") from exc
        except RuntimeError as exc:
            logger.exception("synthesis failed")
            raise ModelError("synthesis failed in the model; the worker will restart") from exc
        return out

    def _sample(
        self, gens: Sequence[Generation], text: list[list[str]], durations: list[int]
    ) -> tuple[torch.Tensor, list[int]]:
        """F5's `CFM.sample` (f5-tts 1.1, Euler with EPSS steps and sway sampling, classifier-free
        guidance) for a batch of independent generations: item i is conditioned on its own reference
        mel and text, and its noise comes from its own generator seeded with its own seed. Returns the
        mel batch (b, frames, mels; reference frames included) and each item's length in frames."""
        from torch.nn.utils.rnn import pad_sequence
        from torchdiffeq import odeint

        f5 = self._f5
        model = self._model
        params = gens[0].params
        device = self.device
        dtype = next(model.parameters()).dtype
        conds = [model.mel_spec(g.ref.audio).permute(0, 2, 1)[0].to(dtype) for g in gens]
        lens = torch.tensor([c.shape[0] for c in conds], device=device, dtype=torch.long)
        tokens = f5.list_str_to_idx(text, model.vocab_char_map).to(device)
        duration = torch.tensor(durations, device=device, dtype=torch.long)
        # As upstream: at least the text or the prompt plus one frame, so something is generated.
        duration = torch.maximum(torch.maximum((tokens != -1).sum(dim=-1), lens) + 1, duration)
        max_duration = int(duration.amax())

        cond = pad_sequence(conds, batch_first=True)
        cond = torch.nn.functional.pad(cond, (0, 0, 0, max_duration - cond.shape[1]), value=0.0)
        cond_mask = f5.lens_to_mask(lens, length=max_duration).unsqueeze(-1)
        step_cond = torch.where(cond_mask, cond, torch.zeros_like(cond))
        mask = f5.lens_to_mask(duration) if len(gens) > 1 else None  # upstream passes none for one item

        def flow(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            if params.cfg_strength < 1e-5:
                return model.transformer(
                    x=x, cond=step_cond, text=tokens, time=t, mask=mask,
                    drop_audio_cond=False, drop_text=False, cache=True,
                )  # fmt: skip
            both = model.transformer(x=x, cond=step_cond, text=tokens, time=t, mask=mask, cfg_infer=True, cache=True)
            pred, null_pred = torch.chunk(both, 2, dim=0)
            return pred + (pred - null_pred) * params.cfg_strength

        noise = []
        for g, frames in zip(gens, duration.tolist(), strict=True):
            generator = torch.Generator(device=device).manual_seed(g.seed)  # = torch.manual_seed(seed) upstream
            noise.append(torch.randn(frames, model.num_channels, generator=generator, device=device, dtype=dtype))
        y0 = pad_sequence(noise, padding_value=0, batch_first=True)

        t = f5.get_epss_timesteps(params.nfe_steps, device=device, dtype=dtype)
        t = t + params.sway_sampling_coef * (torch.cos(torch.pi / 2 * t) - 1 + t)
        try:
            trajectory = odeint(flow, y0, t, **model.odeint_kwargs)
        finally:
            model.transformer.clear_cache()
        return torch.where(cond_mask, cond, trajectory[-1]), duration.tolist()

    def warmup(self, batch_size: int = 1) -> None:
        """The smallest generations that ready what the first job runs (the transformer, sampler and vocoder
        kernels, the allocator, the weights' pages): one of about 115 frames at NFE 1 and, when batching, one
        masked batch of two. A 1 s prompt with a long transcript keeps the frames few. On CUDA this is where
        kernels are chosen and cuBLAS/cuDNN start; on a CPU it costs more than it saves (docs/PERFORMANCE.md)."""
        samples = np.zeros(SAMPLE_RATE, dtype=np.float32)
        samples[::100] = 0.5
        ref = self.prepare_reference(
            samples, "The worker warms up its model kernels.", max_seconds=MAX_GENERATION_SECONDS
        )
        params = SamplingParams(nfe_steps=1)
        self.generate(ref, "Ready now.", params, seed=0)
        if batch_size > 1:
            texts = ["Ready now.", "Warm up a batch."]
            self.generate_batch([Generation(ref, text, params, seed=0) for text in texts])

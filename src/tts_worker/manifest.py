"""The model directory's layout and its manifest: one description shared by
`bake_models.py` (which writes it) and the worker (which loads from it).

    MODEL_DIR/
      manifest.json            this file's schema: `Manifest`
      f5-tts/model.safetensors DiT checkpoint, keys `ema_model.<param>`
      f5-tts/vocab.txt         tokenizer vocabulary
      vocos/config.yaml        Vocos vocoder, f5_tts `load_vocoder(is_local=True)` layout
      vocos/pytorch_model.bin
      align/<lang>/            wav2vec2 CTC aligner per language (components.align[<lang>]: `AlignModelSpec`)
      nltk_data/tokenizers/punkt_tab/<language>/   NLTK punkt_tab (components.nltk_data: `NltkSpec`)
      asr/<name>/              CTranslate2 Whisper + tokenizer.json (components.asr: `AsrSpec`, optional)
      normalize/<lang>/        compiled text-normalisation grammars (components.normalize: `NormalizerSpec`)

Every file is listed with its size and sha256. At start the worker checks
presence and sizes (cheap); `verify(..., checksums=True)` also hashes, which
`bake_models.py` does after writing.

Every spec is a typed model here, used by both sides: `bake_models.py` (real and tiny) builds them
and `write_manifest` records them; the worker's loaders (`engine.load_engine`, `alignment.Aligner`)
read them back. This module imports neither torch nor the model libraries, so the image's bake
stage runs it with only the standard library and pydantic.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tts_worker.errors import ModelDirError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
BAKE_HINT = "bake it with `make bake` (real weights) or `make bake-tiny` (random tiny weights for tests)"

TTS_CHECKPOINT = "f5-tts/model.safetensors"
TTS_VOCAB = "f5-tts/vocab.txt"
VOCODER_DIR = "vocos"
VOCODER_FILES = ("vocos/config.yaml", "vocos/pytorch_model.bin")
ALIGN_DIR = "align"  # align/<language>/ one wav2vec2 CTC model per language
NLTK_DATA_DIR = "nltk_data"  # nltk_data/tokenizers/punkt_tab/<language>/
ASR_DIR = "asr"  # asr/<name>/ a CTranslate2 Whisper model with tokenizer.json
NORMALIZE_DIR = "normalize"  # normalize/<lang>/ nemo-text-processing grammars (.far), compiled at bake time


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Strict):
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Source(_Strict):
    """Where a component came from: a hub repo at a pinned revision, a mirror, or `tiny` random weights."""

    kind: str
    repo: str | None = None
    revision: str | None = None
    files: list[str] = Field(default_factory=list)


class TTSSpec(_Strict):
    """The text-to-speech model. `family` picks the engine (`tts_worker.engine.ENGINES`); `backbone` and
    `arch` are the family's own description (f5-tts: the f5_tts backbone class, DiT or UNetT, and its kwargs)."""

    name: str
    family: str = "f5-tts"
    backbone: str = "DiT"
    arch: dict[str, Any]
    mel_spec_type: str = "vocos"
    checkpoint: str = TTS_CHECKPOINT
    vocab: str = TTS_VOCAB
    source: Source


class VocoderSpec(_Strict):
    name: str = "vocos"
    dir: str = VOCODER_DIR
    source: Source


class NormalizerSpec(_Strict):
    """Text normalisation (`tts_worker.normalize`): grammars compiled at bake time, one directory per
    language, loaded by the same library version that compiled them (the worker never compiles)."""

    library: Literal["nemo-text-processing"] = "nemo-text-processing"
    version: str  # nemo-text-processing version that compiled the grammars
    pynini: str  # pynini version that compiled them
    dir: str = NORMALIZE_DIR
    input_case: Literal["cased", "lower_cased"] = "cased"
    grammars: dict[str, list[str]]  # language -> the grammar files in dir/<language>/
    source: Source

    @property
    def languages(self) -> list[str]:
        return sorted(self.grammars)


class AlignModelSpec(_Strict):
    """One language's alignment model. `huggingface`: a Wav2Vec2ForCTC + Wav2Vec2Processor
    save_pretrained dir. `torchaudio`: the bundle's `.pth` inside `dir` (whisperx's default English)."""

    dir: str
    format: Literal["huggingface", "torchaudio"] = "huggingface"
    bundle: str | None = None
    source: Source


class NltkSpec(_Strict):
    """An NLTK data directory (`tokenizers/punkt_tab/<language>/...` inside)."""

    dir: str = NLTK_DATA_DIR
    punkt_tab: list[str]
    source: Source


class AsrSpec(_Strict):
    """A CTranslate2 Whisper dir (model.bin, config.json, vocabulary, tokenizer.json, preprocessor_config.json)."""

    name: str
    dir: str
    multilingual: bool
    compute_type: str = "default"  # float16 on cuda, float32 on cpu
    source: Source


class Components(_Strict):
    """The models besides TTS and vocoder. A worker needs at least one aligner and the NLTK data."""

    align: dict[str, AlignModelSpec] = Field(default_factory=dict)
    nltk_data: NltkSpec | None = None
    asr: AsrSpec | None = None
    normalize: NormalizerSpec | None = None

    def directories(self) -> list[str]:
        """Every directory a component occupies, relative to MODEL_DIR."""
        dirs = [spec.dir for spec in self.align.values()]
        dirs += [spec.dir for spec in (self.nltk_data, self.asr, self.normalize) if spec is not None]
        return dirs


class Manifest(_Strict):
    format: int = FORMAT_VERSION
    tiny: bool
    created: str
    tts: TTSSpec
    vocoder: VocoderSpec
    components: Components = Field(default_factory=Components)
    files: dict[str, FileEntry]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_under(model_dir: Path, dirs: list[str]) -> list[str]:
    """Every file under `dirs` (relative to `model_dir`), relative to it: what a component directory holds."""
    return sorted(str(p.relative_to(model_dir)) for d in dirs for p in (model_dir / d).rglob("*") if p.is_file())


def describe_files(model_dir: Path, relpaths: list[str]) -> dict[str, FileEntry]:
    """Size and sha256 of each file, as the manifest records them."""
    return {
        rel: FileEntry(size=(model_dir / rel).stat().st_size, sha256=sha256_file(model_dir / rel))
        for rel in sorted(relpaths)
    }


def write_manifest(
    model_dir: Path,
    *,
    tiny: bool,
    tts: TTSSpec,
    vocoder: VocoderSpec,
    components: Components | None = None,
    files: list[str],
) -> Manifest:
    """Hash every listed file and write `manifest.json` last, atomically: a directory
    with a manifest is a complete one."""
    manifest = Manifest(
        tiny=tiny,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        tts=tts,
        vocoder=vocoder,
        components=components or Components(),
        files=describe_files(model_dir, files),
    )
    tmp = model_dir / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    tmp.replace(model_dir / MANIFEST_NAME)
    return manifest


def load_manifest(model_dir: Path) -> Manifest:
    path = model_dir / MANIFEST_NAME
    if not model_dir.is_dir():
        raise ModelDirError(f"MODEL_DIR {model_dir} does not exist; {BAKE_HINT}")
    if not path.is_file():
        raise ModelDirError(
            f"MODEL_DIR {model_dir} has no {MANIFEST_NAME} (not baked, or baking was cut short); {BAKE_HINT}"
        )
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text()))
    except (ValueError, ValidationError) as exc:
        raise ModelDirError(f"{path} is not a valid manifest ({exc.__class__.__name__}); {BAKE_HINT}") from exc
    if manifest.format != FORMAT_VERSION:
        raise ModelDirError(f"{path} has format {manifest.format}, this worker reads {FORMAT_VERSION}; {BAKE_HINT}")
    return manifest


def verify(model_dir: Path, manifest: Manifest, *, checksums: bool = False) -> list[str]:
    """Problems with the files the manifest lists, one line each; empty when all is well."""
    problems = []
    required = [manifest.tts.checkpoint, manifest.tts.vocab, *VOCODER_FILES]
    problems += [f"{rel}: not listed in the manifest" for rel in required if rel not in manifest.files]
    for rel, entry in manifest.files.items():
        path = model_dir / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != entry.size:
            problems.append(f"{rel}: {path.stat().st_size} bytes, the manifest says {entry.size}")
        elif checksums and sha256_file(path) != entry.sha256:
            problems.append(f"{rel}: sha256 differs from the manifest (corrupt or replaced)")
    return problems


def load_verified(model_dir: Path, *, checksums: bool = False) -> Manifest:
    """The manifest of a complete model directory, or `ModelDirError` naming every problem."""
    manifest = load_manifest(model_dir)
    problems = verify(model_dir, manifest, checksums=checksums)
    if problems:
        raise ModelDirError(f"MODEL_DIR {model_dir} is incomplete: " + "; ".join(problems) + f"; {BAKE_HINT}")
    return manifest

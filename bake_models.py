#!/usr/bin/env python3
"""Bake the model directory the worker loads (layout: `tts_worker.manifest`).

    python bake_models.py DIR          real weights from the Hugging Face hub at pinned revisions
        [--model F5TTS_v1_Base|F5TTS_Base|E2TTS_Base] [--align-languages en,de,...]
        [--asr-model Systran/faster-whisper-small|none] [--from MIRROR] [--pins FILE]
        [--normalize-languages en,...]
    python bake_models.py --tiny DIR   random-weight tiny models (tests, local trials; output is noise)
        [--model F5TTS_v1_Base|E2TTS_Base]   (the tiny model's backbone: DiT, or E2's UNetT)

Both also compile the text-normalisation grammars (nemo-text-processing; English for --tiny) into
DIR/normalize/<lang>/: the worker restores them and never compiles. Compiling takes about two minutes
per language, so compiled grammars are kept in a cache (--grammar-cache, default
$TTS_WORKER_GRAMMAR_CACHE or ~/.cache/tts-worker/grammars) keyed by library versions, and copied.

Real weights: F5-TTS checkpoint + vocab, Vocos, whisperx aligners per language, NLTK punkt_tab and a
faster-whisper model, each verified (hub ETag or pinned sha256) and listed with size and sha256.
A rerun fetches nothing that is already there intact; an interrupted one resumes. `--from MIRROR`
copies from a directory instead (`<repo>/<file>` for hub files, `<host>/<path>` for URLs). A token,
where a repo needs one, comes from HF_TOKEN or the build secret /run/secrets/hf_token.

Tiny models are built from the packages' own classes (f5_tts DiT/CFM, vocos
Vocos), so the worker loads them through exactly the code that loads real
weights. The manifest is written last: a directory with a manifest is complete.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tts_worker import manifest as mf

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger("bake_models")

TINY_DIT_ARCH = {
    "dim": 64,
    "depth": 2,
    "heads": 2,
    "dim_head": 32,
    "ff_mult": 2,
    "text_dim": 32,
    "text_mask_padding": True,
    "qk_norm": None,
    "conv_layers": 1,
    "pe_attn_head": None,
    "attn_backend": "torch",
    "attn_mask_enabled": False,
}

# E2-TTS's flat UNet transformer (f5_tts UNetT), as tiny; the other keys as E2TTS_Base.yaml has them.
TINY_UNETT_ARCH = {
    "dim": 64,
    "depth": 2,
    "heads": 2,
    "dim_head": 32,
    "ff_mult": 2,
    "text_mask_padding": False,
    "pe_attn_head": 1,
    "attn_backend": "torch",
    "attn_mask_enabled": False,
}
TINY_ARCHS: dict[str, dict[str, Any]] = {"DiT": TINY_DIT_ARCH, "UNetT": TINY_UNETT_ARCH}

MEL = {"n_fft": 1024, "hop_length": 256, "win_length": 1024, "n_mel_channels": 100, "target_sample_rate": 24000}


def vocos_config(dim: int, intermediate_dim: int, num_layers: int) -> str:
    """A Vocos `config.yaml` for the 24 kHz mel front end, at the given backbone size."""
    return f"""\
feature_extractor:
  class_path: vocos.feature_extractors.MelSpectrogramFeatures
  init_args:
    sample_rate: {MEL["target_sample_rate"]}
    n_fft: {MEL["n_fft"]}
    hop_length: {MEL["hop_length"]}
    n_mels: {MEL["n_mel_channels"]}
    padding: center
backbone:
  class_path: vocos.models.VocosBackbone
  init_args:
    input_channels: {MEL["n_mel_channels"]}
    dim: {dim}
    intermediate_dim: {intermediate_dim}
    num_layers: {num_layers}
head:
  class_path: vocos.heads.ISTFTHead
  init_args:
    dim: {dim}
    n_fft: {MEL["n_fft"]}
    hop_length: {MEL["hop_length"]}
    padding: same
"""


TINY_VOCOS_CONFIG = vocos_config(dim=32, intermediate_dim=64, num_layers=1)


def bake_tiny_tts(out: Path, seed: int = 0, model_name: str = "F5TTS_v1_Base") -> mf.TTSSpec:
    """A random CFM with the backbone `model_name` has (DiT for F5-TTS, UNetT for E2-TTS), at tiny size."""
    import torch
    from f5_tts import model as f5_model
    from f5_tts.model import CFM
    from f5_tts.model.utils import get_tokenizer
    from safetensors.torch import save_file

    vocab = out / mf.TTS_VOCAB
    vocab.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(str(files("f5_tts").joinpath("infer/examples/vocab.txt")), vocab)
    vocab_char_map, vocab_size = get_tokenizer(str(vocab), "custom")

    backbone = packaged_arch(model_name)[0]
    arch = TINY_ARCHS[backbone]
    torch.manual_seed(seed)
    model = CFM(
        transformer=getattr(f5_model, backbone)(**arch, text_num_embeds=vocab_size, mel_dim=MEL["n_mel_channels"]),
        mel_spec_kwargs={**MEL, "mel_spec_type": "vocos"},
        vocab_char_map=vocab_char_map,
    )
    # DiT zero-initialises its adaptive norms and output projection (UNetT its output projection), which
    # would make the tiny transformer's flow exactly zero: the output would be the seeded noise whatever the text, the
    # attention or the batch. Random values there make every layer shape the output, as trained ones do.
    with torch.no_grad():
        for param in model.transformer.parameters():
            if not param.any():
                param.normal_(0.0, 0.02)
    state = {f"ema_model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / mf.TTS_CHECKPOINT))
    name = model_name.split("_", 1)[0] + "_tiny"  # F5TTS_tiny, E2TTS_tiny
    return mf.TTSSpec(name=name, backbone=backbone, arch=arch, source=mf.Source(kind="tiny"))


def bake_tiny_vocoder(out: Path, seed: int = 0) -> mf.VocoderSpec:
    import torch
    from vocos import Vocos

    vocos_dir = out / mf.VOCODER_DIR
    vocos_dir.mkdir(parents=True, exist_ok=True)
    config = vocos_dir / "config.yaml"
    config.write_text(TINY_VOCOS_CONFIG)
    torch.manual_seed(seed)
    vocoder = Vocos.from_hparams(str(config))
    torch.save(vocoder.state_dict(), vocos_dir / "pytorch_model.bin")
    return mf.VocoderSpec(source=mf.Source(kind="tiny"))


# The English character set and token order of facebook/wav2vec2-base-960h (whisperx lower-cases it).
TINY_ALIGN_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"]

# A few real English abbreviations so the tiny punkt model behaves like one (Mr. Smith is one sentence).
TINY_PUNKT_ABBREVIATIONS = ["dr", "e.g", "etc", "i.e", "jr", "mr", "mrs", "ms", "no", "prof", "sr", "st", "vs"]

# Whisper large-v3's special-token layout: ids 50257.. after the byte-level BPE vocabulary.
WHISPER_BPE_SIZE = 50257
WHISPER_NON_LANG_SPECIALS = ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>"]


def bake_tiny_align(out: Path, seed: int = 0) -> dict[str, mf.AlignModelSpec]:
    """A random wav2vec2 CTC model with the real English aligner's characters, in save_pretrained layout."""
    import json
    import tempfile

    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    rel = f"{mf.ALIGN_DIR}/en"
    target = out / rel
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        vocab_file.write_text(json.dumps({c: i for i, c in enumerate(TINY_ALIGN_VOCAB)}))
        tokenizer = Wav2Vec2CTCTokenizer(str(vocab_file))  # <unk>, <pad>, "|" word delimiter: the defaults
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    )
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(target)
    # The real conv feature encoder (strides give 20 ms frames), everything else tiny.
    config = Wav2Vec2Config(
        vocab_size=len(TINY_ALIGN_VOCAB),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
        ctc_loss_reduction="mean",
    )
    torch.manual_seed(seed)
    Wav2Vec2ForCTC(config).save_pretrained(target)
    return {"en": mf.AlignModelSpec(dir=rel, source=mf.Source(kind="tiny"))}


def bake_tiny_nltk(out: Path) -> mf.NltkSpec:
    """NLTK's punkt_tab English model in its on-disk format, made here: NLTK data can't be downloaded offline."""
    lang_dir = out / mf.NLTK_DATA_DIR / "tokenizers/punkt_tab/english"
    lang_dir.mkdir(parents=True, exist_ok=True)
    (lang_dir / "abbrev_types.txt").write_text("".join(f"{a}\n" for a in TINY_PUNKT_ABBREVIATIONS))
    (lang_dir / "collocations.tab").write_text("")
    (lang_dir / "sent_starters.txt").write_text("")
    (lang_dir / "ortho_context.tab").write_text("")
    return mf.NltkSpec(dir=mf.NLTK_DATA_DIR, punkt_tab=["english"], source=mf.Source(kind="tiny"))


def _tiny_whisper_tokenizer(languages: list[str]) -> Tokenizer:
    """A byte-level BPE tokenizer with Whisper's special tokens at large-v3's ids (its text vocabulary is filler)."""
    import itertools
    import random

    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    filler = ["".join(p) for p in itertools.product("Ġabcdefghijklmnopqrstuvwxyz", repeat=4)]
    random.Random(0).shuffle(filler)
    # Id 50256 is the empty token, as in Whisper's multilingual vocabulary: ctranslate2 4.8 tells a
    # multilingual model (language detection, language tokens) by that token, not by the vocabulary size.
    words = alphabet + filler[: WHISPER_BPE_SIZE - len(alphabet) - 1] + [""]
    tokenizer = Tokenizer(models.BPE(vocab={w: i for i, w in enumerate(words)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *[f"<|{lang}|>" for lang in languages],
        *WHISPER_NON_LANG_SPECIALS,
        "<|notimestamps|>",
        *[f"<|{i * 0.02:.2f}|>" for i in range(1501)],
    ]
    tokenizer.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tokenizer


def bake_tiny_asr(out: Path, seed: int = 0) -> mf.AsrSpec:
    """A random multilingual Whisper (large-v3 token layout, 128 mels) converted to CTranslate2 for faster-whisper."""
    import tempfile

    import ctranslate2
    import torch
    from transformers import (
        GenerationConfig,
        PreTrainedTokenizerFast,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    languages = list(LANGUAGES)  # 100 codes in token order, as large-v3
    tokenizer = _tiny_whisper_tokenizer(languages)
    vocab_size = tokenizer.get_vocab_size()
    sot = WHISPER_BPE_SIZE + 1
    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=128,
        d_model=32,
        encoder_layers=1,
        encoder_attention_heads=2,
        decoder_layers=1,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=WHISPER_BPE_SIZE,
        bos_token_id=WHISPER_BPE_SIZE,
        eos_token_id=WHISPER_BPE_SIZE,
        decoder_start_token_id=sot,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    lang_to_id = {f"<|{lang}|>": sot + 1 + i for i, lang in enumerate(languages)}
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        eos_token_id=WHISPER_BPE_SIZE,
        pad_token_id=WHISPER_BPE_SIZE,
        lang_to_id=lang_to_id,  # the converter takes the model's language ids from here
        is_multilingual=True,
        begin_suppress_tokens=[220, WHISPER_BPE_SIZE],
        suppress_tokens=[],
    )
    rel = f"{mf.ASR_DIR}/whisper-tiny-random"
    target = out / rel
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        PreTrainedTokenizerFast(tokenizer_object=tokenizer).save_pretrained(tmp)
        ctranslate2.converters.TransformersConverter(tmp).convert(str(target), force=True)
    tokenizer.save(str(target / "tokenizer.json"))
    WhisperFeatureExtractor(feature_size=128).to_json_file(str(target / "preprocessor_config.json"))
    return mf.AsrSpec(name="whisper-tiny-random", dir=rel, multilingual=True, source=mf.Source(kind="tiny"))


def default_grammar_cache() -> Path:
    env = os.environ.get("TTS_WORKER_GRAMMAR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tts-worker" / "grammars"


def bake_normalize(out: Path, languages: list[str], cache: Path | None) -> tuple[mf.NormalizerSpec, list[str]]:
    """Compile (or copy from `cache`) each language's normalisation grammars into out/normalize/<lang>/.
    Returns the manifest entry (`NormalizerSpec` shape) and the files written."""
    from tts_worker import normalize_grammar as ng

    unknown = sorted(set(languages) - set(ng.LANGUAGES))
    if unknown or not languages:
        raise BakeError(
            f"no normalisation grammars for {unknown or 'no language'}; choose from {', '.join(ng.LANGUAGES)}"
        )
    version, pynini = ng.library_versions()
    input_case = "cased"
    grammars: dict[str, list[str]] = {}
    written: list[str] = []
    for lang in languages:
        target = out / mf.NORMALIZE_DIR / lang
        if target.exists():
            shutil.rmtree(target)
        if cache is None:
            names = ng.compile_grammars(target, lang, input_case)
        else:
            cached = cache / f"{ng.LIBRARY}-{version}-pynini-{pynini}-{input_case}" / lang
            if not (cached / "COMPLETE").is_file():
                log.info("compiling the %r normalisation grammars (about two minutes)", lang)
                tmp = cached.with_name(f".{lang}.{os.getpid()}.tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                names = ng.compile_grammars(tmp, lang, input_case)
                (tmp / "COMPLETE").write_text("\n".join(names) + "\n")
                try:
                    tmp.replace(cached)
                except OSError:  # another bake finished the same grammars first
                    shutil.rmtree(tmp, ignore_errors=True)
            names = (cached / "COMPLETE").read_text().split()
            target.mkdir(parents=True)
            for name in names:
                shutil.copyfile(cached / name, target / name)
        grammars[lang] = names
        written += [f"{mf.NORMALIZE_DIR}/{lang}/{name}" for name in names]
    spec = mf.NormalizerSpec(
        version=version,
        pynini=pynini,
        input_case=input_case,
        grammars=grammars,
        source=mf.Source(kind="compiled", repo=ng.LIBRARY, revision=version),
    )
    return spec, written


def bake_tiny(out: Path, model: str = "F5TTS_v1_Base", grammar_cache: Path | None = None) -> mf.Manifest:
    """Tiny random weights; the normalisation grammars are the real (English) ones."""
    out.mkdir(parents=True, exist_ok=True)
    (out / mf.MANIFEST_NAME).unlink(missing_ok=True)
    tts = bake_tiny_tts(out, model_name=model)
    vocoder = bake_tiny_vocoder(out)
    normalize, _ = bake_normalize(out, ["en"], grammar_cache)  # its files are under its directory
    components = mf.Components(
        align=bake_tiny_align(out), nltk_data=bake_tiny_nltk(out), asr=bake_tiny_asr(out), normalize=normalize
    )
    written = [mf.TTS_CHECKPOINT, mf.TTS_VOCAB, *mf.VOCODER_FILES, *mf.files_under(out, components.directories())]
    return mf.write_manifest(out, tiny=True, tts=tts, vocoder=vocoder, components=components, files=written)


# --- Real weights ------------------------------------------------------------------------------
# Every source is pinned: hub files by commit hash (content-addressed; each download is checked
# against the hub's ETag: sha256 for LFS files, git blob sha1 for small ones), plain URLs by sha256.
# `--pins FILE` (JSON, same shape, merged over these) points a fork or a test at other sources.
PINS: dict[str, Any] = {
    "tts": {
        "F5TTS_v1_Base": {
            "repo": "SWivid/F5-TTS",
            "revision": "84e5a410d9cead4de2f847e7c9369a6440bdfaca",
            "checkpoint": "F5TTS_v1_Base/model_1250000.safetensors",
            "vocab": "F5TTS_v1_Base/vocab.txt",
        },
        "F5TTS_Base": {
            "repo": "SWivid/F5-TTS",
            "revision": "84e5a410d9cead4de2f847e7c9369a6440bdfaca",
            "checkpoint": "F5TTS_Base/model_1200000.safetensors",
            "vocab": "F5TTS_Base/vocab.txt",
        },
        "E2TTS_Base": {
            "repo": "SWivid/E2-TTS",
            # No commit hash could be confirmed offline: a branch name, not a pin. The commit it
            # resolves to is recorded in the manifest; replace this with it after the first bake.
            "revision": "main",
            "checkpoint": "E2TTS_Base/model_1200000.safetensors",
            "vocab": None,  # f5_tts's packaged vocab.txt, as f5_tts's own E2 loader uses
        },
    },
    "vocoder": {
        "repo": "charactr/vocos-mel-24khz",
        "revision": "0feb3fdd929bcd6649e0e7c5a688cf7dd012ef21",
        "files": ["config.yaml", "pytorch_model.bin"],
    },
    # faster-whisper (CTranslate2) repos -> commit; an unlisted repo is fetched at `main` with a warning.
    "asr": {
        "Systran/faster-whisper-small": "536b0662742c02347bc0e980a01041f333bce120",
        "Systran/faster-whisper-tiny": "d90ca5fe260221311c53c58e660288d3deb8d356",
    },
    # whisperx's Hugging Face alignment repos (DEFAULT_ALIGN_MODELS_HF) -> commit; default `main`.
    "align_hf": {},
    # whisperx's torchaudio alignment bundles (en, fr, de, es, it): file name -> sha256 (None: recorded, not checked).
    "torchaudio": {
        "base_url": "https://download.pytorch.org/torchaudio/models",
        "sha256": {
            "wav2vec2_fairseq_base_ls960_asr_ls960.pth": (
                "488fd4f16de84438ffc945334278c1b9fb9b7159a806c1080b16111a958c945d"
            )
        },
    },
    "nltk": {
        "url": "https://raw.githubusercontent.com/nltk/nltk_data/4f15a3d89eefe9748ec1c05be495d91289197155"
        "/packages/tokenizers/punkt_tab.zip",
        "sha256": "e57f64187974277726a3417ca6f181ec5403676c717672eef6a748a7b20e0106",
    },
}

# whisperx's torchaudio bundles and their weight files (torchaudio's `bundle._path`; checked by a test).
TORCHAUDIO_FILES = {
    "WAV2VEC2_ASR_BASE_960H": "wav2vec2_fairseq_base_ls960_asr_ls960.pth",
    "VOXPOPULI_ASR_BASE_10K_DE": "wav2vec2_voxpopuli_base_10k_asr_de.pt",
    "VOXPOPULI_ASR_BASE_10K_ES": "wav2vec2_voxpopuli_base_10k_asr_es.pt",
    "VOXPOPULI_ASR_BASE_10K_FR": "wav2vec2_voxpopuli_base_10k_asr_fr.pt",
    "VOXPOPULI_ASR_BASE_10K_IT": "wav2vec2_voxpopuli_base_10k_asr_it.pt",
}
ASR_FILES = ("config.json", "model.bin", "tokenizer.json", "vocabulary.txt")
ASR_OPTIONAL_FILES = ("preprocessor_config.json",)
ALIGN_HF_FILES = ("config.json", "preprocessor_config.json", "vocab.json")
ALIGN_HF_OPTIONAL_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
ALIGN_HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # the first one the repo has
HF_TOKEN_SECRET = Path("/run/secrets/hf_token")  # `RUN --mount=type=secret,id=hf_token`
STATE_NAME = ".bake-state.json"  # what each file was fetched from, with size and sha256: makes reruns no-ops
STAGING_NAME = ".bake-staging"
PROGRESS_STEP = 0.1


class BakeError(Exception):
    """A source that could not be fetched or verified; the message names it and what to do."""


@dataclass(frozen=True)
class Remote:
    """One file to fetch into MODEL_DIR/`dest`: from a hub repo at a revision, or from a URL."""

    dest: str
    repo: str | None = None
    revision: str | None = None
    filename: str | None = None
    url: str | None = None
    sha256: str | None = None
    optional: bool = False

    @property
    def key(self) -> str:
        return f"hub:{self.repo}@{self.revision}/{self.filename}" if self.repo else f"url:{self.url}"

    @property
    def mirror_path(self) -> str:
        """Where `--from MIRROR` looks: `<repo>/<file>` (as `hf download --local-dir MIRROR/<repo>`)
        or `<host>/<path>` (as `wget -x`)."""
        if self.repo:
            return f"{self.repo}/{self.filename}"
        parsed = urllib.parse.urlsplit(str(self.url))
        return f"{parsed.netloc}{parsed.path}"


def load_pins(path: Path | None) -> dict[str, Any]:
    def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in extra.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    return merge(PINS, json.loads(path.read_text())) if path else PINS


def hf_token() -> str | None:
    """From the environment or a build secret; never an argument, never logged."""
    token = os.environ.get("HF_TOKEN")
    if not token and HF_TOKEN_SECRET.is_file():
        token = HF_TOKEN_SECRET.read_text().strip()
    return token or None


def git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class WeightFetcher:
    """Fetches `Remote`s into a model directory: from the hub (huggingface_hub), a URL, or a mirror
    directory. A file already there with the recorded source, size and sha256 is not fetched again;
    a partial download is resumed (huggingface_hub's `.incomplete`, a URL's `.part` + Range)."""

    def __init__(self, out: Path, *, mirror: Path | None = None) -> None:
        self.out = out
        self.mirror = mirror
        self.staging = out / STAGING_NAME
        self.state_path = out / STATE_NAME
        self.state: dict[str, dict[str, Any]] = (
            json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        )
        self.fetched: list[str] = []
        self.skipped: list[str] = []
        self.commits: dict[str, str] = {}  # "repo@revision" -> the commit it resolved to
        self.warned: set[str] = set()

    def is_current(self, key: str, dests: list[str]) -> bool:
        for dest in dests:
            entry, path = self.state.get(dest), self.out / dest
            if not entry or entry.get("source") != key or not path.is_file():
                return False
            if path.stat().st_size != entry["size"] or mf.sha256_file(path) != entry["sha256"]:
                log.warning("%s: differs from what was baked (corrupt or replaced); fetching it again", dest)
                return False
        return True

    def record(self, key: str, dest: str, **extra: Any) -> None:
        path = self.out / dest
        self.state[dest] = {"source": key, "size": path.stat().st_size, "sha256": mf.sha256_file(path), **extra}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.state_path)

    def get(self, remote: Remote) -> bool:
        """Fetch one file; False when an optional file does not exist at the source."""
        if self.is_current(remote.key, [remote.dest]):
            self.skipped.append(remote.dest)
            if remote.repo and "commit" in self.state[remote.dest]:
                self.commits[f"{remote.repo}@{remote.revision}"] = self.state[remote.dest]["commit"]
            return True
        if remote.repo and remote.repo not in self.warned and not re.fullmatch(r"[0-9a-f]{40}", str(remote.revision)):
            self.warned.add(remote.repo)
            log.warning(
                "%s: revision %r is a branch, not a commit; the manifest records the commit it resolved to",
                remote.repo,
                remote.revision,
            )
        target = self.out / remote.dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.mirror is not None:
            fetched = self._from_mirror(remote)
            commit = remote.revision
        elif remote.repo:
            fetched, commit = self._from_hub(remote)
        else:
            fetched, commit = self._from_url(remote), None
        if fetched is None:
            return False
        if remote.sha256 and mf.sha256_file(fetched) != remote.sha256:
            fetched.unlink()
            raise BakeError(f"{remote.key}: sha256 differs from the pinned {remote.sha256[:12]}...; not installed")
        fetched.replace(target)
        self.record(remote.key, remote.dest, **({"commit": commit} if commit else {}))
        if remote.repo and commit:
            self.commits[f"{remote.repo}@{remote.revision}"] = commit
        self.fetched.append(remote.dest)
        return True

    def _from_mirror(self, remote: Remote) -> Path | None:
        assert self.mirror is not None
        src = self.mirror / remote.mirror_path
        if not src.is_file():
            if remote.optional:
                return None
            raise BakeError(f"{remote.key}: not in the mirror (looked for {src})")
        tmp = self.staging / "mirror" / remote.dest
        tmp.parent.mkdir(parents=True, exist_ok=True)
        log.info("copying %s (%.1f MB) from %s", remote.dest, src.stat().st_size / 1e6, src)
        shutil.copyfile(src, tmp)
        return tmp

    def _from_hub(self, remote: Remote) -> tuple[Path | None, str | None]:
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
        from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

        assert remote.repo and remote.filename and remote.revision
        token = hf_token()
        try:
            meta = get_hf_file_metadata(hf_hub_url(remote.repo, remote.filename, revision=remote.revision), token=token)
            log.info(
                "downloading %s/%s@%s (%.1f MB)",
                remote.repo,
                remote.filename,
                remote.revision[:12],
                (meta.size or 0) / 1e6,
            )
            path = Path(
                hf_hub_download(
                    remote.repo,
                    remote.filename,
                    revision=remote.revision,
                    local_dir=self.staging / "hub" / remote.repo,
                    token=token,
                )
            )
        except EntryNotFoundError as exc:
            if remote.optional:
                return None, None
            raise BakeError(f"{remote.key}: no such file at that revision") from exc
        except (GatedRepoError, RepositoryNotFoundError) as exc:
            raise BakeError(
                f"{remote.key}: repository not found or gated; accept its terms on huggingface.co and provide "
                "a token (HF_TOKEN in the environment, or the build secret `hf_token`)"
            ) from exc
        except (HfHubHTTPError, OSError, ValueError) as exc:
            raise BakeError(f"{remote.key}: download failed ({exc.__class__.__name__}: {exc})") from exc
        if re.fullmatch(r"[0-9a-f]{40}", remote.revision) and meta.commit_hash != remote.revision:
            raise BakeError(f"{remote.key}: the hub answered for commit {meta.commit_hash}, not the pinned one")
        etag = (meta.etag or "").lower()
        if meta.size is not None and path.stat().st_size != meta.size:
            raise BakeError(f"{remote.key}: {path.stat().st_size} bytes, the hub says {meta.size}")
        if re.fullmatch(r"[0-9a-f]{64}", etag):
            ok = mf.sha256_file(path) == etag
        elif re.fullmatch(r"[0-9a-f]{40}", etag):
            ok = git_blob_sha1(path) == etag
        else:
            ok = True
            log.warning("%s: the hub sent no checksum ETag; size checked only", remote.key)
        if not ok:
            path.unlink()
            raise BakeError(f"{remote.key}: checksum differs from the hub's ETag {etag[:12]}...; not installed")
        return path, meta.commit_hash

    def _from_url(self, remote: Remote) -> Path:
        assert remote.url
        if not remote.url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise BakeError(f"{remote.url}: only https sources are fetched")
        part = self.staging / "url" / (remote.dest + ".part")
        part.parent.mkdir(parents=True, exist_ok=True)
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        request = urllib.request.Request(remote.url, headers=headers)  # noqa: S310 (scheme checked above)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                if have and response.status != 206:
                    have = 0  # the server ignored Range: start over
                total = have + int(response.headers.get("Content-Length", 0))
                log.info("downloading %s (%.1f MB)%s", remote.url, total / 1e6, f", resuming at {have}" if have else "")
                shown = 0.0
                with part.open("ab" if have else "wb") as f:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        f.write(block)
                        have += len(block)
                        if total and have / total >= shown + PROGRESS_STEP:
                            shown = have / total
                            log.info("  %s: %3.0f%%", remote.dest, 100 * shown)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # the part file is complete already (cut short before its move)
                return part
            raise BakeError(f"{remote.url}: download failed ({exc}); rerun to resume") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise BakeError(f"{remote.url}: download failed ({exc}); rerun to resume") from exc
        return part

    def finish(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def tts_remotes(pins: dict[str, Any], model: str) -> list[Remote]:
    pin = pins["tts"][model]
    remotes = [Remote(mf.TTS_CHECKPOINT, pin["repo"], pin["revision"], pin["checkpoint"])]
    if pin.get("vocab"):
        remotes.append(Remote(mf.TTS_VOCAB, pin["repo"], pin["revision"], pin["vocab"]))
    return remotes


def vocoder_remotes(pins: dict[str, Any]) -> list[Remote]:
    pin = pins["vocoder"]
    return [Remote(f"{mf.VOCODER_DIR}/{name}", pin["repo"], pin["revision"], name) for name in pin["files"]]


def asr_dir_name(repo: str) -> str:
    return repo.rsplit("/", 1)[-1].removeprefix("faster-whisper-")


def asr_remotes(pins: dict[str, Any], repo: str) -> list[Remote]:
    revision = pins["asr"].get(repo, "main")
    base = f"{mf.ASR_DIR}/{asr_dir_name(repo)}"
    return [Remote(f"{base}/{name}", repo, revision, name) for name in ASR_FILES] + [
        Remote(f"{base}/{name}", repo, revision, name, optional=True) for name in ASR_OPTIONAL_FILES
    ]


def whisperx_table(module: str, name: str) -> dict[str, str]:
    """A literal table from whisperx's source, read without importing whisperx (that takes ~15 s)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    for node in ast.parse(Path(spec.origin).read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            table: dict[str, str] = ast.literal_eval(node.value)
            return table
    raise BakeError(f"{module}.{name} not found: is this the whisperx version in requirements.lock?")


def align_plan(pins: dict[str, Any], lang: str) -> tuple[dict[str, Any], list[list[Remote]]]:
    """Where one alignment language's model comes from and its files (groups of alternatives)."""
    torch_models = whisperx_table("whisperx.alignment", "DEFAULT_ALIGN_MODELS_TORCH")
    hf_models = whisperx_table("whisperx.alignment", "DEFAULT_ALIGN_MODELS_HF")
    base = f"{mf.ALIGN_DIR}/{lang}"
    if lang in torch_models:
        bundle = torch_models[lang]
        name = TORCHAUDIO_FILES[bundle]
        url = f"{pins['torchaudio']['base_url'].rstrip('/')}/{name}"
        remote = Remote(f"{base}/{name}", url=url, sha256=pins["torchaudio"]["sha256"].get(name))
        return {"dir": base, "format": "torchaudio", "bundle": bundle, "url": url}, [[remote]]
    if lang in hf_models:
        repo = hf_models[lang]
        rev = pins["align_hf"].get(repo, "main")
        groups = [[Remote(f"{base}/{n}", repo, rev, n)] for n in ALIGN_HF_FILES]
        groups += [[Remote(f"{base}/{n}", repo, rev, n, optional=True)] for n in ALIGN_HF_OPTIONAL_FILES]
        groups.append([Remote(f"{base}/{n}", repo, rev, n, optional=True) for n in ALIGN_HF_WEIGHTS])
        return {"dir": base, "format": "huggingface", "repo": repo, "revision": rev}, groups
    known = sorted({*torch_models, *hf_models})
    raise BakeError(f"no whisperx alignment model for language {lang!r}; known: {', '.join(known)}")


def fetch_group(fetcher: WeightFetcher, group: list[Remote]) -> list[str]:
    """Fetch the first available file of a group of alternatives; all-optional groups may yield none."""
    for remote in group:
        if fetcher.get(remote):
            return [remote.dest]
    if len(group) > 1:
        raise BakeError(f"none of {', '.join(r.key for r in group)} exists")
    return []


def bake_punkt_tab(fetcher: WeightFetcher, pins: dict[str, Any], languages: list[str]) -> tuple[mf.NltkSpec, list[str]]:
    """NLTK punkt_tab for the given punkt languages, unpacked as `nltk_data/tokenizers/punkt_tab/<language>/`."""

    pin = pins["nltk"]
    key = f"url:{pin['url']}#" + ",".join(languages)
    zip_remote = Remote(f"{STAGING_NAME}/punkt_tab.zip", url=pin["url"], sha256=pin.get("sha256"))
    source = mf.Source(kind="url", files=[pin["url"]])
    entry = mf.NltkSpec(dir=mf.NLTK_DATA_DIR, punkt_tab=languages, source=source)
    recorded = [d for d, e in fetcher.state.items() if e.get("source") == key]
    if recorded and fetcher.is_current(key, recorded):
        fetcher.skipped += recorded
        return entry, recorded
    if not fetcher.get(zip_remote):
        raise BakeError(f"{pin['url']}: not found")
    archive = fetcher.out / zip_remote.dest
    fetcher.state.pop(zip_remote.dest, None)  # the archive is transient; its unpacked files are recorded
    wanted = (*(f"punkt_tab/{lang}/" for lang in languages), "punkt_tab/README")
    written = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = info.filename
            if info.is_dir() or not name.startswith(wanted):
                continue
            if name.startswith("/") or ".." in Path(name).parts:
                raise BakeError(f"{pin['url']}: unsafe path {name!r} in the archive")
            dest = f"{mf.NLTK_DATA_DIR}/tokenizers/{name}"
            (fetcher.out / dest).parent.mkdir(parents=True, exist_ok=True)
            (fetcher.out / dest).write_bytes(zf.read(info))
            fetcher.record(key, dest)
            written.append(dest)
    prefix = f"{mf.NLTK_DATA_DIR}/tokenizers/punkt_tab/"
    missing = [lang for lang in languages if not any(w.startswith(f"{prefix}{lang}/") for w in written)]
    if missing:
        raise BakeError(f"{pin['url']}: no punkt_tab data for {', '.join(missing)}")
    return entry, written


def packaged_arch(model: str) -> tuple[str, dict[str, Any], str]:
    """Backbone, arch and mel type of a model, from the f5_tts package's own config (what it was trained with)."""
    import yaml

    cfg = yaml.safe_load(files("f5_tts").joinpath(f"configs/{model}.yaml").read_text())["model"]
    return cfg["backbone"], dict(cfg["arch"]), cfg["mel_spec"]["mel_spec_type"]


def bake_real(
    out: Path,
    *,
    model: str,
    align_languages: list[str],
    asr_repo: str | None,
    mirror: Path | None = None,
    pins: dict[str, Any] = PINS,
    normalize_languages: tuple[str, ...] = ("en",),
    grammar_cache: Path | None = None,
) -> mf.Manifest:
    """Fetch pinned real weights into the manifest layout; the manifest is written last."""

    if model not in pins["tts"]:
        raise BakeError(f"unknown model {model!r}; choose one of {', '.join(pins['tts'])}")
    from huggingface_hub import constants as hf_constants

    if mirror is None and hf_constants.HF_HUB_OFFLINE:
        raise BakeError(
            "HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: unset it to bake from the hub, or bake --from a mirror"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / mf.MANIFEST_NAME).unlink(missing_ok=True)
    fetcher = WeightFetcher(out, mirror=mirror)
    kind = "mirror" if mirror else "hub"

    def commit(repo: str, revision: str) -> str:
        return fetcher.commits.get(f"{repo}@{revision}", revision)

    written: list[str] = []
    tts_pin = pins["tts"][model]
    for remote in tts_remotes(pins, model):
        fetcher.get(remote)
        written.append(remote.dest)
    tts_files = [tts_pin["checkpoint"]]
    if not tts_pin.get("vocab"):
        shutil.copyfile(str(files("f5_tts").joinpath("infer/examples/vocab.txt")), out / mf.TTS_VOCAB)
        written.append(mf.TTS_VOCAB)
        tts_files.append("f5_tts:infer/examples/vocab.txt")
    else:
        tts_files.append(tts_pin["vocab"])
    backbone, arch, mel_type = packaged_arch(model)
    tts = mf.TTSSpec(
        name=model,
        backbone=backbone,
        arch=arch,
        mel_spec_type=mel_type,
        source=mf.Source(
            kind=kind, repo=tts_pin["repo"], revision=commit(tts_pin["repo"], tts_pin["revision"]), files=tts_files
        ),
    )

    voc_pin = pins["vocoder"]
    for remote in vocoder_remotes(pins):
        fetcher.get(remote)
        written.append(remote.dest)
    vocoder = mf.VocoderSpec(
        source=mf.Source(
            kind=kind,
            repo=voc_pin["repo"],
            revision=commit(voc_pin["repo"], voc_pin["revision"]),
            files=list(voc_pin["files"]),
        )
    )

    align: dict[str, mf.AlignModelSpec] = {}
    for lang in align_languages:
        entry, groups = align_plan(pins, lang)
        got = [dest for group in groups for dest in fetch_group(fetcher, group)]
        written += got
        if entry["format"] == "torchaudio":
            source = mf.Source(kind=kind if mirror else "url", files=[entry.pop("url")])
        else:
            repo, rev = entry.pop("repo"), entry.pop("revision")
            source = mf.Source(
                kind=kind, repo=repo, revision=commit(repo, rev), files=[d.rsplit("/", 1)[-1] for d in got]
            )
        align[lang] = mf.AlignModelSpec(**entry, source=source)

    punkt_names = whisperx_table("whisperx.utils", "PUNKT_LANGUAGES")
    punkt_languages = sorted({"english", *(punkt_names[lang] for lang in align_languages if lang in punkt_names)})
    nltk_data, nltk_files = bake_punkt_tab(fetcher, pins, punkt_languages)
    written += nltk_files
    asr = None

    if asr_repo:
        remotes = asr_remotes(pins, asr_repo)
        got = [r.dest for r in remotes if fetcher.get(r)]
        written += got
        revision = pins["asr"].get(asr_repo, "main")
        source = mf.Source(
            kind=kind, repo=asr_repo, revision=commit(asr_repo, revision), files=[d.rsplit("/", 1)[-1] for d in got]
        )
        asr = mf.AsrSpec(
            name=asr_dir_name(asr_repo),
            dir=f"{mf.ASR_DIR}/{asr_dir_name(asr_repo)}",
            multilingual=not asr_repo.endswith(".en"),
            source=source,
        )
    normalize, grammar_files = bake_normalize(out, list(normalize_languages), grammar_cache)
    written += grammar_files
    components = mf.Components(align=align, nltk_data=nltk_data, asr=asr, normalize=normalize)

    fetcher.finish()
    log.info("fetched %d files, %d already present and verified", len(fetcher.fetched), len(fetcher.skipped))
    return mf.write_manifest(out, tiny=False, tts=tts, vocoder=vocoder, components=components, files=written)


def report(out: Path, manifest: mf.Manifest) -> None:
    total = sum(entry.size for entry in manifest.files.values())
    for rel, entry in manifest.files.items():
        log.info("  %-40s %12d bytes  sha256 %s", rel, entry.size, entry.sha256[:12])
    log.info(
        "wrote %s: %d files, %.1f MB%s",
        out,
        len(manifest.files),
        total / 1e6,
        " (tiny random weights: output is noise)" if manifest.tiny else "",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", nargs="?", type=Path, metavar="DIR", help="bake real weights at pinned revisions")
    parser.add_argument("--tiny", type=Path, metavar="DIR", help="write random-weight tiny models to DIR")
    real = parser.add_argument_group("real weights")
    parser.add_argument(
        "--model",
        default="F5TTS_v1_Base",
        help="F5TTS_v1_Base (default), F5TTS_Base or E2TTS_Base (with --tiny: its backbone)",
    )
    real.add_argument("--align-languages", default="en", metavar="LANGS", help="whisperx aligners, e.g. en,de,ja")
    real.add_argument(
        "--asr-model", default="Systran/faster-whisper-small", help="faster-whisper repo for uploads; 'none' to skip"
    )
    real.add_argument("--from", dest="mirror", type=Path, metavar="MIRROR", help="copy from a mirror dir, not the hub")
    real.add_argument("--pins", type=Path, metavar="FILE", help="JSON merged over the built-in PINS")
    real.add_argument(
        "--normalize-languages", default="en", metavar="LANGS", help="text-normalisation grammars, e.g. en,de"
    )
    parser.add_argument(
        "--grammar-cache",
        type=Path,
        default=default_grammar_cache(),
        metavar="DIR",
        help="compiled grammars kept here between bakes ('none': always compile)",
    )
    args = parser.parse_args(argv)
    if (args.dir is None) == (args.tiny is None):
        parser.error("give DIR (real weights) or --tiny DIR (random tiny weights), not both")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out: Path = args.tiny or args.dir
    grammar_cache = None if str(args.grammar_cache).lower() == "none" else args.grammar_cache
    if args.tiny:
        try:
            manifest = bake_tiny(out, model=args.model, grammar_cache=grammar_cache)
        except BakeError as exc:
            log.error("bake failed: %s", exc)
            return 1
    else:
        try:
            manifest = bake_real(
                out,
                model=args.model,
                align_languages=[lang.strip() for lang in args.align_languages.split(",") if lang.strip()],
                asr_repo=None if args.asr_model.lower() in {"", "none"} else args.asr_model,
                mirror=args.mirror,
                pins=load_pins(args.pins),
                normalize_languages=tuple(lang.strip() for lang in args.normalize_languages.split(",") if lang.strip()),
                grammar_cache=grammar_cache,
            )
        except BakeError as exc:
            log.error("bake failed: %s", exc)
            return 1
    problems = mf.verify(out, manifest, checksums=True)
    if problems:
        log.error("verification failed: %s", "; ".join(problems))
        return 1
    report(out, manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

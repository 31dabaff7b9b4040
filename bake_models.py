#!/usr/bin/env python3
"""Bake the model directory the worker loads (layout: `tts_worker.manifest`).

    python bake_models.py --tiny DIR   random-weight tiny models (tests, local trials; output is noise)

Tiny models are built from the packages' own classes (f5_tts DiT/CFM, vocos
Vocos), so the worker loads them through exactly the code that loads real
weights. The manifest is written last: a directory with a manifest is complete.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

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

MEL = {"n_fft": 1024, "hop_length": 256, "win_length": 1024, "n_mel_channels": 100, "target_sample_rate": 24000}

TINY_VOCOS_CONFIG = f"""\
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
    dim: 32
    intermediate_dim: 64
    num_layers: 1
head:
  class_path: vocos.heads.ISTFTHead
  init_args:
    dim: 32
    n_fft: {MEL["n_fft"]}
    hop_length: {MEL["hop_length"]}
    padding: same
"""


def bake_tiny_tts(out: Path, seed: int = 0) -> mf.TTSSpec:
    import torch
    from f5_tts.model import CFM, DiT
    from f5_tts.model.utils import get_tokenizer
    from safetensors.torch import save_file

    vocab = out / mf.TTS_VOCAB
    vocab.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(str(files("f5_tts").joinpath("infer/examples/vocab.txt")), vocab)
    vocab_char_map, vocab_size = get_tokenizer(str(vocab), "custom")

    torch.manual_seed(seed)
    model = CFM(
        transformer=DiT(**TINY_DIT_ARCH, text_num_embeds=vocab_size, mel_dim=MEL["n_mel_channels"]),
        mel_spec_kwargs={**MEL, "mel_spec_type": "vocos"},
        vocab_char_map=vocab_char_map,
    )
    state = {f"ema_model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / mf.TTS_CHECKPOINT))
    return mf.TTSSpec(name="F5TTS_tiny", arch=TINY_DIT_ARCH, source=mf.Source(kind="tiny"))


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


def bake_tiny_align(out: Path, seed: int = 0) -> dict[str, dict[str, object]]:
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

    from tts_worker.alignment import AlignModelSpec

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
    return {"en": AlignModelSpec(dir=rel, source=mf.Source(kind="tiny")).model_dump()}


def bake_tiny_nltk(out: Path) -> dict[str, object]:
    """NLTK's punkt_tab English model in its on-disk format, made here: NLTK data can't be downloaded offline."""
    from tts_worker.alignment import NltkSpec

    lang_dir = out / mf.NLTK_DATA_DIR / "tokenizers/punkt_tab/english"
    lang_dir.mkdir(parents=True, exist_ok=True)
    (lang_dir / "abbrev_types.txt").write_text("".join(f"{a}\n" for a in TINY_PUNKT_ABBREVIATIONS))
    (lang_dir / "collocations.tab").write_text("")
    (lang_dir / "sent_starters.txt").write_text("")
    (lang_dir / "ortho_context.tab").write_text("")
    return NltkSpec(dir=mf.NLTK_DATA_DIR, punkt_tab=["english"], source=mf.Source(kind="tiny")).model_dump()


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


def bake_tiny_asr(out: Path, seed: int = 0) -> dict[str, object]:
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

    from tts_worker.alignment import AsrSpec

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
    return AsrSpec(name="whisper-tiny-random", dir=rel, multilingual=True, source=mf.Source(kind="tiny")).model_dump()


def component_files(out: Path, components: dict[str, dict[str, object]]) -> list[str]:
    """Every file under the directories the alignment components name, relative to `out`."""
    dirs = [str(spec["dir"]) for spec in components.get("align", {}).values() if isinstance(spec, dict)]
    dirs += [str(components[name]["dir"]) for name in ("nltk_data", "asr") if name in components]
    return sorted(str(p.relative_to(out)) for d in dirs for p in (out / d).rglob("*") if p.is_file())


def bake_tiny(out: Path) -> mf.Manifest:
    out.mkdir(parents=True, exist_ok=True)
    (out / mf.MANIFEST_NAME).unlink(missing_ok=True)
    tts = bake_tiny_tts(out)
    vocoder = bake_tiny_vocoder(out)
    components = {"align": bake_tiny_align(out), "nltk_data": bake_tiny_nltk(out), "asr": bake_tiny_asr(out)}
    written = [mf.TTS_CHECKPOINT, mf.TTS_VOCAB, *mf.VOCODER_FILES, *component_files(out, components)]
    return mf.write_manifest(out, tiny=True, tts=tts, vocoder=vocoder, components=components, files=written)


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
    parser.add_argument(
        "--tiny", type=Path, metavar="DIR", required=True, help="write random-weight tiny models to DIR"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    manifest = bake_tiny(args.tiny)
    problems = mf.verify(args.tiny, manifest, checksums=True)
    if problems:
        log.error("verification failed: %s", "; ".join(problems))
        return 1
    report(args.tiny, manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

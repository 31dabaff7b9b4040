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

from tts_worker import manifest as mf

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


def bake_tiny(out: Path) -> mf.Manifest:
    out.mkdir(parents=True, exist_ok=True)
    (out / mf.MANIFEST_NAME).unlink(missing_ok=True)
    tts = bake_tiny_tts(out)
    vocoder = bake_tiny_vocoder(out)
    written = [mf.TTS_CHECKPOINT, mf.TTS_VOCAB, *mf.VOCODER_FILES]
    return mf.write_manifest(out, tiny=True, tts=tts, vocoder=vocoder, files=written)


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

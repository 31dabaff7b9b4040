"""The baked model directory: bake_models.py --tiny writes a complete, verified layout; anything
missing or damaged is named, together with the command that bakes it."""

import json
import shutil

import pytest

from tts_worker import manifest as mf
from tts_worker.errors import ModelDirError


def test_tiny_bake_writes_a_verified_manifest(tiny_model_dir):
    manifest = mf.load_verified(tiny_model_dir, checksums=True)
    assert manifest.tiny is True
    assert {mf.TTS_CHECKPOINT, mf.TTS_VOCAB, *mf.VOCODER_FILES} <= set(manifest.files)
    for rel, entry in manifest.files.items():
        assert (tiny_model_dir / rel).stat().st_size == entry.size


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    dst = tmp_path / "models"
    shutil.copytree(tiny_model_dir, dst)
    return dst


def test_missing_dir_names_the_bake_command(tmp_path):
    with pytest.raises(ModelDirError, match="does not exist.*make bake"):
        mf.load_verified(tmp_path / "nope")


def test_unbaked_dir_says_no_manifest(tmp_path):
    with pytest.raises(ModelDirError, match="no manifest.json.*make bake-tiny"):
        mf.load_verified(tmp_path)


def test_missing_and_truncated_files_are_each_named(model_copy):
    (model_copy / "vocos/pytorch_model.bin").unlink()
    ckpt = model_copy / mf.TTS_CHECKPOINT
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(ModelDirError) as err:
        mf.load_verified(model_copy)
    assert "vocos/pytorch_model.bin: missing" in str(err.value)
    assert f"{mf.TTS_CHECKPOINT}: 100 bytes" in str(err.value)


def test_corruption_of_same_size_is_caught_by_checksums(model_copy):
    vocab = model_copy / mf.TTS_VOCAB
    data = bytearray(vocab.read_bytes())
    data[10] ^= 0xFF
    vocab.write_bytes(bytes(data))
    mf.load_verified(model_copy)  # sizes still match: the cheap start-up check passes
    with pytest.raises(ModelDirError, match="sha256 differs"):
        mf.load_verified(model_copy, checksums=True)


def test_garbled_manifest_is_refused(model_copy):
    (model_copy / mf.MANIFEST_NAME).write_text(json.dumps({"format": 1}))
    with pytest.raises(ModelDirError, match="not a valid manifest"):
        mf.load_verified(model_copy)

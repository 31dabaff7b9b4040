"""`bake_models.py DIR` for real weights, offline: from a directory mirror, and from a loopback
HTTP server that answers the hub's resolve URLs the way huggingface.co does (HEAD/GET
`/{repo}/resolve/{revision}/{file}` with ETag, X-Repo-Commit, Content-Length, Range).

The files are small stand-ins with the real repos' names: these tests check fetching,
layout, manifest, checksums and idempotency, not the weights."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from tts_worker import manifest as mf

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TORCHAUDIO_EN = "wav2vec2_fairseq_base_ls960_asr_ls960.pth"
JA_REPO = "jonatasgrosman/wav2vec2-large-xlsr-53-japanese"
ASR_REPO = "Systran/faster-whisper-tiny"
LFS_SUFFIXES = (".safetensors", ".bin", ".pth")


def _load_bake_module():
    spec = importlib.util.spec_from_file_location("bake_models", ROOT / "bake_models.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bake_models"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bake = _load_bake_module()


def _blob(seed: str, size: int) -> bytes:
    out = bytearray()
    block = seed.encode()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def _punkt_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("punkt_tab/README", "punkt_tab stand-in\n")
        for lang in ("english", "german", "french"):
            zf.writestr(f"punkt_tab/{lang}/abbrev_types.txt", "mr\ndr\n")
            zf.writestr(f"punkt_tab/{lang}/collocations.tab", "")
            zf.writestr(f"punkt_tab/{lang}/sent_starters.txt", "")
            zf.writestr(f"punkt_tab/{lang}/ortho_context.tab", "")
    return buf.getvalue()


# Hub repos as the bake asks for them (default F5TTS_v1_Base, en + ja aligners, a tiny ASR).
HUB = {
    "SWivid/F5-TTS": {
        "F5TTS_v1_Base/model_1250000.safetensors": _blob("f5", 300_000),
        "F5TTS_v1_Base/vocab.txt": files("f5_tts").joinpath("infer/examples/vocab.txt").read_bytes(),
    },
    "charactr/vocos-mel-24khz": {
        "config.yaml": b"feature_extractor: {}\n",
        "pytorch_model.bin": _blob("vocos", 50_000),
    },
    ASR_REPO: {  # no preprocessor_config.json: an optional file the repo lacks
        "config.json": b'{"alignment_heads": []}',
        "model.bin": _blob("asr", 40_000),
        "tokenizer.json": b'{"model": {}}',
        "vocabulary.txt": b"a\nb\n",
    },
    JA_REPO: {  # no model.safetensors: the bake falls back to pytorch_model.bin
        "config.json": b'{"model_type": "wav2vec2"}',
        "preprocessor_config.json": b"{}",
        "vocab.json": b'{"<pad>": 0}',
        "special_tokens_map.json": b"{}",
        "pytorch_model.bin": _blob("ja", 30_000),
    },
}
URLS = {"/torchaudio/models/" + TORCHAUDIO_EN: _blob("en", 60_000), "/nltk/punkt_tab.zip": _punkt_zip()}


class FakeHub:
    """Loopback stand-in for huggingface.co's resolve endpoint plus two plain download URLs."""

    def __init__(self) -> None:
        self.hub = {repo: dict(content) for repo, content in HUB.items()}
        self.urls = dict(URLS)
        self.tamper: set[str] = set()  # paths served with bytes that don't match their ETag
        self.gets: Counter[str] = Counter()
        self.auth: set[str] = set()
        self.ranges: dict[str, str] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                hub.auth.add(self.headers.get("Authorization", ""))
                path = self.path.split("?")[0]
                data, headers = hub.lookup(path)
                if data is None:
                    self.send_response(404)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path in hub.tamper:
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                    hub.ranges[path] = rng
                self.send_response(206 if start else 200)
                for k, v in headers.items():
                    self.send_header(k, v)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if body:
                    hub.gets[path] += 1
                    self.wfile.write(data[start:])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def lookup(self, path: str) -> tuple[bytes | None, dict[str, str]]:
        if path in self.urls:
            return self.urls[path], {}
        repo, sep, rest = path.lstrip("/").partition("/resolve/")
        if not sep or repo not in self.hub:
            return None, {"X-Error-Code": "RepoNotFound"}
        revision, _, filename = rest.partition("/")
        commit = revision if len(revision) == 40 else COMMIT  # a branch resolves to its head commit
        data = self.hub[repo].get(filename)
        if data is None:
            return None, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}
        if filename.endswith(LFS_SUFFIXES):  # LFS files: the ETag is the sha256 of the content
            etag = hashlib.sha256(data).hexdigest()
        else:  # regular git files: the ETag is the git blob sha1
            etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        return data, {"ETag": f'"{etag}"', "X-Repo-Commit": commit, "Content-Type": "application/octet-stream"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub():
    hub = FakeHub()
    yield hub
    hub.close()


def _pins(tmp_path: Path, *, base: str | None) -> Path:
    """Pins for the stand-ins: their sha256s, and the plain URLs on the loopback server when `base` is given."""
    pins = {
        "torchaudio": {
            "sha256": {TORCHAUDIO_EN: hashlib.sha256(URLS["/torchaudio/models/" + TORCHAUDIO_EN]).hexdigest()}
        },
        "nltk": {"sha256": hashlib.sha256(URLS["/nltk/punkt_tab.zip"]).hexdigest()},
    }
    if base:
        pins["torchaudio"]["base_url"] = f"{base}/torchaudio/models"
        pins["nltk"]["url"] = f"{base}/nltk/punkt_tab.zip"
    path = tmp_path / "pins.json"
    path.write_text(json.dumps(pins))
    return path


def _bake(out: Path, *extra: str, hub_url: str | None = None, token: str | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "TRANSFORMERS_OFFLINE"}
    env["HF_HOME"] = str(out.parent / "hf-home")  # never a developer's cached token or cache
    if hub_url:
        env["HF_ENDPOINT"] = hub_url
        env["HF_HUB_DISABLE_XET"] = "1"
    else:
        env["HF_HUB_OFFLINE"] = "1"  # a mirror bake must not need the network
    if token:
        env["HF_TOKEN"] = token
    cmd = [
        sys.executable,
        str(ROOT / "bake_models.py"),
        str(out),
        "--align-languages",
        "en,ja",
        "--asr-model",
        ASR_REPO,
    ]
    return subprocess.run([*cmd, *extra], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _check_baked(out: Path, kind: str) -> mf.Manifest:
    from tts_worker.alignment import checked_components

    manifest = mf.load_verified(out, checksums=True)
    assert not manifest.tiny
    cfg = yaml.safe_load(files("f5_tts").joinpath("configs/F5TTS_v1_Base.yaml").read_text())["model"]
    assert manifest.tts.name == "F5TTS_v1_Base"
    assert manifest.tts.arch == cfg["arch"] and manifest.tts.backbone == "DiT"
    assert manifest.tts.source.kind == kind and manifest.tts.source.repo == "SWivid/F5-TTS"
    assert (out / mf.TTS_CHECKPOINT).read_bytes() == HUB["SWivid/F5-TTS"]["F5TTS_v1_Base/model_1250000.safetensors"]
    comps = checked_components(manifest)
    assert comps.align["en"].format == "torchaudio" and comps.align["en"].bundle == "WAV2VEC2_ASR_BASE_960H"
    assert (out / comps.align["en"].dir / TORCHAUDIO_EN).is_file()
    assert comps.align["ja"].format == "huggingface"
    assert sorted(p.name for p in (out / comps.align["ja"].dir).iterdir()) == sorted(HUB[JA_REPO])
    assert comps.nltk_data.punkt_tab == ["english"]  # ja has no punkt model; whisperx falls back to English
    assert (out / "nltk_data/tokenizers/punkt_tab/english/abbrev_types.txt").is_file()
    assert not (out / "nltk_data/tokenizers/punkt_tab/german").exists()
    assert comps.asr is not None and comps.asr.multilingual and comps.asr.dir == "asr/tiny"
    assert sorted(p.name for p in (out / "asr/tiny").iterdir()) == sorted(HUB[ASR_REPO])
    assert not (out / bake.STAGING_NAME).exists()
    spec = manifest.components.normalize
    assert spec is not None and spec.languages == ["en"]
    assert all(f"{mf.NORMALIZE_DIR}/en/{name}" in manifest.files for name in spec.grammars["en"])
    return manifest


def test_hub_bake_then_rerun_downloads_nothing_and_refetches_only_a_corrupt_file(tmp_path, fake_hub):
    out = tmp_path / "models"
    pins = _pins(tmp_path, base=fake_hub.url)

    first = _bake(out, "--pins", str(pins), hub_url=fake_hub.url, token="hf_loopbacktesttoken")
    assert first.returncode == 0, first.stderr
    manifest = _check_baked(out, "hub")
    assert manifest.tts.source.revision == "84e5a410d9cead4de2f847e7c9369a6440bdfaca"
    assert manifest.components.align["ja"].source.revision == COMMIT  # `main`, recorded as its commit
    assert "Bearer hf_loopbacktesttoken" in fake_hub.auth
    assert "hf_loopbacktesttoken" not in first.stdout + first.stderr
    assert "wrote" in first.stderr and "MB" in first.stderr
    assert set(fake_hub.gets.values()) == {1}  # every file fetched exactly once
    punkt = [rel for rel in manifest.files if rel.startswith("nltk_data/")]
    assert len(punkt) == 5  # README + english's 4 files, from one zip
    grammars = [rel for rel in manifest.files if rel.startswith(f"{mf.NORMALIZE_DIR}/")]  # compiled, not fetched
    assert len(fake_hub.gets) == len(manifest.files) - len(punkt) - len(grammars) + 1

    fake_hub.gets.clear()
    second = _bake(out, "--pins", str(pins), hub_url=fake_hub.url)
    assert second.returncode == 0, second.stderr
    assert fake_hub.gets == Counter()
    assert mf.load_verified(out, checksums=True).files == manifest.files

    # Same size, different bytes: only the checksum notices, and only that file is fetched again.
    ckpt = out / mf.TTS_CHECKPOINT
    ckpt.write_bytes(_blob("not-f5", ckpt.stat().st_size))
    assert mf.verify(out, mf.load_manifest(out), checksums=True) == [
        f"{mf.TTS_CHECKPOINT}: sha256 differs from the manifest (corrupt or replaced)"
    ]
    third = _bake(out, "--pins", str(pins), hub_url=fake_hub.url)
    assert third.returncode == 0, third.stderr
    assert list(fake_hub.gets) == [
        "/SWivid/F5-TTS/resolve/84e5a410d9cead4de2f847e7c9369a6440bdfaca/F5TTS_v1_Base/model_1250000.safetensors"
    ]
    _check_baked(out, "hub")


def test_an_interrupted_download_resumes_where_it_stopped(tmp_path, fake_hub):
    out = tmp_path / "models"
    data = URLS["/torchaudio/models/" + TORCHAUDIO_EN]
    part = out / bake.STAGING_NAME / "url" / "align/en" / (TORCHAUDIO_EN + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:25_000])  # what a killed run left behind
    result = _bake(out, "--pins", str(_pins(tmp_path, base=fake_hub.url)), hub_url=fake_hub.url)
    assert result.returncode == 0, result.stderr
    assert fake_hub.ranges == {"/torchaudio/models/" + TORCHAUDIO_EN: "bytes=25000-"}
    assert (out / "align/en" / TORCHAUDIO_EN).read_bytes() == data
    _check_baked(out, "hub")


def test_hub_download_that_does_not_match_its_etag_is_rejected(tmp_path, fake_hub):
    out = tmp_path / "models"
    fake_hub.tamper.add("/charactr/vocos-mel-24khz/resolve/0feb3fdd929bcd6649e0e7c5a688cf7dd012ef21/pytorch_model.bin")
    result = _bake(out, "--pins", str(_pins(tmp_path, base=fake_hub.url)), hub_url=fake_hub.url)
    assert result.returncode == 1
    assert "charactr/vocos-mel-24khz" in result.stderr and "checksum differs from the hub's ETag" in result.stderr
    assert not (out / mf.MANIFEST_NAME).exists()
    assert not (out / "vocos/pytorch_model.bin").exists()


def _mirror(root: Path) -> Path:
    """The layout `--from` reads: `<repo>/<file>` for hub files, `<host>/<path>` for plain URLs."""
    for repo, content in HUB.items():
        for name, data in content.items():
            (root / repo / name).parent.mkdir(parents=True, exist_ok=True)
            (root / repo / name).write_bytes(data)
    plain = {
        f"download.pytorch.org/torchaudio/models/{TORCHAUDIO_EN}": URLS["/torchaudio/models/" + TORCHAUDIO_EN],
        "raw.githubusercontent.com/nltk/nltk_data/4f15a3d89eefe9748ec1c05be495d91289197155/packages/tokenizers/"
        "punkt_tab.zip": URLS["/nltk/punkt_tab.zip"],
    }
    for rel, data in plain.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_bake_from_a_mirror_directory_offline(tmp_path):
    mirror = _mirror(tmp_path / "mirror")
    out = tmp_path / "models"
    result = _bake(out, "--from", str(mirror), "--pins", str(_pins(tmp_path, base=None)))
    assert result.returncode == 0, result.stderr
    _check_baked(out, "mirror")
    again = _bake(out, "--from", str(mirror), "--pins", str(_pins(tmp_path, base=None)))
    assert again.returncode == 0 and "fetched 0 files" in again.stderr


def test_mirror_file_that_does_not_match_its_pinned_sha256_is_rejected(tmp_path):
    mirror = _mirror(tmp_path / "mirror")
    bad = mirror / "download.pytorch.org/torchaudio/models" / TORCHAUDIO_EN
    bad.write_bytes(_blob("tampered", bad.stat().st_size))
    out = tmp_path / "models"
    result = _bake(out, "--from", str(mirror), "--pins", str(_pins(tmp_path, base=None)))
    assert result.returncode == 1
    assert TORCHAUDIO_EN in result.stderr and "sha256 differs from the pinned" in result.stderr
    assert not (out / mf.MANIFEST_NAME).exists()


def test_hub_bake_refuses_to_run_offline_with_a_clear_message(tmp_path):
    result = _bake(tmp_path / "models")  # HF_HUB_OFFLINE=1, no mirror
    assert result.returncode == 1 and "HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set" in result.stderr


def test_cli_needs_exactly_one_of_dir_and_tiny(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bake_models.py"), str(tmp_path / "a"), "--tiny", str(tmp_path / "b")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "not both" in result.stderr


def test_pinned_tables_match_the_installed_packages():
    import torchaudio

    for bundle, name in bake.TORCHAUDIO_FILES.items():
        assert torchaudio.pipelines.__dict__[bundle]._path == name
    torch_models = bake.whisperx_table("whisperx.alignment", "DEFAULT_ALIGN_MODELS_TORCH")
    assert set(torch_models.values()) == set(bake.TORCHAUDIO_FILES)
    assert bake.whisperx_table("whisperx.alignment", "DEFAULT_ALIGN_MODELS_HF")["ja"] == JA_REPO
    assert bake.whisperx_table("whisperx.utils", "PUNKT_LANGUAGES")["de"] == "german"
    for model, pin in bake.PINS["tts"].items():
        assert files("f5_tts").joinpath(f"configs/{model}.yaml").is_file()
        assert pin["checkpoint"].endswith(".safetensors")  # f5_tts picks its loader by extension
    for repo, revision in [(p["repo"], p["revision"]) for p in bake.PINS["tts"].values()] + list(
        bake.PINS["asr"].items()
    ):
        assert revision == "main" or len(revision) == 40, repo

"""Every curl and JSON example in README.md and docs/ (API.md, DEPLOY.md), executed.

The examples are read from the markdown itself. A request (`{"input": ...}`: a JSON block, a curl `-d`
body, a `--test_input` argument) is posted to the runpod SDK's real local API (`WorkerAPI` under
TestClient, the server `make serve` and `--rp_serve_api` run) of a worker on the tiny models, and must
complete. A result example (a JSON block without `input`) must have the keys of the real result of the
request shown before it in the same file (exactly at the top level for a whole result, a subset for a
fragment; nested objects as a subset; the same kinds of values).

What stands in for the outside world, so that the examples run as written:
- `https://example.com/...` is a loopback HTTPS server (a resolver maps the name to 127.0.0.1, a test
  certificate is trusted, and the port is the server's: the one rewrite of a request);
- `s3://...` requests run on a worker whose storage is a real SeaweedFS, with the buckets they name;
- a request with `"stream": true` runs on a streaming worker (`STREAMING=true`), whose output is a list;
- `/srv/outputs` in a request is the local worker's `STORAGE_DIR`;
- the library voices (`narrator`, `my-voice`) and the stored file the examples name
  (`output/4b0e9f3c0d0a4d8c9a5f1d0c2b7e6a11.wav`) exist before each example (an upload example's voice
  does not);
- a curl to `https://api.runpod.ai/v2/$ENDPOINT_ID/<op>` goes to the local API's `/<op>`: the same
  handler answers both, and the local API is RunPod's own simulation of those routes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import ipaddress
import json
import re
import shlex
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from runpod.serverless.modules.rp_fastapi import WorkerAPI

from s3server import SeaweedS3, s3_server, s3_settings
from test_voices import encode, speech_like
from tts_worker.errors import VoiceNotFound
from tts_worker.fetch import Fetcher
from tts_worker.handler import make_handler, make_streaming_handler
from tts_worker.pipeline import Worker
from tts_worker.s3 import S3Storage
from tts_worker.settings import Settings
from tts_worker.storage import LocalStorage, Storage
from tts_worker.voices import VoiceLibrary

__all__ = ["s3_server"]

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/API.md", "docs/DEPLOY.md"]
STORED_KEY = "output/4b0e9f3c0d0a4d8c9a5f1d0c2b7e6a11.wav"
VOICES = {"narrator": (4.0, "This is the narrator speaking."), "my-voice": (3.0, "This is what I say in the clip.")}
EXTRA_BUCKET = "bucket"  # what the original request names


# -- reading the examples --------------------------------------------------------------------------------


@dataclass
class Example:
    where: str  # file:line, for messages
    kind: str  # "request" (a JSON block or --test_input), "curl", "result"
    body: Any  # the JSON
    method: str = "POST"
    path: str = "/runsync"

    def __repr__(self) -> str:
        return self.where


_ELIDED = re.compile(r",\s*\.\.\.(?=\s*[\]}])")  # `, ...` closing a list: "more of the same"


def parse_json(text: str) -> Any:
    data = json.loads(_ELIDED.sub("", text))

    def drop_elisions(value: Any) -> Any:  # `"...": "..."`: the object's other fields
        if isinstance(value, dict):
            return {k: drop_elisions(v) for k, v in value.items() if k != "..."}
        if isinstance(value, list):
            return [drop_elisions(v) for v in value]
        return value

    return drop_elisions(data)


def curl(command: str, where: str) -> Example:
    command = re.sub(r"<[^>]*>", "{ID}", command)  # `<id from /run>`: the id the /run before returned
    tokens = shlex.split(command)
    method, body, url = "GET", None, None
    for i, token in enumerate(tokens):
        if token == "-X":
            method = tokens[i + 1]
        elif token in ("-d", "--data"):
            body, method = json.loads(tokens[i + 1]), "POST" if method == "GET" else method
        elif token.startswith(("http://", "https://", "localhost", "127.0.0.1")):
            url = token
    assert url, f"{where}: a curl without a URL"
    path = urlsplit(url if "://" in url else f"http://{url}").path
    path = re.sub(r"^/v2/[^/]+", "", path)  # api.runpod.ai/v2/$ENDPOINT_ID/runsync -> /runsync
    return Example(where, "curl", body, method, path)


def examples(doc: str) -> list[Example]:
    found: list[Example] = []
    fence, start, block = None, 0, []
    for number, line in enumerate((ROOT / doc).read_text(encoding="utf-8").splitlines(), 1):
        if fence is None:
            if line.startswith("```"):
                fence, start, block = line[3:].strip(), number, []
            continue
        if not line.startswith("```"):
            block.append(line)
            continue
        where, text = f"{doc}:{start}", "\n".join(block)
        if fence == "json":
            body = parse_json(text)
            found.append(Example(where, "request" if isinstance(body, dict) and "input" in body else "result", body))
        elif fence in ("bash", "sh", "shell"):
            for command in text.replace("\\\n", " ").splitlines():
                command = command.strip()
                if command.startswith("curl "):
                    found.append(curl(command, where))
                elif "--test_input" in command:
                    tokens = shlex.split(command)
                    body = json.loads(tokens[tokens.index("--test_input") + 1])
                    found.append(Example(where, "request", body))
        fence = None
    return found


# -- what stands in for the outside world ------------------------------------------------------------


def _certificate(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("example.com"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (640, 400), (30, 120, 200)).save(buf, format="JPEG")
    return buf.getvalue()


class _ExampleCom(BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {"/me.wav": encode(speech_like(3.0)), "/beach.jpg": _jpeg()}

    def log_message(self, format, *args):  # type: ignore[no-untyped-def]
        pass

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")


@dataclass
class World:
    local: TestClient
    streaming: TestClient
    s3: TestClient
    storages: list[Storage]
    root: Path  # the local worker's STORAGE_DIR
    port: int  # example.com's
    server: SeaweedS3

    def prepare(self, job_input: dict[str, Any]) -> dict[str, Any]:
        """The state the docs assume, and the request as it runs here (see the module docstring)."""
        uploading = str(job_input.get("voice_name", job_input.get("name", ""))).removesuffix(".wav")
        operation = job_input.get("operation", job_input.get("endpoint"))
        for storage in self.storages:
            library = VoiceLibrary(storage)
            for name, (seconds, text) in VOICES.items():
                if operation in ("upload", "upload_voice") and name == uploading:
                    with contextlib.suppress(VoiceNotFound):
                        library.delete(name)
                elif library.info(name) is None:
                    library.upload(name, encode(speech_like(seconds)), text, "en")
            if not storage.exists(STORED_KEY):
                storage.put(STORED_KEY, encode(speech_like(2.0)), "audio/wav")
        text = json.dumps(job_input)
        text = text.replace("https://example.com/", f"https://example.com:{self.port}/")
        return json.loads(text.replace("/srv/outputs", str(self.root)))

    def client(self, job_input: dict[str, Any]) -> TestClient:
        if "s3://" in json.dumps(job_input):
            return self.s3
        return self.streaming if job_input.get("stream") else self.local


@pytest.fixture(scope="module")
def world(worker, s3_server: SeaweedS3, tmp_path_factory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("docs")
    cert, key = _certificate(tmp)
    site = ThreadingHTTPServer(("127.0.0.1", 0), _ExampleCom)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    site.socket = ctx.wrap_socket(site.socket, server_side=True)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    trust = ssl.create_default_context(cafile=str(cert))

    def resolve(host: str, port: int) -> list[str]:
        assert host == "example.com", host  # the only host the examples fetch from
        return ["127.0.0.1"]

    def build(settings: Settings, storage: Storage) -> Worker:
        fetcher = Fetcher(settings, storage, verify=trust, allow_addresses=["127.0.0.1/32"], resolver=resolve)
        return Worker(settings, worker.engine, worker.aligner, storage, fetcher)

    root = tmp / "outputs"
    local_settings = Settings(**{**worker.settings.model_dump(), "storage_dir": root})
    local = build(local_settings, LocalStorage(root))
    with contextlib.suppress(Exception):  # made already by another module of the session
        s3_server.create_bucket(EXTRA_BUCKET)
    boto = s3_server.client()
    boto.put_object(Bucket=EXTRA_BUCKET, Key="reference.wav", Body=encode(speech_like(3.0)))
    boto.put_object(Bucket=EXTRA_BUCKET, Key="reference.txt", Body=b"This is the reference clip of my voice.")
    s3_config = s3_settings(s3_server, s3_extra_buckets=EXTRA_BUCKET)
    s3 = build(s3_config, S3Storage.from_settings(s3_config))
    streaming = make_streaming_handler(local)
    try:
        yield World(
            local=TestClient(WorkerAPI({"handler": make_handler(local)}).rp_app),
            streaming=TestClient(WorkerAPI({"handler": streaming, "return_aggregate_stream": True}).rp_app),
            s3=TestClient(WorkerAPI({"handler": make_handler(s3)}).rp_app),
            storages=[local.storage, s3.storage],
            root=root,
            port=site.server_address[1],
            server=s3_server,
        )
    finally:
        site.shutdown()


# -- checking results against the examples ------------------------------------------------------------


def _kind(value: Any) -> str:
    return "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__


def same_shape(example: Any, real: Any, path: str, *, exact: bool) -> list[str]:
    """Where `example` (a documented result) and `real` differ in keys or kinds of values."""
    if example is None or real is None:
        return []  # null documents an optional value
    if _kind(example) != _kind(real):
        return [f"{path or 'result'}: documented as {_kind(example)}, is {_kind(real)}"]
    if isinstance(example, dict):
        problems = [f"{path}.{k}: documented, not in the result" for k in example if k not in real]
        if exact:
            problems += [f"{path}.{k}: in the result, not documented" for k in real if k not in example]
        for k in example:
            if k in real:
                problems += same_shape(example[k], real[k], f"{path}.{k}", exact=False)
        return problems
    if isinstance(example, list) and example and real:
        return same_shape(example[0], real[0], f"{path}[0]", exact=False)
    return []


def check_result(example: Example, output: Any) -> None:
    body = example.body
    if isinstance(body, list):  # a list of word timings (the JSON subtitle file is the result's word_timings)
        assert isinstance(output, dict) and output.get("word_timings"), example
        problems = same_shape(body[0], output["word_timings"][0], "word_timings[0]", exact=True)
    else:
        if isinstance(output, list):  # a streaming job's output: the partials, then the result
            output = next(o for o in output if o.get("type") == body.get("type", "result"))
        whole = "status" in body or "type" in body
        problems = same_shape(body, output, "", exact=whole)
    assert not problems, f"{example.where}: the documented result differs from the real one: {problems}"


# -- the test --------------------------------------------------------------------------------------------


def test_the_docs_have_examples_of_every_operation():
    found = [e for doc in DOCS for e in examples(doc)]
    operations = {
        (e.body["input"].get("operation") or e.body["input"].get("endpoint") or "synthesize")
        for e in found
        if e.kind in ("request", "curl") and isinstance(e.body, dict) and "input" in e.body
    }
    assert {"synthesize", "align", "upload", "list_voices", "delete_voice", "download"} <= operations
    assert sum(e.kind == "result" for e in found) >= 8 and sum(e.kind == "curl" for e in found) >= 5


@pytest.mark.timeout(900)
@pytest.mark.parametrize("doc", DOCS)
def test_every_example_runs_as_documented(world: World, doc: str):
    last: Any = None
    run_id = None
    ran = 0
    for example in examples(doc):
        if example.kind == "result":
            assert last is not None, f"{example.where}: a result example with no request before it"
            check_result(example, last)
            continue
        path = example.path.replace("{ID}", run_id or "")
        body = example.body
        if body is not None:
            body = {**body, "input": world.prepare(body["input"])}
        client = world.client(body["input"]) if body is not None else world.local
        reply = client.request(example.method, path, json=body)
        assert reply.status_code == 200, f"{example.where}: {example.method} {path} answered {reply.status_code}"
        answer = reply.json()
        if path == "/run":
            assert answer["status"] == "IN_PROGRESS", (example, answer)
            run_id = answer["id"]
            continue
        assert answer.get("status") == "COMPLETED", f"{example.where}: {answer}"
        last = answer["output"]
        ran += 1
    assert ran, f"{doc} has no example that runs"

"""Fetching reference audio: every refusal, against a loopback https server with a self-signed
certificate standing in for the internet (allowed through the test-only `allow_addresses`, or through
the production setting `FETCH_ALLOW_NETWORKS` in the tests of that setting)."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io
import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError

from s3server import BUCKET, SeaweedS3, s3_server, s3_settings
from tts_worker.errors import InvalidAudio, InvalidInput, StorageError
from tts_worker.fetch import Fetcher, address_refusal, decode_base64
from tts_worker.s3 import S3Storage
from tts_worker.settings import Settings
from tts_worker.storage import LocalStorage

__all__ = ["s3_server"]

pytestmark = pytest.mark.timeout(30)

RATE = 24_000


def wav(seconds: float, rate: int = RATE) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 220 * t), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


CLIP = wav(2.0)
GZIPPED_CLIP = gzip.compress(CLIP)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "voice.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("voice.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
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


class Handler(BaseHTTPRequestHandler):
    """Routes standing in for servers on the internet, good and bad."""

    release = threading.Event()  # set at teardown so a hanging handler ends
    hosts: list[str] = []  # noqa: RUF012  (the Host header of every request, for the pinning test)

    def log_message(self, format, *args):  # type: ignore[no-untyped-def]
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        Handler.hosts.append(self.headers.get("Host", ""))
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        route = url.path
        if route == "/clip.wav":
            self._send(200, CLIP, {"Content-Type": "audio/wav"})
        elif route == "/long.wav":
            self._send(200, wav(6.0), {"Content-Type": "audio/wav"})
        elif route == "/short.wav":
            self._send(200, wav(0.3), {"Content-Type": "audio/wav"})
        elif route == "/text":
            self._send(200, b"<html>this is a web page, not audio</html>" * 20, {"Content-Type": "text/html"})
        elif route == "/missing":
            self._send(404, b"not found")
        elif route == "/redirect":
            self._send(302, b"", {"Location": query["to"]})
        elif route == "/loop":
            self._send(302, b"", {"Location": "/loop"})
        elif route == "/declared-huge":
            self._send(200, b"", {"Content-Length": str(10**9)})
        elif route == "/stream-forever":
            # No Content-Length: the size is known only while streaming. Bounded so the thread ends.
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.end_headers()
            chunk = b"\0" * 65536
            try:
                for _ in range(2000):
                    self.wfile.write(chunk)
            except OSError:
                pass
        elif route == "/encoded":  # a server that ignores Accept-Encoding: identity
            body = CLIP if query.get("body") == "clip" else GZIPPED_CLIP
            self.send_response(200)
            for value in query["as"].split("|"):  # "a|b": the header sent twice
                self.send_header("Content-Encoding", value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif route == "/hang":
            Handler.release.wait(10)
        elif route == "/stall":  # the answer starts, then the body stops coming
            self.send_response(200)
            self.send_header("Content-Length", str(len(CLIP)))
            self.end_headers()
            try:
                self.wfile.write(CLIP[:1000])
                self.wfile.flush()
            except OSError:
                pass
            Handler.release.wait(10)
        elif route == "/drip":
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(50):
                    if Handler.release.wait(0.2):
                        break
                    self.wfile.write(b"x")
                    self.wfile.flush()
            except OSError:
                pass
        else:
            self._send(404)


class Server(ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    cert, _key = self_signed(tmp_path_factory.mktemp("tls"))
    client = ssl.create_default_context(cafile=str(cert))
    return cert, client


def _serve(server: ThreadingHTTPServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        Handler.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
        Handler.release.clear()


@pytest.fixture(scope="module")
def https_site(tls) -> Iterator[str]:
    """`127.0.0.1:<port>` of a loopback https server (certificate for voice.test and 127.0.0.1)."""
    cert, _ = tls
    server = Server(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(cert.with_name("key.pem")))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from _serve(server)


@pytest.fixture(scope="module")
def http_site() -> Iterator[str]:
    yield from _serve(Server(("127.0.0.1", 0), Handler))


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"fetch_connect_timeout": 2.0, "fetch_read_timeout": 1.0, "fetch_deadline_seconds": 5.0}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def fetcher(tls) -> Fetcher:
    """A fetcher for which loopback stands in for the internet: the test-only bypass."""
    return Fetcher(settings(), verify=tls[1], allow_addresses=["127.0.0.1/32"])


def refused(fetcher: Fetcher, value: str, match: str, exc: type[Exception] = InvalidInput) -> str:
    with pytest.raises(exc, match=match) as caught:
        fetcher.fetch_audio(value, field="voice_url")
    message = str(caught.value)
    assert message.startswith("voice_url: ")
    return message


# -- what is accepted ---------------------------------------------------------------------------------


def test_https_download_decodes_audio(fetcher: Fetcher, https_site: str):
    got = fetcher.fetch_audio(f"https://{https_site}/clip.wav", field="voice_url")
    assert got.data == CLIP and got.sample_rate == RATE and got.seconds == pytest.approx(2.0)
    assert got.samples.dtype == np.float32 and len(got.samples) == 2 * RATE
    import hashlib

    assert got.sha256 == hashlib.sha256(CLIP).hexdigest()


def test_base64_with_and_without_data_uri(fetcher: Fetcher):
    encoded = base64.b64encode(CLIP).decode()
    assert fetcher.fetch_bytes(encoded, field="voice_base64") == CLIP
    assert fetcher.fetch_bytes(f"data:audio/wav;base64,{encoded}", field="voice_base64") == CLIP
    urlsafe = base64.urlsafe_b64encode(CLIP).decode().rstrip("=")
    assert fetcher.fetch_bytes(urlsafe, field="voice_base64") == CLIP
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    assert fetcher.fetch_audio(wrapped, field="voice_base64").seconds == pytest.approx(2.0)


def test_bad_base64_and_oversize_base64_are_refused():
    with pytest.raises(InvalidInput, match=r"^voice_base64: is neither a URL"):
        decode_base64("not base64 at all!!", field="voice_base64", max_bytes=10_000)
    with pytest.raises(InvalidInput, match=r"^voice_base64: a data: URI must be base64"):
        decode_base64("data:audio/wav,RIFF....", field="voice_base64", max_bytes=10_000)
    with pytest.raises(InvalidInput, match="larger than the 9 KiB limit"):
        decode_base64(base64.b64encode(b"\0" * 10_000).decode(), field="voice_base64", max_bytes=9 * 1024)


def test_dns_is_resolved_once_and_the_connection_pinned_to_the_checked_address(tls, https_site: str):
    port = https_site.split(":")[1]
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        # First answer passes the check; any later lookup (a rebinding attack) would point at metadata.
        calls.append(host)
        return ["127.0.0.1"] if len(calls) == 1 else ["169.254.169.254"]

    fetcher = Fetcher(settings(), verify=tls[1], allow_addresses=["127.0.0.1"], resolver=rebinding)
    Handler.hosts.clear()
    got = fetcher.fetch_audio(f"https://voice.test:{port}/clip.wav", field="voice_url")
    assert got.data == CLIP
    assert calls == ["voice.test"]  # resolved once; httpx connected to the pinned IP without resolving again
    assert Handler.hosts == [f"voice.test:{port}"]  # the server saw the real name
    # The certificate is still checked against the name: a name the certificate doesn't cover is refused.
    other = Fetcher(settings(), verify=tls[1], allow_addresses=["127.0.0.1"], resolver=lambda h, p: ["127.0.0.1"])
    refused(other, f"https://evil.example:{port}/clip.wav", "TLS certificate could not be verified")


# -- address refusals ---------------------------------------------------------------------------------


def test_loopback_is_refused_without_the_test_bypass(tls, https_site: str):
    port = https_site.split(":")[1]
    production = Fetcher(settings(), verify=tls[1])  # what the worker builds: no allow_addresses
    msg = refused(production, f"https://127.0.0.1:{port}/clip.wav", "is a loopback address")
    assert "only public internet addresses" in msg
    refused(production, f"https://localhost:{port}/clip.wav", "internal host name")
    refused(production, f"https://[::ffff:127.0.0.1]:{port}/clip.wav", "loopback")
    refused(production, f"https://2130706433:{port}/clip.wav", r"2130706433 \(127.0.0.1\) is a loopback address")


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("10.1.2.3", "a private address"),
        ("172.16.5.4", "a private address"),
        ("192.168.1.10", "a private address"),
        ("[fd12:3456::1]", "a private address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("[fd00:ec2::254]", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("168.63.129.16", "a cloud metadata address"),
        ("169.254.10.1", "a link-local address"),
        ("[fe80::1]", "a link-local address"),
        ("[::1]", "a loopback address"),
        ("224.0.0.1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("100.64.0.1", "a reserved"),
        ("240.0.0.1", "a reserved"),
        ("[64:ff9b::a00:1]", "a private address"),  # NAT64 of 10.0.0.1
        ("[2002:a9fe:a9fe::]", "a cloud metadata address"),  # 6to4 of 169.254.169.254
    ],
)
def test_non_public_addresses_are_refused(host: str, reason: str):
    production = Fetcher(settings())
    refused(production, f"https://{host}/voice.wav", reason)


def test_public_addresses_pass_the_check():
    for ip in ("93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"):
        assert address_refusal(ipaddress.ip_address(ip)) is None


def test_metadata_host_names_are_refused_before_resolution():
    lookups: list[str] = []
    fetcher = Fetcher(settings(), resolver=lambda h, p: lookups.append(h) or ["93.184.216.34"])
    refused(fetcher, "https://metadata.google.internal/computeMetadata/v1/", "internal host name")
    refused(fetcher, "https://metadata/latest", "internal host name")
    assert lookups == []


def test_a_name_resolving_to_any_private_address_is_refused():
    fetcher = Fetcher(settings(), resolver=lambda h, p: ["93.184.216.34", "10.0.0.7"])
    refused(fetcher, "https://mixed.example/voice.wav", r"mixed.example \(10.0.0.7\) is a private address")
    unresolvable = Fetcher(settings(), resolver=lambda h, p: [])
    refused(unresolvable, "https://nowhere.example/voice.wav", "could not be resolved")


def test_international_names_are_checked_in_their_ascii_form():
    asked: list[str] = []
    fetcher = Fetcher(settings(), resolver=lambda h, p: asked.append(h) or ["10.0.0.1"])
    refused(fetcher, "https://bücher.example/voice.wav", r"xn--bcher-kva.example \(10.0.0.1\) is a private address")
    assert asked == ["xn--bcher-kva.example"]
    refused(fetcher, "https://api.localhost/voice.wav", "internal host name")
    assert asked == ["xn--bcher-kva.example"]


# -- FETCH_ALLOW_NETWORKS -----------------------------------------------------------------------------


def test_allowed_networks_let_an_internal_server_through(tls, https_site: str, http_site: str):
    """An operator's asset server inside the VPC: its network is listed, nothing else opens up."""
    port = https_site.split(":")[1]
    internal = Fetcher(settings(fetch_allow_networks="10.0.0.0/8, 127.0.0.0/8"), verify=tls[1])
    assert internal.fetch_bytes(f"https://127.0.0.1:{port}/clip.wav", field="voice_url") == CLIP
    refused(internal, "https://192.168.1.10/voice.wav", "192.168.1.10 is a private address")
    refused(internal, "https://[::1]/voice.wav", "a loopback address")
    refused(internal, f"https://[::ffff:127.0.0.1]:{port}/clip.wav", "loopback")  # a v4 network covers v4 only
    # With networks allowed, internal names are judged by their addresses, not refused by name.
    http_port = http_site.split(":")[1]
    names = {"assets.internal": ["127.0.0.1"], "db.internal": ["172.16.0.9"], "mixed.internal": ["127.0.0.1", "::1"]}
    resolving = Fetcher(
        settings(fetch_allow_networks="127.0.0.1", fetch_allow_http=True), resolver=lambda h, p: names[h]
    )
    assert resolving.fetch_bytes(f"http://assets.internal:{http_port}/clip.wav", field="voice_url") == CLIP
    refused(resolving, "http://db.internal/voice.wav", r"db.internal \(172.16.0.9\) is a private address")
    refused(resolving, "http://mixed.internal/voice.wav", r"mixed.internal \(::1\) is a loopback address")
    refused(Fetcher(settings(fetch_allow_http=True)), f"http://assets.internal:{http_port}/clip.wav", "internal host")


def test_metadata_stays_refused_inside_allowed_networks():
    lookups: list[str] = []
    fetcher = Fetcher(
        settings(fetch_allow_networks="169.254.0.0/16, 168.63.0.0/16, 100.64.0.0/10, fd00::/8"),
        resolver=lambda h, p: lookups.append(h) or ["169.254.169.254"],
    )
    for host in ("169.254.169.254", "169.254.170.2", "168.63.129.16", "100.100.100.200", "[fd00:ec2::254]"):
        refused(fetcher, f"https://{host}/latest/meta-data/", "is a cloud metadata address")
    refused(fetcher, "https://[::ffff:169.254.169.254]/latest/", "cloud metadata address")
    refused(fetcher, "https://metadata.google.internal/computeMetadata/v1/", "internal host name")
    refused(fetcher, "https://imds.internal/latest/", r"imds.internal \(169.254.169.254\) is a cloud metadata")
    assert lookups == ["imds.internal"]


def test_allowed_networks_setting_is_validated(monkeypatch):
    monkeypatch.setenv("FETCH_ALLOW_NETWORKS", " 10.1.0.0/16 ,192.168.4.7,fd12:3456::/48, ")
    assert [str(n) for n in Settings().fetch_networks()] == ["10.1.0.0/16", "192.168.4.7/32", "fd12:3456::/48"]
    assert Settings(fetch_allow_networks="").fetch_networks() == ()
    for value, problem in [
        ("10.0.0.0/8,assets.internal", "'assets.internal' is not an IP address or network"),
        ("10.0.0.300", "'10.0.0.300' is not an IP address"),
        ("0.0.0.0/0", "'0.0.0.0/0' is too wide"),
        ("::/0", "'::/0' is too wide"),
    ]:
        with pytest.raises(ValidationError, match="fetch_allow_networks") as caught:
            Settings(fetch_allow_networks=value)
        assert problem in str(caught.value)


# -- redirects ----------------------------------------------------------------------------------------


def test_redirects_are_followed_and_each_hop_checked(fetcher: Fetcher, https_site: str):
    base = f"https://{https_site}"
    assert fetcher.fetch_bytes(f"{base}/redirect?to=/clip.wav", field="voice_url") == CLIP
    refused(fetcher, f"{base}/redirect?to=https://169.254.169.254/latest/meta-data/", "cloud metadata address")
    refused(fetcher, f"{base}/redirect?to=https://10.0.0.5/voice.wav", "10.0.0.5 is a private address")
    refused(fetcher, f"{base}/redirect?to=https://[::1]/voice.wav", "loopback")
    refused(fetcher, f"{base}/redirect?to=file:///etc/passwd", "only https:// URLs")
    refused(fetcher, f"{base}/loop", "more than 3 redirects")


def test_redirect_from_https_to_http_is_refused_even_when_http_is_allowed(tls, https_site: str, http_site: str):
    fetcher = Fetcher(settings(fetch_allow_http=True), verify=tls[1], allow_addresses=["127.0.0.1"])
    target = f"http://{http_site}/clip.wav"
    refused(fetcher, f"https://{https_site}/redirect?to={target}", "from https:// to http:// is refused")


# -- http, schemes, URLs ------------------------------------------------------------------------------


def test_plain_http_only_when_allowed(tls, http_site: str):
    url = f"http://{http_site}/clip.wav"
    default = Fetcher(settings(), verify=tls[1], allow_addresses=["127.0.0.1"])
    refused(default, url, r"only https:// URLs can be fetched \(got http://\)")
    allowed = Fetcher(settings(fetch_allow_http=True), verify=tls[1], allow_addresses=["127.0.0.1"])
    assert allowed.fetch_bytes(url, field="voice_url") == CLIP
    # Even with http allowed, the metadata service stays out of reach.
    refused(Fetcher(settings(fetch_allow_http=True)), "http://169.254.169.254/latest/meta-data/", "metadata")


def test_other_schemes_and_credentials_are_refused(fetcher: Fetcher, https_site: str):
    refused(fetcher, "file:///etc/passwd", "file: URLs are not accepted")
    refused(fetcher, "ftp://example.com/a.wav", "ftp: URLs are not accepted")
    refused(fetcher, "gopher://127.0.0.1:70/", "gopher: URLs are not accepted")
    refused(fetcher, f"https://user:pw@{https_site}/clip.wav", "credentials")
    refused(fetcher, "   ", "must be an https:// or s3:// URL")


def test_untrusted_certificate_is_refused(https_site: str):
    fetcher = Fetcher(settings(), allow_addresses=["127.0.0.1"])  # system trust store: self-signed is unknown
    refused(fetcher, f"https://{https_site}/clip.wav", "TLS certificate could not be verified")


# -- size, time, content ------------------------------------------------------------------------------


def test_size_cap_on_declared_length_and_while_streaming(tls, https_site: str):
    fetcher = Fetcher(settings(fetch_max_bytes=1024 * 1024), verify=tls[1], allow_addresses=["127.0.0.1"])
    refused(fetcher, f"https://{https_site}/declared-huge", "larger than the 1024 KiB limit")
    t0 = time.monotonic()
    refused(fetcher, f"https://{https_site}/stream-forever", "larger than the 1024 KiB limit")
    assert time.monotonic() - t0 < 3  # cut off at the cap, not after the server's 125 MiB


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, gzip", "gzip, gzip"),
        ("identity, GZIP", "identity, GZIP"),
        ("identity|gzip", "identity, gzip"),  # two header lines
        ("x-unheard-of", "x-unheard-of"),
        ("gzip\xe9" + "z" * 60, "gzip\\xe9" + "z" * 35 + "..."),  # quoted short, escaped
    ],
)
def test_compressed_answers_are_refused_before_the_body_is_read(fetcher: Fetcher, https_site: str, sent, shown):
    """A server that ignores `Accept-Encoding: identity`: refused, whatever the encoding, never inflated."""
    from urllib.parse import quote

    message = refused(fetcher, f"https://{https_site}/encoded?as={quote(sent)}", "sent a compressed answer")
    assert message == (
        f"voice_url: 127.0.0.1 sent a compressed answer (Content-Encoding: {shown}); only the audio file "
        "itself is accepted (the worker asks for Accept-Encoding: identity)"
    )


def test_identity_encoding_is_accepted_and_the_body_kept_as_sent(fetcher: Fetcher, https_site: str):
    assert fetcher.fetch_bytes(f"https://{https_site}/encoded?as=identity&body=clip", field="voice_url") == CLIP
    # Declared identity, sent gzip bytes: the bytes are kept as received (raw), not inflated behind our back.
    got = fetcher.fetch_bytes(f"https://{https_site}/encoded?as=identity", field="voice_url")
    assert got == GZIPPED_CLIP
    refused(fetcher, f"https://{https_site}/encoded?as=identity", "not a decodable audio file", InvalidAudio)


def test_hanging_or_stalling_server_times_out(fetcher: Fetcher, https_site: str):
    t0 = time.monotonic()
    refused(fetcher, f"https://{https_site}/hang", "did not answer in time")
    assert time.monotonic() - t0 < 3  # read timeout 1 s
    t0 = time.monotonic()
    refused(fetcher, f"https://{https_site}/stall", r"127.0.0.1 stopped sending the file \(nothing for 1 s\)$")
    assert time.monotonic() - t0 < 3


def test_slow_drip_hits_the_overall_deadline(tls, https_site: str):
    fetcher = Fetcher(
        settings(fetch_deadline_seconds=1.0, fetch_read_timeout=1.0), verify=tls[1], allow_addresses=["127.0.0.1"]
    )
    t0 = time.monotonic()
    refused(fetcher, f"https://{https_site}/drip", r"took longer than 1 s")
    assert time.monotonic() - t0 < 2.5  # the deadline plus at most one read timeout


def test_http_errors_are_refused(fetcher: Fetcher, https_site: str):
    refused(fetcher, f"https://{https_site}/missing", "answered HTTP 404")


def test_non_audio_content_is_invalid_audio(fetcher: Fetcher, https_site: str):
    refused(fetcher, f"https://{https_site}/text", "not a decodable audio file", InvalidAudio)
    refused(fetcher, base64.b64encode(b"plain text, no audio here" * 10).decode(), "not a decodable", InvalidAudio)


def test_duration_limits(tls, https_site: str):
    fetcher = Fetcher(settings(max_audio_seconds=5.0), verify=tls[1], allow_addresses=["127.0.0.1"])
    refused(fetcher, f"https://{https_site}/long.wav", r"6.0 s long; the limit is 5 s", InvalidAudio)
    refused(fetcher, f"https://{https_site}/short.wav", r"0.30 s long; at least 1 s is needed", InvalidAudio)


# -- s3:// --------------------------------------------------------------------------------------------


def test_s3_urls_read_through_the_storage_client(s3_server: SeaweedS3, tmp_path: Path):
    storage = S3Storage.from_settings(s3_settings(s3_server))
    storage.put("voices/fetch-test.wav", CLIP, "audio/wav")
    fetcher = Fetcher(settings(fetch_max_bytes=128 * 1024), storage=storage)
    assert fetcher.fetch_audio(f"s3://{BUCKET}/voices/fetch-test.wav", field="voice_url").data == CLIP
    refused(fetcher, f"s3://{BUCKET}/voices/none.wav", "there is no object 'voices/none.wav'")
    refused(fetcher, "s3://someone-elses-bucket/secret.wav", "is not readable by this worker")
    refused(fetcher, "s3://just-a-bucket", "must be s3://bucket/key")
    storage.put("voices/fetch-big.wav", wav(3.0), "audio/wav")  # 144 kB > 128 KiB
    refused(fetcher, f"s3://{BUCKET}/voices/fetch-big.wav", "larger than the 128 KiB limit")
    local = Fetcher(settings(), storage=LocalStorage(tmp_path))
    refused(local, f"s3://{BUCKET}/voices/fetch-test.wav", "no bucket configured")


def test_s3_urls_when_storage_fails_name_the_field(s3_server: SeaweedS3):
    down = S3Storage.from_settings(s3_settings(s3_server, aws_endpoint_url="http://127.0.0.1:9", s3_max_attempts=1))
    message = refused(
        Fetcher(settings(), storage=down), f"s3://{BUCKET}/voices/x.wav", "could not connect", StorageError
    )
    assert message == "voice_url: could not read voices/x.wav (could not connect to the storage endpoint)"
    revoked = S3Storage.from_settings(s3_settings(s3_server, aws_secret_access_key="revoked-secret-0000"))
    message = refused(Fetcher(settings(), storage=revoked), f"s3://{BUCKET}/voices/x.wav", "credentials", StorageError)
    assert message.startswith("voice_url: could not read voices/x.wav (S3 answered SignatureDoesNotMatch, HTTP 403")
    assert "revoked-secret-0000" not in message

"""Reference audio from the outside world, fetched safely.

`Fetcher.fetch_audio(value, field=...)` takes what a request sent and returns
the decoded clip (`FetchedAudio`); `Fetcher.fetch_bytes` returns just the bytes.
A value is one of:

- `https://host/path`: downloaded (plain `http://` only with `FETCH_ALLOW_HTTP`);
- `s3://bucket/key`: read through the S3 storage client, from `S3_BUCKET` or a
  bucket listed in `S3_EXTRA_BUCKETS` only; the key (percent-decoded) must be a plain
  path: no empty, `.` or `..` segments, no control characters (`invalid_input`)
  (`s3_transcript` reads the `<stem>.txt` next to such a clip: the original layout's transcript);
- base64, bare or as a `data:audio/...;base64,` URI.

Download rules (server-side request forgery is the threat: a request must not
make the worker read its own network or the cloud's metadata service):

- The host is resolved once per hop; EVERY address must be public
  (`addresses.address_refusal`: not loopback, private, link-local, shared/CGNAT,
  multicast, reserved or unspecified; not a cloud metadata address such as
  169.254.169.254 or fd00:ec2::254; IPv4 inside IPv6 is unwrapped first). The
  connection then goes to that checked address
  (pinned: the URL carries the IP, `Host` and TLS SNI/certificate checks carry
  the name), so DNS rebinding between check and connect cannot bypass it.
- Redirects are followed by hand, at most `FETCH_MAX_REDIRECTS`, and every hop
  is checked again (scheme, name, addresses); https never downgrades to http.
- No proxies from the environment, no credentials in URLs.
- Size: a declared Content-Length over `FETCH_MAX_BYTES` is refused before the
  body is read, and the body is counted while streaming and cut off at the cap.
- No transfer compression: the worker asks for `Accept-Encoding: identity`, and
  an answer with any other `Content-Encoding` (gzip, deflate, br, zstd, stacked
  or unknown) is refused before its body is read. The body is read raw, so what
  the cap counts is what is kept: a decoder would inflate a 64 KiB chunk of
  gzip to 64 MiB in one call (and `gzip, gzip` to gigabytes) before any count.
  Audio files are compressed already; nothing is lost by refusing.
- Time: connect and per-read timeouts, and a deadline for the whole download
  (checked between reads, so it is exceeded by at most one read timeout).
  Name resolution uses the system resolver and its own timeouts.
- The bytes must decode as audio (`tts_worker.audio.decode`: WAV, FLAC, OGG or
  MP3, refused from the header when it declares more than `MAX_AUDIO_SECONDS`,
  and never decoded past it) and last at least `MIN_AUDIO_SECONDS`.

Every refusal is an `InvalidInput` (or `InvalidAudio` for content that is not
usable audio) whose message starts with the request field's name; so is the
`StorageError` of an `s3://` read that storage could not serve.

`FETCH_ALLOW_NETWORKS` exempts the listed addresses/networks from the public
address check (an asset server inside the VPC); cloud metadata addresses and
names stay refused even inside them. With it set, names such as `*.internal`
are resolved and judged by their addresses instead of refused by name.

For tests, `allow_addresses` adds networks to that list (so a loopback server
can stand in for the internet) and `resolver` replaces DNS; production builds a
`Fetcher` from settings alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urljoin

import httpx
import numpy as np

from tts_worker import audio
from tts_worker.addresses import METADATA_HOSTNAMES, METADATA_REFUSAL, IPAddress, address_refusal
from tts_worker.errors import InvalidAudio, InvalidInput, StorageError, quote
from tts_worker.storage import Storage

if TYPE_CHECKING:
    from tts_worker.settings import Settings

logger = logging.getLogger(__name__)

Resolver = Callable[[str, int], list[str]]

REDIRECTS = (301, 302, 303, 307, 308)
MAX_TRANSCRIPT_BYTES = 64 * 1024  # a clip's .txt next to it; a 12 s clip says a few hundred bytes
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class FetchedAudio:
    data: bytes  # the bytes as fetched
    samples: np.ndarray  # mono float32
    sample_rate: int
    seconds: float
    sha256: str  # of `data`: a cache key for what was fetched


def shown(text: str, limit: int = 40) -> str:
    """`text` from a remote server, fit for an error message: at most `limit` characters, anything but
    printable ASCII escaped."""
    safe = "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text[:limit])
    return safe + ("..." if len(text) > limit else "")


def _is_control(ch: str) -> bool:
    """C0, DEL and C1 control characters."""
    return ord(ch) < 32 or 127 <= ord(ch) < 160


def _system_resolver(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def decode_base64(value: str, *, field: str, max_bytes: int) -> bytes:
    """Bytes of a base64 string or a `data:...;base64,` URI; refuses bad encoding and oversize data."""
    text = value.strip()
    if text[:5].lower() == "data:":
        header, sep, text = text.partition(",")
        if not sep or not header.lower().endswith(";base64"):
            raise InvalidInput(f"{field}: a data: URI must be base64-encoded (data:audio/wav;base64,...)")
    text = "".join(text.split())
    if not text:
        raise InvalidInput(f"{field}: is empty")
    if len(text) // 4 * 3 > max_bytes + 3:
        raise InvalidInput(f"{field}: the encoded audio is larger than the {max_bytes // 1024} KiB limit")
    try:
        if "-" in text or "_" in text:
            data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        else:
            data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{field}: is neither a URL (https:// or s3://) nor valid base64") from None
    if len(data) > max_bytes:
        raise InvalidInput(f"{field}: the encoded audio is larger than the {max_bytes // 1024} KiB limit")
    return data


class Fetcher:
    """Fetches reference audio under the limits in `settings`; one per worker, safe to share."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage | None = None,
        *,
        verify: ssl.SSLContext | bool = True,
        allow_addresses: Iterable[str] = (),
        resolver: Resolver | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.verify = verify
        # Networks exempt from the public-address check: FETCH_ALLOW_NETWORKS, plus `allow_addresses` (tests).
        # Never from requests.
        self.allow_networks = settings.fetch_networks() + tuple(
            ipaddress.ip_network(a, strict=False) for a in allow_addresses
        )
        self.resolve = resolver or _system_resolver
        self.max_bytes = settings.fetch_max_bytes

    # -- entry points ---------------------------------------------------------------------------------

    def fetch_audio(self, value: str, *, field: str, max_seconds: float | None = None, hint: str = "") -> FetchedAudio:
        """The clip at `value`, decoded; longer than `max_seconds` (default `MAX_AUDIO_SECONDS`) is refused
        (`hint`: what the refusal suggests instead)."""
        data = self.fetch_bytes(value, field=field)
        # decode refuses more than the limit from the header, and stops decoding there.
        limit = self.settings.max_audio_seconds if max_seconds is None else max_seconds
        samples, rate = audio.decode(data, field=field, max_seconds=limit, hint=hint)
        seconds = len(samples) / rate
        if seconds < self.settings.min_audio_seconds:
            raise InvalidAudio(
                f"{field}: the audio is {seconds:.2f} s long; at least {self.settings.min_audio_seconds:g} s is needed"
            )
        return FetchedAudio(data, samples, rate, seconds, hashlib.sha256(data).hexdigest())

    def fetch_bytes(self, value: str, *, field: str) -> bytes:
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"{field}: must be an https:// or s3:// URL or base64-encoded audio")
        value = value.strip()
        lowered = value[:8].lower()
        if lowered.startswith(("https://", "http://")):
            return self.fetch_url(value, field=field)
        if lowered.startswith("s3://"):
            return self.fetch_s3(value, field=field)
        if lowered.startswith("data:") or not _SCHEME.match(value):
            return decode_base64(value, field=field, max_bytes=self.max_bytes)
        scheme = value.split(":", 1)[0][:16]
        raise InvalidInput(f"{field}: {scheme}: URLs are not accepted; use https://, s3:// or base64")

    # -- s3:// ----------------------------------------------------------------------------------------

    def fetch_s3(self, value: str, *, field: str) -> bytes:
        bucket, key = self._s3_location(value, field)
        data = self._read_s3(bucket, key, self.max_bytes, field)
        if data is None:
            raise InvalidInput(f"{field}: there is no object {quote(key)} in bucket {quote(bucket)}")
        if len(data) > self.max_bytes:
            raise InvalidInput(f"{field}: the object is larger than the {self.max_bytes // 1024} KiB limit")
        return data

    def s3_transcript(self, value: str, *, field: str) -> str | None:
        """The text of `<stem>.txt` next to the `s3://` clip `value` (the original layout keeps a clip's
        transcript there), or None when there is none (or `value` is not an s3:// URL)."""
        if not value.strip().lower().startswith("s3://"):
            return None
        bucket, key = self._s3_location(value.strip(), field)
        stem, dot, _ = key.rpartition(".")
        data = self._read_s3(bucket, (stem if dot else key) + ".txt", MAX_TRANSCRIPT_BYTES, field)
        if data is None or len(data) > MAX_TRANSCRIPT_BYTES:
            return None
        text = " ".join(data.decode("utf-8", errors="replace").split())
        return text or None

    def _s3_location(self, value: str, field: str) -> tuple[str, str]:
        bucket, _, key = value[5:].partition("/")
        key = unquote(key)
        if not bucket or not key or len(key) > 1024:
            raise InvalidInput(f"{field}: an s3:// URL must be s3://bucket/key")
        if any(part in ("", ".", "..") for part in key.split("/")) or any(_is_control(c) for c in key):
            # A store or proxy may resolve `..` or an empty segment to another object than the one named.
            raise InvalidInput(
                f"{field}: the key of an s3:// URL must be a plain path: no empty, '.' or '..' segments "
                "and no control characters"
            )
        if self.storage is None or not self.storage.buckets:
            raise InvalidInput(f"{field}: s3:// URLs need S3 storage, and this worker has no bucket configured")
        if bucket not in self.storage.buckets:
            raise InvalidInput(f"{field}: bucket {quote(bucket)} is not readable by this worker (see S3_EXTRA_BUCKETS)")
        return bucket, key

    def _read_s3(self, bucket: str, key: str, max_bytes: int, field: str) -> bytes | None:
        assert self.storage is not None
        try:
            return self.storage.read_object(bucket, key, max_bytes=max_bytes)
        except StorageError as exc:  # still a storage fault, but the caller learns which input it was
            raise StorageError(f"{field}: {exc.message}") from None

    # -- https:// -------------------------------------------------------------------------------------

    def _check_address(self, ip: IPAddress, host: str, field: str) -> None:
        reason = address_refusal(ip)
        if reason and reason != METADATA_REFUSAL and any(ip in net for net in self.allow_networks):
            return  # an allowed network never opens the metadata service
        if reason:
            shown = host if host == str(ip) else f"{host} ({ip})"
            raise InvalidInput(f"{field}: {shown} is {reason}; only public internet addresses can be fetched")

    def _target(self, url: str, field: str, previous_scheme: str | None) -> tuple[httpx.URL, str]:
        """The URL with its host replaced by a checked IP address, and the original host name."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError):
            raise InvalidInput(f"{field}: is not a valid URL") from None
        scheme = parsed.scheme
        if scheme not in ("https", "http"):
            raise InvalidInput(f"{field}: only https:// URLs can be fetched (a redirect went to {scheme}:)")
        if scheme == "http" and not self.settings.fetch_allow_http:
            where = "a redirect went to" if previous_scheme else "got"
            raise InvalidInput(f"{field}: only https:// URLs can be fetched ({where} http://)")
        if scheme == "http" and previous_scheme == "https":
            raise InvalidInput(f"{field}: a redirect from https:// to http:// is refused")
        if parsed.userinfo:
            raise InvalidInput(f"{field}: URLs with credentials (user:password@) are not accepted")
        # The ASCII (IDNA) form: what DNS, SNI and the certificate check see.
        host = parsed.raw_host.decode("ascii").strip("[]").rstrip(".").lower()
        if not host:
            raise InvalidInput(f"{field}: the URL has no host")
        internal = host == "localhost" or host.endswith((".internal", ".localhost"))
        if host in METADATA_HOSTNAMES or (internal and not self.allow_networks):
            raise InvalidInput(f"{field}: {host} is an internal host name; only public internet hosts can be fetched")
        port = parsed.port or (443 if scheme == "https" else 80)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in self.resolve(host, port)]
            except (OSError, UnicodeError, ValueError):
                raise InvalidInput(f"{field}: the host {host} could not be resolved") from None
            if not addresses:
                raise InvalidInput(f"{field}: the host {host} could not be resolved")
        for ip in addresses:  # every address: a name that also resolves to a private one is refused
            self._check_address(ip, host, field)
        return parsed.copy_with(host=str(addresses[0])), host

    def fetch_url(self, url: str, *, field: str) -> bytes:
        s = self.settings
        deadline = time.monotonic() + s.fetch_deadline_seconds
        timeout = httpx.Timeout(connect=s.fetch_connect_timeout, read=s.fetch_read_timeout, write=10.0, pool=5.0)
        previous: str | None = None
        # trust_env=False: proxies from the environment would break the address pinning.
        with httpx.Client(verify=self.verify, timeout=timeout, follow_redirects=False, trust_env=False) as client:
            for _ in range(s.fetch_max_redirects + 1):
                pinned, host = self._target(url, field, previous)
                original = httpx.URL(url)
                headers = {
                    "Host": original.netloc.decode("ascii"),
                    "User-Agent": "tts-worker",
                    "Accept": "audio/*, */*;q=0.5",
                    "Accept-Encoding": "identity",
                }
                # `sni_hostname`: TLS is negotiated and the certificate checked for the name, not the pinned IP.
                extensions = {"sni_hostname": host} if pinned.scheme == "https" else {}
                if time.monotonic() > deadline:
                    raise InvalidInput(f"{field}: the download took longer than {s.fetch_deadline_seconds:g} s")
                try:
                    with client.stream("GET", pinned, headers=headers, extensions=extensions) as response:
                        if response.status_code in REDIRECTS:
                            location = response.headers.get("location")
                            if not location:
                                raise InvalidInput(f"{field}: {host} answered a redirect without a location")
                            previous, url = original.scheme, urljoin(url, location)
                            logger.info("fetch: %s redirected", host)
                            continue
                        if response.status_code != 200:
                            raise InvalidInput(f"{field}: {host} answered HTTP {response.status_code}")
                        return self._read_body(response, host, field, deadline)
                except httpx.TimeoutException:
                    raise InvalidInput(f"{field}: {host} did not answer in time") from None
                except httpx.ConnectError as exc:
                    tls = isinstance(exc.__context__, ssl.SSLError) or "SSL" in str(exc) or "certificate" in str(exc)
                    problem = "the TLS certificate could not be verified" if tls else "could not connect"
                    raise InvalidInput(f"{field}: {host}: {problem}") from None
                except httpx.HTTPError as exc:
                    raise InvalidInput(f"{field}: downloading from {host} failed ({exc.__class__.__name__})") from None
        raise InvalidInput(f"{field}: more than {s.fetch_max_redirects} redirects")

    def _read_body(self, response: httpx.Response, host: str, field: str, deadline: float) -> bytes:
        too_large = f"{field}: the file at {host} is larger than the {self.max_bytes // 1024} KiB limit"
        declared = response.headers.get("content-length")
        if declared and declared.strip().isdigit() and int(declared) > self.max_bytes:
            raise InvalidInput(too_large)
        encoding = response.headers.get("content-encoding", "")  # repeated headers come joined by ", "
        if any(token.strip().lower() not in ("", "identity") for token in encoding.split(",")):
            raise InvalidInput(
                f"{field}: {host} sent a compressed answer (Content-Encoding: {shown(encoding)}); only the audio "
                "file itself is accepted (the worker asks for Accept-Encoding: identity)"
            )
        body = bytearray()
        try:
            # Raw bytes, as received (a chunk size would wait to fill it): never decoded by httpx, whose decoders
            # inflate a whole chunk at once, so the cap below counts exactly what is kept.
            for chunk in response.iter_raw():
                body += chunk
                if len(body) > self.max_bytes:
                    raise InvalidInput(too_large)
                if time.monotonic() > deadline:
                    took = self.settings.fetch_deadline_seconds
                    raise InvalidInput(f"{field}: the download took longer than {took:g} s")
        except httpx.TimeoutException:
            # The answer started, then the body stalled: not the same as a server that never answers.
            stalled = self.settings.fetch_read_timeout
            raise InvalidInput(f"{field}: {host} stopped sending the file (nothing for {stalled:g} s)") from None
        logger.info("fetch: %d bytes from %s", len(body), host)
        return bytes(body)

"""Hostile inputs crafted for tests: decompression bombs, audio that declares more than it holds, headers
that claim absurd sizes, and a loopback http server that sends them as a hostile server would.

Everything is built in bounded memory: long audio is encoded chunk by chunk, the gzip bomb is compressed
one MiB at a time.
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import soundfile as sf

FLAC_TOTAL_SAMPLES_OFFSET = 18  # "fLaC", block header (4), min/max block size (4), min/max frame size (6)


def silence(fmt: str, subtype: str, rate: int, seconds: int, channels: int = 1) -> bytes:
    """`seconds` of silence encoded ten seconds at a time: long audio, small file, small test memory."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, channels, format=fmt, subtype=subtype) as f:
        block = np.zeros((rate * 10, channels), dtype=np.float32)
        for _ in range(seconds // 10):
            f.write(block)
        f.write(block[: rate * (seconds % 10)])
    return buf.getvalue()


def flac_with_total(data: bytes, total: int) -> bytes:
    """A FLAC file whose STREAMINFO declares `total` samples (0: a stream that doesn't say its length)."""
    out = bytearray(data)
    assert out[:4] == b"fLaC" and out[4] & 0x7F == 0  # STREAMINFO comes first
    at = FLAC_TOTAL_SAMPLES_OFFSET
    packed = int.from_bytes(out[at : at + 8], "big") & ~((1 << 36) - 1) | (total & ((1 << 36) - 1))
    out[at : at + 8] = packed.to_bytes(8, "big")
    return bytes(out)


def wav_header(*, rate: int, channels: int, bits: int = 16, data_bytes: int, float_samples: bool = False) -> bytes:
    """A RIFF/WAVE header that declares whatever it is told to (the data itself is up to the caller)."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 3 if float_samples else 1, channels, rate, rate * align, align, bits)
    riff = 4 + (8 + len(fmt)) + 8 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", min(riff, 0xFFFFFFFF))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def gzip_bomb(zeros: int, layers: int = 1) -> bytes:
    """gzip of `zeros` zero bytes, compressed `layers` times (for `Content-Encoding: gzip, gzip`)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    mib = bytes(1 << 20)
    parts = [packer.compress(mib) for _ in range(zeros >> 20)]
    parts += [packer.compress(bytes(zeros & ((1 << 20) - 1))), packer.flush()]
    data = b"".join(parts)
    for _ in range(layers - 1):
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        data = packer.compress(data) + packer.flush()
    return data


Route = tuple[bytes, dict[str, str]]  # body, headers


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):  # type: ignore[no-untyped-def]
        pass

    def do_GET(self) -> None:
        body, headers = self.server.routes.get(self.path, (b"", {}))
        self.send_response(200 if self.path in self.server.routes else 404)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client hung up, as it should on a refusal
            self.wfile.write(body)


@contextmanager
def serving(routes: dict[str, Route]) -> Iterator[str]:
    """`http://127.0.0.1:<port>` of a server answering each path in `routes` with its body and headers,
    whatever the request's Accept-Encoding."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.routes = routes
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

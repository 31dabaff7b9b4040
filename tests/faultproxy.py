"""A loopback TCP proxy that injects faults between a client and a real server (tests only).

`FaultProxy(upstream_port)` listens on 127.0.0.1 (a free port) and forwards bytes unchanged, so an S3
client pointed at the proxy signs requests for the proxy's address and SeaweedFS accepts them. Its
`mode` can change at any time and applies to connections already open (boto3 keeps them pooled):

- `pass`:   forward both ways.
- `delay`:  forward requests at once, hold every chunk of the answer for `delay` seconds (a server that
            is slow to answer; the request itself reaches the server and takes effect).
- `reset`:  reset connections (RST) as soon as they are opened or a request arrives: a server that is down.
- `deny`:   answer every request itself with `403` and an S3 XML error (`deny_code`), as a store does after
            the access key was revoked; the request never reaches the server. `deny_status` changes the
            status (`501` with `NotImplemented`: a store without a feature the request asks for).

`on_request(first_line)` is called with each request line as it arrives, before it is forwarded: a test
can change the mode or stop the server right there ("mid-job"). It assumes one request at a time per
connection (HTTP/1.1 without pipelining, as urllib3 sends): a chunk that starts with a method opens a request.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Literal

Mode = Literal["pass", "delay", "reset", "deny"]
METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ")

DENY_MESSAGES = {
    "InvalidAccessKeyId": "The AWS Access Key Id you provided does not exist in our records.",
    "SignatureDoesNotMatch": "The request signature we calculated does not match the signature you provided.",
    "AccessDenied": "Access Denied",
    "NotImplemented": "A header you provided implies functionality that is not implemented",
    "InvalidArgument": "Unsupported header 'If-None-Match' received for this API call.",
}
REASONS = {400: "Bad Request", 403: "Forbidden", 501: "Not Implemented"}


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN, as a crashed or firewalled server does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    def __init__(self, upstream_port: int, *, delay: float = 5.0) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.mode: Mode = "pass"
        self.delay = delay
        self.deny_code = "InvalidAccessKeyId"
        self.deny_status = 403
        self.on_request: Callable[[bytes], None] | None = None
        self.requests: list[bytes] = []  # every request line seen, in order
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in list(self._sockets):
                _reset(sock)

    def set(self, mode: Mode) -> None:
        self.mode = mode

    # -- plumbing -----------------------------------------------------------------------------------

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _drop(self, *socks: socket.socket, reset: bool = False) -> None:
        for sock in socks:
            with self._lock:
                self._sockets.discard(sock)
            if reset:
                _reset(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.mode == "reset":
            self._drop(client, reset=True)
            return
        if self.mode == "deny":
            self._deny(client, b"")
            return
        try:
            upstream = self._track(socket.create_connection(self.upstream, timeout=2))
        except OSError:
            self._drop(client, reset=True)  # what the client would see from a server that is down
            return
        upstream.settimeout(None)
        threading.Thread(target=self._answers, args=(upstream, client), daemon=True).start()
        self._requests(client, upstream)

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        """Client to server: watch request lines, apply the mode, forward."""
        while True:
            try:
                chunk = client.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                self._drop(client, upstream)
                return
            if chunk.startswith(METHODS):
                line = chunk.split(b"\r\n", 1)[0]
                self.requests.append(line)
                if self.on_request is not None:
                    self.on_request(line)
                if self.mode == "reset":
                    self._drop(client, upstream, reset=True)
                    return
                if self.mode == "deny":
                    self._drop(upstream)
                    self._deny(client, chunk)
                    return
            try:
                upstream.sendall(chunk)
            except OSError:
                self._drop(client, upstream, reset=True)
                return

    def _answers(self, upstream: socket.socket, client: socket.socket) -> None:
        """Server to client, held back in `delay` mode."""
        while True:
            try:
                chunk = upstream.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                self._drop(client, upstream)
                return
            if self.mode == "delay":
                time.sleep(self.delay)
            if self.mode == "reset":
                self._drop(client, upstream, reset=True)
                return
            try:
                client.sendall(chunk)
            except OSError:
                self._drop(client, upstream)
                return

    def _deny(self, client: socket.socket, buffered: bytes) -> None:
        """Answer each request on `client` with 403 and an S3 error document, reading its body first
        (closing with unread bytes would reset the connection before the client reads the answer)."""
        data = buffered
        client.settimeout(5)
        try:
            while True:
                while b"\r\n\r\n" not in data:
                    more = client.recv(65536)
                    if not more:
                        return
                    data += more
                head, _, data = data.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                if not buffered:
                    self.requests.append(lines[0])
                buffered = b""
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(b":") for h in lines[1:])}
                method = lines[0].split(b" ", 1)[0]
                if headers.get(b"expect", b"").lower() != b"100-continue":
                    length = int(headers.get(b"content-length", b"0"))
                    while len(data) < length:
                        more = client.recv(65536)
                        if not more:
                            return
                        data += more
                    data = data[length:]
                body = (
                    f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{self.deny_code}</Code>'
                    f"<Message>{DENY_MESSAGES.get(self.deny_code, 'Forbidden')}</Message>"
                    "<RequestId>fault-proxy</RequestId></Error>"
                ).encode()
                reply = (
                    f"HTTP/1.1 {self.deny_status} {REASONS.get(self.deny_status, 'Error')}\r\n".encode()
                    + b"Content-Type: application/xml\r\n"
                    + f"Content-Length: {len(body)}\r\n".encode()
                    + b"Connection: close\r\n\r\n"
                    + (b"" if method == b"HEAD" else body)
                )
                client.sendall(reply)
                return  # Connection: close; the client opens a new connection for its next request
        except OSError:
            return
        finally:
            self._drop(client)

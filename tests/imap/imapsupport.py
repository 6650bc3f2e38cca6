"""Helpers for the IMAP system tests: a byte-exact raw client (literals, continuations,
STARTTLS, COMPRESS) and imaplib sessions on the test server. Every wait is bounded."""

from __future__ import annotations

import imaplib
import re
import smtplib
import socket
import time
import zlib

from harness import (ALICE, BOB, HOST, PASSWORDS, SOCK_TIMEOUT, Closed, RawClient,
                     client_tls_context, make_message)

LITERAL_RE = re.compile(rb"~?\{(\d+)\}$")


class Response:
    """One tagged reply with the untagged responses before it."""

    def __init__(self, untagged: list[bytes], tagged: bytes):
        self.untagged = untagged
        self.tagged = tagged

    @property
    def status(self) -> str:
        parts = self.tagged.split(b" ", 2)
        return parts[1].decode() if len(parts) > 1 else ""

    def text(self) -> str:
        return "\n".join(u.decode(errors="replace") for u in self.untagged + [self.tagged])

    def find(self, prefix: bytes) -> list[bytes]:
        return [u for u in self.untagged if u.startswith(prefix)]

    def __repr__(self):
        return f"Response({self.text()!r})"


class RawIMAP(RawClient):
    """An IMAP client that controls every byte. Responses are returned with literal data
    inline (the `{n}\\r\\n` announcement kept), one entry per response. The transport is
    harness.RawClient, with COMPRESS=DEFLATE layered on send and _fill."""

    def __init__(self, port: int, tls: bool = False, timeout: float = SOCK_TIMEOUT):
        super().__init__(port, tls, timeout)
        self.n = 0
        self.inflate = None
        self.deflate = None
        self.greeting = self.read_response()

    # -- transport ------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed(f"connection closed; partial {self.buf[:200]!r}")
        if self.inflate is not None:
            chunk = self.inflate.decompress(chunk)
        self.buf += chunk

    def _line(self) -> bytes:
        return self._readline()

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self) -> bytes:
        """One response: a line, with any literals and the rest of the line after them."""
        out = b""
        while True:
            line = self._line()
            out += line
            m = LITERAL_RE.search(line)
            if not m:
                return out
            out += b"\r\n" + self._exact(int(m.group(1)))

    # -- commands -------------------------------------------------------------------------
    def tag(self) -> str:
        self.n += 1
        return f"t{self.n}"

    def cmd(self, line: bytes | str, literals: list[bytes] | None = None,
            tag: str | None = None) -> Response:
        """Sends `tag line`; each `{n}` in `line` is followed by the next literal (waiting
        for the continuation request when synchronising)."""
        if isinstance(line, str):
            line = line.encode()
        tag = tag or self.tag()
        literals = list(literals or [])
        parts = re.split(rb"(\{\d+\+?\})", line)
        pending = tag.encode() + b" "
        untagged = []
        i = 0
        while i < len(parts):
            pending += parts[i]
            if i + 1 < len(parts):
                ann = parts[i + 1]
                pending += ann + b"\r\n"
                self.send(pending)
                pending = b""
                if not ann.endswith(b"+}"):
                    while True:
                        r = self.read_response()
                        if r.startswith(b"+"):
                            break
                        if r.startswith(tag.encode() + b" "):
                            return Response(untagged, r)
                        untagged.append(r)
                pending = literals.pop(0)
            i += 2
        self.send(pending + b"\r\n")
        return self.wait(tag, untagged)

    def wait(self, tag: str, untagged: list[bytes] | None = None) -> Response:
        untagged = untagged if untagged is not None else []
        while True:
            r = self.read_response()
            if r.startswith(tag.encode() + b" "):
                return Response(untagged, r)
            untagged.append(r)

    def ok(self, line, literals=None) -> Response:
        r = self.cmd(line, literals)
        assert r.status == "OK", r
        return r

    def starttls(self) -> None:
        self.ok("STARTTLS")
        self.start_tls()

    def login(self, user: str = ALICE) -> Response:
        return self.ok(f'LOGIN "{user}" "{PASSWORDS[user]}"')

    def compress(self) -> None:
        self.ok("COMPRESS DEFLATE")
        self.inflate = zlib.decompressobj(-15)
        self.deflate = zlib.compressobj(wbits=-15)

    def read_until(self, pred, timeout: float) -> list[bytes]:
        """Reads untagged responses until pred(response) or timeout; returns what came."""
        got = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                r = self.read_response()
                got.append(r)
                if pred(r):
                    return got
        except (socket.timeout, TimeoutError):
            pass
        finally:
            self.sock.settimeout(SOCK_TIMEOUT)
        return got

def raw_session(server, user: str = ALICE) -> RawIMAP:
    """A logged-in raw session over IMAPS."""
    c = RawIMAP(server.ports.imaps, tls=True)
    c.login(user)
    return c


def imaplib_session(server, user: str = ALICE) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL(HOST, server.ports.imaps, ssl_context=client_tls_context(),
                          timeout=SOCK_TIMEOUT)
    m.login(user, PASSWORDS[user])
    return m


def smtp_deliver(server, rcpt: str = ALICE, msg: bytes | None = None) -> bytes:
    """Delivers one message over SMTP (MX listener) and returns the bytes sent."""
    msg = msg or make_message()
    with smtplib.SMTP(HOST, server.ports.mx, timeout=SOCK_TIMEOUT) as s:
        s.sendmail("sender@remote.test", [rcpt], msg)
    return msg


def fetch_literal(resp: bytes) -> bytes:
    """The data of the first literal in a FETCH response."""
    m = re.search(rb"\{(\d+)\}\r\n", resp)
    assert m, resp[:200]
    n = int(m.group(1))
    return resp[m.end():m.end() + n]


def uid_of(resp: bytes) -> int:
    m = re.search(rb"UID (\d+)", resp)
    assert m, resp
    return int(m.group(1))


__all__ = ["RawIMAP", "Response", "raw_session", "imaplib_session", "smtp_deliver",
           "fetch_literal", "uid_of", "ALICE", "BOB", "PASSWORDS", "HOST"]

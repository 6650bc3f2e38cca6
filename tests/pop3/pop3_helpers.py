"""Small helpers for the POP3 system tests: a byte-exact raw client, poplib openers, SMTP
delivery into the store, and servers with a custom [pop3] section."""

from __future__ import annotations

import base64
import poplib
import smtplib

from harness import (ALICE, HOST, PASSWORDS, REMOTE_SENDER, SOCK_TIMEOUT, RawClient,
                     client_tls_context, make_message)


def with_pop3_config(srv, **pop3) -> None:
    """Append a [pop3] section to a server's config (before it starts)."""
    lines = ["", "[pop3]"] + [f"{k} = {v}" for k, v in pop3.items()] + [""]
    with open(srv.cfg, "a") as f:
        f.write("\n".join(lines))


def b64(s: str | bytes) -> str:
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def plain(user: str = ALICE, password: str | None = None) -> str:
    return b64(f"\0{user}\0{PASSWORDS[user] if password is None else password}")


def deliver(srv, rcpt: str = ALICE, msg: bytes | None = None, subject: str = "pop3 test") -> bytes:
    """Deliver one message over SMTP (MX) and return the client bytes sent."""
    msg = msg if msg is not None else make_message(subject)
    with smtplib.SMTP(HOST, srv.ports.mx, local_hostname="client.test", timeout=SOCK_TIMEOUT) as s:
        s.sendmail(REMOTE_SENDER, [rcpt], msg)
    return msg


def open_stls(srv) -> poplib.POP3:
    p = poplib.POP3(HOST, srv.ports.pop3, timeout=SOCK_TIMEOUT)
    p.stls(client_tls_context())
    return p


def open_ssl(srv) -> poplib.POP3_SSL:
    return poplib.POP3_SSL(HOST, srv.ports.pop3s, context=client_tls_context(),
                           timeout=SOCK_TIMEOUT)


def login(p: poplib.POP3, user: str = ALICE) -> bytes:
    p.user(user)
    return p.pass_(PASSWORDS[user])


def retr_bytes(p: poplib.POP3, n: int) -> bytes:
    """RETR through poplib (which un-stuffs), rejoined with CRLF."""
    _, lines, _ = p.retr(n)
    return b"".join(l + b"\r\n" for l in lines)


class RawPOP3(RawClient):
    """A byte-exact POP3 client over a plain or TLS socket (transport: harness.RawClient)."""

    def __init__(self, port: int, tls: bool = False, timeout: float = SOCK_TIMEOUT):
        super().__init__(port, tls, timeout)
        self.greeting = self.line()

    def line(self) -> bytes:
        return self._readline()

    def multiline(self) -> list[bytes]:
        """The lines of a multi-line body up to the terminator, still byte-stuffed."""
        out = []
        while True:
            line = self.line()
            if line == b".":
                return out
            out.append(line)

    def cmd(self, line: str | bytes) -> bytes:
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.line()

    def stls(self) -> None:
        r = self.cmd("STLS")
        assert r.startswith(b"+OK"), r
        self.start_tls()


def export_with_flags(srv, user: str = ALICE, restart: bool = True) -> list[tuple[int, str, bytes]]:
    """Stop the daemon, export the user's INBOX as Maildir and return [(uid, flags, bytes)] in
    UID order, flags being the Maildir info letters after ':2,' ('S' = \\Seen)."""
    import re
    import shutil
    from harness import run_cli
    was_running = srv.running
    if was_running:
        srv.stop()
    out = srv.root / f"pop3-export-{user.split('@')[0]}"
    shutil.rmtree(out, ignore_errors=True)
    try:
        run_cli(srv.cfg, "mailbox", "export", "--user", user, "--maildir", str(out), timeout=120)
        files = []
        for f in (out / "cur").iterdir():
            m = re.fullmatch(r"(\d+):2,([A-Za-z]*)", f.name)
            assert m, f"unexpected file name in export: {f.name}"
            files.append((int(m.group(1)), m.group(2), f.read_bytes()))
        files.sort()
        return files
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if was_running and restart:
            srv.start()


def imap_login(srv, user: str = ALICE):
    import imaplib
    m = imaplib.IMAP4_SSL(HOST, srv.ports.imaps, ssl_context=client_tls_context(),
                          timeout=SOCK_TIMEOUT)
    m.login(user, PASSWORDS[user])
    return m

"""The appliance image boots to a working mail service (DESIGN.md 3.7, 3.8).

One appliance boots from the built image (qemu/appliance.py: OVMF, the system disk, two NVMe
data disks, ipmi_sim, user-mode networking with the mail ports forwarded to 127.0.0.1). First
boot provisions it: the data array, the TLS certificate, the admin account whose password the
init prints once on the console. Then, with real clients from Python's standard library:

- the MX port answers with a 220 banner (the time from QEMU's start is printed: a TCG boot);
- a message submitted on 587 with STARTTLS and AUTH PLAIN as the admin, to the admin, reads
  back byte for byte over IMAPS (993) and over POP3S (995), after the Return-Path and Received
  trace headers the server adds (tests/harness.py strip_trace).

Timing is printed, never asserted (DESIGN.md 4).
"""

from __future__ import annotations

import email.utils
import time

from harness import strip_trace


def test_smtp_banner(box):
    print(f"SMTP banner {box.banner_seconds:.1f} s after QEMU started: {box.app.banner}")
    assert box.app.banner.startswith("220 "), box.app.banner
    assert box.address.startswith("admin@"), box.address


def _message(msgid: str) -> bytes:
    # Two dot-leading lines and an 8-bit line: dot-stuffing and 8BITMIME are part of it.
    return (f"From: <ADDR>\r\nTo: <ADDR>\r\nSubject: first light {msgid}\r\n"
            f"Date: {email.utils.formatdate()}\r\nMessage-ID: <{msgid}>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
            "Hello from the host.\r\n.leading dot\r\n..two dots\r\nGr\u00fc\u00dfe\r\n"
            + "x" * 70 + "\r\n").encode()


def test_submission_reads_back_over_imaps_and_pop3s(box):
    msgid = f"first-light-{time.time_ns()}@client.test"
    msg = _message(msgid).replace(b"ADDR", box.address.encode())
    box.submit(msg)

    stored = box.wait_mail(lambda m, raw: msgid in (m["Message-ID"] or ""),
                           f"message {msgid}")
    assert strip_trace(stored) == msg, "IMAPS: the stored message differs from the one sent"
    # The trace the server added names the admin as the envelope sender.
    assert stored.startswith(f"Return-Path: <{box.address}>\r\n".encode()), stored[:200]

    popped = [m for m in box.pop3_messages() if msgid.encode() in m]
    assert len(popped) == 1, f"POP3S: {len(popped)} copies of {msgid}"
    assert strip_trace(popped[0]) == msg, "POP3S: the message differs from the one sent"

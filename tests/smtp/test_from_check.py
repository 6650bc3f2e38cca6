"""Submission From: check (issue 11): the From and Sender fields (RFC 5322 3.6.2) of a message
an authenticated user submits must name only addresses the user owns (its account address
and aliases, as MAIL FROM must), or the message is refused at the end of DATA or BDAT with
550 5.7.1. Folding, comments, display names, quoted local parts and encoded words do not get
around it. MX mail (no AUTH) is not subject to it."""

import base64
import smtplib
import subprocess

import pytest

from harness import (ALICE, BOB, HOST, PASSWORDS, REMOTE_SENDER, TEAM, RawSMTP, client_tls_context,
                     parse_metrics, strip_trace)


def submit_587(srv) -> smtplib.SMTP:
    s = smtplib.SMTP(HOST, srv.ports.submission, local_hostname="client.test", timeout=15)
    s.ehlo()
    s.starttls(context=client_tls_context())
    s.ehlo()
    s.login(ALICE, PASSWORDS[ALICE])
    return s


def submit_465(srv) -> smtplib.SMTP:
    s = smtplib.SMTP_SSL(HOST, srv.ports.submissions, local_hostname="client.test", timeout=15,
                         context=client_tls_context())
    s.ehlo()
    s.login(ALICE, PASSWORDS[ALICE])
    return s


def message(headers: bytes, subject: str) -> bytes:
    return headers + b"To: bob@example.test\r\nSubject: " + subject.encode() + b"\r\n\r\nHello.\r\n"


# Author headers that alice (alias team@) may use.
OWNED = [
    b"From: alice@example.test\r\n",
    b"From: Alice Liddell <alice@example.test>\r\n",
    b"From: \"Liddell, Alice\" <alice@Example.Test> (work)\r\n",
    b"From: =?utf-8?q?Alice_L=C3=AFddell?= <alice@example.test>\r\n",
    b"From: Team <team@example.test>\r\n",
    b"From: alice@example.test,\r\n team@example.test\r\nSender: alice@example.test\r\n",
    b"From \t: alice@example.test\r\n",
]

# Author headers that name someone else, each way it could be hidden.
SPOOFED = {
    "other_user": b"From: bob@example.test\r\n",
    "remote": b"From: ceo@bank.test\r\n",
    "display_name_only_owned": b"From: alice@example.test <bob@example.test>\r\n",
    "second_mailbox": b"From: alice@example.test, bob@example.test\r\n",
    "folded_second_mailbox": b"From: Alice <alice@example.test>,\r\n\tBob <bob@example.test>\r\n",
    "comment_looks_owned": b"From: (alice@example.test) bob@example.test\r\n",
    "address_in_display_name": b"From: \"bob@example.test\" <alice@example.test>\r\n",
    "encoded_word_display_name":
        b"From: =?utf-8?q?bob=40example=2Etest?= <alice@example.test>\r\n",
    "encoded_word_address": b"From: <=?utf-8?q?alice=40example.test?=>\r\n",
    "quoted_local_part": b"From: \"bob\"@example.test\r\n",
    "quoted_local_part_with_at": b"From: \"alice@example.test\"@bank.test\r\n",
    "two_from_fields": b"From: alice@example.test\r\nFrom: bob@example.test\r\n",
    "two_from_fields_odd_case": b"From: alice@example.test\r\nfROM : bob@example.test\r\n",
    "sender_not_owned": b"From: alice@example.test\r\nSender: bob@example.test\r\n",
    "group": b"From: friends: bob@example.test;\r\n",
    "no_address": b"From: Alice Liddell\r\n",
}


def test_owned_authors_are_accepted(server):
    s = submit_587(server)
    sent = []
    try:
        for i, headers in enumerate(OWNED):
            m = message(headers, f"owned {i}")
            assert s.sendmail(ALICE, [BOB], m) == {}, headers
            sent.append(m)
    finally:
        s.close()
    assert [strip_trace(m) for m in server.export(BOB)] == sent


@pytest.mark.parametrize("name", sorted(SPOOFED))
def test_spoofed_author_refused_at_end_of_data(shared_server, name):
    s = submit_465(shared_server)
    try:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail(ALICE, [BOB], message(SPOOFED[name], f"spoof {name}"))
        code, text = e.value.smtp_code, e.value.smtp_error
        assert code == 550 and text.startswith(b"5.7.1 "), (code, text)
        assert b"alice@example.test" in text, text
        # The session goes on: the next, honest message is accepted.
        assert s.sendmail(ALICE, [BOB], message(OWNED[0], f"after {name}")) == {}
    finally:
        s.close()


def test_refusal_names_the_rule_and_nothing_is_stored(server):
    s = submit_587(server)
    try:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail(ALICE, [BOB], message(SPOOFED["other_user"], "spoof"))
    finally:
        s.close()
    text = e.value.smtp_error.decode()
    assert "From: header address <bob@example.test> is not owned by user alice@example.test" in text
    assert "RFC 5322 3.6.2" in text
    metrics = parse_metrics(server.metrics())
    assert metrics.get('postern_smtp_messages_rejected_total{reason="from_not_owned"}') == 1
    assert server.export(BOB) == []
    log = server.log()
    assert 'event="smtp.reject.from_not_owned"' in log or "smtp.reject.from_not_owned" in log, log


def test_bdat_is_checked_too(server):
    """RFC 3030: the check runs on the last chunk, as at the end of DATA."""
    auth = base64.b64encode(f"\0{ALICE}\0{PASSWORDS[ALICE]}".encode()).decode()
    with RawSMTP(server.ports.submission) as c:
        c.ehlo()
        c.starttls()
        assert "CHUNKING" in c.ehlo().text
        assert c.cmd(f"AUTH PLAIN {auth}").code == 235
        for headers, expect in ((SPOOFED["folded_second_mailbox"], 550), (OWNED[1], 250)):
            assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250
            assert c.cmd(f"RCPT TO:<{BOB}>").code == 250
            body = message(headers, f"bdat {expect}")
            first, rest = body[:20], body[20:]
            c.send(f"BDAT {len(first)}\r\n".encode() + first)
            assert c.reply().code == 250
            c.send(f"BDAT {len(rest)} LAST\r\n".encode() + rest)
            r = c.reply()
            assert r.code == expect, r
            if expect == 550:
                assert r.enhanced == "5.7.1", r
    assert len(server.export(BOB)) == 1


def test_swaks_with_a_forged_from_header(server):
    """A real client: swaks submits with its own headers; a forged From: is refused."""
    base = ["swaks", "--server", HOST, "--port", str(server.ports.submission), "--tls",
            "--helo", "client.test", "--timeout", "15", "--auth", "PLAIN", "--auth-user", ALICE,
            "--auth-password", PASSWORDS[ALICE], "--from", ALICE, "--to", BOB]
    p = subprocess.run(base + ["--header", "From: The Boss <boss@bank.test>"],
                       capture_output=True, timeout=60)
    out = p.stdout.decode(errors="replace")
    assert p.returncode != 0 and "550 5.7.1" in out, out
    p = subprocess.run(base + ["--header", "From: Alice <alice@example.test>"],
                       capture_output=True, timeout=60)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, out
    assert len(server.export(BOB)) == 1


def test_mx_mail_is_not_subject_to_the_submission_check(shared_server):
    """Mail from other servers carries other people's From: (sender authentication of MX mail
    is SPF/DKIM/DMARC, not this check)."""
    with smtplib.SMTP(HOST, shared_server.ports.mx, local_hostname="client.test", timeout=15) as s:
        assert s.sendmail(REMOTE_SENDER, [ALICE], message(b"From: bob@example.test\r\n", "mx")) == {}


def test_message_without_from_is_accepted(shared_server):
    """No From field claims no author; readers fall back to the Return-Path, which is the
    MAIL FROM the user owns (RFC 6409 8.1 leaves adding From to the MSA)."""
    s = submit_587(shared_server)
    try:
        assert s.sendmail(TEAM, [BOB], b"Subject: no author\r\n\r\nHello.\r\n") == {}
    finally:
        s.close()

"""Rate limits (issue 11, `[smtp]` *_per_hour and submission_recipients_per_message): messages
per hour from one MX client address, messages and recipients per hour of one authenticated
account, recipients per message on submission. Over a limit: 450 4.7.1 (RFC 5321 4.2.1, a
transient reply; RFC 3463 X.7.1), one error-level smtp.rate_limit.exceeded event per
episode (the alert) and postern_smtp_rate_limited_total counting every refusal."""

import base64
import smtplib

from harness import (ALICE, BOB, HOST, PASSWORDS, REMOTE_SENDER, TEAM, Ports, RawSMTP,
                     make_message, parse_metrics, render_config, run_cli)


def raw_submission(srv, user=ALICE) -> RawSMTP:
    c = RawSMTP(srv.ports.submission)
    c.ehlo()
    c.starttls()
    c.ehlo()
    auth = base64.b64encode(f"\0{user}\0{PASSWORDS[user]}".encode()).decode()
    assert c.cmd(f"AUTH PLAIN {auth}").code == 235
    return c


def send(c: RawSMTP, sender: str, rcpts: list[str], subject: str) -> None:
    assert c.cmd(f"MAIL FROM:<{sender}>").code == 250
    for r in rcpts:
        assert c.cmd(f"RCPT TO:<{r}>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(make_message(subject, sender=sender) + b".\r\n")
    r = c.reply()
    assert r.code == 250, r


def rate_limited(srv, limit: str) -> float:
    return parse_metrics(srv.metrics()).get(f'postern_smtp_rate_limited_total{{limit="{limit}"}}', 0)


def exceeded_events(srv) -> list[str]:
    return [l for l in srv.log().splitlines() if "smtp.rate_limit.exceeded" in l]


def test_submission_messages_per_hour_per_account(make_server):
    srv = make_server(smtp={"submission_messages_per_hour": 2})
    with raw_submission(srv) as c:
        send(c, ALICE, [BOB], "one")
        send(c, TEAM, [BOB], "two")
        r = c.cmd(f"MAIL FROM:<{ALICE}>")
        assert r.code == 450 and r.enhanced == "4.7.1", r
        assert "Too many messages sent by alice@example.test" in r.text, r
        assert "200" not in r.text and "2 an hour" in r.text, r
    # The allowance is the account's, over every connection; another account has its own.
    with raw_submission(srv) as c:
        r = c.cmd(f"MAIL FROM:<{ALICE}>")
        assert r.code == 450, r
    with raw_submission(srv, BOB) as c:
        send(c, BOB, [ALICE], "bob's own")
    assert rate_limited(srv, "submission_messages_per_hour") == 2
    # One alert for the episode, at error level, however many refusals.
    events = exceeded_events(srv)
    assert len(events) == 1, events
    assert "ERROR" in events[0] and "submission_messages_per_hour" in events[0], events
    assert len(srv.export(BOB)) == 2


def test_submission_recipients_per_hour(make_server):
    srv = make_server(smtp={"submission_recipients_per_hour": 3})
    s = smtplib.SMTP(HOST, srv.ports.submission, local_hostname="client.test", timeout=15)
    try:
        s.starttls()
        s.login(ALICE, PASSWORDS[ALICE])
        assert s.sendmail(ALICE, [BOB, ALICE], make_message("two", sender=ALICE)) == {}
        # One recipient left this hour: the second RCPT gets the temporary refusal and the
        # message goes to the first (smtplib reports the refused one).
        refused = s.sendmail(ALICE, [BOB, ALICE], make_message("three", sender=ALICE))
        assert list(refused) == [ALICE], refused
        code, text = refused[ALICE]
        assert code == 450 and text.startswith(b"4.7.1 Too many recipients"), refused
        try:
            s.sendmail(ALICE, [BOB], make_message("four", sender=ALICE))
            raise AssertionError("accepted over the recipient allowance")
        except smtplib.SMTPRecipientsRefused as e:
            assert e.recipients[BOB][0] == 450, e.recipients
    finally:
        s.close()
    assert rate_limited(srv, "submission_recipients_per_hour") == 2
    assert len(exceeded_events(srv)) == 1
    assert len(srv.export(BOB)) == 2
    assert len(srv.export(ALICE)) == 1


def test_submission_recipients_per_message(make_server):
    srv = make_server(smtp={"submission_recipients_per_message": 2})
    with raw_submission(srv) as c:
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250
        assert c.cmd(f"RCPT TO:<{BOB}>").code == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>").code == 250
        r = c.cmd(f"RCPT TO:<{TEAM}>")
        # RFC 5321 4.5.3.1.10: 452, the client sends the rest in another transaction.
        assert r.code == 452 and r.enhanced == "4.5.3", r
        assert c.cmd("RSET").code == 250
    # MX keeps [smtp] max_recipients.
    with RawSMTP(srv.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 250
        for r in (BOB, ALICE, TEAM):
            assert c.cmd(f"RCPT TO:<{r}>").code == 250


def test_mx_messages_per_ip_per_hour(make_server):
    srv = make_server(smtp={"mx_messages_per_ip_per_hour": 2})
    with RawSMTP(srv.ports.mx) as c:
        c.ehlo()
        send(c, REMOTE_SENDER, [ALICE], "mx one")
        send(c, REMOTE_SENDER, [ALICE], "mx two")
        r = c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>")
        assert r.code == 450 and r.enhanced == "4.7.1", r
        assert "Too many messages from 127.0.0.1" in r.text, r
    with RawSMTP(srv.ports.mx) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{REMOTE_SENDER}>").code == 450
    # Submission from the same address is counted per account, not per address.
    with raw_submission(srv) as c:
        send(c, ALICE, [BOB], "submitted")
    assert rate_limited(srv, "mx_messages_per_ip_per_hour") == 2
    events = exceeded_events(srv)
    assert len(events) == 1 and "mx_messages_per_ip_per_hour" in events[0], events
    assert len(srv.export(ALICE)) == 2


def test_defaults_allow_ordinary_mail(make_server):
    """With the shipped defaults (the harness turns the hourly ones off), a few messages pass."""
    srv = make_server(smtp={"mx_messages_per_ip_per_hour": 1000, "submission_messages_per_hour": 200,
                            "submission_recipients_per_hour": 1000})
    with raw_submission(srv) as c:
        for i in range(5):
            send(c, ALICE, [BOB, TEAM], f"default {i}")
    assert rate_limited(srv, "submission_messages_per_hour") == 0


def test_bad_limits_report_file_line_and_column(tmp_path):
    bad = "submission_recipients_per_message = 101"
    (tmp_path / "data").mkdir()
    text = render_config(tmp_path / "data", Ports.allocate()).replace("[smtp]\n", f"[smtp]\n{bad}\n")
    cfg = tmp_path / "postern.toml"
    cfg.write_text(text)
    line = text.splitlines().index(bad) + 1
    p = run_cli(None, "config", "check", str(cfg), check=False)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode != 0, out
    assert f"{cfg}:{line}:37: submission_recipients_per_message = 101 exceeds max_recipients = 100" \
        in out, out

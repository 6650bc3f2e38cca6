//! Drives `Session` with byte strings and checks the exact replies.
#![allow(clippy::field_reassign_with_default)]

use std::time::Duration;

use postern_smtp::*;

struct Driver {
    s: Session,
    out: Vec<u8>,
    logs: Vec<&'static str>,
    delivered: Vec<Envelope>,
    auths: Vec<(&'static str, String, String)>,
    closed: bool,
    starttls: usize,
}

fn params(kind: ListenerKind, tls_active: bool, limits: Limits) -> SessionParams {
    SessionParams {
        hostname: "mx.example.test".into(),
        kind,
        limits,
        tls_active,
        tls_available: true,
        peer: "192.0.2.1:4242".parse().unwrap(),
    }
}

impl Driver {
    fn new(kind: ListenerKind, tls_active: bool) -> Driver {
        Driver::with(params(kind, tls_active, Limits::default()))
    }

    fn with(p: SessionParams) -> Driver {
        let mut s = Session::new(p);
        let out = s.greeting();
        Driver {
            s,
            out,
            logs: vec![],
            delivered: vec![],
            auths: vec![],
            closed: false,
            starttls: 0,
        }
    }

    fn pump(&mut self) {
        loop {
            match self.s.next_action() {
                Action::Send(b) => self.out.extend_from_slice(&b),
                Action::NeedInput => return,
                Action::Close => {
                    self.closed = true;
                    return;
                }
                Action::StartTls => {
                    self.starttls += 1;
                    self.s.tls_started();
                }
                Action::Log(e) => self.logs.push(e.name),
                Action::Authenticate {
                    mechanism,
                    username,
                    password,
                } => {
                    // "banned" stands for a client the daemon's login guard refuses.
                    let answer = match password.as_str() {
                        "banned" => Answer::AuthBlocked,
                        p => Answer::Auth(p == "secret"),
                    };
                    self.auths.push((mechanism, username, password));
                    self.s.resolve(answer);
                }
                Action::CheckSender { address, .. } => {
                    let v = if address.starts_with("bad") {
                        Verdict::Reject(Reply::sender_not_owned())
                    } else {
                        Verdict::Accept
                    };
                    self.s.resolve(Answer::Verdict(v));
                }
                Action::CheckRecipient { address, .. } => {
                    let v = if address.ends_with("@remote.test") {
                        Verdict::Reject(Reply::relay_denied())
                    } else {
                        Verdict::Accept
                    };
                    self.s.resolve(Answer::Verdict(v));
                }
                Action::Deliver(env) => {
                    let fail = env.body.windows(9).any(|w| w == b"FAILSTORE");
                    self.delivered.push(env);
                    self.s.resolve(Answer::Delivered(if fail {
                        Err(Reply::storage_unavailable())
                    } else {
                        Ok(())
                    }));
                }
            }
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> &mut Driver {
        self.s.receive(bytes);
        self.pump();
        self
    }

    fn feed_bytewise(&mut self, bytes: &[u8]) -> &mut Driver {
        for b in bytes {
            self.s.receive(std::slice::from_ref(b));
            self.pump();
        }
        self
    }

    /// The final line of every reply: "250 2.0.0 Ok" etc.
    fn replies(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.out)
            .split("\r\n")
            .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
            .map(|l| l.to_string())
            .collect()
    }

    /// Reply codes with enhanced codes: "250 2.1.0".
    fn codes(&self) -> Vec<String> {
        self.replies()
            .iter()
            .map(|l| {
                let mut it = l.split(' ');
                let code = it.next().unwrap_or("").to_string();
                match it.next() {
                    Some(e) if e.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
                        format!("{code} {e}")
                    }
                    _ => code,
                }
            })
            .collect()
    }

    fn last(&self) -> String {
        self.codes().last().cloned().unwrap_or_default()
    }
}

fn mx() -> Driver {
    Driver::new(ListenerKind::Mx, false)
}

const TXN: &[u8] = b"EHLO client.test\r\nMAIL FROM:<a@ex.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n";

#[test]
fn greeting_and_basic_transaction() {
    let mut d = mx();
    d.feed(TXN);
    assert!(d.out.starts_with(b"220 mx.example.test ESMTP Postern\r\n"));
    assert_eq!(
        d.codes(),
        [
            "220",
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    assert!(d.closed);
    let env = &d.delivered[0];
    assert_eq!(env.body, b"Subject: hi\r\n\r\n.dot\r\nbody\r\n");
    assert_eq!(env.mail_from, "a@ex.test");
    assert_eq!(env.rcpt_to, ["b@example.test"]);
    assert_eq!(env.helo, "client.test");
    assert_eq!(env.protocol, "ESMTP");
    assert!(d.replies().contains(&"250 2.0.0 Ok: stored".to_string()));
}

#[test]
fn split_at_every_boundary_matches_all_at_once() {
    // RFC 2920: pipelined input; the result must not depend on how TCP split it.
    let mut whole = mx();
    whole.feed(TXN);
    for cut in 0..=TXN.len() {
        let mut d = mx();
        d.feed(&TXN[..cut]).feed(&TXN[cut..]);
        assert_eq!(d.out, whole.out, "cut at {cut}");
        assert_eq!(d.delivered, whole.delivered);
    }
    let mut d = mx();
    d.feed_bytewise(TXN);
    assert_eq!(d.out, whole.out);
    assert_eq!(d.delivered, whole.delivered);
}

#[test]
fn pipelined_replies_come_in_one_send() {
    // RFC 2920 3.2: all buffered commands are processed before more input is needed.
    let mut s = Session::new(params(ListenerKind::Mx, false, Limits::default()));
    s.receive(b"EHLO c\r\nNOOP\r\nRSET\r\n");
    match s.next_action() {
        Action::Send(b) => {
            let text = String::from_utf8(b).unwrap();
            assert!(text.ends_with("250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.next_action(), Action::NeedInput);
}

#[test]
fn ehlo_capabilities_mx() {
    let mut d = mx();
    d.feed(b"EHLO c\r\n");
    let text = String::from_utf8_lossy(&d.out).to_string();
    for cap in [
        "250-PIPELINING",
        "250-SIZE 52428800",
        "250-8BITMIME",
        "250-SMTPUTF8",
        "250-ENHANCEDSTATUSCODES",
        "250-CHUNKING",
        "STARTTLS",
    ] {
        assert!(text.contains(cap), "{cap} in {text}");
    }
    assert!(!text.contains("AUTH"), "MX never offers AUTH");
    // Under TLS, STARTTLS is no longer offered and MX still has no AUTH.
    let mut d = Driver::new(ListenerKind::Mx, true);
    d.feed(b"EHLO c\r\n");
    let text = String::from_utf8_lossy(&d.out).to_string();
    assert!(!text.contains("STARTTLS") && !text.contains("AUTH"));
}

#[test]
fn ehlo_capabilities_submission() {
    let mut d = Driver::new(ListenerKind::Submission, false);
    d.feed(b"EHLO c\r\n");
    let text = String::from_utf8_lossy(&d.out).to_string();
    assert!(
        text.contains("STARTTLS") && !text.contains("AUTH"),
        "{text}"
    );
    let mut d = Driver::new(ListenerKind::Submissions, true);
    d.feed(b"EHLO c\r\n");
    let text = String::from_utf8_lossy(&d.out).to_string();
    assert!(!text.contains("STARTTLS") && text.contains("250 AUTH PLAIN LOGIN\r\n"));
    let mut p = params(ListenerKind::Mx, false, Limits::default());
    p.tls_available = false;
    let mut d = Driver::with(p);
    d.feed(b"EHLO c\r\n");
    assert!(!String::from_utf8_lossy(&d.out).contains("STARTTLS"));
}

#[test]
fn helo_and_protocol_names() {
    let mut d = mx();
    d.feed(b"HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(
        d.codes(),
        ["220", "250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"]
    );
    assert_eq!(d.delivered[0].protocol, "SMTP");
    // ESMTP parameters need EHLO (RFC 5321 4.1.1.11).
    let mut d = mx();
    d.feed(b"HELO c\r\nMAIL FROM:<a@x> BODY=8BITMIME\r\n");
    assert_eq!(d.last(), "555 5.5.4");
    let mut d = Driver::new(ListenerKind::Mx, true);
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(d.delivered[0].protocol, "ESMTPS");
    assert!(d.delivered[0].tls);
    let mut d = Driver::new(ListenerKind::Submissions, true);
    d.feed(b"EHLO c\r\nAUTH PLAIN AHVAZXgAc2VjcmV0\r\nMAIL FROM:<u@ex>\r\nRCPT TO:<b@y>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(d.delivered[0].protocol, "ESMTPSA");
    assert_eq!(d.delivered[0].authenticated_as.as_deref(), Some("u@ex"));
}

#[test]
fn mail_parameters() {
    let mut d = mx();
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x> SIZE=1000 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<b@y>\r\nDATA\r\n\xc3\xa9\r\n.\r\n");
    assert_eq!(d.last(), "250 2.0.0");
    assert!(d.delivered[0].eight_bit && d.delivered[0].smtputf8);
    // Unknown / unadvertised parameters: RFC 5321 4.1.1.11 -> 555.
    for cmd in [
        &b"MAIL FROM:<a@x> FOO=BAR\r\n"[..],
        b"MAIL FROM:<a@x> RET=FULL\r\n",
        b"MAIL FROM:<a@x> BODY=BINARYMIME\r\n",
    ] {
        let mut d = mx();
        d.feed(b"EHLO c\r\n").feed(cmd);
        assert_eq!(d.last(), "555 5.5.4", "{}", String::from_utf8_lossy(cmd));
    }
    // Declared size over the limit: RFC 1870 6.1 -> 552 5.3.4.
    let mut d = mx();
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x> SIZE=52428801\r\n");
    assert_eq!(d.last(), "552 5.3.4");
    assert!(d.logs.contains(&"smtp.reject.size"));
    // Null sender.
    let mut d = mx();
    d.feed(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(d.delivered[0].mail_from, "");
    // RFC 6531 3.5: non-ASCII addresses need SMTPUTF8.
    let mut d = mx();
    d.feed("EHLO c\r\nMAIL FROM:<jö@x>\r\nMAIL FROM:<a@x>\r\nRCPT TO:<ü@y>\r\n".as_bytes());
    assert_eq!(d.codes()[2..], ["553 5.6.7", "250 2.1.0", "553 5.6.7"]);
    let mut d = mx();
    d.feed("EHLO c\r\nMAIL FROM:<jö@x> SMTPUTF8\r\nRCPT TO:<ü@y>\r\n".as_bytes());
    assert_eq!(d.codes()[2..], ["250 2.1.0", "250 2.1.5"]);
    // RCPT parameters are not advertised (no DSN) -> 555.
    let mut d = mx();
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y> NOTIFY=NEVER\r\n");
    assert_eq!(d.last(), "555 5.5.4");
}

#[test]
fn bad_sequences_and_unknown() {
    let mut d = mx();
    d.feed(b"MAIL FROM:<a@x>\r\n");
    assert_eq!(d.last(), "503 5.5.1");
    d.feed(b"EHLO c\r\nRCPT TO:<b@y>\r\n");
    assert_eq!(d.last(), "503 5.5.1");
    d.feed(b"DATA\r\n");
    assert_eq!(d.last(), "503 5.5.1");
    d.feed(b"MAIL FROM:<a@x>\r\nMAIL FROM:<a@x>\r\n");
    assert_eq!(d.last(), "503 5.5.1");
    d.feed(b"DATA\r\n");
    assert_eq!(d.last(), "554 5.5.1");
    d.feed(b"FOOBAR\r\n");
    assert_eq!(d.last(), "500 5.5.1");
    d.feed(b"MAIL FROM:xyz\r\n");
    assert_eq!(d.last(), "501 5.5.4");
    d.feed(b"EHLO\r\n");
    assert_eq!(d.last(), "501 5.5.4");
    d.feed(b"VRFY user\r\n");
    assert_eq!(d.last(), "252 2.5.0");
    d.feed(b"EXPN list\r\n");
    assert_eq!(d.last(), "502 5.5.1");
    d.feed(b"HELP\r\n");
    assert_eq!(d.last(), "214 2.0.0");
    d.feed(b"NOOP\r\n");
    assert_eq!(d.last(), "250 2.0.0");
    assert!(!d.closed);
}

#[test]
fn rset_and_rejected_verdicts() {
    let mut d = mx();
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRSET\r\nRCPT TO:<b@y>\r\n");
    assert_eq!(d.codes()[3..], ["250 2.0.0", "503 5.5.1"]);
    let mut d = mx();
    d.feed(
        b"EHLO c\r\nMAIL FROM:<bad@x>\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@remote.test>\r\nDATA\r\n",
    );
    assert_eq!(
        d.codes()[2..],
        ["553 5.7.1", "250 2.1.0", "550 5.7.1", "554 5.5.1"]
    );
    assert!(d.logs.contains(&"smtp.reject.sender"));
    assert!(d.logs.contains(&"smtp.reject.recipient"));
}

#[test]
fn deliver_failure_and_transaction_reset() {
    // RFC 5321 4.1.4: after the end of data, the transaction is over whatever the outcome.
    let mut d = mx();
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nFAILSTORE\r\n.\r\nRCPT TO:<b@y>\r\nMAIL FROM:<a@x>\r\n");
    assert_eq!(
        d.codes()[4..],
        ["354", "452 4.3.1", "503 5.5.1", "250 2.1.0"]
    );
}

#[test]
fn too_many_recipients() {
    let mut limits = Limits::default();
    limits.max_recipients = 2;
    let mut d = Driver::with(params(ListenerKind::Mx, false, limits));
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b1@y>\r\nRCPT TO:<b2@y>\r\nRCPT TO:<b3@y>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(
        d.codes()[3..],
        ["250 2.1.5", "250 2.1.5", "452 4.5.3", "354", "250 2.0.0"]
    );
    assert_eq!(d.delivered[0].rcpt_to.len(), 2);
    assert!(d.logs.contains(&"smtp.reject.too_many_recipients"));
}

#[test]
fn bare_lf_and_cr_in_commands() {
    // RFC 5321 2.3.8: lines end in CRLF only.
    let mut d = mx();
    d.feed(b"EHLO c\nNOOP\r\n");
    assert_eq!(
        d.codes()[1..],
        ["521 5.5.2"],
        "nothing after a bare LF is executed"
    );
    assert!(d.closed);
    assert!(d.logs.contains(&"smtp.reject.bare_lf"));
    let mut d = mx();
    d.feed(b"NOOP\rQUIT\r\n");
    assert_eq!(
        d.codes()[1..],
        ["521 5.5.2"],
        "QUIT behind a bare CR is not a command"
    );
    assert!(d.closed);
    assert!(d.logs.contains(&"smtp.reject.bare_cr"));
}

#[test]
fn command_line_too_long_is_discarded_without_buffering() {
    let mut limits = Limits::default();
    limits.max_command_line = 64;
    let mut d = Driver::with(params(ListenerKind::Mx, false, limits));
    d.feed(b"NOOP ");
    for _ in 0..1000 {
        d.feed(&[b'x'; 1000]);
    }
    d.feed(b"\r\nNOOP\r\n");
    assert_eq!(d.codes()[1..], ["500 5.5.2", "250 2.0.0"]);
    assert!(d.logs.contains(&"smtp.reject.line_too_long"));
    // Over the limit but arriving in one piece with its CRLF.
    let mut d = Driver::with(params(ListenerKind::Mx, false, {
        let mut l = Limits::default();
        l.max_command_line = 10;
        l
    }));
    d.feed(b"NOOP aaaaaaaaaa\r\nNOOP\r\n");
    assert_eq!(d.codes()[1..], ["500 5.5.2", "250 2.0.0"]);
}

fn smuggle(payload: &[u8]) -> Driver {
    let mut d = mx();
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nhello\r\n")
        .feed(payload)
        .feed(b"\r\n.\r\nNOOP\r\n");
    d
}

#[test]
fn smtp_smuggling_forms_are_not_end_of_data() {
    // RFC 5321 2.3.8 / 4.1.1.4: only CRLF.CRLF ends DATA; the smuggled transaction is part
    // of the (refused) message and never runs as commands.
    for form in [
        &b"\n.\n"[..],
        b"\r.\r",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r\n.\r",
        b"x\r\r\n",
    ] {
        let mut payload = b"x".to_vec();
        payload.extend_from_slice(form);
        payload.extend_from_slice(b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\nspoof");
        let d = smuggle(&payload);
        assert_eq!(
            d.codes()[4..],
            ["354", "550 5.6.0", "250 2.0.0"],
            "{form:?}"
        );
        assert!(d.delivered.is_empty());
        assert!(d.logs.contains(&"smtp.reject.smuggling"));
    }
}

#[test]
fn data_limits() {
    let mut limits = Limits::default();
    limits.max_message_size = 100;
    limits.max_data_line = 20;
    let mut d = Driver::with(params(ListenerKind::Mx, false, limits.clone()));
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
    for _ in 0..1000 {
        d.feed(b"0123456789\r\n");
    }
    d.feed(b".\r\nNOOP\r\n");
    // The 552 comes as soon as the content passes the limit, and the session ends: the end
    // of the data is not read (RFC 1870 6.1; issue 13).
    assert_eq!(d.codes()[4..], ["354", "552 5.3.4"]);
    assert!(d.closed);
    assert!(d.logs.contains(&"smtp.reject.size"));
    assert!(d.s.buffered_input() < 200 && d.s.buffered_body() == 0);
    let mut d = Driver::with(params(ListenerKind::Mx, false, limits));
    d.feed(
        b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n0123456789012345678901234\r\n.\r\n",
    );
    assert_eq!(d.last(), "554 5.6.0");
    assert!(d.logs.contains(&"smtp.reject.data_line_too_long"));
}

#[test]
fn bdat_chunks() {
    // RFC 3030: length-counted chunks, a reply per chunk; content is raw (no dot handling).
    let mut d = mx();
    d.feed(
        b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 5\r\na\nb\r\nBDAT 0 LAST\r\nQUIT\r\n",
    );
    assert_eq!(
        d.codes()[3..],
        ["250 2.1.5", "250 2.0.0", "550 5.6.0", "221 2.0.0"]
    );
    assert!(d.logs.contains(&"smtp.reject.smuggling"));
    // A lone CR at the very end of the last chunk is bare too.
    let mut d = mx();
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 2 LAST\r\nx\rNOOP\r\n");
    assert_eq!(d.codes()[3..], ["250 2.1.5", "550 5.6.0", "250 2.0.0"]);
    // A CRLF split across chunks is fine.
    let mut d = mx();
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 6\r\n.\r\nab\rBDAT 1 LAST\r\n\nNOOP\r\n");
    assert_eq!(
        d.codes()[3..],
        ["250 2.1.5", "250 2.0.0", "250 2.0.0", "250 2.0.0"]
    );
    assert_eq!(d.delivered[0].body, b".\r\nab\r\n");
    assert!(d.replies()[4].contains("6 octets received"));
    // BDAT 0 LAST and DATA after BDAT.
    let mut d = mx();
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 3\r\nx\r\nDATA\r\nBDAT 0 LAST\r\n");
    assert_eq!(d.codes()[4..], ["250 2.0.0", "503 5.5.1", "250 2.0.0"]);
    assert_eq!(d.delivered[0].body, b"x\r\n");
}

#[test]
fn bdat_refused_chunks_are_still_consumed() {
    // RFC 3030 2: a refused chunk's octets are read and dropped, never run as commands.
    let mut d = mx();
    d.feed(b"EHLO c\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(d.codes()[2..], ["503 5.5.1", "250 2.0.0"]);
    assert!(!d.closed);
    let mut limits = Limits::default();
    limits.max_message_size = 10;
    let mut d = Driver::with(params(ListenerKind::Mx, false, limits));
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 5\r\n01234BDAT 6\r\n");
    // RFC 3030 2: a declared chunk that would pass the size limit is refused before it is
    // read, and the session closes rather than reading it.
    assert_eq!(d.codes()[4..], ["250 2.0.0", "552 5.3.4"]);
    assert!(d.closed);
    let mut d = mx();
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 100000000000 LAST\r\n");
    assert_eq!(d.last(), "552 5.3.4");
    assert!(d.closed);
    assert!(d.delivered.is_empty());
}

#[test]
fn bare_postmaster_is_a_recipient() {
    // RFC 5321 4.1.1.3: <Postmaster> without a domain, in any case.
    let mut d = mx();
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<postmaster>\r\nRCPT TO: <PostMaster>\r\nRCPT TO:<postmasterx>\r\n");
    assert_eq!(d.codes()[3..], ["250 2.1.5", "250 2.1.5", "501 5.1.3"]);
    d.feed(b"DATA\r\nx\r\n.\r\n");
    assert_eq!(d.delivered[0].rcpt_to, ["postmaster", "postmaster"]);
}

#[test]
fn nul_in_content_is_refused() {
    // RFC 5322 2.3: no NUL in a message, DATA or BDAT; the session goes on.
    let mut d = mx();
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nSubject: x\r\n\r\na\0b\r\n.\r\nNOOP\r\n");
    assert_eq!(d.codes()[4..], ["354", "554 5.6.0", "250 2.0.0"]);
    assert!(d.logs.contains(&"smtp.reject.nul"));
    d.feed(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 4 LAST\r\n\0\r\nx");
    assert_eq!(d.last(), "554 5.6.0");
    assert!(d.delivered.is_empty());
}

#[test]
fn data_over_the_limit_is_answered_before_its_end() {
    let mut limits = Limits::default();
    limits.max_message_size = 1000;
    let mut d = Driver::with(params(ListenerKind::Mx, false, limits));
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
    d.feed(&[b'x'; 999]);
    assert!(!d.closed);
    d.feed(b"\r\n");
    // 1001 octets: over the limit, answered at once.
    assert_eq!(d.last(), "552 5.3.4");
    assert!(d.closed);
}

#[test]
fn starttls_discards_pipelined_input_and_resets() {
    // RFC 3207 4.2, CVE-2011-0411.
    let mut d = Driver::new(ListenerKind::Submission, false);
    d.feed(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@x>\r\n");
    assert_eq!(d.starttls, 1);
    assert!(d
        .replies()
        .contains(&"220 2.0.0 Ready to start TLS".to_string()));
    assert!(d.logs.contains(&"smtp.reject.starttls_injection"));
    assert_eq!(d.codes().len(), 3, "the injected MAIL got no reply");
    // Back to the pre-EHLO state.
    d.feed(b"MAIL FROM:<a@x>\r\n");
    assert_eq!(d.last(), "503 5.5.1");
    d.feed(b"EHLO c\r\n");
    let text = String::from_utf8_lossy(&d.out).to_string();
    let after = &text[text.rfind("220 2.0.0").unwrap()..];
    assert!(after.contains("AUTH PLAIN LOGIN") && !after.contains("STARTTLS"));
    d.feed(b"STARTTLS\r\n");
    assert_eq!(d.last(), "503 5.5.1");
}

#[test]
fn submission_requires_tls_then_auth() {
    let mut d = Driver::new(ListenerKind::Submission, false);
    d.feed(b"EHLO c\r\nMAIL FROM:<u@ex>\r\nAUTH PLAIN AHVAZXgAc2VjcmV0\r\n");
    assert_eq!(d.codes()[2..], ["530 5.7.0", "530 5.7.0"]);
    assert!(d.replies()[2].contains("Must issue a STARTTLS command first"));
    assert!(d.logs.contains(&"smtp.reject.tls_required"));
    let mut d = Driver::new(ListenerKind::Submissions, true);
    d.feed(b"EHLO c\r\nMAIL FROM:<u@ex>\r\n");
    assert_eq!(d.last(), "530 5.7.0");
    assert!(d.replies()[2].contains("Authentication required"));
    assert!(d.logs.contains(&"smtp.reject.auth_required"));
    // MX never offers AUTH.
    let mut d = Driver::new(ListenerKind::Mx, true);
    d.feed(b"EHLO c\r\nAUTH PLAIN AHVAZXgAc2VjcmV0\r\n");
    assert_eq!(d.last(), "502 5.5.1");
}

fn sub() -> Driver {
    let mut d = Driver::new(ListenerKind::Submissions, true);
    d.feed(b"EHLO c\r\n");
    d
}

#[test]
fn auth_plain_forms() {
    // RFC 4954 4 / RFC 4616: initial response.
    let mut d = sub();
    d.feed(b"AUTH PLAIN AHVAZXgAc2VjcmV0\r\n");
    assert_eq!(d.last(), "235 2.7.0");
    assert_eq!(d.auths[0], ("PLAIN", "u@ex".into(), "secret".into()));
    assert_eq!(d.s.authenticated_as(), Some("u@ex"));
    d.feed(b"AUTH PLAIN AHVAZXgAc2VjcmV0\r\n");
    assert_eq!(d.last(), "503 5.5.1");
    // Without initial response: 334 then the response line.
    let mut d = sub();
    d.feed(b"AUTH PLAIN\r\n");
    assert!(d.out.ends_with(b"334 \r\n"));
    d.feed(b"AHVAZXgAd3Jvbmc=\r\n");
    assert_eq!(d.last(), "535 5.7.8");
    assert!(d.logs.contains(&"smtp.auth.failed"));
    // Cancel and bad base64.
    let mut d = sub();
    d.feed(b"AUTH PLAIN\r\n*\r\n");
    assert_eq!(d.last(), "501 5.0.0");
    d.feed(b"AUTH PLAIN !!!notbase64\r\n");
    assert_eq!(d.last(), "501 5.5.2");
    d.feed(b"AUTH CRAM-MD5\r\n");
    assert_eq!(d.last(), "504 5.5.4");
    d.feed(b"AUTH PLAIN\r\n");
    d.feed(b"AHVAZXgAc2VjcmV0\r\n");
    assert_eq!(d.last(), "235 2.7.0");
}

#[test]
fn a_blocked_login_is_answered_421_and_closed() {
    let mut d = sub();
    // "\0u@ex\0banned"
    d.feed(b"AUTH PLAIN AHVAZXgAYmFubmVk\r\n");
    assert_eq!(d.last(), "421 4.7.0");
    assert!(d.replies().last().unwrap().contains("try again later"));
    assert!(d.closed);
    assert_eq!(d.s.authenticated_as(), None);
    // Not a verdict on the credentials: no auth.failed.
    assert!(!d.logs.contains(&"smtp.auth.failed"));
}

#[test]
fn auth_login() {
    let mut d = sub();
    d.feed(b"AUTH LOGIN\r\n");
    assert!(d.out.ends_with(b"334 VXNlcm5hbWU6\r\n"));
    d.feed(b"dUBleA==\r\n");
    assert!(d.out.ends_with(b"334 UGFzc3dvcmQ6\r\n"));
    d.feed(b"c2VjcmV0\r\n");
    assert_eq!(d.last(), "235 2.7.0");
    assert_eq!(d.auths[0], ("LOGIN", "u@ex".into(), "secret".into()));
    // With the username as initial response; cancel at the password prompt.
    let mut d = sub();
    d.feed(b"AUTH LOGIN dUBleA==\r\n");
    assert!(d.out.ends_with(b"334 UGFzc3dvcmQ6\r\n"));
    d.feed(b"*\r\n");
    assert_eq!(d.last(), "501 5.0.0");
    // Authenticated submission transaction with the sender checked by the driver.
    let mut d = sub();
    d.feed(b"AUTH LOGIN dUBleA==\r\nc2VjcmV0\r\nMAIL FROM:<bad@ex>\r\n");
    assert_eq!(d.last(), "553 5.7.1");
}

#[test]
fn too_many_errors_closes() {
    let mut limits = Limits::default();
    limits.max_errors = 3;
    let mut d = Driver::with(params(ListenerKind::Mx, false, limits));
    d.feed(b"X\r\nX\r\nX\r\nNOOP\r\nX\r\nNOOP\r\n");
    assert_eq!(
        d.codes()[1..],
        [
            "500 5.5.1",
            "500 5.5.1",
            "500 5.5.1",
            "250 2.0.0",
            "500 5.5.1",
            "421 4.7.0"
        ]
    );
    assert!(d.closed && d.s.is_closed());
    assert!(d.logs.contains(&"smtp.reject.too_many_errors"));
}

#[test]
fn too_many_commands_closes() {
    let mut limits = Limits::default();
    limits.max_commands = 3;
    let mut d = Driver::with(params(ListenerKind::Mx, false, limits));
    d.feed(b"NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n");
    assert_eq!(
        d.codes()[1..],
        ["250 2.0.0", "250 2.0.0", "250 2.0.0", "421 4.7.0"]
    );
    assert!(d.closed);
}

#[test]
fn timeouts() {
    // RFC 5321 4.5.3.2.6/4.5.3.2.7.
    let mut d = mx();
    assert_eq!(d.s.current_timeout(), Duration::from_secs(300));
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
    assert_eq!(d.s.current_timeout(), Duration::from_secs(180));
    d.feed(b"x\r\n.\r\nBDAT 10\r\n");
    // A refused chunk is still being read, so the data timeout applies.
    assert_eq!(d.s.current_timeout(), Duration::from_secs(180));
    d.feed(b"0123456789");
    assert_eq!(d.s.current_timeout(), Duration::from_secs(300));
    let bytes = d.s.on_timeout();
    assert!(bytes.starts_with(b"421 4.4.2 "));
    assert!(d.s.is_closed());
}

#[test]
fn progress_counts_whole_units_not_bytes() {
    // DESIGN.md 6: the driver's deadline restarts only when a unit completes.
    let mut d = mx();
    let start = d.s.progress();
    for b in b"EHLO c" {
        d.feed(&[*b]);
        assert_eq!(d.s.progress(), start, "a partial line is no progress");
    }
    d.feed(b"\r\n");
    assert_eq!(d.s.progress(), start + 1);
    d.feed(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
    let in_data = d.s.progress();
    assert_eq!(in_data, start + 4);
    d.feed(b"Subject: x\r\n\r\nbody\r\n");
    assert_eq!(d.s.progress(), in_data, "content lines are not units");
    d.feed(b".\r\n");
    assert_eq!(d.s.progress(), in_data + 1);
}

#[test]
fn input_buffer_is_bounded() {
    let mut limits = Limits::default();
    limits.max_message_size = 1000;
    let mut s = Session::new(params(ListenerKind::Mx, false, limits));
    // The driver misbehaves and never pulls actions: the session closes instead of growing.
    for _ in 0..10_000 {
        s.receive(&[b'a'; 1024]);
    }
    assert!(s.is_closed());
}

#[test]
fn quit_closes_and_input_after_is_ignored() {
    let mut d = mx();
    d.feed(b"QUIT\r\nNOOP\r\n");
    assert_eq!(d.codes()[1..], ["221 2.0.0"]);
    assert!(d.closed);
}

//! Drives `Session` with byte strings and checks the exact responses, state by state.

use std::time::Duration;

use postern_pop3::response::unstuff;
use postern_pop3::*;

const ALICE: &str = "alice@example.test";
const PASSWORD: &str = "secret pass";

/// A fake maildrop and account: what a driver would do, in memory.
struct Driver {
    s: Session,
    out: Vec<u8>,
    logs: Vec<&'static str>,
    auths: Vec<(&'static str, String, String)>,
    messages: Vec<Vec<u8>>,
    retrieved: Vec<(usize, Option<usize>)>,
    committed: Vec<Vec<usize>>,
    in_use: bool,
    commit_fails: bool,
    gone: Vec<usize>,
    closed: bool,
    starttls: usize,
}

fn params(tls_active: bool, limits: Limits) -> SessionParams {
    SessionParams {
        hostname: "mail.example.test".into(),
        limits,
        tls_active,
        tls_available: true,
    }
}

fn sample_messages() -> Vec<Vec<u8>> {
    vec![
        b"Subject: one\r\n\r\nfirst body\r\n".to_vec(),
        b"Subject: two\r\nX: y\r\n\r\nline 1\r\n.dot line\r\n.\r\nline 4\r\n".to_vec(),
        b"Subject: three\r\n\r\nthird\r\n".to_vec(),
    ]
}

impl Driver {
    fn new(tls_active: bool) -> Driver {
        Driver::with(params(tls_active, Limits::default()))
    }

    fn with(p: SessionParams) -> Driver {
        let mut s = Session::new(p);
        let out = s.greeting();
        Driver {
            s,
            out,
            logs: vec![],
            auths: vec![],
            messages: sample_messages(),
            retrieved: vec![],
            committed: vec![],
            in_use: false,
            commit_fails: false,
            gone: vec![],
            closed: false,
            starttls: 0,
        }
    }

    fn pump(&mut self) {
        loop {
            match self.s.next_action() {
                Action::Send(b) => {
                    assert!(b.ends_with(b"\r\n"));
                    self.out.extend_from_slice(&b);
                }
                Action::NeedInput => break,
                Action::Close => {
                    self.closed = true;
                    break;
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
                    let answer = if password == "banned" {
                        Answer::AuthBlocked
                    } else {
                        Answer::Auth(username == ALICE && password == PASSWORD)
                    };
                    self.auths.push((mechanism, username, password));
                    self.s.resolve(answer);
                }
                Action::LoadMaildrop { username } => {
                    assert_eq!(username, ALICE);
                    let answer = if self.in_use {
                        Err(MaildropError::InUse)
                    } else {
                        Ok(self
                            .messages
                            .iter()
                            .enumerate()
                            .map(|(i, m)| MessageInfo {
                                size: m.len() as u64,
                                uid: format!("77.{}", i + 10),
                            })
                            .collect())
                    };
                    self.s.resolve(Answer::Maildrop(answer));
                }
                Action::Retrieve { msg, top } => {
                    self.retrieved.push((msg, top));
                    let answer = if self.gone.contains(&msg) {
                        Err(ReadError::Gone)
                    } else {
                        Ok(self.messages[msg - 1].clone())
                    };
                    self.s.resolve(Answer::Message(answer));
                }
                Action::Commit { deleted } => {
                    self.committed.push(deleted);
                    let r = if self.commit_fails { Err(()) } else { Ok(()) };
                    self.s.resolve(Answer::Committed(r));
                }
            }
        }
    }

    /// Sends `input` and returns everything the server answered.
    fn send(&mut self, input: &[u8]) -> String {
        self.out.clear();
        self.s.receive(input);
        self.pump();
        String::from_utf8_lossy(&self.out).into_owned()
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes())
    }

    fn login(&mut self) {
        assert!(self.cmd(&format!("USER {ALICE}")).starts_with("+OK"));
        let r = self.cmd(&format!("PASS {PASSWORD}"));
        assert!(r.starts_with("+OK Maildrop has 3 messages"), "{r}");
    }
}

fn b64(s: &str) -> String {
    postern_sasl::encode(s.as_bytes())
}

// ------------------------------------------------------------------ AUTHORIZATION

#[test]
fn greeting_has_no_apop_timestamp() {
    let d = Driver::new(true);
    let g = String::from_utf8(d.out).unwrap();
    assert_eq!(g, "+OK mail.example.test POP3 server ready\r\n");
}

#[test]
fn user_pass_login_over_tls() {
    let mut d = Driver::new(true);
    assert_eq!(d.cmd(&format!("user {ALICE}")), "+OK Send PASS\r\n");
    assert_eq!(
        d.cmd(&format!("PASS {PASSWORD}")),
        "+OK Maildrop has 3 messages (105 octets)\r\n"
    );
    assert_eq!(
        d.auths,
        vec![("USER", ALICE.to_string(), PASSWORD.to_string())]
    );
    assert_eq!(d.s.authenticated_as(), Some(ALICE));
    assert!(d.logs.contains(&events::AUTH_SUCCEEDED));
    assert!(d.logs.contains(&events::LOGIN));
}

#[test]
fn debug_form_hides_the_password() {
    let a = Action::Authenticate {
        mechanism: "PLAIN",
        username: ALICE.into(),
        password: PASSWORD.into(),
    };
    let shown = format!("{a:?}");
    assert!(
        shown.contains(ALICE) && !shown.contains(PASSWORD),
        "{shown}"
    );
}

#[test]
fn wrong_password_gives_auth_code_and_allows_retry() {
    let mut d = Driver::new(true);
    d.cmd(&format!("USER {ALICE}"));
    assert_eq!(d.cmd("PASS wrong"), "-ERR [AUTH] Authentication failed\r\n");
    assert!(d.logs.contains(&events::AUTH_FAILED));
    // PASS needs a USER right before it.
    assert_eq!(
        d.cmd(&format!("PASS {PASSWORD}")),
        "-ERR Send USER first\r\n"
    );
    d.login();
}

#[test]
fn a_blocked_login_is_a_temporary_error_and_closes() {
    let mut d = Driver::new(true);
    d.cmd(&format!("USER {ALICE}"));
    // RFC 3206 4: [SYS/TEMP], not [AUTH] (the credentials were not judged).
    assert_eq!(
        d.cmd("PASS banned"),
        "-ERR [SYS/TEMP] Too many failed logins, try again later\r\n"
    );
    assert!(d.closed);
    assert!(!d.logs.contains(&events::AUTH_FAILED));
}

#[test]
fn pass_must_follow_user_immediately() {
    let mut d = Driver::new(true);
    d.cmd(&format!("USER {ALICE}"));
    assert!(d.cmd("NOOP").starts_with("-ERR"));
    assert_eq!(
        d.cmd(&format!("PASS {PASSWORD}")),
        "-ERR Send USER first\r\n"
    );
    assert!(d.auths.is_empty());
}

#[test]
fn plaintext_login_refused_before_tls_and_not_advertised() {
    let mut d = Driver::new(false);
    let capa = d.cmd("CAPA");
    assert!(capa.contains("\r\nSTLS\r\n"), "{capa}");
    assert!(!capa.contains("USER"), "{capa}");
    assert!(!capa.contains("SASL"), "{capa}");
    for line in [
        format!("USER {ALICE}"),
        format!("PASS {PASSWORD}"),
        "AUTH".to_string(),
        format!("AUTH PLAIN {}", b64(&format!("\0{ALICE}\0{PASSWORD}"))),
    ] {
        let r = d.cmd(&line);
        assert!(
            r.starts_with("-ERR Authentication requires TLS"),
            "{line}: {r}"
        );
    }
    assert!(d.auths.is_empty());
    assert!(d.logs.contains(&events::TLS_REQUIRED));
}

#[test]
fn stls_upgrades_and_discards_pipelined_plaintext() {
    let mut d = Driver::new(false);
    let r = d.send(format!("STLS\r\nUSER {ALICE}\r\n").as_bytes());
    assert_eq!(r, "+OK Begin TLS negotiation\r\n");
    assert_eq!(d.starttls, 1);
    assert!(d.logs.contains(&events::STLS_INJECTION));
    assert!(d.s.is_tls());
    // The pipelined USER was not taken: PASS has no USER before it.
    assert_eq!(d.cmd("PASS x"), "-ERR Send USER first\r\n");
    let capa = d.cmd("CAPA");
    assert!(!capa.contains("STLS"), "{capa}");
    assert!(capa.contains("\r\nUSER\r\n") && capa.contains("\r\nSASL PLAIN\r\n"));
    assert_eq!(d.cmd("STLS"), "-ERR TLS already active\r\n");
    d.login();
}

#[test]
fn stls_unavailable_without_certificate() {
    let mut d = Driver::with(SessionParams {
        tls_available: false,
        ..params(false, Limits::default())
    });
    assert!(!d.cmd("CAPA").contains("STLS"));
    assert_eq!(d.cmd("STLS"), "-ERR STLS not available\r\n");
}

#[test]
fn auth_plain_with_initial_response() {
    let mut d = Driver::new(true);
    let ir = b64(&format!("\0{ALICE}\0{PASSWORD}"));
    let r = d.cmd(&format!("AUTH PLAIN {ir}"));
    assert!(r.starts_with("+OK Maildrop has 3 messages"), "{r}");
    assert_eq!(d.auths[0].0, "PLAIN");
}

#[test]
fn auth_plain_with_continuation() {
    let mut d = Driver::new(true);
    assert_eq!(d.cmd("AUTH PLAIN"), "+ \r\n");
    let r = d.cmd(&b64(&format!("{ALICE}\0{ALICE}\0{PASSWORD}")));
    assert!(r.starts_with("+OK Maildrop has"), "{r}");
}

#[test]
fn auth_plain_failures() {
    let mut d = Driver::new(true);
    assert_eq!(d.cmd("AUTH PLAIN"), "+ \r\n");
    assert_eq!(d.cmd("*"), "-ERR Authentication cancelled\r\n");
    assert_eq!(d.cmd("AUTH PLAIN"), "+ \r\n");
    assert_eq!(d.cmd("!!!"), "-ERR Invalid base64 data\r\n");
    assert_eq!(
        d.cmd("AUTH PLAIN ="),
        "-ERR [AUTH] Authentication failed\r\n"
    );
    let bad = b64(&format!("\0{ALICE}\0nope"));
    assert_eq!(
        d.cmd(&format!("AUTH PLAIN {bad}")),
        "-ERR [AUTH] Authentication failed\r\n"
    );
    // Proxy authorization is refused without asking the directory.
    let proxy = b64(&format!("bob@example.test\0{ALICE}\0{PASSWORD}"));
    assert_eq!(
        d.cmd(&format!("AUTH PLAIN {proxy}")),
        "-ERR [AUTH] Authentication failed\r\n"
    );
    assert_eq!(
        d.cmd("AUTH LOGIN"),
        "-ERR Unsupported authentication mechanism\r\n"
    );
    assert_eq!(d.cmd("AUTH"), "+OK Methods supported\r\nPLAIN\r\n.\r\n");
    assert_eq!(d.auths.len(), 1);
    // The session still works.
    d.login();
}

#[test]
fn apop_is_refused() {
    let mut d = Driver::new(true);
    assert_eq!(
        d.cmd("APOP alice c4c9334bac560ecc979e58001b3e22fb"),
        "-ERR APOP is not supported\r\n"
    );
}

#[test]
fn transaction_commands_need_login() {
    let mut d = Driver::new(true);
    for c in [
        "STAT", "LIST", "UIDL", "RETR 1", "TOP 1 1", "DELE 1", "RSET", "NOOP",
    ] {
        assert_eq!(d.cmd(c), "-ERR Not authenticated\r\n", "{c}");
    }
    assert!(d.retrieved.is_empty());
}

#[test]
fn maildrop_in_use() {
    let mut d = Driver::new(true);
    d.in_use = true;
    d.cmd(&format!("USER {ALICE}"));
    assert_eq!(
        d.cmd(&format!("PASS {PASSWORD}")),
        "-ERR [IN-USE] Maildrop is locked by another POP3 session\r\n"
    );
    assert!(d.logs.contains(&events::IN_USE));
    assert_eq!(d.s.authenticated_as(), None);
    assert_eq!(d.cmd("STAT"), "-ERR Not authenticated\r\n");
    d.in_use = false;
    d.login();
}

#[test]
fn quit_in_authorization_commits_nothing() {
    let mut d = Driver::new(true);
    assert_eq!(
        d.cmd("QUIT"),
        "+OK mail.example.test POP3 server signing off\r\n"
    );
    assert!(d.closed);
    assert!(d.committed.is_empty());
}

// ------------------------------------------------------------------ TRANSACTION

#[test]
fn stat_list_uidl() {
    let mut d = Driver::new(true);
    d.login();
    assert_eq!(d.cmd("STAT"), "+OK 3 105\r\n");
    assert_eq!(
        d.cmd("LIST"),
        "+OK 3 messages (105 octets)\r\n1 28\r\n2 52\r\n3 25\r\n.\r\n"
    );
    assert_eq!(d.cmd("LIST 2"), "+OK 2 52\r\n");
    assert_eq!(d.cmd("LIST 4"), "-ERR No such message\r\n");
    assert_eq!(d.cmd("LIST 0"), "-ERR No such message\r\n");
    assert_eq!(
        d.cmd("UIDL"),
        "+OK Unique-id listing follows\r\n1 77.10\r\n2 77.11\r\n3 77.12\r\n.\r\n"
    );
    assert_eq!(d.cmd("UIDL 3"), "+OK 3 77.12\r\n");
    assert_eq!(d.cmd("UIDL 9"), "-ERR No such message\r\n");
    assert_eq!(d.cmd("NOOP"), "+OK\r\n");
}

#[test]
fn retr_is_byte_stuffed_and_round_trips() {
    let mut d = Driver::new(true);
    d.login();
    let r = d.cmd("RETR 2");
    assert!(r.starts_with("+OK 52 octets\r\n"), "{r}");
    let body = &r.as_bytes()["+OK 52 octets\r\n".len()..];
    assert!(body.windows(7).any(|w| w == b"\r\n..dot"));
    assert_eq!(unstuff(body).as_deref(), Some(&d.messages[1][..]));
    assert_eq!(d.retrieved, vec![(2, None)]);
    assert_eq!(d.cmd("RETR 4"), "-ERR No such message\r\n");
    assert_eq!(d.retrieved.len(), 1);
}

#[test]
fn top_sends_header_and_n_lines() {
    let mut d = Driver::new(true);
    d.login();
    assert_eq!(
        d.cmd("TOP 2 0"),
        "+OK Top of message follows\r\nSubject: two\r\nX: y\r\n\r\n.\r\n"
    );
    assert_eq!(
        d.cmd("TOP 2 2"),
        "+OK Top of message follows\r\nSubject: two\r\nX: y\r\n\r\nline 1\r\n..dot line\r\n.\r\n"
    );
    assert_eq!(d.retrieved, vec![(2, Some(0)), (2, Some(2))]);
}

#[test]
fn message_removed_by_another_session() {
    let mut d = Driver::new(true);
    d.login();
    d.gone.push(1);
    assert_eq!(
        d.cmd("RETR 1"),
        "-ERR Message 1 was removed by another session\r\n"
    );
    // Deleting it is still fine; the session goes on.
    assert_eq!(d.cmd("DELE 1"), "+OK Message 1 deleted\r\n");
    assert!(d.cmd("RETR 2").starts_with("+OK"));
}

#[test]
fn dele_rset_and_update() {
    let mut d = Driver::new(true);
    d.login();
    assert_eq!(d.cmd("DELE 1"), "+OK Message 1 deleted\r\n");
    assert_eq!(d.cmd("DELE 1"), "-ERR Message 1 already deleted\r\n");
    assert_eq!(d.cmd("RETR 1"), "-ERR Message 1 already deleted\r\n");
    assert_eq!(d.cmd("STAT"), "+OK 2 77\r\n");
    assert_eq!(
        d.cmd("LIST"),
        "+OK 2 messages (77 octets)\r\n2 52\r\n3 25\r\n.\r\n"
    );
    assert_eq!(
        d.cmd("UIDL"),
        "+OK Unique-id listing follows\r\n2 77.11\r\n3 77.12\r\n.\r\n"
    );
    assert_eq!(
        d.cmd("RSET"),
        "+OK Maildrop has 3 messages (105 octets)\r\n"
    );
    assert_eq!(d.cmd("STAT"), "+OK 3 105\r\n");
    d.cmd("DELE 3");
    d.cmd("DELE 1");
    assert_eq!(
        d.cmd("QUIT"),
        "+OK mail.example.test POP3 server signing off (1 messages left)\r\n"
    );
    assert_eq!(d.committed, vec![vec![1, 3]]);
    assert!(d.logs.contains(&events::UPDATE));
    assert!(d.closed);
}

#[test]
fn quit_without_deletions_needs_no_commit() {
    let mut d = Driver::new(true);
    d.login();
    assert!(d.cmd("QUIT").starts_with("+OK"));
    assert!(d.committed.is_empty());
    assert!(d.closed);
}

#[test]
fn failed_commit_is_reported() {
    let mut d = Driver::new(true);
    d.commit_fails = true;
    d.login();
    d.cmd("DELE 2");
    assert_eq!(
        d.cmd("QUIT"),
        "-ERR [SYS/TEMP] Some deleted messages not removed, try again later\r\n"
    );
    assert!(d.logs.contains(&events::UPDATE_FAILED));
    assert!(d.closed);
}

#[test]
fn authorization_commands_refused_in_transaction() {
    let mut d = Driver::new(true);
    d.login();
    assert_eq!(d.cmd("USER x"), "-ERR Already authenticated\r\n");
    assert_eq!(d.cmd("PASS x"), "-ERR Already authenticated\r\n");
    assert_eq!(d.cmd("AUTH PLAIN"), "-ERR Already authenticated\r\n");
    assert_eq!(
        d.cmd("STLS"),
        "-ERR STLS is only valid before authentication\r\n"
    );
    let capa = d.cmd("CAPA");
    assert!(capa.starts_with("+OK Capability list follows\r\n"));
    assert!(capa.contains("\r\nTOP\r\n") && capa.contains("\r\nUIDL\r\n"));
    assert!(!capa.contains("USER") && !capa.contains("SASL"));
    assert_eq!(d.auths.len(), 1);
}

#[test]
fn pipelined_commands_answered_in_order() {
    let mut d = Driver::new(true);
    let r = d.send(
        format!("USER {ALICE}\r\nPASS {PASSWORD}\r\nSTAT\r\nDELE 1\r\nLIST 1\r\nQUIT\r\n")
            .as_bytes(),
    );
    assert_eq!(
        r,
        "+OK Send PASS\r\n+OK Maildrop has 3 messages (105 octets)\r\n+OK 3 105\r\n\
         +OK Message 1 deleted\r\n-ERR Message 1 already deleted\r\n\
         +OK mail.example.test POP3 server signing off (2 messages left)\r\n"
    );
    assert_eq!(d.committed, vec![vec![1]]);
}

// ------------------------------------------------------------------ errors and limits

#[test]
fn unknown_and_malformed_commands_keep_the_session() {
    let mut d = Driver::new(true);
    assert_eq!(d.cmd("LAST"), "-ERR Unknown command\r\n");
    assert_eq!(d.cmd("HELO there"), "-ERR Unknown command\r\n");
    assert_eq!(d.cmd(""), "-ERR Unknown command\r\n");
    assert_eq!(
        d.send(b"NO\rOP\r\n"),
        "-ERR Invalid character in command\r\n"
    );
    d.login();
    assert_eq!(d.cmd("RETR x"), "-ERR Syntax: RETR msg\r\n");
    assert_eq!(d.cmd("TOP 1"), "-ERR Syntax: TOP msg n\r\n");
    assert_eq!(d.cmd("STAT"), "+OK 3 105\r\n");
    assert!(d.logs.contains(&events::BAD_COMMAND));
}

#[test]
fn bare_lf_is_accepted() {
    let mut d = Driver::new(true);
    assert_eq!(
        d.send(format!("USER {ALICE}\n").as_bytes()),
        "+OK Send PASS\r\n"
    );
}

#[test]
fn overlong_line_is_refused_and_session_continues() {
    let limits = Limits {
        max_command_line: 255,
        ..Limits::default()
    };
    let mut d = Driver::with(params(true, limits));
    let long = format!("USER {}", "a".repeat(300));
    assert_eq!(d.cmd(&long), "-ERR Line too long\r\n");
    assert!(d.logs.contains(&events::LINE_TOO_LONG));
    // 253 octets + CRLF = 255 is accepted.
    let fits = format!("USER {}", "a".repeat(248));
    assert_eq!(d.cmd(&fits), "+OK Send PASS\r\n");
    // A huge line fed in pieces is never buffered whole.
    d.out.clear();
    for _ in 0..1000 {
        d.s.receive(&[b'x'; 1000]);
        d.pump();
        assert!(d.s.buffered_input() <= 255);
    }
    assert_eq!(
        d.send(b"\r\nNOOP\r\n"),
        "-ERR Line too long\r\n-ERR Not authenticated\r\n"
    );
}

#[test]
fn auth_response_may_exceed_the_command_limit() {
    let limits = Limits {
        max_command_line: 255,
        ..Limits::default()
    };
    let mut d = Driver::with(params(true, limits));
    assert_eq!(d.cmd("AUTH PLAIN"), "+ \r\n");
    let long_user = format!("{}@example.test", "u".repeat(400));
    let r = d.cmd(&b64(&format!("\0{long_user}\0{PASSWORD}")));
    assert_eq!(r, "-ERR [AUTH] Authentication failed\r\n");
    assert_eq!(d.auths[0].1, long_user);
}

#[test]
fn too_many_errors_close_the_session() {
    let limits = Limits {
        max_errors: 3,
        ..Limits::default()
    };
    let mut d = Driver::with(params(true, limits));
    for _ in 0..3 {
        assert_eq!(d.cmd("BOGUS"), "-ERR Unknown command\r\n");
    }
    assert_eq!(
        d.cmd("BOGUS"),
        "-ERR Unknown command\r\n-ERR Too many errors, closing\r\n"
    );
    assert!(d.closed);
    assert!(d.logs.contains(&events::TOO_MANY_ERRORS));
    // Nothing more is processed.
    assert_eq!(d.cmd("CAPA"), "");
}

#[test]
fn timeouts_depend_on_state_and_close_silently() {
    let limits = Limits {
        timeout: Duration::from_secs(600),
        timeout_login: Duration::from_secs(7),
        ..Limits::default()
    };
    let mut d = Driver::with(params(true, limits));
    assert_eq!(d.s.current_timeout(), Duration::from_secs(7));
    d.login();
    assert_eq!(d.s.current_timeout(), Duration::from_secs(600));
    d.cmd("DELE 1");
    d.out.clear();
    // RFC 1939 3: no UPDATE and no response on timeout.
    d.s.on_timeout();
    d.pump();
    assert!(d.out.is_empty());
    assert!(d.closed);
    assert!(d.committed.is_empty());
    assert!(d.logs.contains(&events::TIMEOUT));
}

#[test]
fn large_pipelined_output_is_flushed_in_parts() {
    let mut d = Driver::new(true);
    d.messages = vec![vec![b'x'; 100_000]; 3];
    d.login();
    // Many pipelined RETRs: the session hands out output before the whole batch is read.
    d.out.clear();
    d.s.receive("RETR 1\r\n".repeat(20).as_bytes());
    let mut biggest = 0;
    loop {
        match d.s.next_action() {
            Action::Send(b) => biggest = biggest.max(b.len()),
            Action::Retrieve { msg, .. } => {
                let m = d.messages[msg - 1].clone();
                d.s.resolve(Answer::Message(Ok(m)));
            }
            Action::NeedInput => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(biggest < 1_000_000, "{biggest}");
}

//! The POP3 server session state machine: AUTHORIZATION -> TRANSACTION -> UPDATE
//! (RFC 1939 3), with CAPA and response codes (RFC 2449), STLS (RFC 2595), AUTH PLAIN
//! (RFC 5034, RFC 4616) and the SYS/AUTH response codes of RFC 3206.

use std::collections::VecDeque;
use std::time::Duration;

use crate::command::{self, Command, MsgNum, ParseError};
use crate::receiver::{LineError, LineReceiver};
use crate::response::{self, err, ok};
use crate::{
    events, Action, Answer, MaildropError, MessageInfo, ReadError, SessionEvent, SessionParams,
};
use postern_sasl::SaslError;

/// RFC 5034 4 lifts RFC 2449's command length limit for SASL exchanges; a client response
/// line may be as long as an SMTP AUTH line (RFC 4954 4: 12288 octets).
const AUTH_LINE_MAX: usize = postern_sasl::MAX_RESPONSE_LINE;
/// Pipelined commands are answered together until this much output waits to be sent;
/// beyond it the driver flushes first, so pipelined LIST/RETR cannot pile up memory.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;

#[derive(Debug)]
enum Pending {
    Auth { username: String },
    Maildrop { username: String },
    Retrieve { msg: usize, top: Option<usize> },
    Commit { deleted: usize },
}

#[derive(Debug)]
enum Mode {
    Command,
    /// After "AUTH PLAIN" without an initial response: the next line is the response.
    AuthPlain,
    Await(Pending),
    AwaitTls,
}

#[derive(Debug)]
struct Maildrop {
    messages: Vec<MessageInfo>,
    deleted: Vec<bool>,
}

impl Maildrop {
    /// Count and total size of the messages not marked deleted (RFC 1939 5 STAT).
    fn stat(&self) -> (usize, u64) {
        self.messages
            .iter()
            .zip(&self.deleted)
            .filter(|(_, &d)| !d)
            .fold((0, 0), |(n, s), (m, _)| (n + 1, s + m.size))
    }

    /// The message `msg` (1-based) if it exists and is not marked deleted.
    fn get(&self, msg: MsgNum) -> Result<&MessageInfo, Vec<u8>> {
        let idx = msg.checked_sub(1).filter(|&i| i < self.messages.len());
        match idx {
            None => Err(err(None, "No such message")),
            Some(i) if self.deleted[i] => Err(err(None, &format!("Message {msg} already deleted"))),
            Some(i) => Ok(&self.messages[i]),
        }
    }
}

#[derive(Debug)]
enum State {
    /// RFC 1939 4. `user` is set by a successful USER, for the PASS right after it.
    Authorization { user: Option<String> },
    /// RFC 1939 5.
    Transaction(Maildrop),
}

/// One POP3 server session. See the crate documentation for the driving loop.
#[derive(Debug)]
pub struct Session {
    params: SessionParams,
    tls: bool,
    state: State,
    mode: Mode,
    rx: LineReceiver,
    queue: VecDeque<Action>,
    closed: bool,
    errors: usize,
    authenticated: Option<String>,
    /// Command lines handled so far ([`Session::progress`]).
    progress: u64,
}

impl Session {
    pub fn new(params: SessionParams) -> Session {
        let tls = params.tls_active;
        Session {
            params,
            tls,
            state: State::Authorization { user: None },
            mode: Mode::Command,
            rx: LineReceiver::new(),
            queue: VecDeque::new(),
            closed: false,
            errors: 0,
            authenticated: None,
            progress: 0,
        }
    }

    /// The greeting (RFC 1939 4). No APOP timestamp: APOP is not offered.
    pub fn greeting(&mut self) -> Vec<u8> {
        ok(&format!("{} POP3 server ready", self.host()))
    }

    /// Buffers received bytes. After `next_action` returned NeedInput at most one incomplete
    /// line is held, and never more than the line limit of it.
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.closed || matches!(self.mode, Mode::AwaitTls) {
            // RFC 2595 4 / CVE-2011-0411: plaintext after STLS is never interpreted.
            return;
        }
        self.rx.push(bytes);
    }

    /// The next thing for the driver to do. Call until NeedInput or Close.
    pub fn next_action(&mut self) -> Action {
        loop {
            // RFC 2449 6.6 PIPELINING: while only output is pending (and not too much of
            // it), keep answering buffered commands so their responses go out together.
            let mut pending = 0usize;
            let only_output = self.queue.iter().all(|a| match a {
                Action::Send(b) => {
                    pending += b.len();
                    true
                }
                _ => false,
            });
            if only_output && pending < OUTPUT_HIGH_WATER && !self.closed && self.step() {
                continue;
            }
            if let Some(action) = self.queue.pop_front() {
                return action;
            }
            return if self.closed {
                Action::Close
            } else {
                Action::NeedInput
            };
        }
    }

    /// The answer to the last Authenticate, LoadMaildrop, Retrieve or Commit.
    pub fn resolve(&mut self, answer: Answer) {
        if self.closed {
            return;
        }
        let Mode::Await(pending) = std::mem::replace(&mut self.mode, Mode::Command) else {
            return;
        };
        match (pending, answer) {
            (Pending::Auth { username }, Answer::Auth(true)) => {
                self.log(events::AUTH_SUCCEEDED, username.clone());
                self.mode = Mode::Await(Pending::Maildrop {
                    username: username.clone(),
                });
                self.queue.push_back(Action::LoadMaildrop { username });
            }
            (Pending::Auth { username }, Answer::Auth(false)) => {
                self.log(events::AUTH_FAILED, username);
                // RFC 2449 8.1.2 / RFC 3206 5: [AUTH] the credentials were refused.
                self.reply_err(err(Some("AUTH"), "Authentication failed"));
            }
            (Pending::Auth { .. }, Answer::AuthBlocked) => {
                // RFC 3206 4: [SYS/TEMP] a temporary refusal, not a verdict on the
                // credentials ([AUTH] would make the client ask its user for a new
                // password); closed, since nothing else can be done before a login.
                self.close(err(
                    Some("SYS/TEMP"),
                    "Too many failed logins, try again later",
                ));
            }
            (Pending::Maildrop { username }, Answer::Maildrop(result)) => match result {
                Ok(messages) => {
                    let deleted = vec![false; messages.len()];
                    let drop = Maildrop { messages, deleted };
                    let (n, size) = drop.stat();
                    self.log(events::LOGIN, format!("{username} {n} messages"));
                    self.state = State::Transaction(drop);
                    // RFC 1939 7 PASS: "+OK maildrop locked and ready".
                    self.send(ok(&format!("Maildrop has {n} messages ({size} octets)")));
                    self.authenticated = Some(username);
                }
                Err(MaildropError::InUse) => {
                    self.log(events::IN_USE, username);
                    // RFC 2449 8.1.1: [IN-USE] another session holds the maildrop.
                    self.reply_err(err(
                        Some("IN-USE"),
                        "Maildrop is locked by another POP3 session",
                    ));
                }
                Err(MaildropError::Temporary) => {
                    // RFC 3206 4: [SYS/TEMP] a problem that should go away.
                    self.reply_err(err(
                        Some("SYS/TEMP"),
                        "Maildrop unavailable, try again later",
                    ));
                }
            },
            (Pending::Retrieve { msg, top }, Answer::Message(result)) => match result {
                Ok(bytes) => {
                    let head = match top {
                        None => {
                            let size = self.maildrop_size(msg);
                            ok(&format!("{size} octets"))
                        }
                        Some(_) => ok("Top of message follows"),
                    };
                    let mut out = head;
                    out.extend_from_slice(&response::multiline(&bytes, top));
                    self.send(out);
                }
                Err(ReadError::Gone) => self.reply_err(err(
                    None,
                    &format!("Message {msg} was removed by another session"),
                )),
                Err(ReadError::Temporary) => self.reply_err(err(
                    Some("SYS/TEMP"),
                    &format!("Cannot read message {msg}, try again later"),
                )),
            },
            (Pending::Commit { deleted }, Answer::Committed(result)) => match result {
                Ok(()) => {
                    self.log(events::UPDATE, deleted.to_string());
                    let left = match &self.state {
                        State::Transaction(d) => d.stat().0,
                        State::Authorization { .. } => 0,
                    };
                    self.close(ok(&format!(
                        "{} POP3 server signing off ({left} messages left)",
                        self.host()
                    )));
                }
                Err(()) => {
                    self.log(events::UPDATE_FAILED, deleted.to_string());
                    // RFC 1939 6: -ERR when some deleted messages could not be removed.
                    self.close(err(
                        Some("SYS/TEMP"),
                        "Some deleted messages not removed, try again later",
                    ));
                }
            },
            (pending, _) => {
                // An answer of the wrong kind: a driver bug. Fail safe.
                let commit = matches!(pending, Pending::Commit { .. });
                let reply = err(Some("SYS/TEMP"), "Internal error");
                if commit {
                    self.close(reply);
                } else {
                    self.reply_err(reply);
                }
            }
        }
    }

    /// After the STLS handshake: RFC 2595 4, the client discards what it knew; so does the
    /// server (a USER given before is forgotten).
    pub fn tls_started(&mut self) {
        if self.closed {
            return;
        }
        self.tls = true;
        self.state = State::Authorization { user: None };
        self.mode = Mode::Command;
        self.rx.clear();
        self.log(events::STLS, String::new());
    }

    /// Command lines (and AUTH response lines) handled so far. RFC 1939 3: "the receipt of
    /// any command from the client" resets the autologout timer; bytes of an unfinished
    /// line do not (DESIGN.md 6). The driver starts a deadline of [`Session::current_timeout`]
    /// when this changes; before login the whole AUTHORIZATION state has one deadline of
    /// `timeout_login`, whatever the client sends.
    pub fn progress(&self) -> u64 {
        self.progress
    }

    /// True once the session is in the TRANSACTION state.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Transaction(_))
    }

    /// The inactivity timer: RFC 1939 3, at least 10 minutes once authenticated; a
    /// shorter one may apply before.
    pub fn current_timeout(&self) -> Duration {
        match self.state {
            State::Transaction(_) => self.params.limits.timeout,
            State::Authorization { .. } => self.params.limits.timeout_login,
        }
    }

    /// The peer was silent too long. RFC 1939 3: the session does not enter UPDATE, and
    /// the server closes the connection without a response.
    pub fn on_timeout(&mut self) {
        self.closed = true;
        self.queue.clear();
        self.log(events::TIMEOUT, String::new());
        self.queue.push_back(Action::Close);
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True while TLS is active (implicit, or after STLS).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The user whose maildrop is open (TRANSACTION state).
    pub fn authenticated_as(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// Unprocessed input octets held.
    pub fn buffered_input(&self) -> usize {
        self.rx.buffered()
    }

    // ---------------------------------------------------------------- internals

    fn host(&self) -> String {
        self.params
            .hostname
            .chars()
            .filter(|c| !c.is_control() && !c.is_whitespace())
            .collect()
    }

    fn send(&mut self, bytes: Vec<u8>) {
        if let Some(Action::Send(prev)) = self.queue.back_mut() {
            prev.extend_from_slice(&bytes);
        } else {
            self.queue.push_back(Action::Send(bytes));
        }
    }

    fn log(&mut self, name: &'static str, detail: String) {
        self.queue
            .push_back(Action::Log(SessionEvent { name, detail }));
    }

    fn close(&mut self, bytes: Vec<u8>) {
        self.send(bytes);
        self.queue.push_back(Action::Close);
        self.closed = true;
    }

    /// Sends a -ERR response and counts it; too many errors end the session.
    fn reply_err(&mut self, bytes: Vec<u8>) {
        self.send(bytes);
        self.errors += 1;
        if self.errors > self.params.limits.max_errors {
            self.log(events::TOO_MANY_ERRORS, self.errors.to_string());
            self.close(err(None, "Too many errors, closing"));
        }
    }

    fn maildrop_size(&self, msg: usize) -> u64 {
        match &self.state {
            State::Transaction(d) => d.messages.get(msg.wrapping_sub(1)).map_or(0, |m| m.size),
            State::Authorization { .. } => 0,
        }
    }

    fn line_limit(&self) -> usize {
        match self.mode {
            Mode::AuthPlain => AUTH_LINE_MAX.max(self.params.limits.max_command_line),
            _ => self.params.limits.max_command_line,
        }
    }

    /// Handles one buffered line. False when more input (or an answer) is needed.
    fn step(&mut self) -> bool {
        if !matches!(self.mode, Mode::Command | Mode::AuthPlain) {
            return false;
        }
        let limit = self.line_limit();
        let Some(line) = self.rx.next_line(limit) else {
            return false;
        };
        let in_auth = matches!(self.mode, Mode::AuthPlain);
        self.mode = Mode::Command;
        self.progress += 1;
        match line {
            Err(LineError::TooLong) => {
                self.log(events::LINE_TOO_LONG, String::new());
                // RFC 2449 4: a line over the limit is refused; the session goes on.
                self.reply_err(err(None, "Line too long"));
            }
            Err(LineError::BadCharacter) => {
                self.log(events::BAD_COMMAND, "control character".into());
                self.reply_err(err(None, "Invalid character in command"));
            }
            Ok(line) if in_auth => self.auth_response(&line),
            Ok(line) => self.command(&line),
        }
        true
    }

    fn command(&mut self, line: &[u8]) {
        let cmd = match command::parse(line) {
            Ok(cmd) => cmd,
            Err(ParseError::Unknown) => {
                self.log(events::BAD_COMMAND, "unknown".into());
                // RFC 1939 3: unrecognized commands get -ERR; the session continues.
                return self.reply_err(err(None, "Unknown command"));
            }
            Err(ParseError::Syntax(usage)) => {
                self.log(events::BAD_COMMAND, "syntax".into());
                return self.reply_err(err(None, &format!("Syntax: {usage}")));
            }
        };
        // RFC 2449 5: CAPA is valid in every state.
        if cmd == Command::Capa {
            return self.capa();
        }
        match &mut self.state {
            State::Authorization { user } => {
                // RFC 1939 7: PASS only immediately after a successful USER.
                let user = user.take();
                self.authorization(cmd, user);
            }
            State::Transaction(_) => self.transaction(cmd),
        }
    }

    fn tls_required(&mut self) {
        self.log(events::TLS_REQUIRED, String::new());
        // RFC 2595 2.1 / RFC 8314 3: no plaintext passwords over an unencrypted connection.
        self.reply_err(err(
            None,
            "Authentication requires TLS: use STLS or port 995 first",
        ));
    }

    fn authorization(&mut self, cmd: Command, user: Option<String>) {
        let needs_tls = matches!(
            cmd,
            Command::User(_) | Command::Pass(_) | Command::Auth { .. }
        );
        if needs_tls && !self.tls {
            return self.tls_required();
        }
        match cmd {
            Command::User(name) => {
                self.state = State::Authorization { user: Some(name) };
                self.send(ok("Send PASS"));
            }
            Command::Pass(password) => match user {
                Some(username) => self.authenticate("USER", username, password),
                None => self.reply_err(err(None, "Send USER first")),
            },
            Command::Apop => self.reply_err(err(None, "APOP is not supported")),
            Command::Auth {
                mechanism: None, ..
            } => {
                // The informal mechanism listing (RFC 1734 practice, kept by RFC 5034
                // clients): "+OK" then one mechanism per line.
                let mut out = ok("Methods supported");
                out.extend_from_slice(&response::lines(["PLAIN"]));
                self.send(out);
            }
            Command::Auth {
                mechanism: Some(mechanism),
                initial,
            } => {
                if mechanism != "PLAIN" {
                    // RFC 5034 4: an unsupported mechanism is answered with -ERR.
                    return self.reply_err(err(None, "Unsupported authentication mechanism"));
                }
                match initial {
                    Some(text) => self.plain(text.as_bytes()),
                    None => {
                        // RFC 5034 4: "+ " and an empty challenge.
                        self.mode = Mode::AuthPlain;
                        self.send(b"+ \r\n".to_vec());
                    }
                }
            }
            Command::Stls => self.stls(),
            Command::Quit => {
                // RFC 1939 6: QUIT in AUTHORIZATION ends the session without UPDATE.
                self.close(ok(&format!("{} POP3 server signing off", self.host())));
            }
            Command::Stat
            | Command::List(_)
            | Command::Uidl(_)
            | Command::Retr(_)
            | Command::Top(..)
            | Command::Dele(_)
            | Command::Rset
            | Command::Noop => {
                // RFC 1939 5: these are valid only in the TRANSACTION state.
                self.reply_err(err(None, "Not authenticated"));
            }
            Command::Capa => self.capa(),
        }
    }

    fn transaction(&mut self, cmd: Command) {
        let State::Transaction(drop) = &mut self.state else {
            return;
        };
        match cmd {
            Command::Stat => {
                // RFC 1939 5 STAT: "+OK nn mm".
                let (n, size) = drop.stat();
                self.send(ok(&format!("{n} {size}")));
            }
            Command::List(None) => {
                // RFC 1939 5 LIST: a scan listing of every message not marked deleted.
                let (n, size) = drop.stat();
                let mut out = ok(&format!("{n} messages ({size} octets)"));
                let lines = listing(drop, |i, m| format!("{i} {}", m.size));
                out.extend_from_slice(&response::lines(lines));
                self.send(out);
            }
            Command::List(Some(msg)) => match drop.get(msg) {
                Ok(m) => {
                    let line = ok(&format!("{msg} {}", m.size));
                    self.send(line);
                }
                Err(e) => self.reply_err(e),
            },
            Command::Uidl(None) => {
                // RFC 1939 7 UIDL: a unique-id listing.
                let mut out = ok("Unique-id listing follows");
                let lines = listing(drop, |i, m| format!("{i} {}", m.uid));
                out.extend_from_slice(&response::lines(lines));
                self.send(out);
            }
            Command::Uidl(Some(msg)) => match drop.get(msg) {
                Ok(m) => {
                    let line = ok(&format!("{msg} {}", m.uid));
                    self.send(line);
                }
                Err(e) => self.reply_err(e),
            },
            Command::Retr(msg) => self.retrieve(msg, None),
            Command::Top(msg, lines) => self.retrieve(msg, Some(lines)),
            Command::Dele(msg) => match drop.get(msg) {
                Ok(_) => {
                    // RFC 1939 5 DELE: marked now, removed in the UPDATE state.
                    drop.deleted[msg - 1] = true;
                    self.send(ok(&format!("Message {msg} deleted")));
                }
                Err(e) => self.reply_err(e),
            },
            Command::Rset => {
                // RFC 1939 5 RSET: unmark every message.
                drop.deleted.iter_mut().for_each(|d| *d = false);
                let (n, size) = drop.stat();
                self.send(ok(&format!("Maildrop has {n} messages ({size} octets)")));
            }
            Command::Noop => self.send(ok("")),
            Command::Quit => {
                // RFC 1939 6: QUIT in TRANSACTION enters UPDATE: remove the marked
                // messages, and answer +OK only once that is done (durably).
                let deleted: Vec<usize> = drop
                    .deleted
                    .iter()
                    .enumerate()
                    .filter(|(_, &d)| d)
                    .map(|(i, _)| i + 1)
                    .collect();
                let count = deleted.len();
                self.mode = Mode::Await(Pending::Commit { deleted: count });
                if count == 0 {
                    self.resolve(Answer::Committed(Ok(())));
                } else {
                    self.queue.push_back(Action::Commit { deleted });
                }
            }
            Command::Stls => {
                // RFC 2595 4: STLS only in the AUTHORIZATION state.
                self.reply_err(err(None, "STLS is only valid before authentication"))
            }
            Command::User(_) | Command::Pass(_) | Command::Apop | Command::Auth { .. } => {
                self.reply_err(err(None, "Already authenticated"))
            }
            Command::Capa => self.capa(),
        }
    }

    fn retrieve(&mut self, msg: MsgNum, top: Option<usize>) {
        let State::Transaction(drop) = &self.state else {
            return;
        };
        if let Err(e) = drop.get(msg) {
            return self.reply_err(e);
        }
        self.mode = Mode::Await(Pending::Retrieve { msg, top });
        self.queue.push_back(Action::Retrieve { msg, top });
    }

    /// RFC 2449 5: the capabilities of the current state.
    fn capa(&mut self) {
        let mut caps = vec!["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"];
        if let State::Authorization { .. } = self.state {
            if self.tls {
                // RFC 2595 2.1: USER and SASL only where the password is protected.
                caps.push("USER");
                caps.push("SASL PLAIN");
            } else if self.params.tls_available {
                caps.push("STLS");
            }
        }
        caps.push("IMPLEMENTATION Postern");
        let mut out = ok("Capability list follows");
        out.extend_from_slice(&response::lines(caps));
        self.send(out);
    }

    fn stls(&mut self) {
        if self.tls {
            return self.reply_err(err(None, "TLS already active"));
        }
        if !self.params.tls_available {
            return self.reply_err(err(None, "STLS not available"));
        }
        // RFC 2595 4.
        self.send(ok("Begin TLS negotiation"));
        let pipelined = self.rx.clear();
        if pipelined > 0 {
            // RFC 2595 4 / CVE-2011-0411: input pipelined behind STLS is discarded.
            self.log(events::STLS_INJECTION, format!("{pipelined} bytes"));
        }
        self.mode = Mode::AwaitTls;
        self.queue.push_back(Action::StartTls);
    }

    /// The client's response line after "+ " (RFC 5034 4).
    fn auth_response(&mut self, line: &[u8]) {
        if postern_sasl::is_cancel(line) {
            // RFC 5034 4: the client cancelled the exchange.
            return self.reply_err(err(None, "Authentication cancelled"));
        }
        self.plain(line)
    }

    fn plain(&mut self, response: &[u8]) {
        match postern_sasl::decode_response(response)
            .and_then(|raw| postern_sasl::parse_plain(&raw))
        {
            Ok((username, password)) => self.authenticate("PLAIN", username, password),
            Err(SaslError::Base64) => {
                // RFC 5034 4: a response that is not valid base64 fails the exchange.
                self.reply_err(err(None, "Invalid base64 data"))
            }
            Err(SaslError::Malformed | SaslError::Authorization) => {
                self.log(events::AUTH_FAILED, String::new());
                self.reply_err(err(Some("AUTH"), "Authentication failed"))
            }
        }
    }

    fn authenticate(&mut self, mechanism: &'static str, username: String, password: String) {
        self.mode = Mode::Await(Pending::Auth {
            username: username.clone(),
        });
        self.queue.push_back(Action::Authenticate {
            mechanism,
            username,
            password,
        });
    }
}

fn listing(drop: &Maildrop, line: impl Fn(usize, &MessageInfo) -> String) -> Vec<String> {
    drop.messages
        .iter()
        .zip(&drop.deleted)
        .enumerate()
        .filter(|(_, (_, &d))| !d)
        .map(|(i, (m, _))| line(i + 1, m))
        .collect()
}

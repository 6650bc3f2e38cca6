//! The SMTP server session state machine (RFC 5321 section 4, with RFC 1870 SIZE, RFC 2920
//! PIPELINING, RFC 3030 CHUNKING, RFC 3207 STARTTLS, RFC 4954 AUTH, RFC 6152 8BITMIME,
//! RFC 6531 SMTPUTF8, RFC 2034 ENHANCEDSTATUSCODES).

use std::collections::VecDeque;
use std::time::Duration;

use smtp_proto::{
    Error as ProtoError, MailFrom, RcptTo, Request, AUTH_LOGIN, AUTH_PLAIN, MAIL_BODY_7BIT,
    MAIL_BODY_8BITMIME, MAIL_SMTPUTF8,
};

use postern_sasl::SaslError;

use crate::data::{DataError, DataReader};
use crate::reply::Reply;
use crate::{events, Action, Answer, Envelope, ListenerKind, SessionEvent, SessionParams, Verdict};

/// RFC 4954 4: an AUTH command line or response line may be up to 12288 octets.
const AUTH_LINE_MAX: usize = postern_sasl::MAX_RESPONSE_LINE;
/// Room for one network read on top of the limits when bounding the input buffer.
const INPUT_SLACK: usize = 64 * 1024;

#[derive(Debug)]
enum Pending {
    Auth {
        username: String,
    },
    Sender {
        address: String,
        smtputf8: bool,
        eight_bit: bool,
    },
    Recipient {
        address: String,
    },
    Deliver,
}

#[derive(Debug)]
enum Mode {
    Command,
    /// Dropping the rest of an over-long line up to its LF (RFC 5321 4.5.3.1.4).
    DiscardLine,
    AuthPlain,
    AuthLoginUser,
    AuthLoginPass {
        username: String,
    },
    Data(Box<DataReader>),
    /// Reading a BDAT chunk (RFC 3030 2): exactly `remaining` more octets belong to it,
    /// whether or not the chunk is accepted. `refuse` is the reply if it is not.
    Bdat {
        remaining: usize,
        size: usize,
        last: bool,
        refuse: Option<Reply>,
    },
    Await(Pending),
    AwaitTls,
}

#[derive(Debug)]
struct Transaction {
    mail_from: String,
    rcpt_to: Vec<String>,
    smtputf8: bool,
    eight_bit: bool,
    /// Content received so far with BDAT; Some once the first chunk arrived.
    bdat: Option<Box<DataReader>>,
}

/// One SMTP server session. See the crate documentation for the driving loop.
#[derive(Debug)]
pub struct Session {
    params: SessionParams,
    tls: bool,
    helo: Option<String>,
    esmtp: bool,
    auth: Option<String>,
    txn: Option<Transaction>,
    mode: Mode,
    buf: Vec<u8>,
    pos: usize,
    queue: VecDeque<Action>,
    closed: bool,
    commands: usize,
    errors: usize,
    /// Units of input completed (command lines, message contents, TLS handshakes): the
    /// driver starts a new timeout deadline when this changes ([`Session::progress`]).
    progress: u64,
}

impl Session {
    pub fn new(params: SessionParams) -> Session {
        let tls = params.tls_active;
        Session {
            params,
            tls,
            helo: None,
            esmtp: false,
            auth: None,
            txn: None,
            mode: Mode::Command,
            buf: Vec::new(),
            pos: 0,
            queue: VecDeque::new(),
            closed: false,
            commands: 0,
            errors: 0,
            progress: 0,
        }
    }

    /// The opening 220 reply (RFC 5321 4.2, 3.1).
    pub fn greeting(&mut self) -> Vec<u8> {
        let host: String = self
            .params
            .hostname
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        format!("220 {host} ESMTP Postern\r\n").into_bytes()
    }

    /// Buffers received bytes. Memory stays bounded: at most max_message_size plus a command
    /// line and one read of slack; beyond that the session closes with 421.
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.closed {
            return;
        }
        if matches!(self.mode, Mode::AwaitTls) {
            // RFC 3207 4.2 / CVE-2011-0411: plaintext after STARTTLS is never interpreted.
            return;
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let limits = &self.params.limits;
        let cap = limits
            .max_message_size
            .saturating_add(limits.max_command_line.max(AUTH_LINE_MAX))
            .saturating_add(INPUT_SLACK);
        if self.buf.len().saturating_add(bytes.len()) > cap {
            self.log(
                events::INPUT_OVERFLOW,
                format!("{} bytes buffered", self.buf.len()),
            );
            self.buf = Vec::new();
            self.close(Reply::closing("Too much unprocessed input"));
            return;
        }
        self.buf.extend_from_slice(bytes);
        // Message content is consumed at once so that only the reader's body grows.
        while matches!(self.mode, Mode::Data(_) | Mode::Bdat { .. }) && !self.closed {
            if !self.step() {
                break;
            }
        }
    }

    /// The next thing for the driver to do. Call until NeedInput or Close.
    pub fn next_action(&mut self) -> Action {
        loop {
            // PIPELINING (RFC 2920 3.2): while only replies are pending, keep processing
            // buffered commands so that their replies go out in one Send.
            let only_output = self.queue.iter().all(|a| matches!(a, Action::Send(_)));
            if only_output && !self.closed && self.step() {
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

    /// The answer to the last Authenticate, CheckSender, CheckRecipient or Deliver.
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
                self.auth = Some(username);
                // RFC 4954 6: 235 2.7.0 Authentication Succeeded.
                self.reply(Reply::esc(235, 2, 7, 0, "Authentication successful"));
            }
            (Pending::Auth { username }, Answer::Auth(false)) => {
                self.log(events::AUTH_FAILED, username);
                // RFC 4954 6: 535 5.7.8 Authentication credentials invalid.
                self.reply(Reply::esc(
                    535,
                    5,
                    7,
                    8,
                    "Authentication credentials invalid",
                ));
            }
            (Pending::Auth { .. }, Answer::AuthBlocked) => {
                // RFC 4954 6 has no reply for a refusal that is not about the credentials;
                // RFC 5321 3.8: 421 and close tells the client to come back later, and ends
                // a session that has nothing left to do without authentication.
                self.close(Reply::esc(
                    421,
                    4,
                    7,
                    0,
                    format!("{} Too many failed logins, try again later", self.host()),
                ));
            }
            (
                Pending::Sender {
                    address,
                    smtputf8,
                    eight_bit,
                },
                Answer::Verdict(v),
            ) => match v {
                Verdict::Accept => {
                    self.txn = Some(Transaction {
                        mail_from: address,
                        rcpt_to: Vec::new(),
                        smtputf8,
                        eight_bit,
                        bdat: None,
                    });
                    self.reply(Reply::esc(250, 2, 1, 0, "Ok"));
                }
                Verdict::Reject(r) => {
                    self.log(events::SENDER, format!("<{address}> {}", r.code));
                    self.reply(r);
                }
            },
            (Pending::Recipient { address }, Answer::Verdict(v)) => match v {
                Verdict::Accept => {
                    if let Some(t) = self.txn.as_mut() {
                        t.rcpt_to.push(address);
                    }
                    self.reply(Reply::esc(250, 2, 1, 5, "Ok"));
                }
                Verdict::Reject(r) => {
                    self.log(events::RECIPIENT, format!("<{address}> {}", r.code));
                    self.reply(r);
                }
            },
            (Pending::Deliver, Answer::Delivered(res)) => {
                // RFC 5321 4.1.4: the transaction is over either way (txn was taken).
                match res {
                    Ok(()) => {
                        self.log(events::DELIVERED, String::new());
                        self.reply(Reply::stored());
                    }
                    Err(r) => {
                        self.log(events::DELIVERY_REFUSED, r.code.to_string());
                        self.reply(r);
                    }
                }
            }
            (_, _) => {
                // Answer of the wrong kind: a driver bug. Fail safe with a temporary error.
                self.reply(Reply::temp_failure());
            }
        }
    }

    /// After the STARTTLS handshake: RFC 3207 4.2, the server MUST discard any knowledge
    /// obtained from the client before TLS; the client must send EHLO again.
    pub fn tls_started(&mut self) {
        if self.closed {
            return;
        }
        self.tls = true;
        self.helo = None;
        self.esmtp = false;
        self.auth = None;
        self.txn = None;
        self.buf.clear();
        self.pos = 0;
        self.mode = Mode::Command;
        self.progress += 1;
        self.log(events::STARTTLS, String::new());
    }

    /// Counts the units of input completed so far: each command line (or AUTH response
    /// line), each DATA content or BDAT chunk, each TLS handshake. A timeout is a deadline
    /// for one whole unit, not an idle timer that every byte restarts (DESIGN.md 6): the
    /// driver starts a deadline of [`Session::current_timeout`] when it waits for input and
    /// this value changed since its last wait, and keeps it otherwise, so a client that
    /// trickles one byte at a time is closed when its command or data block is overdue.
    pub fn progress(&self) -> u64 {
        self.progress
    }

    /// RFC 5321 4.5.3.2: the data block timeout while content is being received, else the
    /// command timeout.
    pub fn current_timeout(&self) -> Duration {
        match self.mode {
            Mode::Data(_) | Mode::Bdat { .. } => self.params.limits.timeout_data,
            _ => self.params.limits.timeout_command,
        }
    }

    /// The peer was silent too long: 421 4.4.2 (RFC 5321 4.5.3.2, RFC 3463 X.4.2), closed.
    pub fn on_timeout(&mut self) -> Vec<u8> {
        self.closed = true;
        self.queue.clear();
        self.queue.push_back(Action::Log(SessionEvent {
            name: events::TIMEOUT,
            detail: String::new(),
        }));
        self.queue.push_back(Action::Close);
        Reply::esc(421, 4, 4, 2, format!("{} Timeout, closing", self.host())).to_bytes()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Unprocessed input octets held (for memory accounting and tests). After next_action
    /// returned NeedInput this is at most one incomplete command line.
    pub fn buffered_input(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Message content octets held for the current transaction (never above
    /// max_message_size).
    pub fn buffered_body(&self) -> usize {
        let data = match &self.mode {
            Mode::Data(r) => r.stored_len(),
            _ => 0,
        };
        let bdat = self
            .txn
            .as_ref()
            .and_then(|t| t.bdat.as_ref())
            .map_or(0, |r| r.stored_len());
        data + bdat
    }

    /// True while TLS is active (implicit, or after STARTTLS).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The authenticated identity, if any.
    pub fn authenticated_as(&self) -> Option<&str> {
        self.auth.as_deref()
    }

    /// The EHLO/HELO argument, once given (RFC 7208 2.3: the HELO identity).
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    // ---------------------------------------------------------------- internals

    fn host(&self) -> String {
        self.params
            .hostname
            .chars()
            .filter(|c| !c.is_control())
            .collect()
    }

    fn send(&mut self, bytes: Vec<u8>) {
        // PIPELINING (RFC 2920 3.2): replies are grouped into one Send.
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

    fn close(&mut self, reply: Reply) {
        self.send(reply.to_bytes());
        self.queue.push_back(Action::Close);
        self.closed = true;
    }

    fn reply(&mut self, reply: Reply) {
        let is_error = reply.is_error();
        self.send(reply.to_bytes());
        if is_error {
            self.errors += 1;
            if self.errors > self.params.limits.max_errors {
                self.log(events::TOO_MANY_ERRORS, self.errors.to_string());
                self.close(Reply::closing("Too many errors, closing"));
            }
        }
    }

    fn bad_sequence(&mut self, text: &str) {
        // RFC 5321 4.2.4 / 3463: 503 5.5.1 bad sequence of commands.
        self.reply(Reply::esc(503, 5, 5, 1, text));
    }

    fn protocol(&self) -> &'static str {
        // RFC 3848 section 2.
        match (self.esmtp, self.tls, self.auth.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        }
    }

    fn line_limit(&self) -> usize {
        match self.mode {
            Mode::AuthPlain | Mode::AuthLoginUser | Mode::AuthLoginPass { .. } => {
                AUTH_LINE_MAX.max(self.params.limits.max_command_line)
            }
            _ => self.params.limits.max_command_line,
        }
    }

    /// Makes one unit of progress on buffered input. False when more input (or an answer)
    /// is needed.
    fn step(&mut self) -> bool {
        match &mut self.mode {
            Mode::Await(_) | Mode::AwaitTls => false,
            Mode::Data(reader) => {
                if self.pos >= self.buf.len() {
                    return false;
                }
                let n = reader.feed(&self.buf[self.pos..]);
                self.pos += n;
                if reader.is_too_big() {
                    // RFC 1870 6.1 / RFC 5321 4.5.3.1.7: the message passed the size limit.
                    // Answer now instead of reading the rest of it (a client may send without
                    // end): the end of the data cannot be found without reading it all, so the
                    // session cannot resynchronise and closes after the 552.
                    let size = reader.size();
                    self.log(events::SIZE, format!("over {size} octets, closing"));
                    self.buf = Vec::new();
                    self.pos = 0;
                    self.close(too_big());
                    return true;
                }
                if reader.is_done() {
                    self.progress += 1;
                    self.finish_data();
                    true
                } else {
                    false
                }
            }
            Mode::Bdat {
                remaining, refuse, ..
            } => {
                let take = (*remaining).min(self.buf.len() - self.pos);
                if refuse.is_none() {
                    if let Some(reader) = self.txn.as_mut().and_then(|t| t.bdat.as_mut()) {
                        reader.feed(&self.buf[self.pos..self.pos + take]);
                    }
                }
                self.pos += take;
                *remaining -= take;
                if *remaining == 0 {
                    self.progress += 1;
                    self.finish_bdat_chunk();
                    true
                } else {
                    false
                }
            }
            Mode::DiscardLine => {
                let avail = &self.buf[self.pos..];
                match memchr::memchr(b'\n', avail) {
                    Some(i) => {
                        self.pos += i + 1;
                        self.mode = Mode::Command;
                        self.progress += 1;
                        self.line_too_long();
                        true
                    }
                    None => {
                        self.pos = self.buf.len();
                        false
                    }
                }
            }
            Mode::Command | Mode::AuthPlain | Mode::AuthLoginUser | Mode::AuthLoginPass { .. } => {
                let limit = self.line_limit();
                let avail = &self.buf[self.pos..];
                let Some(i) = memchr::memchr(b'\n', avail) else {
                    if avail.len() > limit {
                        // RFC 5321 4.5.3.1.4: drop it as it comes instead of buffering it.
                        self.pos = self.buf.len();
                        self.mode = Mode::DiscardLine;
                        return true;
                    }
                    return false;
                };
                let line = avail[..=i].to_vec();
                self.pos += i + 1;
                self.progress += 1;
                if line.len() > limit {
                    self.mode = Mode::Command;
                    self.line_too_long();
                    return true;
                }
                // RFC 5321 2.3.8: a line ends with CRLF and contains no other CR or LF.
                let body = &line[..line.len() - 1];
                let bare = if body.last() != Some(&b'\r') {
                    Some((events::BARE_LF, "Bare LF received, lines must end in CRLF"))
                } else if body[..body.len() - 1].contains(&b'\r') {
                    Some((events::BARE_CR, "Bare CR received, lines must end in CRLF"))
                } else {
                    None
                };
                let in_command = matches!(self.mode, Mode::Command);
                if in_command {
                    self.commands += 1;
                    if self.commands > self.params.limits.max_commands {
                        self.log(events::TOO_MANY_COMMANDS, self.commands.to_string());
                        self.close(Reply::closing("Too many commands, closing"));
                        return true;
                    }
                }
                if let Some((event, text)) = bare {
                    // A peer that ends lines with a bare CR or LF is broken or probing for
                    // SMTP smuggling; whatever follows cannot be framed safely, so the
                    // session ends here (as Postfix's smtpd_forbid_bare_newline does).
                    self.log(event, String::new());
                    self.close(Reply::esc(521, 5, 5, 2, text));
                    return true;
                }
                let text = &line[..line.len() - 2];
                if in_command {
                    self.command(&line);
                } else {
                    self.auth_line(text);
                }
                true
            }
        }
    }

    fn line_too_long(&mut self) {
        self.log(events::LINE_TOO_LONG, String::new());
        // RFC 5321 4.5.3.1.4 and 4.2.2: 500 Line too long.
        self.reply(Reply::esc(500, 5, 5, 2, "Line too long"));
    }

    // ------------------------------------------------------------ commands

    fn command(&mut self, line: &[u8]) {
        if is_bare_postmaster(line) {
            // RFC 5321 4.1.1.3: "RCPT TO:<Postmaster>" without a domain (any case) must be
            // accepted; smtp-proto requires a domain. The driver decides the domain.
            return self.rcpt(RcptTo {
                address: "postmaster".to_string(),
                orcpt: None,
                rrvs: 0,
                flags: 0,
            });
        }
        // smtp-proto expects a line ending in LF; ours ends in CRLF, which it accepts.
        let parsed = Request::parse(&mut line.iter());
        match parsed {
            Ok(req) => self.request(req.into_owned()),
            Err(e) => self.parse_error(e, line),
        }
    }

    fn parse_error(&mut self, err: ProtoError, line: &[u8]) {
        let verb: Vec<u8> = line
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .map(|b| b.to_ascii_uppercase())
            .collect();
        let reply = match err {
            // RFC 5321 4.2.4: 500 command unrecognized.
            ProtoError::UnknownCommand => Reply::esc(500, 5, 5, 1, "Command unrecognized"),
            // RFC 3463 X.1.7 / X.1.3: bad sender / destination mailbox address syntax.
            ProtoError::InvalidSenderAddress => {
                Reply::esc(501, 5, 1, 7, "Bad sender address syntax")
            }
            ProtoError::InvalidRecipientAddress => {
                Reply::esc(501, 5, 1, 3, "Bad recipient address syntax")
            }
            // RFC 5321 4.1.1.11 / 4.2.2: 555 MAIL FROM/RCPT TO parameters not recognized.
            ProtoError::UnsupportedParameter { param } => {
                let param: String = param.chars().filter(|c| c.is_ascii_graphic()).collect();
                Reply::esc(555, 5, 5, 4, format!("Unsupported parameter {param}"))
            }
            ProtoError::InvalidParameter { param } => {
                Reply::esc(501, 5, 5, 4, format!("Invalid {param} parameter"))
            }
            ProtoError::SyntaxError { syntax } if verb == b"AUTH" => {
                if let Some(r) = self.auth_precheck() {
                    r
                } else if line.len() > 6 {
                    // RFC 4954 4: 504 5.5.4 unrecognized authentication mechanism.
                    Reply::esc(504, 5, 5, 4, "Unrecognized authentication type")
                } else {
                    Reply::esc(501, 5, 5, 4, format!("Syntax: {syntax}"))
                }
            }
            ProtoError::SyntaxError { syntax } => {
                Reply::esc(501, 5, 5, 4, format!("Syntax: {syntax}"))
            }
            _ => Reply::esc(501, 5, 5, 4, "Syntax error"),
        };
        self.reply(reply);
    }

    fn request(&mut self, req: Request<String>) {
        match req {
            Request::Ehlo { host } => self.ehlo(host, true),
            Request::Helo { host } => self.ehlo(host, false),
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to),
            Request::Data => self.data(),
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response),
            Request::StartTls => self.starttls(),
            Request::Rset => {
                // RFC 5321 4.1.1.5.
                self.txn = None;
                self.reply(Reply::ok());
            }
            Request::Noop { .. } => self.reply(Reply::ok()), // RFC 5321 4.1.1.9
            Request::Quit => {
                // RFC 5321 4.1.1.10.
                self.close(Reply::esc(221, 2, 0, 0, "Bye"));
            }
            // RFC 5321 3.5.3: 252 when the server will not verify but will accept mail.
            Request::Vrfy { .. } => self.reply(Reply::esc(
                252,
                2,
                5,
                0,
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            // RFC 5321 3.5.2 / 7.3: EXPN may be disabled; 502 command not implemented.
            Request::Expn { .. } => self.reply(Reply::esc(502, 5, 5, 1, "EXPN not available")),
            // RFC 5321 4.1.1.8.
            Request::Help { .. } => self.reply(Reply::esc(
                214,
                2,
                0,
                0,
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
            )),
            // LHLO is LMTP (RFC 2033), not SMTP.
            Request::Lhlo { .. } => self.reply(Reply::esc(500, 5, 5, 1, "Command unrecognized")),
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.reply(Reply::esc(502, 5, 5, 1, "Command not implemented"))
            }
        }
    }

    fn ehlo(&mut self, host: String, esmtp: bool) {
        // RFC 5321 4.1.4: EHLO/HELO resets the transaction state.
        self.txn = None;
        self.helo = Some(host);
        self.esmtp = esmtp;
        let me = self.host();
        if !esmtp {
            self.reply(Reply::new(250, None, me));
            return;
        }
        let limits = &self.params.limits;
        let mut lines = vec![
            me,
            "PIPELINING".to_string(),                    // RFC 2920
            format!("SIZE {}", limits.max_message_size), // RFC 1870
            "8BITMIME".to_string(),                      // RFC 6152
            "SMTPUTF8".to_string(),                      // RFC 6531
            "ENHANCEDSTATUSCODES".to_string(),           // RFC 2034
            "CHUNKING".to_string(),                      // RFC 3030
        ];
        if self.params.tls_available && !self.tls {
            lines.push("STARTTLS".to_string()); // RFC 3207
        }
        if self.params.kind.is_submission() && self.tls {
            // RFC 4954 4 and DESIGN.md 2: AUTH only on submission, only under TLS.
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        // RFC 5321 4.1.1.1: the EHLO reply lines carry no enhanced codes.
        self.reply(Reply::new(250, None, lines.join("\n")));
    }

    /// Submission policy before MAIL (RFC 6409 4.3, RFC 3207 4, DESIGN.md 2).
    fn submission_gate(&mut self) -> bool {
        match self.params.kind {
            ListenerKind::Mx => true,
            ListenerKind::Submission | ListenerKind::Submissions => {
                if !self.tls {
                    self.log(events::TLS_REQUIRED, "MAIL".into());
                    self.reply(Reply::esc(
                        530,
                        5,
                        7,
                        0,
                        "Must issue a STARTTLS command first",
                    ));
                    false
                } else if self.auth.is_none() {
                    self.log(events::AUTH_REQUIRED, String::new());
                    // RFC 4954 6: 530 5.7.0 Authentication required.
                    self.reply(Reply::esc(530, 5, 7, 0, "Authentication required"));
                    false
                } else {
                    true
                }
            }
        }
    }

    fn mail(&mut self, from: MailFrom<String>) {
        if self.helo.is_none() {
            return self.bad_sequence("Send EHLO/HELO first");
        }
        if !self.submission_gate() {
            return;
        }
        if self.txn.is_some() {
            // RFC 5321 4.1.1.2 / 3.3: MAIL inside a transaction is out of sequence.
            return self.bad_sequence("Nested MAIL command");
        }
        let known = MAIL_BODY_7BIT | MAIL_BODY_8BITMIME | MAIL_SMTPUTF8;
        let other = from.flags & !known != 0
            || from.trans_id.is_some()
            || from.by != 0
            || from.env_id.is_some()
            || from.solicit.is_some()
            || from.mtrk.is_some()
            || from.auth.is_some()
            || from.hold_for != 0
            || from.hold_until != 0
            || from.mt_priority != 0;
        let any_param = from.flags != 0 || from.size != 0 || other;
        if other || (!self.esmtp && any_param) {
            // RFC 5321 4.1.1.11: parameters not advertised by EHLO -> 555.
            return self.reply(Reply::esc(555, 5, 5, 4, "Unsupported MAIL FROM parameter"));
        }
        if from.size > self.params.limits.max_message_size {
            // RFC 1870 6.1: declared size over the fixed limit -> 552 5.3.4.
            self.log(events::SIZE, format!("declared {}", from.size));
            return self.reply(Reply::esc(
                552,
                5,
                3,
                4,
                "Message size exceeds fixed maximum message size",
            ));
        }
        let address = from.address;
        if !address.is_ascii() && from.flags & MAIL_SMTPUTF8 == 0 {
            // RFC 6531 3.5 / 3.7.4: a non-ASCII address needs the SMTPUTF8 parameter.
            return self.reply(Reply::esc(
                553,
                5,
                6,
                7,
                "SMTPUTF8 required for this address",
            ));
        }
        if address.len() > 256 {
            // RFC 5321 4.5.3.1.3: path length.
            return self.reply(Reply::esc(501, 5, 1, 7, "Sender address too long"));
        }
        self.mode = Mode::Await(Pending::Sender {
            address: address.clone(),
            smtputf8: from.flags & MAIL_SMTPUTF8 != 0,
            eight_bit: from.flags & MAIL_BODY_8BITMIME != 0,
        });
        self.queue.push_back(Action::CheckSender {
            address,
            authenticated_as: self.auth.clone(),
        });
    }

    fn rcpt(&mut self, to: RcptTo<String>) {
        let Some(txn) = self.txn.as_ref() else {
            return self.bad_sequence("Need MAIL command");
        };
        if txn.bdat.is_some() {
            // RFC 3030 2: RCPT after BDAT started is out of sequence.
            return self.bad_sequence("RCPT after BDAT");
        }
        if txn.rcpt_to.len() >= self.params.limits.max_recipients {
            // RFC 5321 4.5.3.1.10: 452 too many recipients (RFC 3463 X.5.3).
            self.log(events::TOO_MANY_RECIPIENTS, txn.rcpt_to.len().to_string());
            return self.reply(Reply::esc(452, 4, 5, 3, "Too many recipients"));
        }
        if to.flags != 0 || to.orcpt.is_some() || to.rrvs != 0 {
            // DSN/RRVS are not advertised: RFC 5321 4.1.1.11 -> 555.
            return self.reply(Reply::esc(555, 5, 5, 4, "Unsupported RCPT TO parameter"));
        }
        if !to.address.is_ascii() && !txn.smtputf8 {
            // RFC 6531 3.5 / 3.7.4: non-ASCII recipient without SMTPUTF8 on MAIL.
            return self.reply(Reply::esc(
                553,
                5,
                6,
                7,
                "SMTPUTF8 required for this address",
            ));
        }
        if to.address.is_empty() || to.address.len() > 256 {
            // RFC 5321 4.1.1.3: a forward-path is required; 4.5.3.1.3 limits its length.
            return self.reply(Reply::esc(501, 5, 1, 3, "Bad recipient address syntax"));
        }
        self.mode = Mode::Await(Pending::Recipient {
            address: to.address.clone(),
        });
        self.queue.push_back(Action::CheckRecipient {
            address: to.address,
            authenticated_as: self.auth.clone(),
        });
    }

    fn data(&mut self) {
        let Some(txn) = self.txn.as_ref() else {
            return self.bad_sequence("Need MAIL command");
        };
        if txn.bdat.is_some() {
            // RFC 3030 2: DATA and BDAT cannot be mixed in one transaction.
            return self.bad_sequence("DATA after BDAT");
        }
        if txn.rcpt_to.is_empty() {
            // RFC 5321 3.3: 554 no valid recipients (or 503).
            return self.reply(Reply::esc(554, 5, 5, 1, "No valid recipients"));
        }
        let limits = &self.params.limits;
        self.mode = Mode::Data(Box::new(DataReader::new_data(
            limits.max_message_size,
            limits.max_data_line,
        )));
        // RFC 5321 4.1.1.4; RFC 2034: no enhanced code on 3xx.
        self.reply(Reply::new(354, None, "End data with <CR><LF>.<CR><LF>"));
    }

    fn bdat(&mut self, size: usize, last: bool) {
        let so_far = self
            .txn
            .as_ref()
            .and_then(|t| t.bdat.as_ref())
            .map_or(0, |r| r.size());
        if so_far.saturating_add(size) > self.params.limits.max_message_size {
            // RFC 3030 2 / RFC 1870 6.1: a declared chunk that would take the message past
            // the size limit is refused with 552 before any of it is read. Its octets would
            // have to be read and dropped to stay in sync (the chunk may be 100 GB), so the
            // session closes after the reply instead.
            self.log(
                events::SIZE,
                format!("BDAT chunk of {size} octets, closing"),
            );
            self.txn = None;
            self.buf = Vec::new();
            self.pos = 0;
            return self.close(too_big());
        }
        // RFC 3030 2: the chunk is always consumed, even when refused, so that its content
        // is never taken for commands.
        let refuse = match self.txn.as_mut() {
            None => Some(Reply::esc(503, 5, 5, 1, "Need MAIL command")),
            Some(t) if t.rcpt_to.is_empty() => {
                Some(Reply::esc(554, 5, 5, 1, "No valid recipients"))
            }
            Some(t) => {
                if t.bdat.is_none() {
                    let limits = &self.params.limits;
                    t.bdat = Some(Box::new(DataReader::new_bdat(
                        limits.max_message_size,
                        limits.max_data_line,
                    )));
                }
                None
            }
        };
        self.mode = Mode::Bdat {
            remaining: size,
            size,
            last,
            refuse,
        };
    }

    fn finish_bdat_chunk(&mut self) {
        let Mode::Bdat {
            size, last, refuse, ..
        } = std::mem::replace(&mut self.mode, Mode::Command)
        else {
            return;
        };
        if let Some(r) = refuse {
            return self.reply(r);
        }
        let Some(mut txn) = self.txn.take() else {
            return self.reply(Reply::esc(503, 5, 5, 1, "Need MAIL command"));
        };
        let Some(mut reader) = txn.bdat.take() else {
            return self.reply(Reply::esc(503, 5, 5, 1, "Need MAIL command"));
        };
        if reader.size() > self.params.limits.max_message_size {
            // RFC 1870 6.1 / RFC 3030 2: refuse now; the transaction is reset.
            self.log(events::SIZE, format!("{} octets", reader.size()));
            return self.reply(too_big());
        }
        if !last {
            txn.bdat = Some(reader);
            self.txn = Some(txn);
            return self.reply(Reply::esc(250, 2, 0, 0, format!("{size} octets received")));
        }
        reader.finish();
        self.content_done(txn, reader.into_result());
    }

    fn finish_data(&mut self) {
        let Mode::Data(reader) = std::mem::replace(&mut self.mode, Mode::Command) else {
            return;
        };
        let Some(txn) = self.txn.take() else {
            return self.bad_sequence("Need MAIL command");
        };
        self.content_done(txn, reader.into_result());
    }

    fn content_done(&mut self, txn: Transaction, result: Result<Vec<u8>, DataError>) {
        match result {
            Ok(body) => {
                let envelope = Envelope {
                    helo: self.helo.clone().unwrap_or_default(),
                    mail_from: txn.mail_from,
                    rcpt_to: txn.rcpt_to,
                    body,
                    authenticated_as: self.auth.clone(),
                    tls: self.tls,
                    smtputf8: txn.smtputf8,
                    eight_bit: txn.eight_bit,
                    protocol: self.protocol(),
                };
                self.mode = Mode::Await(Pending::Deliver);
                self.queue.push_back(Action::Deliver(envelope));
            }
            Err(DataError::BareLineEnding) => {
                // RFC 5321 2.3.8 / 4.1.1.4: SMTP smuggling protection.
                self.log(events::SMUGGLING, String::new());
                self.reply(Reply::esc(
                    550,
                    5,
                    6,
                    0,
                    "Message refused: bare CR or LF in message content",
                ));
            }
            Err(DataError::LineTooLong) => {
                // RFC 5321 4.5.3.1.6 text line limit; RFC 3463 3.7 X.6.0 (media error).
                self.log(events::DATA_LINE_TOO_LONG, String::new());
                self.reply(Reply::esc(554, 5, 6, 0, "Message refused: line too long"));
            }
            Err(DataError::TooBig) => {
                self.log(events::SIZE, String::new());
                self.reply(too_big());
            }
            Err(DataError::Nul) => {
                // RFC 5322 2.3 / 3.5: no NUL anywhere in a message; RFC 3463 3.7 X.6.0.
                self.log(events::NUL, String::new());
                self.reply(Reply::esc(
                    554,
                    5,
                    6,
                    0,
                    "Message refused: NUL character in message content",
                ));
            }
        }
    }

    // ------------------------------------------------------------ STARTTLS

    fn starttls(&mut self) {
        if self.tls {
            return self.bad_sequence("TLS already active");
        }
        if !self.params.tls_available {
            return self.reply(Reply::esc(502, 5, 5, 1, "STARTTLS not available"));
        }
        // RFC 3207 4.
        self.send(Reply::esc(220, 2, 0, 0, "Ready to start TLS").to_bytes());
        let pipelined = self.buf.len() - self.pos;
        if pipelined > 0 {
            // RFC 3207 4.2 / CVE-2011-0411: input pipelined behind STARTTLS is discarded.
            self.log(events::STARTTLS_INJECTION, format!("{pipelined} bytes"));
        }
        self.buf.clear();
        self.pos = 0;
        self.mode = Mode::AwaitTls;
        self.queue.push_back(Action::StartTls);
    }

    // ------------------------------------------------------------ AUTH (RFC 4954)

    fn auth_precheck(&mut self) -> Option<Reply> {
        if !self.params.kind.is_submission() {
            // DESIGN.md 2: MX never offers AUTH.
            return Some(Reply::esc(502, 5, 5, 1, "AUTH not available"));
        }
        if !self.tls {
            self.log(events::TLS_REQUIRED, "AUTH".into());
            return Some(Reply::esc(
                530,
                5,
                7,
                0,
                "Must issue a STARTTLS command first",
            ));
        }
        if !self.esmtp {
            return Some(Reply::esc(503, 5, 5, 1, "Send EHLO first"));
        }
        if self.auth.is_some() {
            // RFC 4954 4: no AUTH once authenticated.
            return Some(Reply::esc(503, 5, 5, 1, "Already authenticated"));
        }
        if self.txn.is_some() {
            // RFC 4954 4: not permitted during a mail transaction.
            return Some(Reply::esc(
                503,
                5,
                5,
                1,
                "AUTH not allowed during a transaction",
            ));
        }
        None
    }

    fn auth(&mut self, mechanism: u64, initial: String) {
        if let Some(r) = self.auth_precheck() {
            return self.reply(r);
        }
        if mechanism == AUTH_PLAIN {
            if initial.is_empty() {
                self.mode = Mode::AuthPlain;
                // RFC 4954 4: empty challenge.
                self.send(b"334 \r\n".to_vec());
            } else {
                self.auth_line(initial.as_bytes());
            }
        } else if mechanism == AUTH_LOGIN {
            if initial.is_empty() {
                self.mode = Mode::AuthLoginUser;
                self.send(format!("334 {}\r\n", postern_sasl::encode(b"Username:")).into_bytes());
            } else {
                self.mode = Mode::AuthLoginUser;
                self.auth_line(initial.as_bytes());
            }
        } else {
            self.reply(Reply::esc(504, 5, 5, 4, "Unrecognized authentication type"));
        }
    }

    /// One client response line during AUTH (without CRLF). For PLAIN with an initial
    /// response this is called with mode Command.
    fn auth_line(&mut self, text: &[u8]) {
        let mode = std::mem::replace(&mut self.mode, Mode::Command);
        if postern_sasl::is_cancel(text) {
            // RFC 4954 4: the client cancelled the exchange.
            return self.reply(Reply::esc(501, 5, 0, 0, "Authentication cancelled"));
        }
        // Spaces around the base64 text are tolerated (some clients pad the line).
        let start = text.iter().position(|&b| b != b' ').unwrap_or(text.len());
        let end = text
            .iter()
            .rposition(|&b| b != b' ')
            .map_or(start, |e| e + 1);
        let text = &text[start..end];
        match mode {
            Mode::AuthLoginUser => match postern_sasl::decode_text(text) {
                Ok(username) => {
                    self.mode = Mode::AuthLoginPass { username };
                    self.send(
                        format!("334 {}\r\n", postern_sasl::encode(b"Password:")).into_bytes(),
                    );
                }
                Err(e) => self.sasl_error(e, String::new()),
            },
            Mode::AuthLoginPass { username } => match postern_sasl::decode_text(text) {
                Ok(password) => self.authenticate("LOGIN", username, password),
                Err(e) => self.sasl_error(e, username),
            },
            // AuthPlain, or Command for PLAIN with an initial response.
            _ => match postern_sasl::decode_response(text)
                .and_then(|raw| postern_sasl::parse_plain(&raw))
            {
                Ok((username, password)) => self.authenticate("PLAIN", username, password),
                Err(e) => self.sasl_error(e, String::new()),
            },
        }
    }

    fn sasl_error(&mut self, err: SaslError, username: String) {
        match err {
            // RFC 4954 4: undecodable base64 -> 501 5.5.2.
            SaslError::Base64 => self.reply(Reply::esc(501, 5, 5, 2, "Invalid base64 data")),
            SaslError::Malformed | SaslError::Authorization => {
                self.log(events::AUTH_FAILED, username);
                self.reply(Reply::esc(
                    535,
                    5,
                    7,
                    8,
                    "Authentication credentials invalid",
                ));
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

/// "RCPT TO:<Postmaster>" (RFC 5321 4.1.1.3), case-insensitive, without parameters.
fn is_bare_postmaster(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let end = line.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    let line = &line[..end];
    let Some(prefix) = line.get(..8) else {
        return false;
    };
    if !prefix.eq_ignore_ascii_case(b"RCPT TO:") {
        return false;
    }
    let path = &line[8..];
    let path = path.strip_prefix(b" ").unwrap_or(path);
    path.eq_ignore_ascii_case(b"<postmaster>")
}

fn too_big() -> Reply {
    // RFC 1870 6.1: 552 5.3.4 (RFC 3463 X.3.4 message too big for system).
    Reply::esc(
        552,
        5,
        3,
        4,
        "Message size exceeds fixed maximum message size",
    )
}

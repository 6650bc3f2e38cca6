//! One IMAP session's state and its commands (RFC 9051, RFC 3501 and the extensions in the
//! CAPABILITY list). The driver in `mod.rs` owns the socket; commands that need it
//! (STARTTLS, AUTHENTICATE continuations, IDLE, COMPRESS) return a [`Next`] step.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use postern_imap::command::{Command, CommandBody, Flag, ListReturn, ListSelect, StatusItem};
use postern_imap::mutf7::Mailbox;
use postern_imap::sequence::SequenceSet;
use postern_sasl::SaslError;
use postern_store::{AppendRequest, AppendTarget, MailboxId, MailboxInfo, StoreError};

use super::encode;
use super::view::{Reporting, View};
use crate::login::{self, Attempt, Service};
use crate::server::Shared;

/// Failed logins per connection before BYE.
pub const MAX_AUTH_FAILURES: u32 = 3;
/// Hierarchy delimiter: store mailbox names use "/" (docs/INTERNALS.md).
const DELIM: char = '/';

/// What the driver must do after a command.
pub enum Next {
    Continue,
    /// Send the tagged OK (already in the output), then the TLS handshake.
    StartTls,
    /// Send the output, then compress everything after it.
    Compress,
    /// `+ ` sent: read one line, then call [`Session::authenticate_line`].
    AuthContinue {
        tag: String,
    },
    /// `+ idling` sent: wait for DONE and report changes meanwhile.
    Idle {
        tag: String,
    },
    /// BYE and tagged OK sent: close.
    Logout,
    /// BYE sent (too many failures): close.
    Close,
    /// FETCH with message bodies: send the output, then the chunks the reader produces
    /// as they come, then call [`Session::finish_fetch`] for the tagged reply.
    Stream(Box<super::fetch::FetchStream>),
}

#[derive(Default, Clone, Copy)]
pub struct Enabled {
    pub condstore: bool,
    pub qresync: bool,
    pub utf8: bool,
    pub rev2: bool,
}

pub struct Session {
    pub shared: Arc<Shared>,
    pub shard: usize,
    pub peer: std::net::SocketAddr,
    pub tls: bool,
    pub compressed: bool,
    pub user: Option<String>,
    pub enabled: Enabled,
    pub selected: Option<View>,
    /// SEARCHRES result (RFC 5182), as UIDs.
    pub saved: Vec<u32>,
    pub auth_failures: u32,
    pub out: Vec<u8>,
    /// The tagged reply of the command in progress.
    pub done: Option<String>,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Tagged status reply builder.
fn tagged(out: &mut Vec<u8>, tag: &str, status: &str, text: &str) {
    out.extend_from_slice(format!("{tag} {status} {text}\r\n").as_bytes());
}

/// Glob match of an IMAP LIST pattern (RFC 9051 6.3.9: "*" matches anything, "%" anything
/// but the hierarchy delimiter). Dynamic programming over (pattern, name) positions, so a
/// hostile pattern ("*a*a*a*...") costs O(pattern x name), never exponential time.
pub fn pattern_matches(pattern: &[char], name: &[char]) -> bool {
    let (p, n) = (pattern.len(), name.len());
    // row[j]: pattern[i..] matches name[j..], computed from the last pattern position up.
    let mut next = vec![false; n + 1];
    next[n] = true;
    for i in (0..p).rev() {
        let mut row = vec![false; n + 1];
        for j in (0..=n).rev() {
            row[j] = match pattern[i] {
                '*' => next[j] || (j < n && row[j + 1]),
                '%' => next[j] || (j < n && name[j] != DELIM && row[j + 1]),
                c => j < n && name[j] == c && next[j + 1],
            };
        }
        next = row;
    }
    next[0]
}

/// Whether `x` lies in sorted, merged, inclusive ranges (binary search: a set with many
/// ranges over a large mailbox stays cheap).
/// The (sequence number, UID) pairs of `uids` (the sequence map, UIDs ascending) that the
/// sorted, merged `ranges` name, by UID or by sequence number. Each range is one slice of
/// the map, found by binary search, not a walk over a large mailbox.
fn select_ranges(uids: &[u32], ranges: &[(u32, u32)], by_uid: bool) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for &(lo, hi) in ranges {
        let (start, end) = if by_uid {
            (
                uids.partition_point(|&u| u < lo),
                uids.partition_point(|&u| u <= hi),
            )
        } else {
            let n = uids.len();
            ((lo.max(1) as usize - 1).min(n), (hi as usize).min(n))
        };
        out.extend((start..end).map(|i| (i as u32 + 1, uids[i])));
    }
    out
}

fn status_of_store(e: &StoreError) -> &'static str {
    match e {
        StoreError::UnknownMailbox(_) => "[NONEXISTENT] No such mailbox",
        StoreError::NameTaken(_) => "[ALREADYEXISTS] Mailbox already exists",
        StoreError::InvalidRequest(_) => "[CANNOT] Request refused by the store",
        _ => "[SERVERBUG] Storage error, try again later",
    }
}

impl Session {
    pub fn new(
        shared: Arc<Shared>,
        shard: usize,
        peer: std::net::SocketAddr,
        tls: bool,
    ) -> Session {
        Session {
            shared,
            shard,
            peer,
            tls,
            compressed: false,
            user: None,
            enabled: Enabled::default(),
            selected: None,
            saved: Vec::new(),
            auth_failures: 0,
            out: Vec::new(),
            done: None,
        }
    }

    pub fn utf8(&self) -> bool {
        self.enabled.utf8 || self.enabled.rev2
    }

    fn reporting(&self, allow_expunge: bool) -> Reporting {
        Reporting {
            allow_expunge,
            qresync: self.enabled.qresync,
            rev1: !self.enabled.rev2,
        }
    }

    /// RFC 9051 7.2.2.
    pub fn capabilities(&self) -> String {
        let mut caps = vec!["IMAP4rev2", "IMAP4rev1"];
        if self.user.is_none() {
            if self.tls {
                caps.extend(["AUTH=PLAIN", "SASL-IR"]);
            } else {
                // RFC 9051 6.2.3: no plaintext passwords before TLS.
                caps.extend(["STARTTLS", "LOGINDISABLED"]);
            }
        }
        caps.extend([
            "ENABLE",
            "IDLE",
            "UIDPLUS",
            "MOVE",
            "CONDSTORE",
            "QRESYNC",
            "SPECIAL-USE",
            "CREATE-SPECIAL-USE",
            "LITERAL+",
            "NAMESPACE",
            "ID",
            "UNSELECT",
            "QUOTA",
            "QUOTA=RES-STORAGE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "ESEARCH",
            "SEARCHRES",
            "SORT",
            "UTF8=ACCEPT",
            "MULTIAPPEND",
        ]);
        let mut s = caps.join(" ");
        // RFC 4978 3: COMPRESS is a command of the authenticated state.
        if self.user.is_some() && !self.compressed {
            s.push_str(" COMPRESS=DEFLATE");
        }
        s.push_str(&format!(
            " APPENDLIMIT={}",
            self.shared.config.imap.max_literal_size
        ));
        s
    }

    pub fn greeting(&self) -> Vec<u8> {
        format!(
            "* OK [CAPABILITY {}] {} Postern IMAP ready\r\n",
            self.capabilities(),
            self.shared.config.server.hostname
        )
        .into_bytes()
    }

    /// Untagged updates at the end of a command (RFC 9051 7.5.1).
    pub fn sync(&mut self, allow_expunge: bool) {
        let how = self.reporting(allow_expunge);
        if let Some(v) = self.selected.as_mut() {
            v.sync(&self.shared.store, how, &mut self.out);
        }
    }

    fn mailbox_name(&self, m: &Mailbox) -> Result<String, String> {
        let name = m
            .decode(self.utf8())
            .map_err(|e| format!("Invalid mailbox name: {e}"))?;
        let name = name.trim_end_matches(DELIM).to_string();
        // INBOX/child keeps the canonical INBOX prefix (RFC 9051 5.1).
        if let (Some(head), Some(rest)) = (name.get(..6), name.get(6..)) {
            if head.eq_ignore_ascii_case("INBOX/") && !rest.is_empty() {
                return Ok(format!("INBOX/{rest}"));
            }
        }
        if name.is_empty() || name.split(DELIM).any(str::is_empty) {
            return Err("Invalid mailbox name".into());
        }
        Ok(name)
    }

    fn user(&self) -> &str {
        self.user.as_deref().unwrap_or("")
    }

    fn find(&self, name: &str) -> Option<MailboxInfo> {
        self.shared.store.find_mailbox(self.user(), name)
    }

    /// Runs one command; responses go to `self.out`. Returns the command's result word
    /// ("OK", "NO", "BAD") for metrics and what the driver must do next.
    pub async fn handle(&mut self, cmd: Command) -> (&'static str, Next) {
        let Command { tag, body } = cmd;
        // EXPUNGE responses are not allowed after FETCH, STORE or SEARCH (RFC 9051 7.5.1);
        // the UID forms may carry them.
        let allow_expunge = Self::allow_expunge_after(&body);
        self.done = None;
        let (status, next) = self.dispatch(tag, body).await;
        if matches!(next, Next::Continue) {
            self.complete(allow_expunge);
        }
        (status, next)
    }

    /// Ends a command: updates from other sessions, then the tagged reply (RFC 9051
    /// 7.5.1: untagged updates go before it).
    fn complete(&mut self, allow_expunge: bool) {
        if self.user.is_some() {
            self.sync(allow_expunge);
        }
        if let Some(done) = self.done.take() {
            self.out.extend_from_slice(done.as_bytes());
        }
    }

    /// The tagged reply of a streamed FETCH, once its reader is done.
    pub fn finish_fetch(&mut self, outcome: super::fetch::FetchOutcome) -> &'static str {
        self.done = None;
        let status = super::fetch::finish(self, outcome);
        // UID FETCH may carry EXPUNGE, FETCH may not (RFC 9051 7.5.1).
        self.complete(status.1);
        status.0
    }

    async fn dispatch(&mut self, tag: String, body: CommandBody) -> (&'static str, Next) {
        use CommandBody as C;
        let authed = self.user.is_some();
        let selected = self.selected.is_some();
        // RFC 9051 6: commands valid only in some states.
        let state_ok = match &body {
            C::Capability | C::Noop | C::Logout | C::Id(_) => true,
            // RFC 4978 3: COMPRESS in the authenticated and selected states.
            C::Compress(_) => authed,
            C::StartTls | C::Authenticate { .. } | C::Login { .. } => !authed,
            C::Check
            | C::Close
            | C::Unselect
            | C::Expunge
            | C::UidExpunge(_)
            | C::Search { .. }
            | C::Sort { .. }
            | C::Fetch { .. }
            | C::Store { .. }
            | C::Copy { .. }
            | C::Move { .. } => selected,
            _ => authed,
        };
        if !state_ok {
            let text = if authed && !selected {
                "No mailbox selected"
            } else if authed {
                "Already authenticated"
            } else {
                "Log in first"
            };
            tagged(&mut self.out, &tag, "BAD", text);
            return ("BAD", Next::Continue);
        }
        let (status, next) = match body {
            C::Capability => {
                let caps = self.capabilities();
                self.out
                    .extend_from_slice(format!("* CAPABILITY {caps}\r\n").as_bytes());
                self.ok(&tag, "CAPABILITY completed")
            }
            C::Noop => self.ok(&tag, "NOOP completed"),
            C::Check => self.ok(&tag, "CHECK completed"),
            C::Logout => {
                self.out
                    .extend_from_slice(b"* BYE Postern IMAP server logging out\r\n");
                tagged(&mut self.out, &tag, "OK", "LOGOUT completed");
                return ("OK", Next::Logout);
            }
            C::StartTls => {
                if self.tls {
                    return self.bad(&tag, "TLS is already active");
                }
                tagged(&mut self.out, &tag, "OK", "Begin TLS negotiation now");
                return ("OK", Next::StartTls);
            }
            C::Compress(alg) => {
                if self.compressed {
                    return self.no(&tag, "[COMPRESSIONACTIVE] Compression is already active");
                }
                if alg != "DEFLATE" {
                    return self.bad(&tag, "Unknown compression mechanism");
                }
                tagged(&mut self.out, &tag, "OK", "DEFLATE active");
                self.compressed = true;
                return ("OK", Next::Compress);
            }
            C::Login { username, password } => {
                if !self.tls {
                    return self.no(
                        &tag,
                        "[PRIVACYREQUIRED] LOGIN is disabled before STARTTLS (LOGINDISABLED)",
                    );
                }
                let user = String::from_utf8_lossy(&username).to_string();
                let password = String::from_utf8_lossy(&password).to_string();
                return self.login(&tag, user, password, "LOGIN").await;
            }
            C::Authenticate {
                mechanism,
                initial_response,
            } => {
                if !self.tls {
                    return self.no(&tag, "[PRIVACYREQUIRED] Authentication requires TLS");
                }
                if mechanism != "PLAIN" {
                    return self.no(&tag, "[CANNOT] Unsupported mechanism; use PLAIN");
                }
                match initial_response {
                    Some(ir) => return self.authenticate_plain(&tag, &ir).await,
                    None => {
                        // RFC 9051 6.2.2: an empty challenge.
                        self.out.extend_from_slice(b"+ \r\n");
                        return ("OK", Next::AuthContinue { tag });
                    }
                }
            }
            C::Enable(caps) => self.enable(&tag, caps),
            C::Id(_) => {
                self.out.extend_from_slice(
                    b"* ID (\"name\" \"Postern\" \"vendor\" \"Postern\" \"support-url\" NIL)\r\n",
                );
                self.ok(&tag, "ID completed")
            }
            C::Namespace => {
                // RFC 2342 5: one personal namespace, no other users' or shared ones.
                self.out
                    .extend_from_slice(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
                self.ok(&tag, "NAMESPACE completed")
            }
            C::Idle => {
                self.sync(true);
                self.out.extend_from_slice(b"+ idling\r\n");
                return ("OK", Next::Idle { tag });
            }
            C::Select {
                mailbox,
                condstore,
                qresync,
            } => self.select(&tag, &mailbox, false, condstore, qresync).await,
            C::Examine {
                mailbox,
                condstore,
                qresync,
            } => self.select(&tag, &mailbox, true, condstore, qresync).await,
            C::Create {
                mailbox,
                special_use,
            } => self.create(&tag, &mailbox, special_use).await,
            C::Delete(mailbox) => self.delete(&tag, &mailbox).await,
            C::Rename { from, to } => self.rename(&tag, &from, &to).await,
            C::Subscribe(m) => self.subscribe(&tag, &m, true).await,
            C::Unsubscribe(m) => self.subscribe(&tag, &m, false).await,
            C::List {
                reference,
                patterns,
                selection,
                returns,
                extended,
            } => self.list(&tag, &reference, &patterns, &selection, &returns, extended),
            C::Lsub { reference, pattern } => self.lsub(&tag, &reference, &pattern),
            C::Status { mailbox, items } => self.status(&tag, &mailbox, &items),
            C::Append { mailbox, messages } => self.append(&tag, &mailbox, messages).await,
            C::GetQuota(root) => {
                if !root.is_empty() {
                    return self.no(&tag, "[NONEXISTENT] No such quota root");
                }
                self.quota_line();
                self.ok(&tag, "GETQUOTA completed")
            }
            C::GetQuotaRoot(mailbox) => {
                let name = match self.mailbox_name(&mailbox) {
                    Ok(n) => n,
                    Err(e) => return self.bad(&tag, &e),
                };
                if self.find(&name).is_none() {
                    return self.no(&tag, "[NONEXISTENT] No such mailbox");
                }
                self.out.extend_from_slice(b"* QUOTAROOT ");
                let utf8 = self.utf8();
                encode::mailbox(&mut self.out, &name, utf8);
                self.out.extend_from_slice(b" \"\"\r\n");
                self.quota_line();
                self.ok(&tag, "GETQUOTAROOT completed")
            }
            C::SetQuota { .. } => {
                // RFC 9208 4.1.3: only administrators set limits; users have none to set.
                self.no(&tag, "[NOPERM] Quota limits are set by the administrator")
            }
            C::Close => {
                if let Some(v) = self.selected.take() {
                    if !v.read_only {
                        // RFC 9051 6.4.1: expunge \Deleted silently.
                        let uids = self.deleted_uids(&v);
                        if !uids.is_empty() {
                            if let Err(e) = self.shared.store.expunge(v.id, uids).await {
                                tracing::error!(event = "imap.expunge_failed", error = %e);
                            }
                        }
                    }
                }
                self.ok(&tag, "CLOSE completed")
            }
            C::Unselect => {
                self.selected = None;
                self.ok(&tag, "UNSELECT completed")
            }
            C::Expunge => self.expunge(&tag, None).await,
            C::UidExpunge(set) => self.expunge(&tag, Some(set)).await,
            C::Fetch {
                uid,
                set,
                attributes,
                changed_since,
                vanished,
            } => {
                super::fetch::fetch(self, &tag, uid, &set, &attributes, changed_since, vanished)
                    .await
            }
            C::Store {
                uid,
                set,
                kind,
                silent,
                flags,
                unchanged_since,
            } => {
                super::fetch::store(self, &tag, uid, &set, kind, silent, &flags, unchanged_since)
                    .await
            }
            C::Search {
                uid,
                charset,
                criteria,
                returns,
            } => {
                super::search::search(self, &tag, uid, charset.as_deref(), &criteria, returns).await
            }
            C::Sort {
                uid,
                criteria,
                search,
                returns,
                ..
            } => super::search::sort(self, &tag, uid, &criteria, &search, returns).await,
            C::Copy { uid, set, mailbox } => self.copy(&tag, uid, &set, &mailbox, false).await,
            C::Move { uid, set, mailbox } => self.copy(&tag, uid, &set, &mailbox, true).await,
        };
        (status, next)
    }

    /// Writes pending untagged updates and the tagged OK.
    /// Writes the tagged reply of a command finished outside [`Session::handle`].
    pub fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            self.out.extend_from_slice(done.as_bytes());
        }
    }

    /// A tagged BAD written at once.
    pub fn bad_now(&mut self, tag: &str, text: &str) -> (&'static str, Next) {
        tagged(&mut self.out, tag, "BAD", text);
        ("BAD", Next::Continue)
    }

    /// The tagged OK, written after the command's untagged updates.
    pub fn ok(&mut self, tag: &str, text: &str) -> (&'static str, Next) {
        self.done = Some(format!("{tag} OK {text}\r\n"));
        ("OK", Next::Continue)
    }

    pub fn no(&mut self, tag: &str, text: &str) -> (&'static str, Next) {
        self.done = Some(format!("{tag} NO {text}\r\n"));
        ("NO", Next::Continue)
    }

    pub fn bad(&mut self, tag: &str, text: &str) -> (&'static str, Next) {
        self.done = Some(format!("{tag} BAD {text}\r\n"));
        ("BAD", Next::Continue)
    }

    pub fn allow_expunge_after(body: &CommandBody) -> bool {
        !matches!(
            body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search { uid: false, .. }
                | CommandBody::Sort { uid: false, .. }
        )
    }

    // ---- authentication ---------------------------------------------------------------

    async fn login(
        &mut self,
        tag: &str,
        user: String,
        password: String,
        mechanism: &'static str,
    ) -> (&'static str, Next) {
        // RFC 9051 11.1 leaves the guessing policy open: the failure delay and the event are
        // the same as for SMTP and POP3 (crate::login).
        let attempt = Attempt {
            service: Service::Imap,
            peer: self.peer,
            mechanism,
            username: &user,
        };
        match login::verify(&self.shared, attempt, password).await {
            login::Verdict::Accepted => {
                self.user = Some(user);
                let caps = self.capabilities();
                return self.ok(tag, &format!("[CAPABILITY {caps}] Logged in"));
            }
            login::Verdict::Blocked => {
                // RFC 5530 3: UNAVAILABLE is a temporary failure that is not about the
                // credentials (AUTHENTICATIONFAILED would make the client ask its user for
                // another password); then BYE (RFC 9051 7.1.5), as nothing else can be done
                // before a login.
                tagged(
                    &mut self.out,
                    tag,
                    "NO",
                    "[UNAVAILABLE] Too many failed logins, try again later",
                );
                self.out
                    .extend_from_slice(b"* BYE Too many failed logins, try again later\r\n");
                return ("NO", Next::Close);
            }
            login::Verdict::Refused => {}
        }
        self.auth_failures += 1;
        tagged(
            &mut self.out,
            tag,
            "NO",
            "[AUTHENTICATIONFAILED] Invalid credentials",
        );
        if self.auth_failures >= MAX_AUTH_FAILURES {
            self.out
                .extend_from_slice(b"* BYE Too many failed authentication attempts\r\n");
            return ("NO", Next::Close);
        }
        ("NO", Next::Continue)
    }

    /// RFC 4616: message = [authzid] NUL authcid NUL passwd (postern-sasl).
    pub async fn authenticate_plain(&mut self, tag: &str, data: &[u8]) -> (&'static str, Next) {
        match postern_sasl::parse_plain(data) {
            Ok((user, password)) => self.login(tag, user, password, "PLAIN").await,
            Err(SaslError::Authorization) => {
                self.no(tag, "[AUTHORIZATIONFAILED] Cannot act as another user")
            }
            Err(_) => self.bad(tag, "Malformed PLAIN response"),
        }
    }

    /// The continuation line of AUTHENTICATE.
    pub async fn authenticate_line(&mut self, tag: &str, line: &[u8]) -> (&'static str, Next) {
        // RFC 9051 6.2.2: "*" cancels the exchange.
        if postern_sasl::is_cancel(line) {
            return self.bad(tag, "Authentication cancelled");
        }
        match postern_sasl::decode_response(line) {
            Ok(data) => self.authenticate_plain(tag, &data).await,
            Err(e) => self.bad(tag, &e.to_string()),
        }
    }

    fn enable(&mut self, tag: &str, caps: Vec<String>) -> (&'static str, Next) {
        let mut done = Vec::new();
        for c in caps {
            let c = c.to_ascii_uppercase();
            let new = match c.as_str() {
                "CONDSTORE" => !std::mem::replace(&mut self.enabled.condstore, true),
                "QRESYNC" => {
                    // RFC 7162 3.2.3: QRESYNC implies CONDSTORE.
                    self.enabled.condstore = true;
                    !std::mem::replace(&mut self.enabled.qresync, true)
                }
                "UTF8=ACCEPT" => !std::mem::replace(&mut self.enabled.utf8, true),
                "IMAP4REV2" => !std::mem::replace(&mut self.enabled.rev2, true),
                _ => false,
            };
            if new {
                done.push(if c == "IMAP4REV2" {
                    "IMAP4rev2".to_string()
                } else {
                    c
                });
            }
        }
        if let Some(v) = self.selected.as_mut() {
            v.condstore |= self.enabled.condstore;
        }
        // RFC 5161 3.2: ENABLED lists what this command enabled.
        self.out
            .extend_from_slice(format!("* ENABLED {}\r\n", done.join(" ")).as_bytes());
        self.ok(tag, "ENABLE completed")
    }

    // ---- mailboxes --------------------------------------------------------------------

    async fn select(
        &mut self,
        tag: &str,
        mailbox: &Mailbox,
        read_only: bool,
        condstore: bool,
        qresync: Option<postern_imap::command::QResync>,
    ) -> (&'static str, Next) {
        if qresync.is_some() && !self.enabled.qresync {
            return self.bad(tag, "QRESYNC must be enabled first (RFC 7162 3.2.3)");
        }
        if let Some(_old) = self.selected.take() {
            // RFC 9051 6.3.2 / RFC 7162 3.2.11: the previous mailbox is closed.
            self.out
                .extend_from_slice(b"* OK [CLOSED] Previous mailbox closed\r\n");
        }
        let name = match self.mailbox_name(mailbox) {
            Ok(n) => n,
            Err(e) => return self.bad(tag, &e),
        };
        let Some(info) = self.find(&name) else {
            return self.no(tag, "[NONEXISTENT] No such mailbox");
        };
        if condstore {
            self.enabled.condstore = true;
        }
        let cs = self.enabled.condstore;
        let Some(view) = View::open(&self.shared.store, info.id, read_only, cs) else {
            return self.no(tag, "[NONEXISTENT] No such mailbox");
        };
        let store = &self.shared.store;
        // One pass over the index, nothing copied per message: SELECT stays cheap on large
        // mailboxes.
        let summary = store.summary(info.id);
        let keywords = summary.keywords;
        let kw = if keywords.is_empty() {
            String::new()
        } else {
            format!(" {}", keywords.join(" "))
        };
        let o = &mut self.out;
        o.extend_from_slice(
            format!("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw})\r\n").as_bytes(),
        );
        if read_only {
            o.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
        } else {
            o.extend_from_slice(
                format!(
                    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw} \\*)] Flags permitted\r\n"
                )
                .as_bytes(),
            );
        }
        o.extend_from_slice(format!("* {} EXISTS\r\n", view.exists()).as_bytes());
        if !self.enabled.rev2 {
            o.extend_from_slice(format!("* {} RECENT\r\n", view.recent.len()).as_bytes());
            if let Some(seq) = summary.first_unseen {
                o.extend_from_slice(format!("* OK [UNSEEN {seq}] First unseen\r\n").as_bytes());
            }
        }
        o.extend_from_slice(
            format!(
                "* OK [UIDVALIDITY {}] UIDs valid\r\n* OK [UIDNEXT {}] Predicted next UID\r\n",
                info.uidvalidity, info.uidnext
            )
            .as_bytes(),
        );
        // RFC 7162 3.1.2.1: HIGHESTMODSEQ always (we support persistent MODSEQ).
        o.extend_from_slice(
            format!("* OK [HIGHESTMODSEQ {}] Highest\r\n", info.highest_modseq).as_bytes(),
        );
        if let Some(q) = qresync {
            // RFC 7162 3.2.5.1: resynchronise only when UIDVALIDITY is unchanged. The
            // seq-match-data parameter is parsed and not needed: it lets a server that
            // forgets old expunges narrow VANISHED (EARLIER) (RFC 7162 3.2.5.2), and the
            // store keeps every expunge of a mailbox's life, so the answer is always exact.
            if q.uidvalidity == info.uidvalidity {
                let max_uid = view.max_uid;
                let known = |u: u32| {
                    q.known_uids
                        .as_ref()
                        .is_none_or(|s| s.contains(u, max_uid.max(u)))
                };
                let vanished: Vec<u32> = store
                    .vanished_since(info.id, q.modseq)
                    .into_iter()
                    .filter(|&u| known(u))
                    .collect();
                if !vanished.is_empty() {
                    o.extend_from_slice(
                        format!(
                            "* VANISHED (EARLIER) {}\r\n",
                            encode::sequence_set(&vanished)
                        )
                        .as_bytes(),
                    );
                }
                for m in store.messages_changed_since(info.id, q.modseq) {
                    if let Some(seq) = view.seq_of(m.uid) {
                        o.extend_from_slice(
                            format!("* {seq} FETCH (UID {} FLAGS ", m.uid).as_bytes(),
                        );
                        encode::flag_list(o, &m.flags, false);
                        o.extend_from_slice(format!(" MODSEQ ({}))\r\n", m.modseq).as_bytes());
                    }
                }
            }
        }
        if self.enabled.rev2 {
            // RFC 9051 6.3.2: a LIST response for the selected mailbox.
            let utf8 = self.utf8();
            let o = &mut self.out;
            o.extend_from_slice(b"* LIST () \"/\" ");
            encode::mailbox(o, &name, utf8);
            o.extend_from_slice(b"\r\n");
        }
        tracing::debug!(event = "imap.select", peer = %self.peer, mailbox = %name, read_only);
        self.selected = Some(view);
        let code = if read_only {
            "[READ-ONLY]"
        } else {
            "[READ-WRITE]"
        };
        let verb = if read_only { "EXAMINE" } else { "SELECT" };
        self.ok(tag, &format!("{code} {verb} completed"))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(postern_store::Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.shared.store.clone();
        tokio::task::spawn_blocking(move || f(store))
            .await
            .unwrap_or(Err(StoreError::Closed))
    }

    async fn create(
        &mut self,
        tag: &str,
        mailbox: &Mailbox,
        special_use: Vec<String>,
    ) -> (&'static str, Next) {
        let name = match self.mailbox_name(mailbox) {
            Ok(n) => n,
            Err(e) => return self.bad(tag, &e),
        };
        if name == "INBOX" || self.find(&name).is_some() {
            return self.no(tag, "[ALREADYEXISTS] Mailbox already exists");
        }
        const USES: [&str; 7] = [
            "\\All",
            "\\Archive",
            "\\Drafts",
            "\\Flagged",
            "\\Junk",
            "\\Sent",
            "\\Trash",
        ];
        let mut uses = Vec::new();
        for u in &special_use {
            match USES.iter().find(|k| k.eq_ignore_ascii_case(u)) {
                // RFC 6154 5.3: \All and \Flagged are virtual; we store neither.
                Some(&"\\All") | Some(&"\\Flagged") | None => {
                    return self.no(tag, "[USEATTR] Unsupported special-use attribute")
                }
                Some(k) => uses.push(*k),
            }
        }
        if uses.len() > 1 {
            return self.no(tag, "[USEATTR] One special-use attribute per mailbox");
        }
        let account = self.user().to_string();
        let special = uses.first().map(|s| s.to_string());
        // RFC 9051 6.3.4: create the superior names that do not exist.
        let result = self
            .blocking(move |store| {
                let parts: Vec<&str> = name.split(DELIM).collect();
                for i in 1..parts.len() {
                    let parent = parts[..i].join("/");
                    store.ensure_mailbox(&account, &parent, None)?;
                }
                store.ensure_mailbox(&account, &name, special.as_deref())
            })
            .await;
        match result {
            Ok(_) => self.ok(tag, "CREATE completed"),
            Err(e) => self.no(tag, status_of_store(&e)),
        }
    }

    async fn delete(&mut self, tag: &str, mailbox: &Mailbox) -> (&'static str, Next) {
        let name = match self.mailbox_name(mailbox) {
            Ok(n) => n,
            Err(e) => return self.bad(tag, &e),
        };
        if name == "INBOX" {
            return self.no(tag, "[CANNOT] INBOX cannot be deleted");
        }
        let Some(info) = self.find(&name) else {
            return self.no(tag, "[NONEXISTENT] No such mailbox");
        };
        if self.selected.as_ref().is_some_and(|v| v.id == info.id) {
            self.selected = None;
        }
        let id = info.id;
        match self.blocking(move |s| s.delete_mailbox(id)).await {
            Ok(()) => {
                tracing::info!(event = "imap.mailbox_deleted", user = %self.user(), mailbox = %name);
                self.ok(tag, "DELETE completed")
            }
            Err(e) => self.no(tag, status_of_store(&e)),
        }
    }

    async fn rename(&mut self, tag: &str, from: &Mailbox, to: &Mailbox) -> (&'static str, Next) {
        let (from, to) = match (self.mailbox_name(from), self.mailbox_name(to)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => return self.bad(tag, &e),
        };
        let Some(src) = self.find(&from) else {
            return self.no(tag, "[NONEXISTENT] No such mailbox");
        };
        if to == "INBOX" || self.find(&to).is_some() {
            return self.no(tag, "[ALREADYEXISTS] Target mailbox exists");
        }
        let account = self.user().to_string();
        if from == "INBOX" {
            // RFC 9051 6.3.5: renaming INBOX moves its messages to the new mailbox and
            // leaves INBOX empty.
            let dest = match self
                .blocking({
                    let to = to.clone();
                    let account = account.clone();
                    move |s| s.ensure_mailbox(&account, &to, None)
                })
                .await
            {
                Ok(d) => d,
                Err(e) => return self.no(tag, status_of_store(&e)),
            };
            let metas = self.shared.store.messages(src.id);
            // One record: a crash leaves each message in INBOX or the new mailbox, not both.
            if let Err(e) = self
                .shared
                .store
                .move_messages(src.id, &metas, dest.id)
                .await
            {
                return self.no(tag, status_of_store(&e));
            }
            return self.ok(tag, "RENAME completed");
        }
        // Children move with their parent (RFC 9051 6.3.5).
        let prefix = format!("{from}/");
        let renames: Vec<(MailboxId, String)> = self
            .shared
            .store
            .mailboxes(&account)
            .into_iter()
            .filter_map(|m| {
                if m.id == src.id {
                    Some((m.id, to.clone()))
                } else {
                    m.name
                        .strip_prefix(&prefix)
                        .map(|rest| (m.id, format!("{to}/{rest}")))
                }
            })
            .collect();
        let parents: Vec<String> = {
            let parts: Vec<&str> = to.split(DELIM).collect();
            (1..parts.len()).map(|i| parts[..i].join("/")).collect()
        };
        let result = self
            .blocking(move |s| {
                for p in parents {
                    s.ensure_mailbox(&account, &p, None)?;
                }
                for (id, name) in renames {
                    s.rename_mailbox(id, &name)?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                if let Some(v) = self.selected.as_mut() {
                    if v.id == src.id {
                        v.name = to;
                    }
                }
                self.ok(tag, "RENAME completed")
            }
            Err(e) => self.no(tag, status_of_store(&e)),
        }
    }

    async fn subscribe(&mut self, tag: &str, mailbox: &Mailbox, on: bool) -> (&'static str, Next) {
        let name = match self.mailbox_name(mailbox) {
            Ok(n) => n,
            Err(e) => return self.bad(tag, &e),
        };
        if on && self.find(&name).is_none() {
            return self.no(tag, "[NONEXISTENT] No such mailbox");
        }
        let account = self.user().to_string();
        match self
            .blocking(move |s| s.set_subscription(&account, &name, on))
            .await
        {
            Ok(()) => self.ok(
                tag,
                if on {
                    "SUBSCRIBE completed"
                } else {
                    "UNSUBSCRIBE completed"
                },
            ),
            Err(e) => self.no(tag, status_of_store(&e)),
        }
    }

    fn list(
        &mut self,
        tag: &str,
        reference: &Mailbox,
        patterns: &[Mailbox],
        selection: &[ListSelect],
        returns: &[ListReturn],
        extended: bool,
    ) -> (&'static str, Next) {
        let utf8 = self.utf8();
        let decode = |m: &Mailbox| -> Result<String, String> {
            m.decode(utf8).map_err(|e| format!("Invalid name: {e}"))
        };
        let reference = match decode(reference) {
            Ok(r) => r,
            Err(e) => return self.bad(tag, &e),
        };
        let mut pats = Vec::new();
        for p in patterns {
            match decode(p) {
                Ok(p) => pats.push(p),
                Err(e) => return self.bad(tag, &e),
            }
        }
        // RFC 9051 6.3.9: an empty pattern asks for the delimiter and root.
        if pats.len() == 1 && pats[0].is_empty() && !extended {
            self.out
                .extend_from_slice(b"* LIST (\\Noselect) \"/\" \"\"\r\n");
            return self.ok(tag, "LIST completed");
        }
        let sel_subscribed = selection.contains(&ListSelect::Subscribed);
        let sel_special = selection.contains(&ListSelect::SpecialUse);
        let recursive = selection.contains(&ListSelect::RecursiveMatch);
        let ret_subscribed = sel_subscribed || returns.contains(&ListReturn::Subscribed);
        let ret_special = true; // RFC 6154 2: special-use attributes are always returned.
        let status_items: Option<Vec<StatusItem>> = returns.iter().find_map(|r| match r {
            ListReturn::Status(items) => Some(items.clone()),
            _ => None,
        });
        let account = self.user().to_string();
        let mailboxes = self.shared.store.mailboxes(&account);
        let subscribed = self.shared.store.subscriptions(&account);
        let mut names: Vec<String> = mailboxes.iter().map(|m| m.name.clone()).collect();
        if sel_subscribed {
            // RFC 5258 3.1: subscribed names that do not exist are listed \NonExistent.
            for s in &subscribed {
                if !names.contains(s) {
                    names.push(s.clone());
                }
            }
        }
        // RFC 9051 6.3.9 / RFC 3501 6.3.8: levels of hierarchy that are not mailboxes
        // themselves (the parent "P" of "P/C" after DELETE P, which must not remove "P/C")
        // are listed too, not selectable, so a client walking the tree with "%" still
        // reaches the children.
        let mut parents_only = std::collections::BTreeSet::new();
        if !sel_subscribed && !sel_special {
            for m in &mailboxes {
                for (i, _) in m.name.match_indices(DELIM) {
                    let parent = &m.name[..i];
                    if !parent.is_empty() && !mailboxes.iter().any(|o| o.name == parent) {
                        parents_only.insert(parent.to_string());
                    }
                }
            }
            names.extend(parents_only.iter().cloned());
        }
        names.sort();
        names.dedup();
        let compiled: Vec<Vec<char>> = pats
            .iter()
            .map(|p| {
                // RFC 9051 6.3.9: the reference and the pattern are concatenated, unless the
                // pattern is absolute.
                let full = if p.starts_with(DELIM) {
                    p.clone()
                } else {
                    format!("{reference}{p}")
                };
                // INBOX is case-insensitive in patterns too.
                let full = match (full.get(..5), full.get(5..)) {
                    (Some(head), Some(rest)) if head.eq_ignore_ascii_case("INBOX") => {
                        format!("INBOX{rest}")
                    }
                    _ => full,
                };
                full.chars().collect()
            })
            .collect();
        let matches = |n: &str| {
            let chars: Vec<char> = n.chars().collect();
            compiled.iter().any(|p| pattern_matches(p, &chars))
        };
        let mut lines = 0;
        for name in &names {
            let info = mailboxes.iter().find(|m| &m.name == name);
            let is_sub = subscribed.contains(name);
            let prefix = format!("{name}/");
            let has_children = mailboxes.iter().any(|m| m.name.starts_with(&prefix));
            let child_subscribed = subscribed.iter().any(|s| s.starts_with(&prefix));
            let selected_by = if sel_subscribed {
                is_sub || (recursive && child_subscribed)
            } else if sel_special {
                info.is_some_and(|i| i.special_use.is_some())
            } else {
                true
            };
            if !selected_by || !matches(name) {
                continue;
            }
            let mut attrs: Vec<String> = Vec::new();
            match info {
                // IMAP4rev2 and LIST-EXTENDED say \NonExistent (which implies \Noselect,
                // RFC 9051 7.3.1); IMAP4rev1 clients know \Noselect.
                None if parents_only.contains(name) => {
                    let extended_names = extended || self.enabled.rev2;
                    attrs.push(
                        if extended_names {
                            "\\NonExistent"
                        } else {
                            "\\Noselect"
                        }
                        .into(),
                    );
                    attrs.push("\\HasChildren".into());
                }
                None => attrs.push("\\NonExistent".into()),
                Some(_) => attrs.push(
                    if has_children {
                        "\\HasChildren"
                    } else {
                        "\\HasNoChildren"
                    }
                    .into(),
                ),
            }
            if ret_subscribed && is_sub {
                attrs.push("\\Subscribed".into());
            }
            if ret_special {
                if let Some(su) = info.and_then(|i| i.special_use.clone()) {
                    attrs.push(su);
                }
            }
            if sel_subscribed && recursive && !is_sub && !child_subscribed {
                continue;
            }
            let o = &mut self.out;
            o.extend_from_slice(format!("* LIST ({}) \"/\" ", attrs.join(" ")).as_bytes());
            encode::mailbox(o, name, utf8);
            if recursive && sel_subscribed && child_subscribed && !is_sub {
                // RFC 5258 3.5: CHILDINFO for a parent listed only for its children.
                o.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            o.extend_from_slice(b"\r\n");
            lines += 1;
            if let (Some(items), Some(i)) = (&status_items, info) {
                // RFC 5819 2: STATUS after the LIST line, for selectable mailboxes.
                self.status_line(i, items);
            }
        }
        let _ = lines;
        self.ok(tag, "LIST completed")
    }

    fn lsub(&mut self, tag: &str, reference: &Mailbox, pattern: &Mailbox) -> (&'static str, Next) {
        let utf8 = self.utf8();
        let (Ok(reference), Ok(pattern)) = (reference.decode(utf8), pattern.decode(utf8)) else {
            return self.bad(tag, "Invalid name");
        };
        let full: Vec<char> = format!("{reference}{pattern}").chars().collect();
        let account = self.user().to_string();
        for s in self.shared.store.subscriptions(&account) {
            let chars: Vec<char> = s.chars().collect();
            if pattern_matches(&full, &chars) {
                self.out.extend_from_slice(b"* LSUB () \"/\" ");
                encode::mailbox(&mut self.out, &s, utf8);
                self.out.extend_from_slice(b"\r\n");
            }
        }
        self.ok(tag, "LSUB completed")
    }

    fn status_line(&mut self, info: &MailboxInfo, items: &[StatusItem]) {
        let summary = self.shared.store.summary(info.id);
        let mut parts = Vec::new();
        for item in items {
            let v: u64 = match item {
                StatusItem::Messages => summary.messages,
                StatusItem::Recent => 0,
                StatusItem::UidNext => u64::from(info.uidnext),
                StatusItem::UidValidity => u64::from(info.uidvalidity),
                StatusItem::Unseen => summary.unseen,
                StatusItem::Deleted => summary.deleted,
                StatusItem::Size => summary.size,
                StatusItem::HighestModSeq => info.highest_modseq,
                StatusItem::AppendLimit => self.shared.config.imap.max_literal_size,
            };
            parts.push(format!("{} {v}", item.name()));
        }
        self.out.extend_from_slice(b"* STATUS ");
        let utf8 = self.utf8();
        encode::mailbox(&mut self.out, &info.name, utf8);
        self.out
            .extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
    }

    fn status(
        &mut self,
        tag: &str,
        mailbox: &Mailbox,
        items: &[StatusItem],
    ) -> (&'static str, Next) {
        let name = match self.mailbox_name(mailbox) {
            Ok(n) => n,
            Err(e) => return self.bad(tag, &e),
        };
        let Some(info) = self.find(&name) else {
            return self.no(tag, "[NONEXISTENT] No such mailbox");
        };
        self.status_line(&info, items);
        self.ok(tag, "STATUS completed")
    }

    fn quota_line(&mut self) {
        let limit = self.shared.config.imap.quota_bytes;
        let used = self.shared.store.usage(self.user()).bytes;
        // RFC 9208 5.1: STORAGE in units of 1024 octets.
        if limit > 0 {
            self.out.extend_from_slice(
                format!(
                    "* QUOTA \"\" (STORAGE {} {})\r\n",
                    used.div_ceil(1024),
                    limit / 1024
                )
                .as_bytes(),
            );
        } else {
            self.out.extend_from_slice(b"* QUOTA \"\" ()\r\n");
        }
    }

    /// Whether adding `extra` bytes stays within the account's quota.
    pub fn quota_allows(&self, extra: u64) -> bool {
        let limit = self.shared.config.imap.quota_bytes;
        limit == 0 || self.shared.store.usage(self.user()).bytes + extra <= limit
    }

    async fn append(
        &mut self,
        tag: &str,
        mailbox: &Mailbox,
        messages: Vec<postern_imap::command::AppendMessage>,
    ) -> (&'static str, Next) {
        let name = match self.mailbox_name(mailbox) {
            Ok(n) => n,
            Err(e) => return self.bad(tag, &e),
        };
        let Some(info) = self.find(&name) else {
            // RFC 9051 6.3.12: TRYCREATE when the mailbox does not exist.
            return self.no(tag, "[TRYCREATE] No such mailbox");
        };
        let total: u64 = messages.iter().map(|m| m.data.len() as u64).sum();
        if !self.quota_allows(total) {
            return self.no(tag, "[OVERQUOTA] Quota exceeded");
        }
        if messages.iter().any(|m| m.data.is_empty()) {
            return self.no(tag, "[CANNOT] Empty message");
        }
        // The storage gate (hwmond's verdict), as SMTP answers 451: refuse what storage may
        // not keep. RFC 5530 3: UNAVAILABLE is temporary; the client retries later.
        if self.shared.health_gate.check().is_some() {
            return self.no(
                tag,
                "[UNAVAILABLE] Storage cannot keep mail safely now; try again later",
            );
        }
        let requests: Vec<AppendRequest> = messages
            .into_iter()
            .map(|m| AppendRequest {
                internal_date: m.internal_date.map(|d| d.unix).unwrap_or_else(now_unix),
                body: m.data,
                targets: vec![AppendTarget {
                    mailbox: info.id,
                    flags: m
                        .flags
                        .iter()
                        .map(Flag::as_str)
                        .filter(|f| *f != "\\Recent")
                        .map(str::to_string)
                        .collect(),
                }],
            })
            .collect();
        let count = requests.len();
        // DESIGN.md 3.3: OK only after the store says durable. The messages of a
        // MULTIAPPEND are queued together and share one group commit.
        let results = self.shared.store.append_all(self.shard, requests).await;
        let mut uids = Vec::new();
        let mut failure = None;
        for r in results {
            match r {
                Ok(a) => uids.extend(a.first().map(|a| a.uid)),
                Err(e) => failure = Some(e),
            }
        }
        if uids.len() < count || failure.is_some() {
            let error = failure.unwrap_or(StoreError::Closed);
            tracing::error!(event = "imap.append_failed", user = %self.user(), error = %error);
            // RFC 3502 3: if any message cannot be appended, none is. Those already
            // committed are expunged again.
            if !uids.is_empty() {
                if let Err(e) = self.shared.store.expunge(info.id, uids).await {
                    tracing::error!(event = "imap.append_rollback_failed", user = %self.user(), error = %e);
                }
            }
            return self.no(tag, status_of_store(&error));
        }
        tracing::info!(event = "imap.append", user = %self.user(), mailbox = %name, messages = uids.len(), bytes = total);
        // RFC 4315 3: APPENDUID.
        self.ok(
            tag,
            &format!(
                "[APPENDUID {} {}] APPEND completed",
                info.uidvalidity,
                encode::sequence_set(&uids)
            ),
        )
    }

    fn deleted_uids(&self, v: &View) -> Vec<u32> {
        self.shared
            .store
            .messages(v.id)
            .into_iter()
            .filter(|m| m.flags.iter().any(|f| f == "\\Deleted"))
            .map(|m| m.uid)
            .collect()
    }

    async fn expunge(&mut self, tag: &str, only: Option<SequenceSet>) -> (&'static str, Next) {
        let Some(v) = self.selected.as_ref() else {
            return self.bad(tag, "No mailbox selected");
        };
        if v.read_only {
            return self.no(tag, "[READ-ONLY] Mailbox is read-only");
        }
        let mut uids = self.deleted_uids(v);
        if let Some(set) = only {
            let set = self.resolve_saved(&set, true);
            let max = v.max_uid;
            uids.retain(|&u| set.contains(u, max));
        }
        let id = v.id;
        if !uids.is_empty() {
            if let Err(e) = self.shared.store.expunge(id, uids).await {
                return self.no(tag, status_of_store(&e));
            }
        }
        self.sync(true);
        self.ok(tag, "EXPUNGE completed")
    }

    /// `$` replaced by the saved result, as UIDs or sequence numbers (RFC 5182 2.1).
    pub fn resolve_saved(&self, set: &SequenceSet, uid: bool) -> SequenceSet {
        match set {
            SequenceSet::Saved => {
                if uid {
                    SequenceSet::from_numbers(&self.saved)
                } else {
                    let v = self.selected.as_ref();
                    let seqs: Vec<u32> = self
                        .saved
                        .iter()
                        .filter_map(|&u| v.and_then(|v| v.seq_of(u)))
                        .collect();
                    SequenceSet::from_numbers(&seqs)
                }
            }
            other => other.clone(),
        }
    }

    /// The (sequence number, UID) pairs a set names in the current view, ascending.
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<(u32, u32)> {
        let Some(v) = self.selected.as_ref() else {
            return Vec::new();
        };
        let set = self.resolve_saved(set, uid);
        if set == SequenceSet::Ranges(Vec::new()) {
            return Vec::new();
        }
        let largest = if uid { v.max_uid } else { v.exists() };
        select_ranges(&v.uids, &set.to_ranges(largest), uid)
    }

    /// Whether a sequence-number set names numbers beyond EXISTS (RFC 9051 6.4: BAD).
    pub fn seq_out_of_range(&self, set: &SequenceSet, uid: bool) -> bool {
        if uid || matches!(set, SequenceSet::Saved) {
            return false;
        }
        let n = self.selected.as_ref().map(View::exists).unwrap_or(0);
        if n == 0 {
            // An empty mailbox: "1:*" and friends name nothing, which is not an error.
            return false;
        }
        set.to_ranges(n).iter().any(|&(lo, hi)| hi > n || lo == 0)
    }

    async fn copy(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SequenceSet,
        mailbox: &Mailbox,
        is_move: bool,
    ) -> (&'static str, Next) {
        if self.seq_out_of_range(set, uid) {
            return self.bad(tag, "Invalid message sequence number");
        }
        let name = match self.mailbox_name(mailbox) {
            Ok(n) => n,
            Err(e) => return self.bad(tag, &e),
        };
        let Some(dest) = self.find(&name) else {
            return self.no(tag, "[TRYCREATE] No such mailbox");
        };
        let Some(v) = self.selected.as_ref() else {
            return self.bad(tag, "No mailbox selected");
        };
        if is_move && v.read_only {
            return self.no(tag, "[READ-ONLY] Mailbox is read-only");
        }
        let src = v.id;
        let wanted: Vec<u32> = self.resolve(set, uid).into_iter().map(|(_, u)| u).collect();
        let metas = self.shared.store.messages_by_uid(src, &wanted);
        if metas.is_empty() {
            // RFC 9051 6.4.7: nothing to copy is not an error.
            let word = if is_move { "MOVE" } else { "COPY" };
            self.sync(uid || !is_move);
            return self.ok(tag, &format!("{word} completed (no messages)"));
        }
        let size: u64 = metas.iter().map(|m| m.size).sum();
        if !self.quota_allows(size) {
            return self.no(tag, "[OVERQUOTA] Quota exceeded");
        }
        // MOVE commits the copies and the expunge as one record (no state with both).
        let result = if is_move {
            self.shared.store.move_messages(src, &metas, dest.id).await
        } else {
            self.shared
                .store
                .copy_messages(self.shard, &metas, dest.id)
                .await
        };
        let pairs = match result {
            Ok(p) => p,
            Err(e) => return self.no(tag, status_of_store(&e)),
        };
        let dst_uids: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        // Junk training (into Junk: spam; out of it: ham) on the filter's own thread: the
        // reply does not wait for it (crate::filter::on_copy).
        crate::filter::on_copy(&self.shared, self.user(), src, &dest, &dst_uids);
        let src_set = encode::sequence_set(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
        let dst_set = encode::sequence_set(&dst_uids);
        let code = format!("[COPYUID {} {src_set} {dst_set}]", dest.uidvalidity);
        if !is_move {
            self.sync(uid);
            return self.ok(tag, &format!("{code} COPY completed"));
        }
        // RFC 6851 3.3: COPYUID in an untagged OK before the expunges.
        if !pairs.is_empty() {
            self.out
                .extend_from_slice(format!("* OK {code} Moved\r\n").as_bytes());
        }
        self.sync(true);
        self.ok(tag, "MOVE completed")
    }
}

#[cfg(test)]
mod tests {
    use super::{pattern_matches, select_ranges};

    #[test]
    fn ranges_select_slices_of_the_sequence_map() {
        let uids = [2, 3, 5, 8, 13, 21];
        // By UID: 1:3 names UIDs 2 and 3; 6:12 names UID 8; 20:* (resolved to 21) UID 21.
        assert_eq!(
            select_ranges(&uids, &[(1, 3), (6, 12), (20, 21)], true),
            vec![(1, 2), (2, 3), (4, 8), (6, 21)]
        );
        // A UID range between messages names nothing.
        assert!(select_ranges(&uids, &[(9, 12)], true).is_empty());
        // By sequence number, clamped to the mailbox.
        assert_eq!(
            select_ranges(&uids, &[(2, 3), (6, 9)], false),
            vec![(2, 3), (3, 5), (6, 21)]
        );
        assert!(select_ranges(&uids, &[(7, 9)], false).is_empty());
        assert!(select_ranges(&[], &[(1, 5)], true).is_empty());
    }

    fn m(p: &str, n: &str) -> bool {
        pattern_matches(
            &p.chars().collect::<Vec<_>>(),
            &n.chars().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn list_patterns() {
        assert!(m("*", "a/b/c"));
        assert!(m("%", "a"));
        assert!(!m("%", "a/b"));
        assert!(m("a/%", "a/b"));
        assert!(!m("a/%", "a/b/c"));
        assert!(m("a*", "a/b/c"));
        assert!(m("INBOX", "INBOX"));
        assert!(!m("INBOX", "INBOX/x"));
        assert!(m("%/%", "a/b"));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("**", ""));
        assert!(m("a%", "a"));
        // Hostile patterns stay fast.
        let long: String = "a".repeat(200);
        assert!(!m(&"*a".repeat(60).replace("*a*a", "*a*b"), &long));
    }
}

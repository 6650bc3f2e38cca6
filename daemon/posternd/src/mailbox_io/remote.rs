//! Import and export through a running posternd, over its admin socket.
//!
//! The CLI sends one command line, `mailbox-import {"user":...}` or
//! `mailbox-export {"user":...,"mailbox":null|"name"}`; the daemon answers `ok` (or
//! `error <text>`) and then both sides exchange frames: a JSON line ([`Frame`]), followed
//! for `message` frames by exactly `size` raw bytes.
//!
//! Import: the client streams `message` frames and ends with `end`; the daemon answers
//! every message in order with `stored` (durable: sent only after the store's append
//! returned, DESIGN.md 3.3), `duplicate`, or `error` (after which it stops), and a final
//! `end`. The client keeps a bounded window of unacknowledged messages.
//! Export: the daemon sends `begin` (totals), the `message` frames, then `end` or `error`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{
    appended_uid, export_plan, ExportMessage, ExportSource, ImportMessage, ImportSummary, Importer,
    Sink, Started, MAX_MESSAGE, WINDOW_BYTES, WINDOW_MESSAGES,
};
use crate::server::Shared;

/// One protocol line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Frame {
    Message {
        mailbox: String,
        #[serde(default)]
        uid: u32,
        flags: Vec<String>,
        internal_date: i64,
        size: u64,
    },
    Stored {
        uid: u32,
    },
    Duplicate,
    Begin {
        messages: u64,
        bytes: u64,
    },
    End,
    Error {
        error: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    user: String,
    #[serde(default)]
    mailbox: Option<String>,
}

/// Longest frame line accepted.
const MAX_FRAME_LINE: u64 = 1 << 20;

fn frame_line(frame: &Frame) -> Vec<u8> {
    let mut line = serde_json::to_vec(frame).unwrap_or_else(|_| b"{\"t\":\"end\"}".to_vec());
    line.push(b'\n');
    line
}

// ---- daemon side ---------------------------------------------------------------------------

/// Splits an admin command line into a mailbox command and its JSON argument.
pub fn admin_command(line: &str) -> Option<(&str, &str)> {
    let (command, args) = line.split_once(' ')?;
    matches!(command, "mailbox-import" | "mailbox-export").then_some((command, args))
}

/// Serves one mailbox command on an admin connection.
pub async fn serve<R, W>(shared: Arc<Shared>, command: &str, args: &str, reader: R, mut writer: W)
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let request: Request = match serde_json::from_str(args) {
        Ok(r) => r,
        Err(e) => {
            let _ = writer
                .write_all(format!("error bad request: {e}\n").as_bytes())
                .await;
            return;
        }
    };
    let account = match postern_accounts::normalize_address(&request.user) {
        Ok(a) if shared.directory.snapshot().user(&a).is_some() => a,
        _ => {
            let _ = writer
                .write_all(format!("error no such user {}\n", request.user).as_bytes())
                .await;
            return;
        }
    };
    let result = match command {
        "mailbox-import" => serve_import(&shared, account.clone(), reader, &mut writer).await,
        _ => serve_export(&shared, account.clone(), request.mailbox, &mut writer).await,
    };
    match result {
        Ok(count) => {
            tracing::info!(event = "admin.mailbox_io", command, user = %account, messages = count)
        }
        Err(error) => {
            tracing::warn!(event = "admin.mailbox_io_failed", command, user = %account, error = %format!("{error:#}"))
        }
    }
}

async fn read_frame<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Result<Option<Frame>> {
    let mut line = Vec::new();
    let n = (&mut *reader)
        .take(MAX_FRAME_LINE)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        bail!("frame line too long or cut");
    }
    Ok(Some(serde_json::from_slice(&line)?))
}

enum Item {
    Started(Started),
    Failed(String),
}

async fn serve_import<R, W>(
    shared: &Arc<Shared>,
    account: String,
    mut reader: R,
    writer: &mut W,
) -> Result<u64>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    writer.write_all(b"ok\n").await?;
    writer.flush().await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Item>(WINDOW_MESSAGES);
    let store = shared.store.clone();
    let receive = async move {
        let mut importer = Some(Importer::new(store, account));
        loop {
            let frame = match read_frame(&mut reader).await {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    let _ = tx
                        .send(Item::Failed("connection closed before end".into()))
                        .await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Item::Failed(format!("bad frame: {e:#}"))).await;
                    return;
                }
            };
            let (mailbox, flags, internal_date, size) = match frame {
                Frame::End => return,
                Frame::Message {
                    mailbox,
                    flags,
                    internal_date,
                    size,
                    ..
                } => (mailbox, flags, internal_date, size),
                other => {
                    let _ = tx
                        .send(Item::Failed(format!("unexpected frame {other:?}")))
                        .await;
                    return;
                }
            };
            let Ok(size) = usize::try_from(size) else {
                let _ = tx.send(Item::Failed("size out of range".into())).await;
                return;
            };
            if size > MAX_MESSAGE {
                let _ = tx.send(Item::Failed("message too large".into())).await;
                return;
            }
            let mut body = vec![0u8; size];
            if let Err(e) = reader.read_exact(&mut body).await {
                let _ = tx
                    .send(Item::Failed(format!("reading the message: {e}")))
                    .await;
                return;
            }
            let message = ImportMessage {
                mailbox,
                flags,
                internal_date,
                body,
                origin: String::new(),
            };
            let Some(mut current) = importer.take() else {
                return;
            };
            // The first message for a mailbox creates it (a blocking durable record).
            let joined = tokio::task::spawn_blocking(move || {
                let result = current.start(message);
                (current, result)
            })
            .await;
            let item = match joined {
                Ok((back, result)) => {
                    importer = Some(back);
                    match result {
                        Ok(started) => Item::Started(started),
                        Err(e) => Item::Failed(format!("{e:#}")),
                    }
                }
                Err(e) => Item::Failed(format!("import task: {e}")),
            };
            let failed = matches!(item, Item::Failed(_));
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    };
    let answer = async {
        let mut count = 0u64;
        while let Some(item) = rx.recv().await {
            let frame = match item {
                Item::Started(Started::Duplicate) => Frame::Duplicate,
                Item::Started(Started::Queued(pending)) => match appended_uid(pending.await) {
                    Ok(uid) => {
                        count += 1;
                        Frame::Stored { uid }
                    }
                    Err(e) => Frame::Error {
                        error: format!("{e:#}"),
                    },
                },
                Item::Failed(error) => Frame::Error { error },
            };
            writer.write_all(&frame_line(&frame)).await?;
            if let Frame::Error { error } = frame {
                writer.flush().await?;
                // Dropping the receiver stops the reading side.
                return Err(anyhow!(error));
            }
            if rx.is_empty() {
                writer.flush().await?;
            }
        }
        writer.write_all(&frame_line(&Frame::End)).await?;
        writer.flush().await?;
        Ok(count)
    };
    let ((), result) = tokio::join!(receive, answer);
    result
}

async fn serve_export<W: AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    account: String,
    mailbox: Option<String>,
    writer: &mut W,
) -> Result<u64> {
    let store = shared.store.clone();
    let plan =
        tokio::task::spawn_blocking(move || export_plan(&store, &account, mailbox.as_deref()))
            .await?;
    let mut plan = match plan {
        Ok(plan) => plan,
        Err(e) => {
            writer
                .write_all(format!("error {e:#}\n").as_bytes())
                .await?;
            return Err(e);
        }
    };
    writer.write_all(b"ok\n").await?;
    writer
        .write_all(&frame_line(&Frame::Begin {
            messages: plan.messages,
            bytes: plan.bytes,
        }))
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<ExportMessage>>(8);
    // Segment reads are blocking; they run beside the event loop, a few messages ahead.
    let producer = tokio::task::spawn_blocking(move || {
        while let Some(message) = plan.next_message() {
            if tx.blocking_send(message).is_err() {
                return;
            }
        }
    });
    let mut count = 0;
    while let Some(message) = rx.recv().await {
        match message {
            Ok(m) => {
                writer
                    .write_all(&frame_line(&Frame::Message {
                        mailbox: m.mailbox,
                        uid: m.uid,
                        flags: m.flags,
                        internal_date: m.internal_date,
                        size: m.body.len() as u64,
                    }))
                    .await?;
                writer.write_all(&m.body).await?;
                count += 1;
            }
            Err(e) => {
                writer
                    .write_all(&frame_line(&Frame::Error {
                        error: format!("{e:#}"),
                    }))
                    .await?;
                writer.flush().await?;
                return Err(e);
            }
        }
    }
    let _ = producer.await;
    writer.write_all(&frame_line(&Frame::End)).await?;
    writer.flush().await?;
    Ok(count)
}

// ---- CLI side ------------------------------------------------------------------------------

/// How long the CLI waits for one reply from the daemon (a durable append of a large
/// message under load included).
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// Connects and sends the command; Ok(None) when no daemon listens on `socket`.
fn open(socket: &Path, command: &str, request: &Request) -> Result<Option<UnixStream>> {
    let Ok(stream) = UnixStream::connect(socket) else {
        return Ok(None);
    };
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    let mut line = format!("{command} {}\n", serde_json::to_string(request)?).into_bytes();
    (&stream)
        .write_all(&line)
        .with_context(|| format!("writing to {}", socket.display()))?;
    line.clear();
    // Unbuffered: frames may follow the reply line and belong to the caller's reader.
    read_reply_line(&mut &stream, &mut line)?;
    let reply = String::from_utf8_lossy(&line);
    let reply = reply.trim();
    if reply == "ok" {
        return Ok(Some(stream));
    }
    if reply == "error unknown command" {
        bail!("the running posternd does not support {command}; stop it or upgrade it");
    }
    bail!(
        "posternd refused: {}",
        reply.strip_prefix("error ").unwrap_or(reply)
    );
}

/// Reads one line a byte at a time, so that no byte after it is consumed.
fn read_reply_line(reader: &mut impl Read, line: &mut Vec<u8>) -> Result<()> {
    let mut byte = [0u8; 1];
    loop {
        let n = reader
            .read(&mut byte)
            .context("reading the daemon's reply")?;
        if n == 0 {
            bail!("posternd closed the admin connection");
        }
        if byte[0] == b'\n' {
            return Ok(());
        }
        line.push(byte[0]);
        if line.len() > 4096 {
            bail!("reply line too long");
        }
    }
}

fn parse_frame(line: &[u8]) -> Result<Frame> {
    serde_json::from_slice(line).with_context(|| {
        format!(
            "bad frame from posternd: {:?}",
            String::from_utf8_lossy(line)
        )
    })
}

/// Imports through the daemon.
pub struct RemoteSink {
    writer: BufWriter<UnixStream>,
    replies: mpsc::Receiver<Result<Frame>>,
    in_flight: VecDeque<(String, usize)>,
    in_flight_bytes: usize,
    summary: ImportSummary,
}

impl RemoteSink {
    pub fn connect(socket: &Path, account: &str) -> Result<Option<RemoteSink>> {
        let request = Request {
            user: account.to_string(),
            mailbox: None,
        };
        let Some(stream) = open(socket, "mailbox-import", &request)? else {
            return Ok(None);
        };
        // Replies come as fast as the store commits; the input may be slow to read.
        stream.set_read_timeout(None)?;
        let read_half = stream.try_clone()?;
        let (tx, replies) = mpsc::channel();
        std::thread::Builder::new()
            .name("import-acks".into())
            .spawn(move || {
                let mut reader = BufReader::new(read_half);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    let frame = match reader.read_until(b'\n', &mut line) {
                        Ok(0) => Err(anyhow!("posternd closed the connection")),
                        Ok(_) => parse_frame(&line),
                        Err(e) => Err(anyhow!("reading from posternd: {e}")),
                    };
                    let stop = !matches!(frame, Ok(Frame::Stored { .. } | Frame::Duplicate));
                    if tx.send(frame).is_err() || stop {
                        return;
                    }
                }
            })?;
        Ok(Some(RemoteSink {
            writer: BufWriter::with_capacity(256 << 10, stream),
            replies,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            summary: ImportSummary::default(),
        }))
    }

    /// Waits for the reply to the oldest message in flight.
    fn take_reply(&mut self) -> Result<()> {
        let reply = self
            .replies
            .recv()
            .map_err(|_| anyhow!("posternd closed the connection"))?;
        let (origin, size) = self
            .in_flight
            .pop_front()
            .ok_or_else(|| anyhow!("unexpected reply from posternd"))?;
        self.in_flight_bytes -= size;
        match reply.with_context(|| origin.clone())? {
            Frame::Stored { .. } => {
                self.summary.imported += 1;
                self.summary.bytes += size as u64;
                Ok(())
            }
            Frame::Duplicate => {
                self.summary.duplicates += 1;
                Ok(())
            }
            Frame::Error { error } => bail!("{origin}: posternd: {error}"),
            other => bail!("{origin}: unexpected reply from posternd: {other:?}"),
        }
    }

    /// After a write failed: the daemon's reply usually says why.
    fn explain(&mut self, error: std::io::Error) -> anyhow::Error {
        while !self.in_flight.is_empty() {
            if let Err(e) = self.take_reply() {
                return e;
            }
        }
        anyhow!("writing to posternd: {error}")
    }
}

impl Sink for RemoteSink {
    fn submit(&mut self, message: ImportMessage) -> Result<()> {
        self.summary.note_mailbox(&message.mailbox);
        let header = frame_line(&Frame::Message {
            mailbox: message.mailbox,
            uid: 0,
            flags: message.flags,
            internal_date: message.internal_date,
            size: message.body.len() as u64,
        });
        let written = self
            .writer
            .write_all(&header)
            .and_then(|()| self.writer.write_all(&message.body));
        if let Err(e) = written {
            return Err(self.explain(e));
        }
        self.in_flight
            .push_back((message.origin, message.body.len()));
        self.in_flight_bytes += message.body.len();
        if self.in_flight.len() > WINDOW_MESSAGES
            || (self.in_flight_bytes > WINDOW_BYTES && self.in_flight.len() > 1)
        {
            // Everything written must reach the daemon before waiting for its replies.
            if let Err(e) = self.writer.flush() {
                return Err(self.explain(e));
            }
            while self.in_flight.len() > WINDOW_MESSAGES / 2
                || (self.in_flight_bytes > WINDOW_BYTES / 2 && self.in_flight.len() > 1)
            {
                self.take_reply()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let ended = self
            .writer
            .write_all(&frame_line(&Frame::End))
            .and_then(|()| self.writer.flush());
        if let Err(e) = ended {
            return Err(self.explain(e));
        }
        while !self.in_flight.is_empty() {
            self.take_reply()?;
        }
        match self.replies.recv() {
            Ok(Ok(Frame::End)) => Ok(()),
            Ok(Ok(Frame::Error { error })) => bail!("posternd: {error}"),
            Ok(Ok(other)) => bail!("unexpected reply from posternd: {other:?}"),
            Ok(Err(e)) => Err(e),
            Err(_) => bail!("posternd closed the connection"),
        }
    }

    fn summary(&self) -> &ImportSummary {
        &self.summary
    }
}

/// Exports through the daemon.
pub struct RemoteSource {
    reader: BufReader<UnixStream>,
    messages: u64,
    bytes: u64,
    done: bool,
}

impl RemoteSource {
    pub fn connect(
        socket: &Path,
        account: &str,
        mailbox: Option<&str>,
    ) -> Result<Option<RemoteSource>> {
        let request = Request {
            user: account.to_string(),
            mailbox: mailbox.map(str::to_string),
        };
        let Some(stream) = open(socket, "mailbox-export", &request)? else {
            return Ok(None);
        };
        let mut reader = BufReader::with_capacity(256 << 10, stream);
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line)?;
        let Frame::Begin { messages, bytes } = parse_frame(&line)? else {
            bail!("unexpected first frame from posternd");
        };
        Ok(Some(RemoteSource {
            reader,
            messages,
            bytes,
            done: false,
        }))
    }

    fn read_next(&mut self) -> Result<Option<ExportMessage>> {
        let mut line = Vec::new();
        if self.reader.read_until(b'\n', &mut line)? == 0 {
            bail!("posternd closed the connection before the end of the export");
        }
        match parse_frame(&line)? {
            Frame::Message {
                mailbox,
                uid,
                flags,
                internal_date,
                size,
            } => {
                let size = usize::try_from(size)?;
                if size > MAX_MESSAGE {
                    bail!("posternd announced a message of {size} bytes");
                }
                let mut body = vec![0u8; size];
                self.reader
                    .read_exact(&mut body)
                    .context("reading a message from posternd")?;
                Ok(Some(ExportMessage {
                    mailbox,
                    uid,
                    flags,
                    internal_date,
                    body,
                }))
            }
            Frame::End => Ok(None),
            Frame::Error { error } => bail!("posternd: {error}"),
            other => bail!("unexpected frame from posternd: {other:?}"),
        }
    }
}

impl ExportSource for RemoteSource {
    fn next_message(&mut self) -> Option<Result<ExportMessage>> {
        if self.done {
            return None;
        }
        let next = self.read_next();
        if !matches!(next, Ok(Some(_))) {
            self.done = true;
        }
        next.transpose()
    }

    fn totals(&self) -> (u64, u64) {
        (self.messages, self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_one_json_line() {
        let line = frame_line(&Frame::Message {
            mailbox: "Lists/rust".into(),
            uid: 0,
            flags: vec!["\\Seen".into()],
            internal_date: -5,
            size: 3,
        });
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            "{\"t\":\"message\",\"mailbox\":\"Lists/rust\",\"uid\":0,\"flags\":[\"\\\\Seen\"],\"internal_date\":-5,\"size\":3}\n"
        );
        assert_eq!(
            parse_frame(b"{\"t\":\"stored\",\"uid\":4}").unwrap(),
            Frame::Stored { uid: 4 }
        );
        assert!(parse_frame(b"{\"t\":\"nope\"}").is_err());
        assert_eq!(
            admin_command("mailbox-import {}"),
            Some(("mailbox-import", "{}"))
        );
        assert_eq!(admin_command("reload"), None);
    }
}

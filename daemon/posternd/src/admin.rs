//! The admin socket: a Unix socket (mode 0600, in the data directory by default) on which
//! the `postern` CLI tells the running daemon to pick up changes it made.
//! Protocol: one command line, one reply line. Commands: `ping`, `reload`; `ban-list`
//! (a JSON array), `ban-remove TARGET` (`ok` or `error ...`), `login-history ACCOUNT` (a JSON
//! array); `filter-list USER` (JSON) and `filter-edit allow|block add|remove USER ENTRY`
//! (`ok` or `error ...`); `store-stats` and `store-compact`, whose reply is several lines ended by the
//! connection's close; and `mailbox-import`/`mailbox-export`, which stream messages (see
//! `mailbox_io::remote`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use crate::server::Shared;

pub fn bind(path: &Path) -> Result<UnixListener> {
    // A socket file left by a killed daemon would make bind fail; nothing else lives there.
    if path.exists() {
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding admin socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(read).take(1024);
            let read =
                tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
            if !matches!(read, Ok(Ok(_))) {
                return;
            }
            // Mailbox import/export streams frames after the command line.
            if let Some((command, args)) = crate::mailbox_io::remote::admin_command(line.trim()) {
                let reader = reader.into_inner();
                crate::mailbox_io::remote::serve(shared, command, args, reader, write).await;
                return;
            }
            let (command, argument) = match line.trim().split_once(' ') {
                Some((command, argument)) => (command, argument.trim()),
                None => (line.trim(), ""),
            };
            let reply = match command {
                "ping" => "pong
"
                .to_string(),
                "reload" => {
                    crate::server::reload_accounts(&shared, true).await;
                    "ok\n".to_string()
                }
                c @ (crate::store_admin::STATS | crate::store_admin::COMPACT) => {
                    crate::store_admin::serve(&shared.store, c).await
                }
                "ban-list" => ban_list(&shared),
                "ban-remove" => ban_remove(&shared, argument),
                "login-history" => login_history(&shared, argument),
                "filter-list" => shared.filter.lists_json(argument),
                "filter-edit" => filter_edit(&shared, argument),
                _ => "error unknown command\n".to_string(),
            };
            let _ = write.write_all(reply.as_bytes()).await;
        });
    }
}

fn ban_list(shared: &Shared) -> String {
    let now = crate::login_guard::unix_now();
    let bans = crate::login_guard::bans_json(&shared.login_guard.bans(now));
    format!("{bans}\n")
}

fn ban_remove(shared: &Arc<Shared>, target: &str) -> String {
    let target = match crate::login_guard::Target::parse(target) {
        Ok(target) => target,
        Err(why) => return format!("error {why}\n"),
    };
    let now = crate::login_guard::unix_now();
    let removed = shared.login_guard.remove(&target, now);
    crate::login_guard::persist(&shared.login_guard);
    if removed {
        tracing::info!(event = "auth.ban.removed", target = %target, kind = target.kind());
        "ok\n".to_string()
    } else {
        format!("error {target} is not banned\n")
    }
}

/// `filter-edit allow|block add|remove USER ENTRY` (the entry is the rest of the line).
fn filter_edit(shared: &Shared, argument: &str) -> String {
    let mut parts = argument.splitn(4, ' ');
    let (Some(list), Some(action), Some(user), Some(entry)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return "error usage: filter-edit allow|block add|remove USER ENTRY\n".to_string();
    };
    let allow = match list {
        "allow" => true,
        "block" => false,
        _ => return "error the list is allow or block\n".to_string(),
    };
    let add = match action {
        "add" => true,
        "remove" => false,
        _ => return "error the action is add or remove\n".to_string(),
    };
    match postern_accounts::normalize_address(user) {
        Ok(user) => shared.filter.edit_list(&user, allow, add, entry.trim()),
        Err(why) => format!("error {why}\n"),
    }
}

fn login_history(shared: &Shared, account: &str) -> String {
    let account = match postern_accounts::normalize_address(account) {
        Ok(account) => account,
        Err(why) => return format!("error {why}\n"),
    };
    let history = shared.login_guard.history(&account);
    match serde_json::to_string(&history) {
        Ok(json) => format!("{json}\n"),
        Err(why) => format!("error {why}\n"),
    }
}

/// Client side, used by `postern`: sends one command; Ok(None) when no daemon listens.
pub fn request(path: &Path, command: &str) -> Option<String> {
    use std::io::BufRead;
    let stream = send(path, command, Duration::from_secs(5))?;
    let mut reply = String::new();
    std::io::BufReader::new(stream).read_line(&mut reply).ok()?;
    Some(reply.trim().to_string())
}

/// Client side of a command whose reply is several lines: everything until the daemon
/// closes the connection. None when no daemon listens.
pub fn request_text(path: &Path, command: &str, timeout: Duration) -> Option<String> {
    use std::io::Read;
    let mut stream = send(path, command, timeout)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    Some(reply)
}

/// Connects and sends one command line; reads on the stream time out after `timeout`.
fn send(path: &Path, command: &str, timeout: Duration) -> Option<std::os::unix::net::UnixStream> {
    use std::io::Write;
    let mut stream = std::os::unix::net::UnixStream::connect(path).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.write_all(format!("{command}\n").as_bytes()).ok()?;
    Some(stream)
}

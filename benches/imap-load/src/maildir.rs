//! `maildir`: writes the same generated messages `load` would APPEND as a Maildir
//! (cur/, flags ":2,"), for servers that import or index a Maildir offline. File names sort in
//! message order and start with the Date header's time, so a server that assigns UIDs by name
//! (Dovecot sorts new files by their time prefix) gives message i UID i+1; S= and W= carry the
//! size as Dovecot's maildir_filename_flags would. The modification time is the Date too
//! (a Maildir's received date).

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::json;

use crate::message;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The Maildir to create or add to (cur/, new/ and tmp/ are created).
    #[arg(long)]
    dir: PathBuf,
    /// Messages to write.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Number of the first message.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Seed of the generated messages.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The To: address of the messages.
    #[arg(long)]
    to: String,
}

pub fn run(args: Args) -> Result<bool> {
    for sub in ["cur", "new", "tmp"] {
        let d = args.dir.join(sub);
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    }
    let started = Instant::now();
    let mut bytes = 0u64;
    for i in args.start..args.start + args.count {
        let m = message::generate(args.seed, i, &args.to);
        let size = m.bytes.len();
        let name = format!("{}.M{i:09}P1.imap-load,S={size},W={size}:2,", m.unix_time);
        let path = args.dir.join("cur").join(name);
        let mut f =
            fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(&m.bytes)
            .with_context(|| format!("writing {}", path.display()))?;
        let mtime = UNIX_EPOCH + Duration::from_secs(u64::try_from(m.unix_time).unwrap_or(0));
        f.set_modified(mtime)
            .with_context(|| format!("setting the time of {}", path.display()))?;
        bytes += size as u64;
    }
    println!(
        "{}",
        json!({
            "mode": "maildir",
            "dir": args.dir,
            "count": args.count,
            "bytes": bytes,
            "wall_s": started.elapsed().as_secs_f64(),
        })
    );
    Ok(true)
}

//! First-boot provisioning, once (marker on /persist): the posternd and hwmond
//! configurations, a TLS certificate (`postern tls self-signed`, the daemon's own rcgen
//! path), the local domain and the admin account (random password printed once on the
//! console, never written anywhere).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::children::{run, run_with_input};
use crate::paths;
use crate::plan::InitPlan;

pub const CERTIFICATE: &str = "/persist/etc/postern/tls/certificate.pem";
pub const PRIVATE_KEY: &str = "/persist/etc/postern/tls/private-key.pem";

fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

/// posternd's configuration (daemon/config/reference.toml): the store on the data array,
/// the seven standard listeners on every address, TLS from /persist, hwmond's health gate.
/// `tls` false leaves [tls] empty: posternd then generates its own self-signed pair.
/// `test` (`postern.test=1`): no sender authentication, as the test guest has no DNS it may
/// ask (DESIGN.md 4: tests send no traffic off the host; QEMU's resolver forwards to the
/// host's, which does not serve DNSSEC, so every MX message would be deferred).
pub fn posternd_config(plan: &InitPlan, tls: bool, test: bool) -> String {
    let mut text = format!(
        "# Written by postern-init at first boot. Reference: postern config check.\n\
         [server]\nhostname = {}\ndata_dir = {}\n\n",
        toml_string(&plan.mail_hostname()),
        toml_string(paths::DATA_MOUNT)
    );
    if tls {
        text.push_str(&format!(
            "[tls]\ncertificate = {}\nprivate_key = {}\n\n",
            toml_string(CERTIFICATE),
            toml_string(PRIVATE_KEY)
        ));
    }
    text.push_str(&format!(
        "[metrics]\nbind = \"127.0.0.1:9187\"\n\n[health]\nsocket = {}\n\n\
         [log]\nlevel = \"info\"\nformat = \"text\"\n\n",
        toml_string(paths::HWMOND_SOCKET)
    ));
    if test {
        text.push_str("# postern.test=1: the test guest has no DNS to verify senders with.\n[sender_auth]\nverify = false\n\n");
    }
    for (kind, port) in [
        ("mx", 25),
        ("submission", 587),
        ("submissions", 465),
        ("imap", 143),
        ("imaps", 993),
        ("pop3", 110),
        ("pop3s", 995),
    ] {
        text.push_str(&format!(
            "[[listener]]\nkind = \"{kind}\"\nbind = [\"0.0.0.0:{port}\"]\n\n"
        ));
    }
    text
}

/// hwmond's configuration (hwmon/hwmond.reference.toml): the board file, the health socket
/// posternd reads, alert mail to the admin through posternd's MX on loopback, metrics.
pub fn hwmond_config(plan: &InitPlan) -> String {
    format!(
        "# Written by postern-init at first boot.\n\
         [hwmond]\nsocket = {socket}\nboard = {board}\n\n\
         [ipmi]\nenable = {ipmi}\n\n\
         [sinks.metrics]\nenable = true\nlisten = \"127.0.0.1:9188\"\n\n\
         [sinks.email]\nenable = true\nserver = \"127.0.0.1:25\"\nfrom = {from}\nto = [{to}]\n\
         tls = \"opportunistic\"\n",
        socket = toml_string(paths::HWMOND_SOCKET),
        board = toml_string(paths::BOARD_FILE),
        ipmi = plan.ipmi,
        from = toml_string(&format!("hwmond@{}", plan.domain)),
        to = toml_string(&admin_address(plan)),
    )
}

pub fn admin_address(plan: &InitPlan) -> String {
    format!("admin@{}", plan.domain)
}

const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// A random password from the kernel's CSPRNG (getrandom(2)): 20 characters of an alphabet
/// without look-alikes (0/O, 1/l/I), about 116 bits.
pub fn random_password() -> Result<String> {
    let mut password = String::new();
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - 256 % PASSWORD_ALPHABET.len();
    while password.len() < 20 {
        let mut bytes = [0u8; 32];
        // SAFETY: getrandom fills the buffer we own.
        let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        if n <= 0 {
            bail!("getrandom: {}", std::io::Error::last_os_error());
        }
        for &b in &bytes[..n as usize] {
            if (b as usize) < limit && password.len() < 20 {
                password.push(PASSWORD_ALPHABET[b as usize % PASSWORD_ALPHABET.len()] as char);
            }
        }
    }
    Ok(password)
}

fn write_config(path: &str, text: &str) -> Result<()> {
    crate::boot_record::write_durably(Path::new(path), text.as_bytes())
}

fn postern_cli(args: &[&str], input: Option<&[u8]>) -> Result<()> {
    let mut argv = vec![paths::POSTERN_CLI, "--config", paths::POSTERND_CONFIG];
    argv.extend_from_slice(args);
    let out = run_with_input(&argv, input, Duration::from_secs(120))?;
    if !out.success() {
        bail!("postern {}: {}", args.join(" "), out.message());
    }
    Ok(())
}

pub fn is_provisioned() -> bool {
    Path::new(paths::PROVISIONED_MARKER).exists()
}

/// Runs provisioning; the admin password is printed on the console only. `test`: the kernel
/// command line says `postern.test=1` (see [`posternd_config`]).
pub fn provision(plan: &InitPlan, test: bool) -> Result<()> {
    std::fs::create_dir_all(paths::TLS_DIR)
        .with_context(|| format!("creating {}", paths::TLS_DIR))?;
    let tls = generate_certificate(plan);
    write_config(paths::POSTERND_CONFIG, &posternd_config(plan, tls, test))?;
    write_config(paths::HWMOND_CONFIG, &hwmond_config(plan))?;
    postern_cli(&["domain", "add", &plan.domain], None).or_else(|error| {
        // A rerun after an interrupted provisioning finds the domain already there.
        if format!("{error:#}").contains("exists") {
            Ok(())
        } else {
            Err(error)
        }
    })?;
    let password = random_password()?;
    let admin = admin_address(plan);
    let added = postern_cli(
        &["user", "add", &admin],
        Some(format!("{password}\n").as_bytes()),
    );
    if added.is_err() {
        postern_cli(
            &["user", "passwd", &admin],
            Some(format!("{password}\n").as_bytes()),
        )
        .context("setting the admin password")?;
    }
    // Console only: this line must not reach the log ring on /persist.
    {
        use std::io::Write;
        // println! would panic if the console went away; PID 1 must not.
        let mut console = std::io::stdout().lock();
        let _ = writeln!(
            console,
            "postern-init: admin account {admin} password: {password}"
        );
        let _ = writeln!(
            console,
            "postern-init: (shown once; change it with `postern user passwd {admin}`)"
        );
        let _ = console.flush();
    }
    write_config(
        paths::PROVISIONED_MARKER,
        &format!("{}\n", crate::boot_record::now_epoch()),
    )
}

/// `postern tls self-signed`; false (posternd will make its own) when it fails.
fn generate_certificate(plan: &InitPlan) -> bool {
    if Path::new(CERTIFICATE).exists() && Path::new(PRIVATE_KEY).exists() {
        return true;
    }
    let hostname = plan.mail_hostname();
    let result = run(
        &[
            paths::POSTERN_CLI,
            "tls",
            "self-signed",
            "--hostname",
            &hostname,
            "--certificate",
            CERTIFICATE,
            "--private-key",
            PRIVATE_KEY,
        ],
        Duration::from_secs(60),
    );
    match result {
        Ok(out) if out.success() => true,
        Ok(out) => {
            crate::console::say(&format!(
                "cannot generate a TLS certificate ({}); posternd will generate one",
                out.message()
            ));
            false
        }
        Err(error) => {
            crate::console::say(&format!(
                "cannot generate a TLS certificate ({error:#}); posternd will generate one"
            ));
            false
        }
    }
}

/// Factory reset of /persist: everything under /persist/etc/postern (configuration, TLS
/// keys, the provisioned marker) goes; boot records and the log ring stay.
pub fn wipe_persist_state() -> Result<()> {
    let etc = Path::new(paths::PERSIST_ETC);
    if etc.exists() {
        std::fs::remove_dir_all(etc).with_context(|| format!("removing {}", etc.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> InitPlan {
        InitPlan::without_board()
    }

    #[test]
    fn posternd_config_is_valid_for_posternd() {
        let dir = tempfile::tempdir().unwrap();
        for (tls, test) in [(true, false), (false, false), (false, true)] {
            let path = dir.path().join("postern.toml");
            std::fs::write(&path, posternd_config(&plan(), tls, test)).unwrap();
            let config = postern_config::Config::load(&path).unwrap();
            assert_eq!(config.sender_auth.verify, !test);
            assert_eq!(config.listeners.len(), 7);
            assert_eq!(config.server.data_dir, Path::new("/var/lib/postern"));
            assert_eq!(config.tls.certificate.is_some(), tls);
            let binds: Vec<String> = config
                .listeners
                .iter()
                .flat_map(|l| l.bind.iter().map(|a| a.to_string()))
                .collect();
            assert!(binds.contains(&"0.0.0.0:25".to_string()));
            assert!(binds.contains(&"0.0.0.0:995".to_string()));
        }
    }

    #[test]
    fn hwmond_config_mails_the_admin_through_loopback() {
        let text = hwmond_config(&plan());
        let value: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            value["sinks"]["email"]["to"][0].as_str(),
            Some("admin@postern.internal")
        );
        assert_eq!(
            value["sinks"]["email"]["server"].as_str(),
            Some("127.0.0.1:25")
        );
        assert_eq!(
            value["hwmond"]["socket"].as_str(),
            Some("/run/postern/hwmond.sock")
        );
        assert_eq!(
            value["hwmond"]["board"].as_str(),
            Some("/etc/postern/board.toml")
        );
    }

    #[test]
    fn passwords_are_long_random_and_from_the_alphabet() {
        let a = random_password().unwrap();
        let b = random_password().unwrap();
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| PASSWORD_ALPHABET.contains(&c)));
    }
}

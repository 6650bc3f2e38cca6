use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/postern/posternd.toml"))
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.problems().to_vec(),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn empty_file_gives_production_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.data_dir(), Path::new("/var/lib/postern"));
    assert_eq!(
        c.admin_socket_path(),
        PathBuf::from("/var/lib/postern/admin.sock")
    );
    assert_eq!(c.binds(ListenerKind::Mx), vec![addr("0.0.0.0:25")]);
    assert_eq!(c.binds(ListenerKind::Submission), vec![addr("0.0.0.0:587")]);
    assert_eq!(
        c.binds(ListenerKind::Submissions),
        vec![addr("0.0.0.0:465")]
    );
    assert_eq!(c.metrics.bind, Some(addr("127.0.0.1:9187")));
    assert_eq!(c.tls.certificate, None);
    assert_eq!(c.tls.min_version, TlsVersion::V1_2);
    assert_eq!(c.tls.reload_check_secs, 5);
    assert_eq!(c.smtp.max_message_size, 52_428_800);
    assert_eq!(c.smtp.max_recipients, 100);
    assert_eq!(c.smtp.max_command_line, 2048);
    assert_eq!(c.smtp.max_data_line, 8192);
    assert_eq!(c.smtp.timeout_command().as_secs(), 300);
    assert_eq!(c.smtp.timeout_data().as_secs(), 180);
    assert_eq!(c.store.backend, StoreBackend::Auto);
    assert_eq!(c.store.segment_size, 67_108_864);
    assert_eq!(c.store.max_batch, 512);
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info");
    assert!(!c.server.hostname.is_empty());
}

#[test]
fn reference_file_parses_to_the_defaults() {
    let c = Config::parse(REFERENCE_TOML, Path::new("/etc/postern/reference.toml")).unwrap();
    assert_eq!(c, Config::default());
}

/// Dotted key paths of every leaf in a TOML value (arrays of tables use the array's key).
fn leaf_keys(prefix: &str, v: &toml::Value, out: &mut BTreeSet<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_keys(&p, v, out);
            }
        }
        toml::Value::Array(a) if a.iter().all(|v| v.is_table()) && !a.is_empty() => {
            for v in a {
                leaf_keys(prefix, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

#[test]
fn every_schema_key_is_documented_in_the_reference() {
    let defaults: toml::Value = toml::from_str(&Config::default().to_toml()).unwrap();
    let reference: toml::Value = toml::from_str(REFERENCE_TOML).unwrap();
    let mut schema = BTreeSet::new();
    leaf_keys("", &defaults, &mut schema);
    let mut documented = BTreeSet::new();
    leaf_keys("", &reference, &mut documented);
    // Sanity: the walk really sees the whole schema.
    for k in [
        "server.hostname",
        "tls.min_version",
        "listener.bind",
        "smtp.max_data_line",
        "store.max_batch",
        "metrics.bind",
        "log.format",
        "auth.credential_cache_ttl_secs",
    ] {
        assert!(
            schema.contains(k),
            "{k} missing from serialized defaults: {schema:?}"
        );
    }
    assert_eq!(schema, documented, "reference.toml and the schema disagree");
    assert_eq!(schema.len(), 91);

    // Every key line in the reference is explained by a comment: on the line itself or in the
    // comment block directly above (following keys of a repeated [[listener]] excepted).
    let lines: Vec<&str> = REFERENCE_TOML.lines().collect();
    let mut in_repeat = false;
    let mut listeners_seen = 0;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if t == "[[listener]]" {
            listeners_seen += 1;
            in_repeat = listeners_seen > 1;
            continue;
        }
        if t.is_empty() || t.starts_with('#') || t.starts_with('[') || in_repeat {
            continue;
        }
        let above = if i > 0 { lines[i - 1].trim() } else { "" };
        assert!(
            t.contains('#') || above.starts_with('#'),
            "reference.toml line {}: `{t}` has no comment",
            i + 1
        );
    }
}

#[test]
fn serialization_round_trips() {
    let c = Config::dev();
    let again = Config::parse(&c.to_toml(), Path::new("x.toml")).unwrap();
    assert_eq!(c, again);
}

#[test]
fn dev_profile() {
    let c = Config::dev();
    assert_eq!(c.server.hostname, "localhost");
    assert_eq!(c.data_dir(), Path::new("./postern-dev"));
    assert!(c.data_dir().is_relative());
    assert_eq!(c.server.workers, 0);
    assert!(c.effective_workers() >= 1);
    assert_eq!(c.effective_shards(), c.effective_workers());
    assert_eq!(c.binds(ListenerKind::Mx), vec![addr("127.0.0.1:2525")]);
    assert_eq!(
        c.binds(ListenerKind::Submission),
        vec![addr("127.0.0.1:5587")]
    );
    assert_eq!(
        c.binds(ListenerKind::Submissions),
        vec![addr("127.0.0.1:5465")]
    );
    assert_eq!(c.metrics.bind, Some(addr("127.0.0.1:9187")));
    assert_eq!(c.admin_socket_path(), Path::new("./postern-dev/admin.sock"));
    assert!(c.sender_auth.verify && !c.dns.dnssec_validation);
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let c = parse(
        "[server]\ndata_dir = \"data\"\nadmin_socket = \"run/admin.sock\"\n\
         [tls]\ncertificate = \"certs/chain.pem\"\nprivate_key = \"/keys/key.pem\"\n",
    )
    .unwrap();
    assert_eq!(c.data_dir(), Path::new("/etc/postern/data"));
    assert_eq!(
        c.admin_socket_path(),
        Path::new("/etc/postern/run/admin.sock")
    );
    assert_eq!(
        c.tls.certificate.as_deref(),
        Some(Path::new("/etc/postern/certs/chain.pem"))
    );
    assert_eq!(
        c.tls.private_key.as_deref(),
        Some(Path::new("/keys/key.pem"))
    );
    assert_eq!(c.tls_dir(), Path::new("/etc/postern/data/tls"));
}

#[test]
fn explicit_listeners_replace_the_defaults() {
    let c = parse(
        "[[listener]]\nkind = \"submissions\"\nbind = [\"[::1]:465\", \"127.0.0.1:465\"]\n\
         [metrics]\nbind = \"\"\n[store]\nbackend = \"io_uring\"\nshards = 3\n\
         [server]\nworkers = 2\n[log]\nformat = \"json\"\nlevel = \"info,postern_smtp=debug\"\n\
         [tls]\nmin_version = \"1.3\"\n",
    )
    .unwrap();
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].kind, ListenerKind::Submissions);
    assert_eq!(
        c.listeners[0].bind,
        vec![addr("[::1]:465"), addr("127.0.0.1:465")]
    );
    assert!(c.binds(ListenerKind::Mx).is_empty());
    assert_eq!(c.metrics.bind, None);
    assert_eq!(c.store.backend, StoreBackend::IoUring);
    assert_eq!(c.effective_workers(), 2);
    assert_eq!(c.effective_shards(), 3);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.tls.min_version, TlsVersion::V1_3);
}

#[test]
fn unknown_key_is_reported_with_line_and_column() {
    let text = "[server]\nhostname = \"mx.example.test\"\n\n[smtp]\nmax_recipents = 100\n";
    let e = parse(text).unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.starts_with("/etc/postern/posternd.toml:5:1: unknown key `max_recipents` in [smtp]"),
        "{shown}"
    );
    assert_eq!(e.problems().len(), 1);
}

#[test]
fn unknown_table_is_reported() {
    let p = problems("[smtp]\nmax_errors = 3\n[lmtp]\nport = 24\n");
    assert_eq!((p[0].line, p[0].column), (3, 2), "{p:?}");
    assert!(
        p[0].message.contains("unknown key `lmtp` at the top level"),
        "{p:?}"
    );
}

#[test]
fn all_unknown_keys_are_reported_together() {
    let text =
        "[server]\nworkers = 1\nwokers = 2\n[[listener]]\nkind = \"mx\"\nbind = [\"0.0.0.0:25\"]\n\
                port = 25\n[metrics]\n  enabled = true\n[nonsense]\nx = 1\n";
    let p = problems(text);
    let at: Vec<(usize, usize)> = p.iter().map(|p| (p.line, p.column)).collect();
    assert_eq!(at, vec![(3, 1), (7, 1), (9, 3), (10, 2)], "{p:?}");
    assert!(
        p[0].message.contains(
            "`wokers` in [server]; expected one of: admin_socket, data_dir, hostname, workers"
        ),
        "{p:?}"
    );
    assert!(p[1].message.contains("`port` in [listener]"), "{p:?}");
    assert!(p[2].message.contains("`enabled` in [metrics]"), "{p:?}");
}

#[test]
fn wrong_type_is_reported() {
    let p = problems("[smtp]\nmax_errors = 3\nmax_recipients = \"lots\"\n");
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].line, p[0].column), (3, 18), "{p:?}");
    assert!(p[0].message.contains("invalid type"), "{p:?}");
    let p = problems("[smtp]\nmax_errors = -1\n");
    assert_eq!(p[0].line, 2, "{p:?}");
}

#[test]
fn bad_enum_value_is_reported() {
    let p = problems("[tls]\nmin_version = \"1.1\"\n");
    assert_eq!(p[0].line, 2, "{p:?}");
    assert!(p[0].message.contains("1.2"), "{p:?}");
    let p = problems("[[listener]]\nkind = \"lmtp\"\nbind = [\"0.0.0.0:143\"]\n");
    assert_eq!(p[0].line, 2, "{p:?}");
}

#[test]
fn syntax_errors_are_reported_with_position() {
    let e = parse("[server]\nworkers = = 3\n").unwrap_err();
    let p = e.problems();
    assert!(!p.is_empty());
    assert_eq!(p[0].line, 2, "{p:?}");
    assert!(
        e.to_string().starts_with("/etc/postern/posternd.toml:2:"),
        "{e}"
    );
}

#[test]
fn bad_bind_address_is_reported_at_the_value() {
    let p = problems("[[listener]]\nkind = \"mx\"\nbind = [\"0.0.0.0:25\", \"mail:25\"]\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!((p[0].line, p[0].column), (3, 23), "{p:?}");
    assert!(
        p[0].message.contains("invalid bind address \"mail:25\""),
        "{p:?}"
    );
    let p = problems("[metrics]\nbind = \"127.0.0.1\"\n");
    assert_eq!((p[0].line, p[0].column), (2, 8), "{p:?}");
}

#[test]
fn several_semantic_errors_are_reported_together() {
    let text = "\
[server]
workers = 5000

[tls]
certificate = \"cert.pem\"

[smtp]
max_data_line = 998
max_command_line = 100
max_errors = 0

[[listener]]
kind = \"mx\"
bind = [\"0.0.0.0:25\"]

[[listener]]
kind = \"submission\"
bind = [\"0.0.0.0:25\"]
";
    let e = parse(text).unwrap_err();
    let p = e.problems();
    let at: Vec<(usize, usize)> = p.iter().map(|p| (p.line, p.column)).collect();
    assert_eq!(
        at,
        vec![(2, 11), (5, 15), (8, 17), (9, 20), (10, 14), (18, 9)],
        "{p:?}"
    );
    assert!(p[0].message.contains("workers = 5000"));
    assert!(p[1].message.contains("private_key"));
    assert!(p[2].message.contains("RFC 5321 4.5.3.1.6"));
    assert!(p[3].message.contains("RFC 5321 4.5.3.1.4"));
    assert!(p[4].message.contains("max_errors must be at least 1"));
    assert!(p[5].message.contains("duplicate bind address 0.0.0.0:25"));
    assert!(p[5].message.contains("listener #1 (mx)"));
    let shown = e.to_string();
    assert_eq!(shown.lines().count(), 6);
    for line in shown.lines() {
        assert!(line.starts_with("/etc/postern/posternd.toml:"), "{line}");
    }
}

#[test]
fn overlapping_wildcard_binds_and_metrics_clash() {
    let p = problems(
        "[metrics]\nbind = \"127.0.0.1:2525\"\n[[listener]]\nkind = \"mx\"\nbind = [\"0.0.0.0:2525\"]\n",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, 2, "{p:?}");
    assert!(p[0].message.contains("overlaps 0.0.0.0:2525"), "{p:?}");
    // Different ports, or different address families, do not clash.
    parse("[metrics]\nbind = \"[::]:25\"\n").unwrap();
}

#[test]
fn other_semantic_checks() {
    let cases: &[(&str, &str)] = &[
        (
            "[[listener]]\nkind = \"mx\"\nbind = []\n",
            "has no bind address",
        ),
        ("listener = []\n", "at least one [[listener]]"),
        (
            "[[listener]]\nkind = \"mx\"\nbind = [\"0.0.0.0:0\"]\n",
            "port 0",
        ),
        ("[server]\nhostname = \"bad_host\"\n", "invalid hostname"),
        ("[server]\nhostname = \"-a.example\"\n", "hyphen"),
        ("[server]\ndata_dir = \"\"\n", "data_dir must not be empty"),
        ("[tls]\nprivate_key = \"k.pem\"\n", "certificate is not"),
        ("[smtp]\nmax_message_size = 1000\n", "4.5.3.1.7"),
        ("[smtp]\nmax_recipients = 10\n", "4.5.3.1.8"),
        (
            "[smtp]\ntimeout_data_secs = 0\n",
            "timeout_data_secs must be at least 1",
        ),
        ("[smtp]\nmax_connections = 10\n", "exceeds max_connections"),
        ("[store]\nshards = 2000\n", "shards = 2000"),
        ("[store]\nsegment_size = 1000000\n", "multiple of 4096"),
        ("[store]\nmax_batch = 0\n", "max_batch = 0"),
        (
            "[store]\ncheckpoint_bytes = 4096\n",
            "checkpoint_bytes = 4096 must be at least 1048576",
        ),
        (
            "[store]\ncheckpoint_interval_secs = 1\n",
            "checkpoint_interval_secs = 1",
        ),
        (
            "[store]\ncompact_interval_secs = 100000\n",
            "compact_interval_secs = 100000",
        ),
        (
            "[store]\ncompact_dead_percent = 0\n",
            "compact_dead_percent = 0",
        ),
        ("[log]\nlevel = \"loud\"\n", "invalid log level"),
    ];
    for (text, needle) in cases {
        let p = problems(text);
        assert!(
            p.iter().any(|p| p.message.contains(needle)),
            "{text:?}: expected {needle:?} in {p:?}"
        );
        assert!(p.iter().all(|p| p.line >= 1 && p.column >= 1));
    }
}

#[test]
fn load_reads_the_file_and_reports_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("posternd.toml");
    std::fs::write(&path, "[server]\ndata_dir = \"d\"\nbogus = 1\n").unwrap();
    let e = Config::load(&path).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "{}:3:1: unknown key `bogus` in [server]",
            path.display()
        )),
        "{e}"
    );

    std::fs::write(&path, "[server]\ndata_dir = \"d\"\n").unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.data_dir(), dir.path().join("d"));

    let missing = dir.path().join("missing.toml");
    let e = Config::load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e.to_string().contains("missing.toml"));
}

#[test]
fn line_col_counts_characters() {
    assert_eq!(crate::validate::line_col("ab\ncdé f", 8), (2, 5));
    assert_eq!(crate::validate::line_col("", 0), (1, 1));
}

#[test]
fn health_socket_is_optional_and_resolved() {
    let c = Config::parse("", Path::new("/etc/postern/postern.toml")).unwrap();
    assert_eq!(c.health.socket, None);
    let c = Config::parse(
        "[health]\nsocket = \"run/hwmond.sock\"\n",
        Path::new("/etc/postern/postern.toml"),
    )
    .unwrap();
    assert_eq!(
        c.health.socket.as_deref(),
        Some(Path::new("/etc/postern/run/hwmond.sock"))
    );
}

#[test]
fn credential_cache_bounds_are_checked_and_zero_disables() {
    let c = parse("[auth]\ncredential_cache_ttl_secs = 0\ncredential_cache_entries = 0\n").unwrap();
    assert_eq!(c.auth.credential_cache_ttl_secs, 0);
    assert_eq!(c.auth.credential_cache_entries, 0);
    let e =
        parse("[auth]\ncredential_cache_ttl_secs = 86401\ncredential_cache_entries = 1000001\n")
            .unwrap_err();
    let p = e.problems();
    let at: Vec<(usize, usize)> = p.iter().map(|p| (p.line, p.column)).collect();
    assert_eq!(at, vec![(2, 29), (3, 28)], "{p:?}");
    assert!(p[0].message.contains("credential_cache_ttl_secs = 86401"));
    assert!(p[1].message.contains("credential_cache_entries = 1000001"));
}

#[test]
fn ban_settings_are_checked() {
    let c =
        parse("[auth]\nban_allow = [\"192.0.2.0/24\", \"2001:db8::1\", \"10.1.2.3/8\"]\n").unwrap();
    let nets: Vec<String> = c
        .auth
        .ban_allow_networks()
        .iter()
        .map(|n| n.to_string())
        .collect();
    // A single address is its own network; host bits of a prefix are dropped.
    assert_eq!(nets, ["192.0.2.0/24", "2001:db8::1/128", "10.0.0.0/8"]);
    let e = parse(
        "[auth]\nban_allow = [\"192.0.2.0/24\", \"not-a-net\"]\nban_duration_secs = 0\nban_window_secs = 604801\n",
    )
    .unwrap_err();
    let p = e.problems();
    let at: Vec<(usize, usize)> = p.iter().map(|p| (p.line, p.column)).collect();
    assert_eq!(at, vec![(2, 30), (3, 21), (4, 19)], "{p:?}");
    assert!(p[0].message.contains("\"not-a-net\" is not an IP network"));
    assert!(p[1]
        .message
        .contains("ban_duration_secs = 0 must be between 1"));
    assert!(p[2].message.contains("ban_window_secs = 604801"));
    // With both thresholds at 0 bans are off and the durations are not needed.
    parse("[auth]\nban_address_failures = 0\nban_account_failures = 0\nban_duration_secs = 0\n")
        .unwrap();
}

#[test]
fn password_policy_settings_are_checked() {
    let c = parse("[auth]\npassword_min_length = 8\npassword_min_strength = 0\n").unwrap();
    assert_eq!(
        (c.auth.password_min_length, c.auth.password_min_strength),
        (8, 0)
    );
    let e = parse(
        "[auth]\npassword_min_length = 7\npassword_min_strength = 5\npassword_breached_sha1 = \"pwned.txt\"\n",
    )
    .unwrap_err();
    let p = e.problems();
    let lines: Vec<usize> = p.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![2, 3, 4], "{p:?}");
    assert!(p[0].message.contains("between 8 and 1024"));
    assert!(p[1].message.contains("0 to 4"));
    assert!(p[2].message.contains("absolute path"));
}

#[test]
fn rate_limits_are_checked() {
    let c = parse(
        "[smtp]\nmx_messages_per_ip_per_hour = 0\nsubmission_messages_per_hour = 5\nsubmission_recipients_per_message = 10\nsubmission_recipients_per_hour = 0\n",
    )
    .unwrap();
    assert_eq!(
        (
            c.smtp.mx_messages_per_ip_per_hour,
            c.smtp.submission_messages_per_hour,
            c.smtp.submission_recipients_per_message,
            c.smtp.submission_recipients_per_hour
        ),
        (0, 5, 10, 0)
    );
    let e = parse("[smtp]\nmax_recipients = 100\nsubmission_recipients_per_message = 101\n")
        .unwrap_err();
    let p = e.problems();
    let at: Vec<(usize, usize)> = p.iter().map(|p| (p.line, p.column)).collect();
    assert_eq!(at, vec![(3, 37)], "{p:?}");
    assert!(
        p[0].message.contains("exceeds max_recipients = 100"),
        "{p:?}"
    );
    let e = parse("[smtp]\nsubmission_recipients_per_message = 0\n").unwrap_err();
    let p = e.problems();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, 2);
    assert!(p[0].message.contains("at least 1"), "{p:?}");
    let e = parse("[smtp]\nsubmission_messages_per_hour = -1\n").unwrap_err();
    assert_eq!(e.problems()[0].line, 2, "{:?}", e.problems());
}

#[test]
fn filter_and_admin_settings_are_checked_with_positions() {
    let c = parse(
        "[filter]\nblock = [\"/^promo-[0-9]+@/\", \"@bad.example\"]\nblock_action = \"junk\"\n[admin]\nallowed_networks = [\"192.0.2.0/24\"]\n",
    )
    .unwrap();
    assert_eq!(c.filter.block.len(), 2);
    assert_eq!(c.filter.block_action, crate::BlockAction::Junk);
    assert_eq!(c.admin.networks().len(), 1);
    let e = parse(
        "[filter]\nallow = [\"ok@example.com\", \"/(/\"]\njunk_threshold = 1.5\nreject_threshold = 0.5\nmax_tokens = 10\n[admin]\nallowed_networks = [\"127.0.0.1/32\", \"nope\"]\n",
    )
    .unwrap_err();
    let p = e.problems();
    let lines: Vec<usize> = p.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![2, 3, 4, 5, 7], "{p:?}");
    assert!(p[0].message.contains("invalid regular expression"), "{p:?}");
    assert!(p[1].message.contains("junk_threshold = 1.5"));
    assert!(p[2].message.contains("reject_threshold = 0.5"));
    assert!(p[3].message.contains("max_tokens = 10"));
    assert!(p[4].message.contains("\"nope\" is not an IP network"));
    // The message names the file.
    assert!(
        e.to_string().starts_with("/etc/postern/posternd.toml:2:"),
        "{e}"
    );
}

#[test]
fn dns_and_sender_auth_settings_are_checked() {
    let c = parse(
        "[dns]\nnameservers = [\"127.0.0.1:5353\", \"192.0.2.53\", \"[2001:db8::53]:53\"]\n\
         trust_anchor = \"/etc/postern/anchor.key\"\n\
         [sender_auth]\ndmarc_exempt_domains = [\"lists.example.org\"]\n\
         dmarc_exempt_networks = [\"192.0.2.0/24\"]\n",
    )
    .unwrap();
    assert_eq!(
        c.dns.nameserver_addrs(),
        vec![
            addr("127.0.0.1:5353"),
            addr("192.0.2.53:53"),
            addr("[2001:db8::53]:53")
        ]
    );
    assert!(c.sender_auth.verify && c.sender_auth.dmarc_enforce);
    assert_eq!(c.sender_auth.exempt_networks().len(), 1);
    let p = problems(
        "[dns]\nnameservers = [\"ns.example\"]\ntimeout_ms = 0\nattempts = 9\n\
         trust_anchor = \"anchor.key\"\n\
         [sender_auth]\ndmarc_exempt_domains = [\"bad domain\"]\n\
         dmarc_exempt_networks = [\"nonsense\"]\n",
    );
    let lines: Vec<usize> = p.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![2, 3, 4, 5, 7, 8], "{p:?}");
}

#[test]
fn dnsbl_settings_are_checked() {
    let c = parse(
        "[dnsbl]\nreject_weight = 4\n\
         client = [{ zone = \"zen.spamhaus.org\", weight = 3, codes = [\"127.0.0.2-127.0.0.11\"] },\n\
         { zone = \"list.dnswl.org\", weight = -2 }]\n\
         [[dnsbl.uri]]\nzone = \"multi.surbl.org\"\n",
    )
    .unwrap();
    assert_eq!(c.dnsbl.client.len(), 2);
    assert_eq!(c.dnsbl.client[1].weight, -2);
    assert_eq!(c.dnsbl.uri[0].weight, 1, "weight defaults to 1");
    assert!(c.dnsbl.any());
    assert!(
        !Config::default().dnsbl.any(),
        "no list is asked by default"
    );
    let p = problems(
        "[dnsbl]\n\
         junk_weight = 5\n\
         reject_weight = 2\n\
         timeout_ms = 0\n\
         max_uri_domains = 0\n\
         [[dnsbl.client]]\nzone = \"bad zone\"\nweight = 0\ncodes = [\"127.0.0.2\", \"nonsense\"]\n\
         [[dnsbl.client]]\nzone = \"dup.example\"\n\
         [[dnsbl.client]]\nzone = \"DUP.example.\"\n",
    );
    let lines: Vec<usize> = p.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![3, 4, 5, 7, 8, 9, 13], "{p:?}");
    let p =
        problems("[filter]\nenabled = false\n[dnsbl]\nuri = [{ zone = \"multi.surbl.org\" }]\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, 3, "{p:?}");
}

//! Trace header fields added at delivery: Return-Path and Received (RFC 5321 4.4).
//! The client's bytes follow unchanged, so DKIM and S/MIME signatures still verify.

use std::net::SocketAddr;

/// What the Received field records about the transaction.
pub struct TraceInfo<'a> {
    pub hostname: &'a str,
    pub helo: &'a str,
    pub peer: SocketAddr,
    /// RFC 3848 protocol name (ESMTP, ESMTPS, ESMTPSA, ...).
    pub protocol: &'a str,
    /// e.g. "version=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384", when TLS was used.
    pub tls: Option<&'a str>,
    pub id: &'a str,
    /// Named in a `for` clause only when there is exactly one recipient: listing several
    /// would disclose Bcc recipients to each other (RFC 5321 7.2).
    pub single_recipient: Option<&'a str>,
    pub unix_time: i64,
}

/// `Return-Path: <sender>` (RFC 5321 4.4: added by the final delivery MTA).
pub fn return_path(mail_from: &str) -> String {
    format!("Return-Path: <{mail_from}>\r\n")
}

/// A folded Received field (RFC 5321 4.4, RFC 5322 3.6.7).
pub fn received(info: &TraceInfo<'_>) -> String {
    let ip = match info.peer.ip() {
        std::net::IpAddr::V4(v4) => format!("[{v4}]"),
        std::net::IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    };
    // The HELO argument is the client's claim; it goes in unchanged only if it is a plain
    // token, so a hostile HELO cannot inject header lines (CR/LF were refused by the parser,
    // this is defence in depth).
    let helo: String = info
        .helo
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let helo = if helo.is_empty() { ip.clone() } else { helo };
    let mut field = format!(
        "Received: from {helo} ({ip})\r\n\tby {} (Postern)",
        info.hostname
    );
    if let Some(tls) = info.tls {
        field.push_str(&format!("\r\n\t({tls})"));
    }
    field.push_str(&format!("\r\n\twith {} id {}", info.protocol, info.id));
    if let Some(rcpt) = info.single_recipient {
        field.push_str(&format!("\r\n\tfor <{rcpt}>"));
    }
    field.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(info.unix_time)));
    field
}

/// RFC 5322 3.3 date-time in UTC, e.g. `Tue, 24 Nov 2026 21:27:39 +0000`.
pub fn rfc5322_date(unix_time: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_time.div_euclid(86_400);
    let secs = unix_time.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_values() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_635_259),
            "Wed, 25 Nov 2026 19:34:19 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn received_is_folded_and_sanitised() {
        let info = TraceInfo {
            hostname: "mx.example.test",
            helo: "client\r\nX-Evil: 1",
            peer: "192.0.2.1:4000".parse().unwrap(),
            protocol: "ESMTPS",
            tls: Some("version=TLSv1.3 cipher=TLS13_AES_128_GCM_SHA256"),
            id: "abc",
            single_recipient: Some("a@example.test"),
            unix_time: 0,
        };
        let field = received(&info);
        assert!(field
            .starts_with("Received: from clientX-Evil:1 ([192.0.2.1])\r\n\tby mx.example.test"));
        assert!(field.ends_with("Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
        // Every line after the first is a continuation (starts with whitespace).
        for line in field.trim_end_matches("\r\n").split("\r\n").skip(1) {
            assert!(line.starts_with('\t'), "{line:?}");
        }
    }
}

//! Calendar arithmetic for the mbox From_ line (asctime format, UTC), without a date crate.

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `Thu Nov 24 23:00:00 2026`: the asctime form used on mbox From_ lines (RFC 4155 2).
pub fn asctime(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = WEEKDAYS[days.rem_euclid(7) as usize];
    format!(
        "{weekday} {} {day:>2} {:02}:{:02}:{:02} {year}",
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `2026-11-24T23:00:00Z` (RFC 3339, UTC): how the CLI shows times (bans, login history).
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Parses the date part of a From_ line: `Www Mmm dd hh:mm:ss yyyy`, tolerating a numeric
/// zone between the time and the year or after the year (`+0100`), and trailing words
/// (`remote from host`). The weekday is not checked. Returns Unix seconds.
pub fn parse_asctime(text: &str) -> Option<i64> {
    let tokens: Vec<&str> = text.split_ascii_whitespace().collect();
    // Find the month token; the weekday before it is optional.
    let (mi, month) = tokens.iter().enumerate().find_map(|(i, t)| {
        MONTHS
            .iter()
            .position(|m| m.eq_ignore_ascii_case(t))
            .map(|m| (i, m as u32 + 1))
    })?;
    let day: u32 = tokens.get(mi + 1)?.parse().ok()?;
    let time = tokens.get(mi + 2)?;
    let mut parts = time.split(':');
    let hour: i64 = parts.next()?.parse().ok()?;
    let minute: i64 = parts.next()?.parse().ok()?;
    let second: i64 = match parts.next() {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    let mut rest = tokens[mi + 3..].iter();
    let mut zone: i64 = 0;
    let mut year: Option<i64> = None;
    for t in rest.by_ref().take(2) {
        if let Some(offset) = parse_zone(t) {
            zone = offset;
        } else if year.is_none() && t.len() == 4 {
            year = t.parse().ok();
        }
    }
    let year = year?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..=60).contains(&second)
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - zone)
}

fn parse_zone(t: &str) -> Option<i64> {
    let (sign, digits) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    Some(sign * (n / 100 * 3600 + n % 100 * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_shows_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_561_200), "2026-11-24T23:00:00Z");
    }

    #[test]
    fn asctime_round_trip() {
        for t in [0, 1_700_000_000, 951_782_400, 4_102_444_799, 1_764_025_200] {
            assert_eq!(parse_asctime(&asctime(t)), Some(t), "{}", asctime(t));
        }
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(1_700_000_000), "Tue Nov 14 22:13:20 2023");
    }

    #[test]
    fn parses_variants() {
        assert_eq!(
            parse_asctime("Sat Jan  3 01:05:34 1996"),
            Some(days_from_civil(1996, 1, 3) * 86_400 + 3934)
        );
        assert_eq!(
            parse_asctime("Sat Jan  3 01:05:34 1996 +0100"),
            Some(days_from_civil(1996, 1, 3) * 86_400 + 3934 - 3600)
        );
        assert_eq!(
            parse_asctime("Sat Jan  3 01:05:34 1996 remote from x"),
            Some(days_from_civil(1996, 1, 3) * 86_400 + 3934)
        );
        assert_eq!(parse_asctime("yesterday"), None);
        assert_eq!(parse_asctime("Sat Jan 3 25:05:34 1996"), None);
    }
}

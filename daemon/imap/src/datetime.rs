//! Dates of the IMAP syntax (RFC 9051 9: date, date-time) and conversions to and from Unix
//! time, without a calendar dependency.

use crate::parser::{PResult, Parser};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A calendar date (RFC 9051 9: date-text = date-day "-" date-month "-" date-year), used by
/// the date search keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// Days since 1970-01-01.
    pub fn days_since_epoch(self) -> i64 {
        days_from_civil(i64::from(self.year), self.month, self.day)
    }

    /// The date of a Unix time shifted by `offset_minutes` (the zone of the time).
    pub fn from_unix(secs: i64, offset_minutes: i32) -> Date {
        let local = secs.saturating_add(i64::from(offset_minutes) * 60);
        let (y, m, d) = civil_from_days(local.div_euclid(86_400));
        Date {
            year: y.clamp(0, 9999) as u16,
            month: m,
            day: d,
        }
    }

    pub(crate) fn parse(p: &mut Parser<'_>) -> PResult<Date> {
        // RFC 9051 9: date = date-text / DQUOTE date-text DQUOTE.
        let quoted = p.eat(b'"');
        let day = p.number()?;
        p.expect(b'-')?;
        let month = month(p)?;
        p.expect(b'-')?;
        let year = p.number()?;
        if quoted {
            p.expect(b'"')?;
        }
        let (Ok(day), Ok(year)) = (u8::try_from(day), u16::try_from(year)) else {
            return Err(p.error("invalid date"));
        };
        Date::new(year, month, day).ok_or_else(|| p.error("invalid date"))
    }
}

fn month(p: &mut Parser<'_>) -> PResult<u8> {
    for (i, m) in MONTHS.iter().enumerate() {
        if p.eat_prefix_ci(m) {
            return Ok(i as u8 + 1);
        }
    }
    Err(p.error("invalid month"))
}

fn is_leap(y: u16) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u16, m: u8) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// Howard Hinnant's days_from_civil.
fn days_from_civil(y: i64, m: u8, d: u8) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A time with its zone (RFC 9051 9: date-time, e.g. APPEND's internal date).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Seconds since the Unix epoch (UTC).
    pub unix: i64,
    /// The zone, in minutes east of UTC.
    pub offset_minutes: i32,
}

impl DateTime {
    /// RFC 9051 9: date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP
    /// zone DQUOTE; date-day-fixed = (SP DIGIT) / 2DIGIT.
    pub(crate) fn parse(p: &mut Parser<'_>) -> PResult<DateTime> {
        p.expect(b'"')?;
        p.eat(b' ');
        let day = p.number()?;
        p.expect(b'-')?;
        let month = month(p)?;
        p.expect(b'-')?;
        let year = p.number()?;
        p.sp()?;
        let h = p.number()?;
        p.expect(b':')?;
        let mi = p.number()?;
        p.expect(b':')?;
        let s = p.number()?;
        p.sp()?;
        let sign = match p.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(p.error("invalid zone")),
        };
        p.eat(b'+');
        p.eat(b'-');
        let zone = p.number()?;
        p.expect(b'"')?;
        let date = match (u8::try_from(day), u16::try_from(year)) {
            (Ok(d), Ok(y)) => Date::new(y, month, d),
            _ => None,
        }
        .ok_or_else(|| p.error("invalid date"))?;
        if h > 23 || mi > 59 || s > 60 || zone > 2359 || zone % 100 > 59 {
            return Err(p.error("invalid time"));
        }
        let offset_minutes = sign * ((zone / 100) * 60 + zone % 100) as i32;
        let local = date.days_since_epoch() * 86_400
            + i64::from(h) * 3600
            + i64::from(mi) * 60
            + i64::from(s);
        Ok(DateTime {
            unix: local - i64::from(offset_minutes) * 60,
            offset_minutes,
        })
    }

    /// Parses a quoted date-time such as `"17-Jul-1996 02:44:25 -0700"`.
    pub fn parse_str(s: &str) -> Option<DateTime> {
        let mut p = Parser::new(s.as_bytes(), 1);
        let dt = DateTime::parse(&mut p).ok()?;
        p.rest().is_empty().then_some(dt)
    }

    /// The date-time as IMAP writes it, with quotes: `"17-Jul-1996 02:44:25 -0700"`
    /// (RFC 9051 9 date-time; INTERNALDATE).
    pub fn to_imap(self) -> String {
        let local = self
            .unix
            .saturating_add(i64::from(self.offset_minutes) * 60);
        let (y, m, d) = civil_from_days(local.div_euclid(86_400));
        let t = local.rem_euclid(86_400);
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let off = self.offset_minutes.unsigned_abs();
        format!(
            "\"{:02}-{}-{:04} {:02}:{:02}:{:02} {}{:02}{:02}\"",
            d,
            MONTHS[usize::from(m - 1)],
            y,
            t / 3600,
            (t / 60) % 60,
            t % 60,
            sign,
            off / 60,
            off % 60
        )
    }
}

/// The INTERNALDATE of a Unix time in UTC, quoted (RFC 9051 7.5.2 INTERNALDATE).
pub fn internal_date(unix: i64) -> String {
    DateTime {
        unix,
        offset_minutes: 0,
    }
    .to_imap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_time_round_trip() {
        let dt = DateTime::parse_str("\"17-Jul-1996 02:44:25 -0700\"").unwrap();
        assert_eq!(dt.unix, 837_596_665);
        assert_eq!(dt.offset_minutes, -420);
        assert_eq!(dt.to_imap(), "\"17-Jul-1996 02:44:25 -0700\"");
        let dt = DateTime::parse_str("\" 1-Feb-2024 00:00:00 +0130\"").unwrap();
        assert_eq!(dt.to_imap(), "\"01-Feb-2024 00:00:00 +0130\"");
        assert_eq!(internal_date(0), "\"01-Jan-1970 00:00:00 +0000\"");
        assert!(DateTime::parse_str("\"30-Feb-2024 00:00:00 +0000\"").is_none());
        assert!(DateTime::parse_str("\"01-Foo-2024 00:00:00 +0000\"").is_none());
        assert!(DateTime::parse_str("\"01-Jan-2024 24:00:00 +0000\"").is_none());
    }

    #[test]
    fn dates() {
        let mut p = Parser::new(b"1-feb-1994", 1);
        assert_eq!(Date::parse(&mut p).unwrap(), Date::new(1994, 2, 1).unwrap());
        let mut p = Parser::new(b"\"29-Feb-2023\"", 1);
        assert!(Date::parse(&mut p).is_err());
        assert_eq!(
            Date::from_unix(837_596_665, -420),
            Date::new(1996, 7, 17).unwrap()
        );
        assert_eq!(Date::new(2000, 3, 1).unwrap().days_since_epoch(), 11_017);
        for days in [-1000i64, 0, 59, 10_000, 20_000] {
            let d = Date::from_unix(days * 86_400, 0);
            assert_eq!(d.days_since_epoch(), days);
        }
    }
}

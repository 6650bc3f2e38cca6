//! Sequence sets (RFC 9051 9: sequence-set, seq-range, seq-number with "*"; RFC 5182 "$").

use std::fmt;

use crate::parser::{PResult, ParseError, Parser};

/// One end of a range: a number or "*" (the largest number in use, RFC 9051 9 seq-number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNumber {
    Value(u32),
    Largest,
}

impl SeqNumber {
    /// The value with "*" resolved to `largest`.
    pub fn resolve(self, largest: u32) -> u32 {
        match self {
            SeqNumber::Value(n) => n,
            SeqNumber::Largest => largest,
        }
    }
}

/// `a` or `a:b` (RFC 9051 9 seq-range: the order of the ends does not matter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub start: SeqNumber,
    pub end: SeqNumber,
}

/// A sequence set of message sequence numbers or UIDs, or `$`, the result saved by
/// `SEARCH RETURN (SAVE)` (RFC 5182 2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceSet {
    Ranges(Vec<SeqRange>),
    Saved,
}

impl SequenceSet {
    /// A set of single numbers.
    pub fn from_numbers(numbers: &[u32]) -> SequenceSet {
        SequenceSet::Ranges(
            numbers
                .iter()
                .map(|&n| SeqRange {
                    start: SeqNumber::Value(n),
                    end: SeqNumber::Value(n),
                })
                .collect(),
        )
    }

    /// Whether `n` is in the set, with "*" meaning `largest` (RFC 9051 6.4.8: for UIDs, "*"
    /// is the largest UID in use, so "n:*" always includes that one). `Saved` never matches
    /// here: resolve it with [`SequenceSet::resolve_saved`] first.
    pub fn contains(&self, n: u32, largest: u32) -> bool {
        match self {
            SequenceSet::Saved => false,
            SequenceSet::Ranges(r) => r.iter().any(|r| {
                let a = r.start.resolve(largest);
                let b = r.end.resolve(largest);
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                lo <= n && n <= hi
            }),
        }
    }

    /// Replaces `$` with the saved set (RFC 5182 2.1); an empty saved result is the empty set.
    pub fn resolve_saved<'a>(&'a self, saved: &'a SequenceSet) -> &'a SequenceSet {
        match self {
            SequenceSet::Saved => saved,
            other => other,
        }
    }

    /// The ranges as sorted, merged, inclusive `(low, high)` pairs with "*" resolved.
    pub fn to_ranges(&self, largest: u32) -> Vec<(u32, u32)> {
        let SequenceSet::Ranges(r) = self else {
            return Vec::new();
        };
        let mut v: Vec<(u32, u32)> = r
            .iter()
            .map(|r| {
                let a = r.start.resolve(largest);
                let b = r.end.resolve(largest);
                if a <= b {
                    (a, b)
                } else {
                    (b, a)
                }
            })
            .collect();
        v.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        out
    }

    /// Whether the set uses "*".
    pub fn uses_largest(&self) -> bool {
        match self {
            SequenceSet::Saved => false,
            SequenceSet::Ranges(r) => r
                .iter()
                .any(|r| r.start == SeqNumber::Largest || r.end == SeqNumber::Largest),
        }
    }

    pub(crate) fn parse(p: &mut Parser<'_>) -> PResult<SequenceSet> {
        if p.eat(b'$') {
            return Ok(SequenceSet::Saved);
        }
        let mut ranges = Vec::new();
        loop {
            let start = seq_number(p)?;
            let end = if p.eat(b':') { seq_number(p)? } else { start };
            ranges.push(SeqRange { start, end });
            if !p.eat(b',') {
                break;
            }
        }
        Ok(SequenceSet::Ranges(ranges))
    }

    /// Parses a sequence set from text such as "1:3,5,*" or "$".
    pub fn parse_str(s: &str) -> Result<SequenceSet, ParseError> {
        let mut p = Parser::new(s.as_bytes(), 1);
        let set = SequenceSet::parse(&mut p)?;
        if !p.rest().is_empty() {
            return Err(p.error("trailing characters in sequence set"));
        }
        Ok(set)
    }
}

fn seq_number(p: &mut Parser<'_>) -> PResult<SeqNumber> {
    if p.eat(b'*') {
        Ok(SeqNumber::Largest)
    } else {
        p.nz_number().map(SeqNumber::Value)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeqNumber::Value(n) => write!(f, "{n}"),
            SeqNumber::Largest => f.write_str("*"),
        }
    }
}

impl fmt::Display for SequenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SequenceSet::Saved => f.write_str("$"),
            SequenceSet::Ranges(r) => {
                for (i, r) in r.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    if r.start == r.end {
                        write!(f, "{}", r.start)?;
                    } else {
                        write!(f, "{}:{}", r.start, r.end)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Encodes numbers as a compact sequence set: sorted, duplicates dropped, runs as "a:b"
/// (RFC 4731 3.1 ESEARCH ALL; RFC 4315 3 COPYUID uid-set). Empty input gives "".
pub fn compact(numbers: &[u32]) -> String {
    let mut v = numbers.to_vec();
    v.sort_unstable();
    v.dedup();
    compact_sorted_ranges(&v)
}

/// Like [`compact`] but keeps the given order (COPYUID: source and destination UIDs must
/// correspond pairwise, RFC 4315 3), merging only ascending runs.
pub fn compact_ordered(numbers: &[u32]) -> String {
    compact_sorted_ranges(numbers)
}

fn compact_sorted_ranges(v: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && end.checked_add(1) == Some(v[i + 1]) {
            i += 1;
            end = v[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contains() {
        let s = SequenceSet::parse_str("1:3,7,9:*").unwrap();
        assert!(s.contains(2, 20));
        assert!(!s.contains(5, 20));
        assert!(s.contains(20, 20));
        assert!(!s.contains(21, 20));
        assert_eq!(s.to_string(), "1:3,7,9:*");
        // RFC 9051 9: "*:4" is the same as "4:*"; with largest 2 it means 2:4.
        let s = SequenceSet::parse_str("*:4").unwrap();
        assert!(s.contains(3, 2));
        assert_eq!(s.to_ranges(2), vec![(2, 4)]);
        assert_eq!(SequenceSet::parse_str("$").unwrap(), SequenceSet::Saved);
        assert!(SequenceSet::parse_str("0").is_err());
        assert!(SequenceSet::parse_str("1,").is_err());
        assert!(SequenceSet::parse_str("1:").is_err());
        assert!(SequenceSet::parse_str("").is_err());
        assert!(SequenceSet::parse_str("4294967296").is_err());
    }

    #[test]
    fn ranges_merge() {
        let s = SequenceSet::parse_str("5,1:3,4,10:8").unwrap();
        assert_eq!(s.to_ranges(100), vec![(1, 5), (8, 10)]);
    }

    #[test]
    fn compact_sets() {
        assert_eq!(compact(&[5, 1, 2, 3, 9, 10, 3]), "1:3,5,9:10");
        assert_eq!(compact(&[]), "");
        assert_eq!(compact(&[u32::MAX, u32::MAX - 1]), "4294967294:4294967295");
        assert_eq!(compact_ordered(&[3, 4, 1]), "3:4,1");
    }
}

//! The combiner: the spam score, the list match and (once the sender-authentication work
//! lands) the DMARC disposition become one [`Decision`] per recipient, with the explanation
//! header that says why.
//!
//! Order, strongest first:
//! 1. sender authentication that asks for `reject` (DMARC p=reject, RFC 7489 6.3) rejects,
//!    and `quarantine` sends to Junk, whatever the lists say: an allow-listed address is
//!    exactly what a forger would use;
//! 2. the allow list delivers, whatever the score;
//! 3. the block list rejects or sends to Junk (`[filter] block_action`);
//! 4. the DNS block lists ([`crate::dnsbl`]): their total weight at or above
//!    `[dnsbl] reject_weight` rejects (Postfix's postscreen_dnsbl_threshold);
//! 5. the score: at or above `reject_threshold` (when set) rejects, at or above
//!    `junk_threshold` goes to Junk; a DNS list weight at or above `[dnsbl] junk_weight`
//!    goes to Junk too; else delivers.

use std::fmt::Write as _;

use crate::classify::Score;
use crate::dnsbl::{Kind, Listed};
use crate::lists::ListMatch;

/// What becomes of a message for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Into the INBOX.
    Deliver,
    /// Into the user's Junk mailbox (RFC 6154 `\Junk`).
    Junk,
    /// 550 5.7.1 at the end of DATA (RFC 5321 4.2.5, RFC 3463 X.7.1).
    Reject,
}

impl Decision {
    pub fn name(self) -> &'static str {
        match self {
            Decision::Deliver => "deliver",
            Decision::Junk => "junk",
            Decision::Reject => "reject",
        }
    }
}

/// The extension point for sender authentication (SPF/DKIM/DMARC, built separately): what
/// the policy asks for, and a short summary for the explanation header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderAuth {
    pub disposition: AuthDisposition,
    /// Such as `dmarc=fail (p=reject)`; printable ASCII, short.
    pub summary: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDisposition {
    /// Authenticated, or no policy: no effect.
    None,
    /// RFC 7489 6.3 p=quarantine failed: Junk.
    Quarantine,
    /// RFC 7489 6.3 p=reject failed: reject.
    Reject,
}

/// Everything the combiner weighs for one recipient.
#[derive(Debug, Clone)]
pub struct VerdictInput<'a> {
    pub score: &'a Score,
    pub list: &'a ListMatch,
    pub auth: Option<&'a SenderAuth>,
    pub junk_threshold: f64,
    /// 0 = the score never rejects.
    pub reject_threshold: f64,
    /// What a block-list match does: [`Decision::Reject`] or [`Decision::Junk`].
    pub block_action: Decision,
    /// What the DNS block lists said about the client and the message's URLs.
    pub dns: &'a Listed,
    pub dns_weights: DnsWeights,
}

/// `[dnsbl]` junk_weight and reject_weight: totals of list weights (0 = never).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DnsWeights {
    pub junk: i64,
    pub reject: i64,
}

impl DnsWeights {
    /// The decision the DNS lists alone ask for.
    pub fn decide(&self, listed: &Listed) -> Decision {
        let total = listed.weight();
        if self.reject > 0 && total >= self.reject {
            Decision::Reject
        } else if self.junk > 0 && total >= self.junk {
            Decision::Junk
        } else {
            Decision::Deliver
        }
    }
}

/// The combiner's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub decision: Decision,
    /// Short machine-readable reason: `auth`, `allow`, `block`, `dnsbl`, `bayes`,
    /// `untrained`.
    pub reason: &'static str,
    /// The explanation header field, `X-Postern-Spam: ...` with CRLF.
    pub header: String,
}

/// The explanation header's name.
pub const HEADER: &str = "X-Postern-Spam";
/// Clues listed in the header.
const HEADER_CLUES: usize = 8;

pub fn combine(input: &VerdictInput<'_>) -> Verdict {
    let score = input.score;
    let (decision, reason) = if let Some(auth) = input
        .auth
        .filter(|a| a.disposition != AuthDisposition::None)
    {
        match auth.disposition {
            AuthDisposition::Reject => (Decision::Reject, "auth"),
            _ => (Decision::Junk, "auth"),
        }
    } else {
        match input.list {
            ListMatch::Allowed { .. } => (Decision::Deliver, "allow"),
            ListMatch::Blocked { .. } => (input.block_action, "block"),
            ListMatch::None => {
                let by_lists = input.dns_weights.decide(input.dns);
                let by_score = if !score.trained {
                    (Decision::Deliver, "untrained")
                } else {
                    let p = score.probability;
                    if input.reject_threshold > 0.0 && p >= input.reject_threshold {
                        (Decision::Reject, "bayes")
                    } else if p >= input.junk_threshold {
                        (Decision::Junk, "bayes")
                    } else {
                        (Decision::Deliver, "bayes")
                    }
                };
                // The stronger of the two; the score names itself when they agree.
                if rank(by_lists) > rank(by_score.0) {
                    (by_lists, "dnsbl")
                } else {
                    by_score
                }
            }
        }
    };
    Verdict {
        decision,
        reason,
        header: header(input, decision, reason),
    }
}

fn rank(decision: Decision) -> u8 {
    match decision {
        Decision::Deliver => 0,
        Decision::Junk => 1,
        Decision::Reject => 2,
    }
}

/// `X-Postern-Spam: score=0.97 verdict=junk reason=bayes; list=none;` then the clues,
/// folded (RFC 5322 2.2.3) so that no line passes 78 characters where it can be helped.
fn header(input: &VerdictInput<'_>, decision: Decision, reason: &str) -> String {
    let score = input.score;
    let mut h = format!(
        "{HEADER}: score={:.2} verdict={} reason={reason}",
        score.probability,
        decision.name()
    );
    match input.list {
        ListMatch::None => {}
        ListMatch::Allowed { scope, entry } => {
            let _ = write!(h, "; allow={scope}:{}", printable(entry));
        }
        ListMatch::Blocked { scope, entry } => {
            let _ = write!(h, "; block={scope}:{}", printable(entry));
        }
    }
    if let Some(auth) = input.auth {
        let _ = write!(h, "; auth={}", printable(&auth.summary));
    }
    // The lists that listed, as postscreen_dnsbl_sites writes them (zone*weight), then
    // those that failed to answer (counted as not listing).
    let dns = input.dns;
    if !dns.hits.is_empty() {
        for kind in [Kind::Client, Kind::Uri] {
            let zones = dns.zones(kind);
            if zones.is_empty() {
                continue;
            }
            let _ = write!(h, "; {}=", kind.name());
            for (i, zone) in zones.iter().enumerate() {
                let weight = dns
                    .hits
                    .iter()
                    .find(|hit| hit.kind == kind && hit.zone == *zone)
                    .map_or(0, |hit| hit.weight);
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(h, "{sep}{}*{weight}", printable(zone));
            }
        }
        let _ = write!(h, "; dns-weight={}", dns.weight());
    }
    if !dns.failed.is_empty() {
        let mut zones: Vec<&str> = dns.failed.iter().map(|f| f.zone.as_str()).collect();
        zones.dedup();
        let _ = write!(h, "; unanswered={}", printable(&zones.join(",")));
    }
    if !score.trained {
        h.push_str("; untrained");
    } else if !score.clues.is_empty() {
        h.push_str("; tokens:");
        let mut line_len = h.len();
        for (token, p) in score.clues.iter().take(HEADER_CLUES) {
            let item = format!(" \"{}\"={p:.2}", printable(token));
            if line_len + item.len() > 76 {
                h.push_str("\r\n\t");
                line_len = 1;
            }
            h.push_str(&item);
            line_len += item.len();
        }
    }
    h.push_str("\r\n");
    h
}

/// A token or entry as header text: printable ASCII without quotes or backslashes (others
/// become `?`), at most 40 characters. Tokens come from the message: nothing in them may
/// end the field or start another (RFC 5322 2.2).
fn printable(s: &str) -> String {
    s.chars()
        .take(40)
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(p: f64) -> Score {
        Score {
            probability: p,
            trained: true,
            clues: vec![
                ("viagra".into(), 0.99),
                ("subject:free\r\nX-Evil: 1".into(), 0.95),
            ],
        }
    }

    fn input<'a>(
        score: &'a Score,
        list: &'a ListMatch,
        auth: Option<&'a SenderAuth>,
    ) -> VerdictInput<'a> {
        VerdictInput {
            score,
            list,
            auth,
            junk_threshold: 0.9,
            reject_threshold: 0.0,
            block_action: Decision::Reject,
            dns: &NOT_LISTED,
            dns_weights: DnsWeights { junk: 2, reject: 5 },
        }
    }

    static NOT_LISTED: Listed = Listed {
        hits: Vec::new(),
        failed: Vec::new(),
    };

    fn listed(weights: &[(&str, i64)]) -> Listed {
        Listed {
            hits: weights
                .iter()
                .map(|(zone, weight)| crate::dnsbl::Hit {
                    kind: if zone.starts_with("uri") {
                        Kind::Uri
                    } else {
                        Kind::Client
                    },
                    zone: zone.to_string(),
                    weight: *weight,
                    listed: "127.0.0.2".into(),
                    code: "127.0.0.2".parse().unwrap(),
                })
                .collect(),
            failed: vec![crate::dnsbl::Failure {
                kind: Kind::Client,
                zone: "slow.example".into(),
                queried: "127.0.0.2".into(),
                reason: "timeout".into(),
            }],
        }
    }

    #[test]
    fn dns_list_weights_junk_or_reject_and_are_explained() {
        let (hi, lo) = (score(0.97), score(0.1));
        let none = ListMatch::None;
        type Case<'a> = (&'a [(&'a str, i64)], &'a Score, Decision, &'a str);
        let cases: [Case<'_>; 6] = [
            (&[("zen.example", 1)], &lo, Decision::Deliver, "bayes"),
            (
                &[("zen.example", 1), ("uribl.example", 1)],
                &lo,
                Decision::Junk,
                "dnsbl",
            ),
            (
                &[("zen.example", 3), ("uribl.example", 2)],
                &lo,
                Decision::Reject,
                "dnsbl",
            ),
            // An allow-list zone with a negative weight takes off.
            (
                &[("zen.example", 5), ("wl.example", -4)],
                &lo,
                Decision::Deliver,
                "bayes",
            ),
            // The stronger wins: the score's Junk stays Junk under a light listing.
            (&[("zen.example", 1)], &hi, Decision::Junk, "bayes"),
            (&[("zen.example", 9)], &hi, Decision::Reject, "dnsbl"),
        ];
        for (weights, score, decision, reason) in cases {
            let dns = listed(weights);
            let mut i = input(score, &none, None);
            i.dns = &dns;
            let v = combine(&i);
            assert_eq!((v.decision, v.reason), (decision, reason), "{weights:?}");
        }
        // An untrained filter still junks a listed client.
        let dns = listed(&[("zen.example", 2)]);
        let untrained = Score::untrained();
        let mut i = input(&untrained, &none, None);
        i.dns = &dns;
        assert_eq!(combine(&i).decision, Decision::Junk);
        // The allow list wins over the DNS lists; DMARC reject over everything.
        let allow = ListMatch::Allowed {
            scope: "user",
            entry: "a@b.c".into(),
        };
        let dns = listed(&[("zen.example", 9)]);
        let mut i = input(&lo, &allow, None);
        i.dns = &dns;
        assert_eq!(combine(&i).decision, Decision::Deliver);
        // 0 = never.
        let mut i = input(&lo, &none, None);
        i.dns = &dns;
        i.dns_weights = DnsWeights::default();
        assert_eq!(combine(&i).decision, Decision::Deliver);
        // The header names the lists, their weights, the total and the silent list.
        let dns = listed(&[("zen.example", 3), ("uribl.example", 2)]);
        let mut i = input(&lo, &none, None);
        i.dns = &dns;
        let v = combine(&i);
        assert!(
            v.header.contains("; dnsbl=zen.example*3; uribl=uribl.example*2; dns-weight=5; unanswered=slow.example"),
            "{}",
            v.header
        );
    }

    #[test]
    fn order_of_precedence() {
        let none = ListMatch::None;
        let allow = ListMatch::Allowed {
            scope: "user",
            entry: "a@b.c".into(),
        };
        let block = ListMatch::Blocked {
            scope: "global",
            entry: "/x/".into(),
        };
        let reject = SenderAuth {
            disposition: AuthDisposition::Reject,
            summary: "dmarc=fail".into(),
        };
        let quarantine = SenderAuth {
            disposition: AuthDisposition::Quarantine,
            summary: "dmarc=fail".into(),
        };
        let (hi, lo) = (score(0.97), score(0.1));
        assert_eq!(combine(&input(&hi, &none, None)).decision, Decision::Junk);
        assert_eq!(
            combine(&input(&lo, &none, None)).decision,
            Decision::Deliver
        );
        assert_eq!(
            combine(&input(&hi, &allow, None)).decision,
            Decision::Deliver
        );
        assert_eq!(
            combine(&input(&lo, &block, None)).decision,
            Decision::Reject
        );
        assert_eq!(
            combine(&input(&lo, &allow, Some(&reject))).decision,
            Decision::Reject
        );
        assert_eq!(
            combine(&input(&lo, &allow, Some(&quarantine))).decision,
            Decision::Junk
        );
        let mut i = input(&hi, &none, None);
        i.reject_threshold = 0.95;
        assert_eq!(combine(&i).decision, Decision::Reject);
        let mut i = input(&lo, &block, None);
        i.block_action = Decision::Junk;
        assert_eq!(combine(&i).decision, Decision::Junk);
        let untrained = Score::untrained();
        let v = combine(&input(&untrained, &none, None));
        assert_eq!((v.decision, v.reason), (Decision::Deliver, "untrained"));
        assert!(v.header.contains("untrained"));
    }

    #[test]
    fn header_is_one_safe_field() {
        let hi = score(0.97);
        let v = combine(&input(&hi, &ListMatch::None, None));
        assert!(
            v.header
                .starts_with("X-Postern-Spam: score=0.97 verdict=junk reason=bayes; tokens:"),
            "{}",
            v.header
        );
        assert!(v.header.contains("\"viagra\"=0.99"));
        // Every line break is a fold (CRLF + whitespace) or the end.
        let body = v.header.strip_suffix("\r\n").unwrap();
        for (i, line) in body.split("\r\n").enumerate() {
            assert!(i == 0 || line.starts_with('\t'), "{line:?}");
            assert!(!line.contains('\r') && !line.contains('\n'));
        }
        assert!(!v.header.contains("X-Evil: 1\r\n"));
    }
}

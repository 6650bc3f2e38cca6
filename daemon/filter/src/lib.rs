//! The statistical spam filter and the sender lists (DESIGN.md 2, "Spam and malicious
//! content"): a per-user Bayesian filter over a global base, trained when users move mail
//! into or out of Junk, explainable scores, per-user allow and block lists and regular
//! expression address blocks, and the combiner that turns all of it (and, later, sender
//! authentication) into deliver / Junk / reject.
//!
//! - [`tokenize`]: sans-IO tokenizer of a raw RFC 5322 message (headers and decoded MIME text
//!   parts), bounded in the bytes it reads and the tokens it yields.
//! - [`classify`]: Robinson's per-token probabilities combined with Fisher's chi-square
//!   method (as SpamBayes and bogofilter do); [`classify::Score`] keeps the clues.
//! - [`db`]: a token database file pair (checksummed snapshot + checksummed append journal)
//!   that survives `kill -9` and power loss, bounded by pruning.
//! - [`lists`]: allow/block entries (address, domain, `/regex/`) and their matching.
//! - [`dnsbl`]: DNS block lists (RFC 5782) of client addresses and of URL domains, weighed.
//! - [`urls`]: sans-IO extraction of the hosts of the URLs in a message body.
//! - [`verdict`]: the combiner and the explanation header.

pub mod classify;
pub mod db;
pub mod dnsbl;
pub mod lists;
pub mod tokenize;
pub mod urls;
pub mod verdict;

pub use classify::{classify, Score, Settings as ClassifierSettings};
pub use db::{Class, TokenDb};
pub use lists::{Entry, ListMatch, SenderLists};
pub use tokenize::{tokenize, Limits as TokenizerLimits, Tokens};
pub use verdict::{combine, Decision, DnsWeights, SenderAuth, Verdict, VerdictInput};

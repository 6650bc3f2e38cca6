//! The classifier: Gary Robinson's per-token probability with a prior ("A Statistical
//! Approach to the Spam Problem", Linux Journal 107, 2003), combined with Fisher's inverse
//! chi-square method, as SpamBayes (`chi2_spamprob`) and bogofilter do.
//!
//! For a token seen `s` times in `nspam` spam and `h` times in `nham` ham:
//! `p = (s/nspam) / (s/nspam + h/nham)` and `f = (S*x + n*p) / (S + n)` with `n = s + h`,
//! the prior `x` and its strength `S`. Tokens with `|f - 0.5| < min_strength` are ignored;
//! of the rest, the `max_discriminators` farthest from 0.5 are combined:
//! `H = C⁻¹(-2 Σ ln f, 2k)`, `S = C⁻¹(-2 Σ ln(1-f), 2k)` (C⁻¹ the chi-square survival
//! function), and the score is `(1 + H - S) / 2`: near 1 spam, near 0 ham, near 0.5 unsure.
//!
//! Several databases combine by adding their counts (a user's own over the global base).

use crate::db::TokenDb;
use crate::tokenize::Tokens;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Robinson's `x`: the probability of a token never seen (SpamBayes 0.5).
    pub unknown_prob: f64,
    /// Robinson's `S`: how many observations the prior is worth (SpamBayes 0.45).
    pub unknown_strength: f64,
    /// Tokens closer than this to 0.5 are ignored (SpamBayes 0.1).
    pub min_strength: f64,
    /// Most tokens combined (SpamBayes 150).
    pub max_discriminators: usize,
    /// Spam and ham messages each that must have been learned before a score is given;
    /// below, the classifier abstains (score 0.5, [`Score::trained`] false).
    pub min_messages: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            unknown_prob: 0.5,
            unknown_strength: 0.45,
            min_strength: 0.1,
            max_discriminators: 150,
            min_messages: 10,
        }
    }
}

/// A classification: the score and the tokens that decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// 0 (ham) to 1 (spam).
    pub probability: f64,
    /// False when the databases held too few messages to judge.
    pub trained: bool,
    /// The tokens used, with their probability, farthest from 0.5 first.
    pub clues: Vec<(String, f64)>,
}

impl Score {
    pub fn untrained() -> Score {
        Score {
            probability: 0.5,
            trained: false,
            clues: Vec::new(),
        }
    }
}

/// Robinson's `f(w)` of a token from its counts and the message totals.
pub fn token_probability(spam: u32, ham: u32, nspam: u32, nham: u32, settings: &Settings) -> f64 {
    let n = f64::from(spam) + f64::from(ham);
    if n == 0.0 || nspam == 0 || nham == 0 {
        return settings.unknown_prob;
    }
    let spam_ratio = f64::from(spam) / f64::from(nspam);
    let ham_ratio = f64::from(ham) / f64::from(nham);
    let p = spam_ratio / (spam_ratio + ham_ratio);
    let s = settings.unknown_strength;
    (s * settings.unknown_prob + n * p) / (s + n)
}

/// The chi-square survival function Q(x2, v) for even `v` (the series SpamBayes uses):
/// the probability that a chi-square variable with `v` degrees of freedom exceeds `x2`.
pub fn chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..v / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

/// Fisher-Robinson combination of token probabilities; 0.5 for none.
pub fn combine(probabilities: &[f64]) -> f64 {
    if probabilities.is_empty() {
        return 0.5;
    }
    let (mut ln_f, mut ln_1f) = (0.0f64, 0.0f64);
    for &f in probabilities {
        let f = f.clamp(1e-6, 1.0 - 1e-6);
        ln_f += f.ln();
        ln_1f += (1.0 - f).ln();
    }
    let v = 2 * probabilities.len();
    let h = 1.0 - chi2q(-2.0 * ln_f, v);
    let s = 1.0 - chi2q(-2.0 * ln_1f, v);
    ((1.0 + s - h) / 2.0).clamp(0.0, 1.0)
}

/// Classifies a message's tokens against `dbs` (their counts added).
pub fn classify(tokens: &Tokens, dbs: &[&TokenDb], settings: &Settings) -> Score {
    let nspam: u32 = dbs.iter().map(|d| d.nspam).fold(0, u32::saturating_add);
    let nham: u32 = dbs.iter().map(|d| d.nham).fold(0, u32::saturating_add);
    if nspam < settings.min_messages.max(1) || nham < settings.min_messages.max(1) {
        return Score::untrained();
    }
    let mut clues: Vec<(String, f64)> = Vec::new();
    for token in &tokens.tokens {
        let (mut spam, mut ham) = (0u32, 0u32);
        for db in dbs {
            let c = db.counts(token);
            spam = spam.saturating_add(c.spam);
            ham = ham.saturating_add(c.ham);
        }
        if spam == 0 && ham == 0 {
            continue;
        }
        let f = token_probability(spam.min(nspam), ham.min(nham), nspam, nham, settings);
        if (f - 0.5).abs() >= settings.min_strength {
            clues.push((token.clone(), f));
        }
    }
    // Strongest first; ties by token text so that the result is deterministic.
    clues.sort_by(|a, b| {
        (b.1 - 0.5)
            .abs()
            .total_cmp(&(a.1 - 0.5).abs())
            .then_with(|| a.0.cmp(&b.0))
    });
    clues.truncate(settings.max_discriminators);
    let probs: Vec<f64> = clues.iter().map(|c| c.1).collect();
    Score {
        probability: combine(&probs),
        trained: true,
        clues,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Class, Settings as DbSettings};

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn chi2q_matches_known_values() {
        // Q(x2, 2) = exp(-x2/2).
        assert!(close(chi2q(2.0, 2), (-1.0f64).exp()));
        // Q(0, v) = 1; Q is decreasing in x2.
        assert!(close(chi2q(0.0, 10), 1.0));
        assert!(chi2q(10.0, 10) < chi2q(5.0, 10));
        // Q(9.236, 5*2=10) ~= 0.51 (tables: median of chi2(10) is 9.342).
        assert!((chi2q(9.342, 10) - 0.5).abs() < 0.01);
        // Huge arguments underflow to 0, never NaN.
        assert_eq!(chi2q(1e6, 300), 0.0);
    }

    #[test]
    fn robinson_probability() {
        let s = Settings::default();
        // Unseen: the prior.
        assert!(close(token_probability(0, 0, 10, 10, &s), 0.5));
        // Only in spam, once: (0.45*0.5 + 1*1) / 1.45.
        assert!(close(token_probability(1, 0, 10, 10, &s), 1.225 / 1.45));
        // Equally frequent: 0.5 whatever the counts.
        assert!(close(token_probability(5, 10, 10, 20, &s), 0.5));
        // More evidence, more certainty.
        assert!(token_probability(50, 0, 100, 100, &s) > token_probability(2, 0, 100, 100, &s));
    }

    #[test]
    fn combining() {
        assert!(close(combine(&[]), 0.5));
        assert!(combine(&[0.99; 20]) > 0.99);
        assert!(combine(&[0.01; 20]) < 0.01);
        // Strong evidence both ways: unsure, near 0.5.
        let mixed: Vec<f64> = [0.99; 10]
            .iter()
            .chain([0.01; 10].iter())
            .copied()
            .collect();
        assert!((combine(&mixed) - 0.5).abs() < 0.05);
        // Symmetric.
        assert!(close(combine(&[0.8, 0.9]), 1.0 - combine(&[0.2, 0.1])));
    }

    #[test]
    fn classify_abstains_until_trained_and_explains() {
        let mut db = TokenDb::in_memory(DbSettings::default());
        let spam = crate::tokenize::Tokens {
            tokens: ["viagra", "cheap", "offer"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            truncated: false,
        };
        let ham = crate::tokenize::Tokens {
            tokens: ["meeting", "agenda", "offer"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            truncated: false,
        };
        let settings = Settings {
            min_messages: 3,
            ..Settings::default()
        };
        assert!(!classify(&spam, &[&db], &settings).trained);
        for i in 0..3 {
            db.learn(i, &spam, Class::Spam, 1).unwrap();
            db.learn(100 + i, &ham, Class::Ham, 1).unwrap();
        }
        let s = classify(&spam, &[&db], &settings);
        assert!(s.trained && s.probability > 0.9, "{s:?}");
        // "offer" is in both: no evidence, not a clue.
        assert!(s.clues.iter().all(|c| c.0 != "offer"));
        assert_eq!(s.clues.len(), 2);
        let h = classify(&ham, &[&db], &settings);
        assert!(h.probability < 0.1, "{h:?}");
        // Two databases add up.
        let other = TokenDb::in_memory(DbSettings::default());
        assert_eq!(classify(&spam, &[&db, &other], &settings), s);
    }
}

//! LIST/LSUB mailbox patterns (RFC 9051 6.3.9): "*" matches any run of characters, "%"
//! any run without the hierarchy delimiter. Matched in O(pattern × name) time, so patterns
//! like "*a*a*a*a*b" cannot make the server backtrack exponentially.

/// Whether `name` matches `pattern` (both user-visible UTF-8 names; the caller joins the
/// reference and the pattern, and handles INBOX's case-insensitivity).
pub fn list_matches(pattern: &str, name: &str, delimiter: char) -> bool {
    let name: Vec<char> = name.chars().collect();
    // dp[j]: the pattern so far matches name[..j].
    let mut dp = vec![false; name.len() + 1];
    dp[0] = true;
    let mut next = vec![false; name.len() + 1];
    for p in pattern.chars() {
        match p {
            '*' => {
                next[0] = dp[0];
                for j in 1..=name.len() {
                    next[j] = dp[j] || next[j - 1];
                }
            }
            '%' => {
                next[0] = dp[0];
                for j in 1..=name.len() {
                    next[j] = dp[j] || (next[j - 1] && name[j - 1] != delimiter);
                }
            }
            c => {
                next[0] = false;
                for j in 1..=name.len() {
                    next[j] = dp[j - 1] && name[j - 1] == c;
                }
            }
        }
        std::mem::swap(&mut dp, &mut next);
    }
    dp[name.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        for (p, n, want) in [
            ("*", "", true),
            ("*", "a/b/c", true),
            ("%", "a", true),
            ("%", "a/b", false),
            ("a/%", "a/b", true),
            ("a/%", "a/b/c", false),
            ("a/*", "a/b/c", true),
            ("a*c", "abbbc", true),
            ("a%c", "ab/bc", false),
            ("INBOX", "INBOX", true),
            ("INBOX", "INBOX/x", false),
            ("", "", true),
            ("", "a", false),
            ("Entw%", "Entwürfe", true),
            ("%/%", "a/b", true),
            ("*%", "a/b", true),
        ] {
            assert_eq!(list_matches(p, n, '/'), want, "{p} {n}");
        }
    }

    #[test]
    fn no_exponential_backtracking() {
        let pattern = "*a".repeat(200) + "b";
        let name = "a".repeat(5000);
        assert!(!list_matches(&pattern, &name, '/'));
    }
}

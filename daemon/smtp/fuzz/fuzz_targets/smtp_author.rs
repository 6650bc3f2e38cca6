//! Arbitrary bytes as a submitted message: the author-field parser (From and Sender,
//! RFC 5322 3.6.2) never panics, and whatever it accepts holds only addresses with an '@'
//! and at most the limit of mailboxes per field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_smtp::author::{authors, AuthorField, MAX_AUTHOR_MAILBOXES};

fuzz_target!(|data: &[u8]| {
    if let Ok(found) = authors(data) {
        let from = found.iter().filter(|a| a.field == AuthorField::From).count();
        let sender = found.iter().filter(|a| a.field == AuthorField::Sender).count();
        assert!(from <= MAX_AUTHOR_MAILBOXES);
        assert!(sender <= 1);
        for author in &found {
            assert!(author.address.contains('@'));
            for named in &author.named {
                assert!(named.contains('@'));
            }
        }
    }
});

//! The spam filter's tokenizer on arbitrary messages: no panic, and every bound holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_filter::tokenize::{tokenize, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_message_bytes: 64 * 1024,
        max_text_bytes: 16 * 1024,
        max_tokens: 300,
        ..Limits::default()
    };
    let tokens = tokenize(data, &limits);
    assert!(tokens.tokens.len() <= limits.max_tokens);
    for t in &tokens.tokens {
        assert!(t.len() <= postern_filter::tokenize::MAX_TOKEN_BYTES, "{t:?}");
    }
});

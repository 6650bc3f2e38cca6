//! Arbitrary bytes through the command receiver, with literals: never panics, and the
//! results do not depend on how the input is split (one chunk, byte at a time, or the split
//! sizes the input chooses). After IDLE and AUTHENTICATE the driver reads one raw line, as
//! the server does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_imap::command::CommandBody;
use postern_imap::receiver::{CommandReceiver, Limits, Received};

#[derive(Debug, PartialEq)]
enum Event {
    Command(String, &'static str),
    Continue(Option<String>, u64),
    Error(Vec<u8>),
    Line(Vec<u8>),
    LineError,
}

fn limits(minus: bool) -> Limits {
    Limits {
        max_line: 200,
        max_append_literal: 500,
        max_literal: 100,
        max_command: 2000,
        literal_minus: minus,
        max_depth: 8,
    }
}

fn run(input: &[u8], splits: &[usize], minus: bool) -> Vec<Event> {
    let mut r = CommandReceiver::new(limits(minus));
    let mut events = Vec::new();
    let mut raw_line = false;
    let mut pos = 0;
    let mut i = 0;
    while pos < input.len() {
        let n = splits
            .get(i % splits.len().max(1))
            .copied()
            .unwrap_or(input.len())
            .max(1);
        i += 1;
        let end = (pos + n).min(input.len());
        r.push(&input[pos..end]);
        pos = end;
        loop {
            if raw_line {
                match r.next_line() {
                    None => break,
                    Some(Ok(l)) => {
                        assert!(!l.contains(&b'\n'));
                        events.push(Event::Line(l));
                    }
                    Some(Err(_)) => events.push(Event::LineError),
                }
                raw_line = false;
                continue;
            }
            match r.next() {
                None => break,
                Some(Ok(Received::Command(c))) => {
                    assert!(!c.tag.is_empty() && !c.tag.contains('+'));
                    raw_line = matches!(
                        c.body,
                        CommandBody::Idle
                            | CommandBody::Authenticate {
                                initial_response: None,
                                ..
                            }
                    );
                    events.push(Event::Command(c.tag, c.body.name()));
                }
                Some(Ok(Received::NeedContinuation { tag, size })) => {
                    events.push(Event::Continue(tag, size))
                }
                Some(Err(e)) => {
                    let resp = e.response();
                    assert!(resp.ends_with(b"\r\n"));
                    assert!(!resp[..resp.len() - 2].contains(&b'\n'));
                    events.push(Event::Error(resp));
                }
            }
        }
        // As posternd does before it waits for more input.
        r.release_consumed();
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let minus = ctl & 1 != 0;
    let whole = run(input, &[input.len()], minus);
    let bytewise = run(input, &[1], minus);
    assert_eq!(whole, bytewise);
    let splits: Vec<usize> = input
        .iter()
        .take(8)
        .map(|&b| usize::from(b % 17) + 1)
        .collect();
    assert_eq!(whole, run(input, &splits, minus));
});

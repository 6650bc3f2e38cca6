//! Arbitrary bytes through the line receiver, the parser and a whole session: never panics,
//! memory stays bounded, responses are well formed, message bodies round-trip through the
//! byte-stuffing, and the result does not depend on how the input is split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_pop3::response::{multiline, unstuff};
use postern_pop3::*;

const AUTH_LINE_MAX: usize = 12288;

fn limits() -> Limits {
    Limits {
        max_command_line: 64,
        max_errors: 40,
        ..Limits::default()
    }
}

#[derive(Default, PartialEq, Debug)]
struct Outcome {
    out: Vec<u8>,
    logs: Vec<&'static str>,
    auths: Vec<(String, String)>,
    retrieved: Vec<(usize, Option<usize>)>,
    committed: Vec<Vec<usize>>,
    closed: bool,
    starttls: bool,
}

/// The maildrop: a few messages derived from the policy byte, some with leading dots.
fn messages(policy: u8) -> Vec<Vec<u8>> {
    let n = usize::from(policy % 5);
    (0..n)
        .map(|i| {
            let mut m = format!("Subject: {i}\r\n\r\n").into_bytes();
            for l in 0..i * 3 {
                if l % 2 == 0 {
                    m.extend_from_slice(b".");
                }
                m.extend_from_slice(format!("line {l}\r\n").as_bytes());
            }
            m
        })
        .collect()
}

fn pump(s: &mut Session, o: &mut Outcome, policy: u8, msgs: &[Vec<u8>]) {
    loop {
        match s.next_action() {
            Action::Send(b) => {
                assert!(b.ends_with(b"\r\n"));
                assert!(b.starts_with(b"+OK") || b.starts_with(b"-ERR") || b.starts_with(b"+ "));
                o.out.extend_from_slice(&b);
            }
            Action::NeedInput => break,
            Action::Close => {
                o.closed = true;
                break;
            }
            Action::StartTls => {
                o.starttls = true;
                break;
            }
            Action::Log(e) => o.logs.push(e.name),
            Action::Authenticate {
                username, password, ..
            } => {
                assert!(s.is_tls(), "credentials taken without TLS");
                o.auths.push((username, password));
                s.resolve(Answer::Auth(policy & 8 != 0));
            }
            Action::LoadMaildrop { .. } => {
                let answer = match policy >> 6 {
                    0 => Err(MaildropError::InUse),
                    1 => Err(MaildropError::Temporary),
                    _ => Ok(msgs
                        .iter()
                        .enumerate()
                        .map(|(i, m)| MessageInfo {
                            size: m.len() as u64,
                            uid: format!("1.{}", i + 1),
                        })
                        .collect()),
                };
                s.resolve(Answer::Maildrop(answer));
            }
            Action::Retrieve { msg, top } => {
                assert!(msg >= 1 && msg <= msgs.len());
                o.retrieved.push((msg, top));
                let answer = if policy & 32 != 0 && msg == 1 {
                    Err(ReadError::Gone)
                } else {
                    Ok(msgs[msg - 1].clone())
                };
                s.resolve(Answer::Message(answer));
            }
            Action::Commit { deleted } => {
                assert!(deleted.windows(2).all(|w| w[0] < w[1]));
                assert!(deleted.iter().all(|&d| d >= 1 && d <= msgs.len()));
                o.committed.push(deleted);
                s.resolve(Answer::Committed(Ok(())));
            }
        }
    }
    if !o.closed && !o.starttls {
        assert!(s.buffered_input() < AUTH_LINE_MAX.max(limits().max_command_line));
    }
}

fn run(data: &[u8], chunk: usize) -> Outcome {
    let policy = data.first().copied().unwrap_or(0);
    let msgs = messages(policy);
    let mut s = Session::new(SessionParams {
        hostname: "mail.example.test".into(),
        limits: limits(),
        tls_active: policy & 16 != 0,
        tls_available: policy & 4 != 0,
    });
    let mut o = Outcome {
        out: s.greeting(),
        ..Outcome::default()
    };
    let input = data.get(1..).unwrap_or(&[]);
    for piece in input.chunks(chunk.max(1)) {
        if o.closed || o.starttls {
            break;
        }
        s.receive(piece);
        pump(&mut s, &mut o, policy, &msgs);
    }
    o
}

fuzz_target!(|data: &[u8]| {
    // The parser alone on every line of the input.
    for line in data.split(|&b| b == b'\n') {
        let _ = command::parse(line);
    }
    // Byte-stuffing round trip on the raw input taken as a CRLF message.
    let mut msg: Vec<u8> = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.contains(&b'\r') {
            msg.extend_from_slice(line);
            msg.extend_from_slice(b"\r\n");
        }
    }
    assert_eq!(unstuff(&multiline(&msg, None)).as_deref(), Some(&msg[..]));

    let whole = run(data, usize::MAX);
    let bytewise = run(data, 1);
    let split = data.first().map_or(1, |&b| usize::from(b % 13) + 2);
    let pieces = run(data, split);
    if !whole.starttls {
        assert_eq!(whole, bytewise);
        assert_eq!(whole, pieces);
    } else {
        // Input pipelined behind STLS is dropped when fed at once; fed in pieces the
        // session stops right after STLS. Up to that point all agree.
        assert!(bytewise.starttls && pieces.starttls);
        assert_eq!(whole.out, bytewise.out);
        assert_eq!(whole.out, pieces.out);
    }
});

//! Arbitrary bytes through a whole session: never panics, memory stays bounded, and the
//! result does not depend on how the input is split (one chunk vs one byte at a time).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_smtp::*;

const LINE_MAX: usize = 12288; // AUTH line limit (RFC 4954 4), the largest line buffered.

#[derive(Default, PartialEq, Debug)]
struct Outcome {
    out: Vec<u8>,
    logs: Vec<&'static str>,
    delivered: Vec<Envelope>,
    auths: Vec<(String, String)>,
    closed: bool,
    starttls: bool,
}

fn limits() -> Limits {
    Limits {
        max_message_size: 2048,
        max_recipients: 3,
        max_command_line: 80,
        max_data_line: 100,
        max_commands: 200,
        max_errors: 20,
        ..Limits::default()
    }
}

fn pump(s: &mut Session, o: &mut Outcome, policy: u8) {
    loop {
        match s.next_action() {
            Action::Send(b) => {
                assert!(b.ends_with(b"\r\n"));
                o.out.extend_from_slice(&b);
            }
            Action::NeedInput => break,
            Action::Close => {
                o.closed = true;
                break;
            }
            Action::StartTls => {
                // The rest of the stream would be a TLS handshake: stop feeding here.
                o.starttls = true;
                break;
            }
            Action::Log(e) => o.logs.push(e.name),
            Action::Authenticate {
                username, password, ..
            } => {
                let ok = policy & 1 != 0;
                o.auths.push((username, password));
                s.resolve(Answer::Auth(ok));
            }
            Action::CheckSender { .. } => {
                let v = if policy & 2 != 0 {
                    Verdict::Accept
                } else {
                    Verdict::Reject(Reply::sender_not_owned())
                };
                s.resolve(Answer::Verdict(v));
            }
            Action::CheckRecipient { address, .. } => {
                let v = if policy & 4 != 0 || address.len() % 2 == 0 {
                    Verdict::Accept
                } else {
                    Verdict::Reject(Reply::relay_denied())
                };
                s.resolve(Answer::Verdict(v));
            }
            Action::Deliver(env) => {
                // Accepted content never holds a bare CR or LF (RFC 5321 2.3.8).
                let b = &env.body;
                for (i, &c) in b.iter().enumerate() {
                    if c == b'\r' {
                        assert_eq!(b.get(i + 1), Some(&b'\n'));
                    }
                    if c == b'\n' {
                        assert!(i > 0 && b[i - 1] == b'\r');
                    }
                }
                assert!(b.len() <= limits().max_message_size);
                o.delivered.push(env);
                let r = if policy & 8 != 0 {
                    Ok(())
                } else {
                    Err(Reply::storage_unavailable())
                };
                s.resolve(Answer::Delivered(r));
            }
        }
        assert!(s.buffered_body() <= limits().max_message_size);
    }
    if !o.closed && !o.starttls {
        assert!(s.buffered_input() <= LINE_MAX.max(limits().max_command_line));
    }
}

fn run(data: &[u8], chunk: usize) -> Outcome {
    let policy = data.first().copied().unwrap_or(0);
    let kind = match policy >> 6 {
        0 => ListenerKind::Mx,
        1 => ListenerKind::Submission,
        _ => ListenerKind::Submissions,
    };
    let mut s = Session::new(SessionParams {
        hostname: "mx.example.test".into(),
        kind,
        limits: limits(),
        tls_active: kind == ListenerKind::Submissions || policy & 16 != 0,
        tls_available: policy & 32 != 0,
        peer: "192.0.2.1:25".parse().unwrap(),
    });
    let mut o = Outcome::default();
    o.out = s.greeting();
    let input = data.get(1..).unwrap_or(&[]);
    for piece in input.chunks(chunk.max(1)) {
        if o.closed || o.starttls {
            break;
        }
        s.receive(piece);
        pump(&mut s, &mut o, policy);
    }
    o
}

fuzz_target!(|data: &[u8]| {
    let whole = run(data, usize::MAX);
    let bytewise = run(data, 1);
    if !whole.starttls {
        assert_eq!(whole, bytewise);
    } else {
        // Everything pipelined behind STARTTLS is dropped when fed at once; fed byte by
        // byte the session stops right after STARTTLS. Up to that point both agree.
        assert!(bytewise.starttls);
        assert_eq!(whole.out, bytewise.out);
        assert_eq!(whole.delivered, bytewise.delivered);
    }
});

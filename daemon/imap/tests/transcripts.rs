//! Commands as a real client writes them: the bytes Python's imaplib sent in a broad session
//! (tests/transcripts/record_imaplib.py), fed to the receiver a byte at a time.

use std::path::Path;

use postern_imap::command::{CommandBody, SearchKey};
use postern_imap::receiver::{CommandReceiver, Limits, Received};

#[test]
fn imaplib_session_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts/imaplib.bin");
    let bytes = std::fs::read(path).expect("transcript");
    let mut r = CommandReceiver::new(Limits::default());
    let mut commands = Vec::new();
    let mut continuations = 0;
    for b in &bytes {
        r.push(std::slice::from_ref(b));
        while let Some(x) = r.next() {
            match x {
                Ok(Received::Command(c)) => commands.push(c),
                Ok(Received::NeedContinuation { .. }) => continuations += 1,
                Err(e) => panic!("{e:?} after {:?}", commands.last()),
            }
        }
    }
    assert!(!r.has_pending());
    assert_eq!(continuations, 1);
    let names: Vec<&str> = commands.iter().map(|c| c.body.name()).collect();
    assert_eq!(
        names,
        [
            "CAPABILITY",
            "LOGIN",
            "ENABLE",
            "NAMESPACE",
            "LIST",
            "LIST",
            "LSUB",
            "CREATE",
            "CREATE",
            "RENAME",
            "SUBSCRIBE",
            "UNSUBSCRIBE",
            "STATUS",
            "GETQUOTAROOT",
            "SELECT",
            "APPEND",
            "FETCH",
            "FETCH",
            "FETCH",
            "FETCH",
            "UID FETCH",
            "SEARCH",
            "SEARCH",
            "SEARCH",
            "UID SEARCH",
            "SORT",
            "UID SORT",
            "STORE",
            "UID STORE",
            "COPY",
            "UID COPY",
            "UID MOVE",
            "EXPUNGE",
            "UID EXPUNGE",
            "CHECK",
            "NOOP",
            "CLOSE",
            "EXAMINE",
            "UNSELECT",
            "ID",
            "DELETE",
            "LOGOUT",
        ]
    );
    assert!(
        matches!(&commands[1].body, CommandBody::Login { password, .. }
        if password == b"p\"ss w\\rd")
    );
    let CommandBody::Append { messages, .. } = &commands[15].body else {
        panic!()
    };
    assert_eq!(messages[0].data, b"From: a@b\r\nSubject: x\r\n\r\nbody\r\n");
    assert_eq!(messages[0].flags.len(), 2);
    assert_eq!(
        messages[0].internal_date.map(|d| d.unix),
        Some(1_700_000_000)
    );
    assert!(
        matches!(&commands[22].body, CommandBody::Search { charset: Some(c),
        criteria: SearchKey::Subject(s), .. } if c == "UTF-8" && s == "caf\u{e9}")
    );
    assert!(matches!(
        &commands[20].body,
        CommandBody::Fetch {
            changed_since: Some(1),
            ..
        }
    ));
}

//! The strict DATA/BDAT reader against a straightforward reference: the same result for any
//! split of the input, no bare CR/LF in accepted bodies, and no end of data except at a real
//! CRLF "." CRLF (RFC 5321 2.3.8, 4.1.1.4, 4.5.2).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_smtp::{DataError, DataReader};

const MAX_SIZE: usize = 1024;
const MAX_LINE: usize = 64;

/// Reference DATA decoder: lines are split on CRLF only.
fn reference(input: &[u8]) -> Option<(usize, Result<Vec<u8>, DataError>)> {
    let (mut pos, mut body) = (0, Vec::new());
    let (mut bare, mut long, mut nul) = (false, false, false);
    loop {
        let idx = pos + input[pos..].windows(2).position(|w| w == b"\r\n")?;
        let line = &input[pos..idx];
        if line == b"." {
            let res = if bare {
                Err(DataError::BareLineEnding)
            } else if long {
                Err(DataError::LineTooLong)
            } else if body.len() > MAX_SIZE {
                Err(DataError::TooBig)
            } else if nul {
                Err(DataError::Nul)
            } else {
                Ok(body)
            };
            return Some((idx + 2, res));
        }
        bare |= line.iter().any(|&c| c == b'\r' || c == b'\n');
        long |= line.len() + 2 > MAX_LINE;
        nul |= line.contains(&0);
        body.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        body.extend_from_slice(b"\r\n");
        pos = idx + 2;
    }
}

fn no_bare(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => b.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && b[i - 1] == b'\r',
        _ => true,
    })
}

fn feed_data(input: &[u8], chunk: usize) -> (usize, bool, DataReader) {
    let mut r = DataReader::new_data(MAX_SIZE, MAX_LINE);
    let mut consumed = 0;
    for piece in input.chunks(chunk.max(1)) {
        if r.is_done() {
            break;
        }
        let n = r.feed(piece);
        assert!(n <= piece.len());
        assert!(n == piece.len() || r.is_done());
        consumed += n;
        assert!(r.stored_len() <= MAX_SIZE);
    }
    (consumed, r.is_done(), r)
}

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |&b| b as usize % 17 + 1);
    let input = data.get(1..).unwrap_or(&[]);

    // DATA.
    let (n1, done1, r1) = feed_data(input, usize::MAX);
    let (n2, done2, r2) = feed_data(input, 1);
    let (n3, done3, r3) = feed_data(input, split);
    assert_eq!((n1, done1), (n2, done2));
    assert_eq!((n1, done1), (n3, done3));
    let (res1, res2, res3) = (r1.into_result(), r2.into_result(), r3.into_result());
    match reference(input) {
        Some((n, res)) => {
            assert!(done1);
            assert_eq!(n, n1);
            assert_eq!(res, res1);
        }
        None => assert!(!done1 && n1 == input.len()),
    }
    if done1 {
        assert_eq!(res1, res2);
        assert_eq!(res1, res3);
        if let Ok(body) = &res1 {
            assert!(no_bare(body));
            assert!(body.len() <= MAX_SIZE);
        }
    }

    // BDAT: raw content, chunked; only the bare-line check and limits apply.
    let mut b = DataReader::new_bdat(MAX_SIZE, MAX_LINE);
    for piece in input.chunks(split) {
        assert_eq!(b.feed(piece), piece.len());
    }
    b.finish();
    match b.into_result() {
        Ok(body) => {
            assert_eq!(body, input);
            assert!(no_bare(&body));
        }
        Err(DataError::BareLineEnding) => assert!(!no_bare(input)),
        Err(DataError::TooBig) => assert!(input.len() > MAX_SIZE),
        Err(DataError::LineTooLong) => assert!(no_bare(input)),
        Err(DataError::Nul) => assert!(no_bare(input) && input.contains(&0)),
    }
});

//! The spool's and the write-ahead log's segment readers: a damaged byte
//! costs only the line it is in. A segment of well-formed lines is built
//! from the input, one byte of it is changed, and every line the change did
//! not touch must still be read, in order; lines marked done in the
//! write-ahead log (by a `-` in the earlier format, by the done map in the
//! current one) never are.
//!
//! Input: three bytes (where to damage, with what, which lines are done),
//! then the records' payloads separated by 0xff.

#![no_main]

use floopy_gateway::logs::spool::parse_segment;
use floopy_gateway::logs::wal::read_records;
use libfuzzer_sys::fuzz_target;

fn line(payload: &[u8]) -> Vec<u8> {
    let mut line = format!("{:08x} ", crc32fast_hash(payload)).into_bytes();
    line.extend_from_slice(payload);
    line.push(b'\n');
    line
}

/// CRC-32 (IEEE), bit by bit: independent of the reader's own.
fn crc32fast_hash(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Whether `all` contains `part` in order.
fn in_order(part: &[Vec<u8>], all: &[Vec<u8>]) -> bool {
    let mut rest = all.iter();
    part.iter().all(|p| rest.any(|a| a == p))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (at, with, done_mask) = (data[0], data[1], data[2]);
    let payloads: Vec<Vec<u8>> = data[3..]
        .split(|b| *b == 0xff)
        // A record is a JSON object: never empty.
        .filter(|p| !p.is_empty())
        .map(|p| {
            // A record is one line of JSON: no newline, no zero byte.
            p.iter()
                .map(|b| if *b == b'\n' || *b == 0 { b' ' } else { *b })
                .collect()
        })
        .collect();
    let mut segment = Vec::new();
    let mut spans = Vec::new();
    for p in &payloads {
        let start = segment.len();
        segment.extend_from_slice(&line(p));
        spans.push(start..segment.len());
    }
    let damaged = usize::from(at) * segment.len() / 256;
    // A line is touched by a changed byte in it, or by the loss of the
    // newline before it (the two lines become one). A byte "changed" to
    // what it was touches nothing.
    let touched = |original: &[u8], span: &std::ops::Range<usize>| {
        let changed = original.get(damaged).is_some_and(|b| *b != with);
        changed && (span.contains(&damaged) || (span.start == damaged + 1 && with != b'\n'))
    };

    let mut bytes = segment.clone();
    if let Some(b) = bytes.get_mut(damaged) {
        *b = with;
    }
    let untouched: Vec<Vec<u8>> = payloads
        .iter()
        .zip(&spans)
        .filter(|(_, span)| !touched(&segment, span))
        .map(|(p, _)| p.clone())
        .collect();
    let read = parse_segment(&bytes);
    assert!(
        in_order(&untouched, &read.records),
        "the spool lost an undamaged line"
    );
    assert!(read.records.len() <= payloads.len() + 1);

    // The write-ahead log: the same lines, some marked done, in a segment
    // padded with zeros.
    let done = |i: usize| done_mask & (1 << (i % 8)) != 0;
    let mut marked = segment.clone();
    for (i, span) in spans.iter().enumerate() {
        if done(i) {
            marked[span.start] = b'-';
        }
    }
    let mut wal = marked.clone();
    if let Some(b) = wal.get_mut(damaged) {
        *b = with;
    }
    wal.extend_from_slice(&[0; 64]);
    // Every line neither done nor touched is read, in order; a record
    // done is never read, unless the same bytes are also a record not done
    // or one in a damaged line (the damage can undo a `-` mark). `original`:
    // the bytes before the damage.
    let check = |original: &[u8], records: &[Vec<u8>], format: &str| {
        let live: Vec<Vec<u8>> = payloads
            .iter()
            .zip(&spans)
            .enumerate()
            .filter(|(i, (_, span))| !done(*i) && !touched(original, span))
            .map(|(_, (p, _))| p.clone())
            .collect();
        assert!(
            in_order(&live, records),
            "the write-ahead log ({format}) lost an undamaged line"
        );
        let may_be_read = |p: &Vec<u8>| {
            payloads
                .iter()
                .zip(&spans)
                .enumerate()
                .any(|(j, (q, span))| q == p && (!done(j) || touched(original, span)))
        };
        for (i, p) in payloads.iter().enumerate() {
            if done(i) && !may_be_read(p) {
                assert!(
                    !records.contains(p),
                    "a record marked done was read ({format})"
                );
            }
        }
    };
    let mut records = Vec::new();
    read_records(&wal, None, &mut records);
    check(&marked, &records, "marks");

    // The current format: the lines unmarked, with a done map after them
    // (the bit of the line starting at offset o is o / 8).
    let mut lines = bytes.clone();
    lines.extend_from_slice(&[0; 64]);
    let mut map = vec![0u8; lines.len() / 64 + 1];
    for (i, span) in spans.iter().enumerate() {
        if done(i) {
            map[span.start / 64] |= 1 << (span.start / 8 % 8);
        }
    }
    let mut records = Vec::new();
    read_records(&lines, Some(&map), &mut records);
    check(&segment, &records, "done map");
});

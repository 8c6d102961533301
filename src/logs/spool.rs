//! The disk spool of the Kafka and ClickHouse sinks: records that could not
//! be delivered (the broker or ClickHouse unreachable, a queue full, not
//! acknowledged at shutdown) wait here, in order, until they are replayed.
//!
//! Layout: a directory of segment files `spool-<seq>.log`, numbered in
//! order. Each record is one line: the CRC-32 of the JSON in 8 hex digits, a
//! space, the JSON, a newline. A reader checks every line and skips (with an
//! error log and a metric) any that is torn, truncated or altered, so a
//! corrupt segment costs its bad lines, never the rest.
//!
//! Durability: appends go through the page cache and are synced to disk at
//! most every `SYNC_INTERVAL` and whenever a segment is closed (group
//! commit). A process crash loses nothing that was appended; a power loss
//! can lose the last `SYNC_INTERVAL` of spooled records.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::wal::Wal;
use crate::locks::lock;
use crate::metrics::Metrics;

/// Largest segment before a new one is started.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Longest time an appended record waits for fsync.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// Appends records to the newest segment.
pub struct SpoolWriter {
    dir: PathBuf,
    current: Option<(u64, File, u64)>,
    last_sync: Instant,
    dirty: bool,
}

/// A closed segment waiting to be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub seq: u64,
    pub path: PathBuf,
}

/// What reading a segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SegmentRecords {
    pub records: Vec<Vec<u8>>,
    /// Lines skipped as corrupt.
    pub corrupt: u64,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("spool-{seq:020}.log"))
}

fn parse_seq(name: &str) -> Option<u64> {
    name.strip_prefix("spool-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// The segments in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut segments = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(segments),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_seq) {
            segments.push(Segment {
                seq,
                path: entry.path(),
            });
        }
    }
    segments.sort_by_key(|s| s.seq);
    Ok(segments)
}

/// (total bytes, age of the oldest segment) of the spool.
pub fn spool_stats(dir: &Path) -> (u64, Duration) {
    let Ok(segments) = list_segments(dir) else {
        return (0, Duration::ZERO);
    };
    let mut bytes = 0;
    let mut oldest = None;
    for s in &segments {
        if let Ok(meta) = std::fs::metadata(&s.path) {
            bytes += meta.len();
            if let Ok(modified) = meta.modified() {
                oldest = Some(oldest.map_or(modified, |o: SystemTime| o.min(modified)));
            }
        }
    }
    let age = oldest
        .and_then(|o| SystemTime::now().duration_since(o).ok())
        .unwrap_or(Duration::ZERO);
    (bytes, age)
}

impl SpoolWriter {
    pub fn open(dir: &Path) -> io::Result<SpoolWriter> {
        std::fs::create_dir_all(dir)?;
        Ok(SpoolWriter {
            dir: dir.to_path_buf(),
            current: None,
            last_sync: Instant::now(),
            dirty: false,
        })
    }

    /// Appends one record (a JSON object without newline).
    pub fn append(&mut self, json: &[u8]) -> io::Result<()> {
        let (_, file, size) = match &mut self.current {
            Some(current) if current.2 < SEGMENT_BYTES => current,
            _ => {
                self.close_segment()?;
                let next = list_segments(&self.dir)?.last().map_or(1, |s| s.seq + 1);
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(segment_path(&self.dir, next))?;
                self.current.insert((next, file, 0))
            }
        };
        let mut line = Vec::with_capacity(json.len() + 10);
        line.extend_from_slice(&line_prefix(json));
        line.extend_from_slice(json);
        line.push(b'\n');
        file.write_all(&line)?;
        *size += line.len() as u64;
        self.dirty = true;
        if self.last_sync.elapsed() >= SYNC_INTERVAL {
            self.sync()?;
        }
        Ok(())
    }

    /// Syncs what was appended to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            if let Some((_, file, _)) = &self.current {
                file.sync_data()?;
            }
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Closes the current segment (synced): later appends start a new one,
    /// and this one can be replayed.
    pub fn close_segment(&mut self) -> io::Result<()> {
        self.sync()?;
        self.current = None;
        Ok(())
    }

    /// The sequence number of the segment being written, if any.
    pub fn current_seq(&self) -> Option<u64> {
        self.current.as_ref().map(|(seq, _, _)| *seq)
    }
}

/// Whether `dir` holds any segment (a cheap check before a replay).
pub fn has_segments(dir: &Path) -> bool {
    list_segments(dir).is_ok_and(|s| !s.is_empty())
}

/// A sink's spool: the writer, shared by the threads that spool, and
/// whether the disk takes appends (the one state in which records are at
/// risk; `/readyz` reports it).
pub struct Spool {
    writer: Mutex<SpoolWriter>,
    failing: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Spool {
    pub fn open(dir: &Path, metrics: Arc<Metrics>) -> io::Result<Spool> {
        Ok(Spool {
            writer: Mutex::new(SpoolWriter::open(dir)?),
            failing: AtomicBool::new(false),
            metrics,
        })
    }

    /// Appends a record; on a disk error it is logged, counted and retried
    /// until the disk takes it (losing it is not an option).
    pub fn append(&self, json: &[u8]) {
        let mut writer = lock(&self.writer);
        loop {
            match writer.append(json) {
                Ok(()) => {
                    self.metrics.log_records_spooled.inc();
                    self.failing.store(false, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    self.metrics.log_write_errors.inc();
                    self.failing.store(true, Ordering::Relaxed);
                    tracing::error!(error = %e, "cannot append to the log spool; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    pub fn writer(&self) -> MutexGuard<'_, SpoolWriter> {
        lock(&self.writer)
    }

    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Moves what crashed processes left in the write-ahead log here
    /// (synced before the log's segments are deleted).
    pub fn recover(&self, wal: &Wal) {
        let recovered = match wal.recover() {
            Ok(recovered) => recovered,
            Err(e) => {
                tracing::error!(error = %e, "cannot recover the request log's write-ahead log");
                return;
            }
        };
        if recovered.records.is_empty() && recovered.corrupt == 0 {
            recovered.remove();
            return;
        }
        for json in &recovered.records {
            self.append(json);
        }
        if let Err(e) = self.writer().sync() {
            tracing::error!(error = %e, "cannot sync the log spool; the recovered segments are kept");
            return;
        }
        self.metrics
            .log_records_recovered
            .add(recovered.records.len() as u64);
        self.metrics
            .log_spool_corrupt_records
            .add(recovered.corrupt);
        tracing::warn!(
            records = recovered.records.len(),
            corrupt = recovered.corrupt,
            "request logs left by a stopped process were recovered into the spool"
        );
        recovered.remove();
    }

    /// The oldest segment that is no longer written, to replay. When only
    /// the segment being written exists, it is closed so that the next call
    /// returns it.
    pub fn oldest_closed(&self, dir: &Path) -> Option<Segment> {
        let segments = list_segments(dir).ok()?;
        let mut writer = self.writer();
        let current = writer.current_seq();
        match segments.into_iter().find(|s| Some(s.seq) != current) {
            Some(segment) => Some(segment),
            None => {
                if current.is_some() {
                    if let Err(e) = writer.close_segment() {
                        tracing::error!(error = %e, "cannot close the log spool segment");
                    }
                }
                None
            }
        }
    }

    /// Reads a segment to replay; corrupt lines are counted and logged.
    pub fn read(&self, segment: &Segment) -> Option<SegmentRecords> {
        let read = match read_segment(&segment.path) {
            Ok(read) => read,
            Err(e) => {
                tracing::error!(path = %segment.path.display(), error = %e, "cannot read a spool segment");
                return None;
            }
        };
        if read.corrupt > 0 {
            self.metrics.log_spool_corrupt_records.add(read.corrupt);
            tracing::error!(
                path = %segment.path.display(),
                skipped = read.corrupt,
                "corrupt records in a spool segment were skipped"
            );
        }
        Some(read)
    }
}

/// Reads a segment, checking every line.
pub fn read_segment(path: &Path) -> io::Result<SegmentRecords> {
    Ok(parse_segment(&std::fs::read(path)?))
}

/// The records of a segment's bytes: each well-formed line's JSON, in
/// order; any other line (torn, truncated, altered) is counted and skipped
/// alone.
pub fn parse_segment(bytes: &[u8]) -> SegmentRecords {
    let mut out = SegmentRecords::default();
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        match parse_line(line) {
            Some(json) => out.records.push(json.to_vec()),
            None => out.corrupt += 1,
        }
    }
    out
}

/// The start of `json`'s line: its CRC-32 in 8 lowercase hex digits and a
/// space.
pub(crate) fn line_prefix(json: &[u8]) -> [u8; 9] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let crc = crc32fast::hash(json);
    let mut out = [b' '; 9];
    for (i, digit) in out[..8].iter_mut().enumerate() {
        *digit = HEX[((crc >> (28 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// The JSON of a well-formed line (`crc SP json LF`), or `None`.
pub(crate) fn parse_line(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\n")?;
    if line.len() < 10 || line[8] != b' ' {
        return None;
    }
    let crc = u32::from_str_radix(std::str::from_utf8(&line[..8]).ok()?, 16).ok()?;
    let json = &line[9..];
    (crc32fast::hash(json) == crc).then_some(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::open(dir.path()).unwrap();
        w.append(br#"{"n":1}"#).unwrap();
        w.append(br#"{"n":2}"#).unwrap();
        w.close_segment().unwrap();
        w.append(br#"{"n":3}"#).unwrap();
        w.close_segment().unwrap();
        let segments = list_segments(dir.path()).unwrap();
        assert_eq!(
            segments.iter().map(|s| s.seq).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let all: Vec<Vec<u8>> = segments
            .iter()
            .flat_map(|s| read_segment(&s.path).unwrap().records)
            .collect();
        assert_eq!(
            all,
            vec![
                br#"{"n":1}"#.to_vec(),
                br#"{"n":2}"#.to_vec(),
                br#"{"n":3}"#.to_vec()
            ]
        );
        let (bytes, _) = spool_stats(dir.path());
        assert!(bytes > 0);
    }

    #[test]
    fn corrupt_and_truncated_lines_are_skipped_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 7);
        let good = |json: &str| format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()));
        let mut content = String::new();
        content.push_str(&good(r#"{"n":1}"#));
        content.push_str("deadbeef {\"n\":2}\n"); // wrong checksum
        content.push_str("garbage\n");
        content.push_str(&good(r#"{"n":3}"#));
        content.push_str(&good(r#"{"n":4}"#)[..12]); // torn last line
        std::fs::write(&path, content).unwrap();
        let read = read_segment(&path).unwrap();
        assert_eq!(
            read.records,
            vec![br#"{"n":1}"#.to_vec(), br#"{"n":3}"#.to_vec()]
        );
        assert_eq!(read.corrupt, 3);
    }

    #[test]
    fn a_new_writer_continues_after_the_last_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::open(dir.path()).unwrap();
        w.append(b"{}").unwrap();
        assert_eq!(w.current_seq(), Some(1));
        drop(w);
        let mut w = SpoolWriter::open(dir.path()).unwrap();
        w.append(b"{}").unwrap();
        assert_eq!(
            w.current_seq(),
            Some(2),
            "never appends to a segment another process may replay"
        );
    }
}

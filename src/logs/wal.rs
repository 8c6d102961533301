//! The request log's write-ahead log: a record is in it before the
//! answer's last byte goes to the client, so a process killed at any moment
//! loses no answered request's record, and no request waits on the disk.
//!
//! - A segment is a file of `SEGMENT_BYTES` of lines and a done map, its
//!   blocks reserved (`posix_fallocate`), mapped into memory, shared. An
//!   append is a copy into the mapping under a mutex, with no system call:
//!   from that moment the bytes are in the kernel's page cache and outlive
//!   the process. The sink's writer thread syncs them to disk every
//!   `SYNC_INTERVAL` (the spool's; group commit): a power loss costs at
//!   most that.
//! - Each record is a spool line (`crc32 SP json LF`, see `spool`). Once
//!   the sink has delivered it (Kafka acknowledged it, the file took it, or
//!   it went to the spool) its bit in the segment's done map is set: a
//!   line starting at offset o is done when bit o / 8 of the map, which
//!   follows the `SEGMENT_BYTES` of lines in the same file, is one (a line
//!   is longer than 8 bytes, so no two lines share a bit, and a damaged
//!   line moves no other line's bit). The map is
//!   never synced by the log (a done bit lost to a power cut costs a
//!   duplicate, which consumers remove): marking a record done in the line
//!   itself wrote into a page the group commit had just synced, which the
//!   kernel write-protects, so each page took a second page fault and was
//!   written to disk twice.
//! - The writer thread makes the next segment ahead of time and faults its
//!   pages in (`MADV_POPULATE_WRITE`), so appends on the request path copy
//!   into pages that are already mapped.
//! - A segment is deleted once it is no longer the one being appended to
//!   and each of its records is done.
//! - A process holds an exclusive lock (`flock`) on each of its segments
//!   while it has it open. A segment nobody holds is what a crash left: the
//!   sink recovers it (`Wal::recover`), delivering the records that are not
//!   done, then deletes it. A record delivered just before the crash and
//!   not yet marked done is delivered twice; consumers deduplicate by
//!   `request_id`.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use memmap2::MmapRaw;

use super::spool::{line_prefix, parse_line, SYNC_INTERVAL};
use super::RequestLog;
use crate::locks::lock;
use crate::metrics::Metrics;

/// The bytes of lines a segment holds, reserved on disk when it is made.
pub const SEGMENT_BYTES: usize = 8 * 1024 * 1024;
/// The done map's size, after the lines in the segment's file: a bit for
/// every 8 bytes of lines.
const DONE_MAP_BYTES: usize = SEGMENT_BYTES / 8 / 8;
/// A segment file's size: its lines, then its done map.
const FILE_BYTES: usize = SEGMENT_BYTES + DONE_MAP_BYTES;

/// One segment file, mapped; deleted when its last record is done.
pub struct Segment {
    path: PathBuf,
    map: MmapRaw,
    /// Holds the lock that tells other processes the segment is alive.
    _file: File,
    /// Records not yet done, plus one while the segment is current.
    pending: AtomicUsize,
}

impl Segment {
    /// Faults the whole mapping in, writable, so that no append takes a
    /// page fault; on the writer thread, before the segment becomes
    /// current. A kernel without `MADV_POPULATE_WRITE` (before 5.14) says
    /// `EINVAL`: appends then fault pages in as before.
    fn prefault(&self) {
        // SAFETY: the range is exactly the mapping, which `self` owns;
        // populating changes no byte of it.
        let rc = unsafe {
            libc::madvise(
                self.map.as_mut_ptr().cast(),
                self.map.len(),
                libc::MADV_POPULATE_WRITE,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                tracing::debug!(path = %self.path.display(), error = %e, "cannot fault a request log segment in ahead");
            }
        }
    }

    fn release(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::error!(path = %self.path.display(), error = %e, "cannot delete a request log segment");
            }
        }
    }
}

/// A record in the write-ahead log, until it is delivered.
pub struct WalRecord {
    segment: Arc<Segment>,
    offset: usize,
    len: usize,
}

impl WalRecord {
    /// The record's JSON (the line without its checksum and newline).
    pub fn json(&self) -> &[u8] {
        // SAFETY: `offset..offset + len` lies in the mapping (checked at
        // append) and was written, under the mutex, before this record was
        // created; nothing writes it again until `done` consumes the
        // record, so no write overlaps this borrow.
        let line = unsafe {
            std::slice::from_raw_parts(self.segment.map.as_ptr().add(self.offset), self.len)
        };
        &line[9..line.len() - 1]
    }

    /// The record was delivered: it will not be recovered after a crash.
    pub fn done(self) {
        let bit = self.offset / 8;
        // SAFETY: `offset < SEGMENT_BYTES`, so the byte lies in the done
        // map, inside the mapping, which lives as long as the segment this
        // record holds. Other lines' bits share the byte, so it is only
        // changed atomically.
        let byte = unsafe {
            AtomicU8::from_ptr(self.segment.map.as_mut_ptr().add(SEGMENT_BYTES + bit / 8))
        };
        byte.fetch_or(1 << (bit % 8), Ordering::Release);
        self.segment.release();
    }
}

/// A record on its way to the sink: in the write-ahead log or, while the
/// log cannot be written, only in memory.
pub enum Pending {
    Logged(WalRecord),
    InMemory(Vec<u8>),
}

impl Pending {
    pub fn json(&self) -> &[u8] {
        match self {
            Pending::Logged(record) => record.json(),
            Pending::InMemory(json) => json,
        }
    }

    /// The sink delivered the record.
    pub fn done(self) {
        if let Pending::Logged(record) = self {
            record.done();
        }
    }
}

thread_local! {
    /// Where a worker serialises its records (reused, no allocation).
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// The segment being appended to.
struct Current {
    segment: Option<Arc<Segment>>,
    used: usize,
    /// Bytes of the current segment already synced.
    synced: usize,
    /// Segments replaced since the last sync, with what they hold.
    retired: Vec<(Arc<Segment>, usize)>,
    /// Created ahead by the writer thread, so an append rarely opens a file.
    spare: Option<Arc<Segment>>,
    /// The last try to make a spare failed: the next is at the next sync.
    spare_failed: bool,
    last_sync: Instant,
}

pub struct Wal {
    dir: PathBuf,
    current: Mutex<Current>,
    /// Names this process's segments: `wal-<start ms>-<pid>-<n>.log`.
    prefix: String,
    next: AtomicU64,
    /// The last append failed: records are only in memory.
    failing: AtomicBool,
}

/// What recovering a crashed process's segments found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The JSON of each record that was not done, oldest segment first.
    pub records: Vec<Vec<u8>>,
    /// Lines skipped as corrupt (a write cut by the crash).
    pub corrupt: u64,
    /// The recovered segments: delete them (`Recovered::remove`) once their
    /// records are safe elsewhere. Holding them keeps their locks.
    segments: Vec<(PathBuf, File)>,
}

impl Recovered {
    /// Deletes the recovered segments.
    pub fn remove(self) {
        for (path, _lock) in self.segments {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::error!(path = %path.display(), error = %e, "cannot delete a recovered request log segment");
            }
        }
    }
}

impl Wal {
    pub fn open(dir: &Path) -> io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Ok(Wal {
            dir: dir.to_path_buf(),
            current: Mutex::new(Current {
                segment: None,
                used: 0,
                synced: 0,
                retired: Vec::new(),
                spare: None,
                spare_failed: false,
                last_sync: Instant::now(),
            }),
            prefix: format!("wal-{started}-{}-", std::process::id()),
            next: AtomicU64::new(1),
            failing: AtomicBool::new(false),
        })
    }

    /// Serialises `record` and appends it; on the request path. When the
    /// log cannot be written (a full disk) the record goes on in memory:
    /// counted in `log_write_errors`, and `failing` says so until an append
    /// succeeds again.
    // Out of line: load-tests/instructions.sh reports its cost (one call).
    #[inline(never)]
    pub fn write(&self, record: &RequestLog, metrics: &Metrics) -> Pending {
        self.write_with(|json| record.write_json(json), metrics)
    }

    /// `write` for any one-line JSON object `serialise` appends (a feedback
    /// record).
    pub fn write_with(&self, serialise: impl FnOnce(&mut Vec<u8>), metrics: &Metrics) -> Pending {
        LINE.with_borrow_mut(|json| {
            json.clear();
            serialise(json);
            match self.append(json) {
                Ok(logged) => {
                    if self.failing.load(Ordering::Relaxed) {
                        self.failing.store(false, Ordering::Relaxed);
                    }
                    Pending::Logged(logged)
                }
                Err(e) => {
                    metrics.log_write_errors.inc();
                    if !self.failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(dir = %self.dir.display(), error = %e, "cannot append to the request log's write-ahead log; records are in memory only");
                    }
                    Pending::InMemory(json.clone())
                }
            }
        })
    }

    /// `Err` with the reason while records are only in memory.
    pub fn health(&self) -> Result<(), String> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(format!(
                "the request log's write-ahead log {} cannot be written",
                self.dir.display()
            ));
        }
        Ok(())
    }

    /// Appends `json` as one line; on the request path.
    fn append(&self, json: &[u8]) -> io::Result<WalRecord> {
        let len = json.len() + 10;
        if len > SEGMENT_BYTES {
            return Err(io::Error::other("request log record larger than a segment"));
        }
        let crc = line_prefix(json);
        let mut current = lock(&self.current);
        if current.segment.is_none() || current.used + len > SEGMENT_BYTES {
            let next = match current.spare.take() {
                Some(spare) => spare,
                None => self.create_segment()?,
            };
            let cur = &mut *current;
            if let Some(old) = cur.segment.replace(next) {
                cur.retired.push((old, cur.used));
            }
            cur.used = 0;
            cur.synced = 0;
        }
        let offset = current.used;
        let Some(segment) = current.segment.clone() else {
            unreachable!("a segment was just made current");
        };
        // SAFETY: `offset + len <= SEGMENT_BYTES`, the mapping's length;
        // the mutex makes this the only writer of the range, which no
        // `WalRecord` covers yet.
        unsafe {
            let at = segment.map.as_mut_ptr().add(offset);
            std::ptr::copy_nonoverlapping(crc.as_ptr(), at, crc.len());
            std::ptr::copy_nonoverlapping(json.as_ptr(), at.add(9), json.len());
            *at.add(len - 1) = b'\n';
        }
        current.used += len;
        drop(current);
        segment.pending.fetch_add(1, Ordering::AcqRel);
        Ok(WalRecord {
            segment,
            offset,
            len,
        })
    }

    /// The writer thread's periodic work, called at every turn: at most
    /// every `SYNC_INTERVAL`, `sync`; between two, a spare an append took is
    /// replaced at once (a spare that could not be made is tried again at
    /// the next sync, not at every turn).
    pub fn tick(&self) -> io::Result<()> {
        let (due, spare_missing) = {
            let current = lock(&self.current);
            (
                current.last_sync.elapsed() >= SYNC_INTERVAL,
                current.spare.is_none() && !current.spare_failed,
            )
        };
        if due {
            return self.sync();
        }
        if spare_missing {
            self.make_spare()?;
        }
        Ok(())
    }

    /// Makes the spare segment, faulted in.
    fn make_spare(&self) -> io::Result<()> {
        let made = self.create_segment();
        let mut current = lock(&self.current);
        current.spare_failed = made.is_err();
        let spare = made?;
        drop(current);
        spare.prefault();
        let mut current = lock(&self.current);
        match current.spare {
            None => current.spare = Some(spare),
            // Only the writer thread makes spares; kept for safety.
            Some(_) => spare.release(),
        }
        Ok(())
    }

    /// Syncs what was appended since the last sync (group commit),
    /// releases the segments replaced since, and prepares the next
    /// segment. No lock is held while the disk works.
    pub fn sync(&self) -> io::Result<()> {
        let (retired, dirty, spare_missing) = {
            let mut current = lock(&self.current);
            current.last_sync = Instant::now();
            let retired = std::mem::take(&mut current.retired);
            let cur = &mut *current;
            let dirty = match &cur.segment {
                Some(segment) if cur.used > cur.synced => {
                    let range = (cur.synced, cur.used - cur.synced);
                    cur.synced = cur.used;
                    Some((segment.clone(), range))
                }
                _ => None,
            };
            (retired, dirty, current.spare.is_none())
        };
        // The spare first: at a high rate a segment fills within a few
        // syncs, and one made after the flushes (which yield the core to
        // the workers) came too late often enough that workers made their
        // own, faulting every page in on the request path. A spare that
        // cannot be made (a full disk) does not stop the flushes.
        let spare = if spare_missing {
            self.make_spare()
        } else {
            Ok(())
        };
        for (segment, used) in retired {
            flush_yielding(&segment.map, 0, used)?;
            segment.release();
        }
        if let Some((segment, (from, len))) = dirty {
            flush_yielding(&segment.map, from, len)?;
        }
        spare
    }

    /// At shutdown, after the sink delivered everything: the current
    /// segment is released (deleted once its records are done) and the
    /// spare deleted.
    pub fn close(&self) -> io::Result<()> {
        self.sync()?;
        let mut current = lock(&self.current);
        if let Some(segment) = current.segment.take() {
            segment.release();
        }
        if let Some(spare) = current.spare.take() {
            spare.release();
        }
        Ok(())
    }

    /// The records of segments no running process holds (what a crash
    /// left), not yet done. Leftovers of an interrupted segment creation
    /// are deleted.
    pub fn recover(&self) -> io::Result<Recovered> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let is_segment = name.ends_with(".log");
            if !name.starts_with("wal-") || !(is_segment || name.ends_with(".tmp")) {
                continue;
            }
            let file = match OpenOptions::new().read(true).open(entry.path()) {
                Ok(file) => file,
                // Deleted by its owner meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
            if !is_segment {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let modified = entry.metadata()?.modified()?;
            found.push((modified, entry.path(), file));
        }
        found.sort_by_key(|(modified, _, _)| *modified);
        let mut recovered = Recovered::default();
        for (_, path, file) in found {
            let bytes = std::fs::read(&path)?;
            let (lines, done) = if bytes.len() == FILE_BYTES {
                let (lines, done) = bytes.split_at(SEGMENT_BYTES);
                (lines, Some(done))
            } else {
                // Cut short before its map: every line is delivered again.
                (&bytes[..], None)
            };
            recovered.corrupt += read_records(lines, done, &mut recovered.records);
            recovered.segments.push((path, file));
        }
        Ok(recovered)
    }

    /// A new segment, sized, mapped and locked before it gets its final
    /// name, so no other process ever sees it unlocked.
    fn create_segment(&self) -> io::Result<Arc<Segment>> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("{}{n}.tmp", self.prefix));
        let path = self.dir.join(format!("{}{n}.log", self.prefix));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.try_lock().map_err(io::Error::from)?;
        // The blocks are reserved now: on a full disk this fails (and
        // records stay in memory, reported) instead of a later write into
        // the mapping killing the process with SIGBUS.
        let len = libc::off_t::try_from(FILE_BYTES).map_err(io::Error::other)?;
        // SAFETY: a valid, open file descriptor; no memory is passed.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let map = MmapRaw::map_raw(&file)?;
        // A link fails rather than replace a file of the same name.
        std::fs::hard_link(&tmp, &path)?;
        std::fs::remove_file(&tmp)?;
        Ok(Arc::new(Segment {
            path,
            map,
            _file: file,
            pending: AtomicUsize::new(1),
        }))
    }
}

/// Bytes written back per `msync`: the disk's work comes in slices of
/// this, and between two the thread yields, so that a request waiting for
/// the same core (a worker pinned with it) runs between two slices instead
/// of after the whole sync.
const SYNC_SLICE: usize = 64 * 1024;

/// `map.flush_range(from, len)` in slices of `SYNC_SLICE`, yielding the
/// core between two.
fn flush_yielding(map: &MmapRaw, from: usize, len: usize) -> io::Result<()> {
    let end = from + len;
    let mut at = from;
    while at < end {
        let n = SYNC_SLICE.min(end - at);
        map.flush_range(at, n)?;
        at += n;
        if at < end {
            std::thread::yield_now();
        }
    }
    Ok(())
}

/// The records of a segment's lines that are not done, appended to `out`;
/// returns the number of corrupt lines. `done` is the segment's done map
/// (`None`: a file cut short before its map, whose every line is
/// delivered again; consumers deduplicate). Zero bytes (the unwritten rest of the segment, or a write the
/// crash cut short) separate nothing.
pub fn read_records(bytes: &[u8], done: Option<&[u8]>, out: &mut Vec<Vec<u8>>) -> u64 {
    let mut corrupt = 0;
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == 0 {
            at += 1;
            continue;
        }
        let rest = &bytes[at..];
        let end = memchr::memchr2(b'\n', 0, rest).unwrap_or(rest.len());
        let complete = rest.get(end) == Some(&b'\n');
        let line = &rest[..end + usize::from(complete)];
        let bit = at / 8;
        at += line.len();
        let marked = done
            .and_then(|map| map.get(bit / 8))
            .is_some_and(|byte| byte & (1 << (bit % 8)) != 0);
        if marked {
            continue;
        }
        match parse_line(line) {
            Some(json) => out.push(json.to_vec()),
            None => corrupt += 1,
        }
    }
    corrupt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn a_line_is_a_spool_line() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path()).unwrap();
        let record = wal.append(br#"{"n":1}"#).unwrap();
        assert_eq!(record.json(), br#"{"n":1}"#);
        let bytes = std::fs::read(&segment_files(dir.path())[0]).unwrap();
        let line = format!("{:08x} {}\n", crc32fast::hash(br#"{"n":1}"#), r#"{"n":1}"#);
        assert_eq!(&bytes[..line.len()], line.as_bytes());
        assert!(bytes[line.len()..].iter().all(|b| *b == 0));
    }

    #[test]
    fn records_not_done_survive_the_process_and_done_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path()).unwrap();
        let first = wal.append(br#"{"n":1}"#).unwrap();
        let _second = wal.append(br#"{"n":2}"#).unwrap();
        first.done();
        // Another process (another `Wal` on the directory) sees a live
        // segment and leaves it alone.
        let other = Wal::open(dir.path()).unwrap();
        assert!(other.recover().unwrap().records.is_empty());
        // The owner dies without closing: its mappings and locks go.
        drop(_second);
        drop(wal);
        let recovered = other.recover().unwrap();
        assert_eq!(recovered.records, vec![br#"{"n":2}"#.to_vec()]);
        assert_eq!(recovered.corrupt, 0);
        recovered.remove();
        assert!(segment_files(dir.path()).is_empty());
    }

    #[test]
    fn done_marks_go_to_the_done_map_and_leave_the_lines_alone() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path()).unwrap();
        let records: Vec<WalRecord> = (0..20)
            .map(|n| wal.append(format!(r#"{{"n":{n}}}"#).as_bytes()).unwrap())
            .collect();
        let lines_before =
            std::fs::read(&segment_files(dir.path())[0]).unwrap()[..SEGMENT_BYTES].to_vec();
        let mut expected_map = vec![0u8; DONE_MAP_BYTES];
        let mut kept = Vec::new();
        for (n, record) in records.into_iter().enumerate() {
            if n % 3 == 0 {
                kept.push(record);
            } else {
                let bit = record.offset / 8;
                expected_map[bit / 8] |= 1 << (bit % 8);
                record.done();
            }
        }
        let file = std::fs::read(&segment_files(dir.path())[0]).unwrap();
        assert_eq!(file.len(), FILE_BYTES);
        assert_eq!(&file[..SEGMENT_BYTES], &lines_before[..], "no line changed");
        assert_eq!(&file[SEGMENT_BYTES..], &expected_map[..]);
        // The process dies with the kept records not done.
        drop(kept);
        drop(wal);
        let recovered = Wal::open(dir.path()).unwrap().recover().unwrap();
        let expected: Vec<Vec<u8>> = (0..20)
            .filter(|n| n % 3 == 0)
            .map(|n| format!(r#"{{"n":{n}}}"#).into_bytes())
            .collect();
        assert_eq!(recovered.records, expected);
        assert_eq!(recovered.corrupt, 0);
    }

    #[test]
    fn a_damaged_line_moves_no_other_lines_done_bit() {
        let good = |json: &str| format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()));
        let mut lines = Vec::new();
        let mut starts = Vec::new();
        for n in 0..6 {
            starts.push(lines.len());
            lines.extend_from_slice(good(&format!(r#"{{"n":{n}}}"#)).as_bytes());
        }
        // Line 2 is torn by a run of zeros in its middle (a sector that
        // never reached the disk), which makes two fragments of it.
        let torn = starts[2] + 12;
        lines[torn..torn + 3].fill(0);
        let mut map = vec![0u8; 64];
        for n in [1, 4] {
            let bit = starts[n] / 8;
            map[bit / 8] |= 1 << (bit % 8);
        }
        let mut out = Vec::new();
        assert_eq!(
            read_records(&lines, Some(&map), &mut out),
            2,
            "two fragments"
        );
        let expected: Vec<Vec<u8>> = [0, 3, 5]
            .iter()
            .map(|n| format!(r#"{{"n":{n}}}"#).into_bytes())
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn a_segment_without_its_done_map_is_recovered_whole() {
        let dir = tempfile::tempdir().unwrap();
        let good = |json: &str| format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()));
        let mut bytes = Vec::new();
        bytes.extend_from_slice(good(r#"{"n":1}"#).as_bytes());
        bytes.extend_from_slice(good(r#"{"n":2}"#).as_bytes());
        bytes.extend_from_slice(good(r#"{"n":3}"#).as_bytes());
        bytes.resize(SEGMENT_BYTES, 0);
        std::fs::write(dir.path().join("wal-1-1-1.log"), &bytes).unwrap();
        let recovered = Wal::open(dir.path()).unwrap().recover().unwrap();
        assert_eq!(
            recovered.records,
            vec![
                br#"{"n":1}"#.to_vec(),
                br#"{"n":2}"#.to_vec(),
                br#"{"n":3}"#.to_vec()
            ]
        );
    }

    /// Minor page faults of the calling thread so far.
    fn thread_minor_faults() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // After the command name's closing parenthesis: field 3 is the state,
        // field 10 minflt.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(7).unwrap().parse().unwrap()
    }

    #[test]
    fn appends_into_the_spare_segment_take_no_page_fault() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path()).unwrap();
        // The writer thread's turn: it makes the spare and faults it in.
        wal.sync().unwrap();
        let json = vec![b'x'; 590];
        let first = wal.append(&json).unwrap();
        let before = thread_minor_faults();
        // 1,000 lines of 600 bytes: 147 pages.
        let records: Vec<WalRecord> = (0..1000).map(|_| wal.append(&json).unwrap()).collect();
        let faults = thread_minor_faults() - before;
        assert!(
            faults < 20,
            "{faults} page faults appending into a faulted-in segment"
        );
        drop(records);
        drop(first);
    }

    #[test]
    fn a_spare_taken_by_an_append_is_replaced_at_the_next_tick() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path()).unwrap();
        wal.sync().unwrap();
        assert_eq!(segment_files(dir.path()).len(), 1, "the spare");
        let record = wal.append(br#"{"n":1}"#).unwrap();
        assert_eq!(
            segment_files(dir.path()).len(),
            1,
            "the spare became current"
        );
        // Well within SYNC_INTERVAL of the sync: no sync, but a new spare.
        wal.tick().unwrap();
        assert_eq!(segment_files(dir.path()).len(), 2);
        assert!(lock(&wal.current).spare.is_some());
        record.done();
        wal.close().unwrap();
        assert!(segment_files(dir.path()).is_empty());
    }

    #[test]
    fn a_spare_that_cannot_be_made_does_not_stop_the_sync() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let wal = Wal::open(&wal_dir).unwrap();
        let big = vec![b'x'; SEGMENT_BYTES / 2];
        let a = wal.append(&big).unwrap();
        // A new segment; the first is retired.
        let b = wal.append(&big).unwrap();
        // No spare can be made now (as on a full disk).
        std::fs::remove_dir_all(&wal_dir).unwrap();
        assert!(wal.sync().is_err(), "the spare's failure is reported");
        {
            let current = lock(&wal.current);
            assert!(current.retired.is_empty(), "the retired segment was synced");
            assert_eq!(current.synced, current.used, "the current one too");
            assert!(current.spare.is_none() && current.spare_failed);
        }
        // Not tried again at every turn, only at the next sync (not due
        // yet, however long the sync above took).
        lock(&wal.current).last_sync = Instant::now();
        assert!(wal.tick().is_ok());
        std::fs::create_dir_all(&wal_dir).unwrap();
        lock(&wal.current).last_sync -= SYNC_INTERVAL;
        wal.tick().unwrap();
        assert!(lock(&wal.current).spare.is_some());
        assert!(!lock(&wal.current).spare_failed);
        a.done();
        b.done();
    }

    #[test]
    fn a_segment_is_deleted_once_replaced_synced_and_done() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path()).unwrap();
        let big = vec![b'x'; SEGMENT_BYTES / 2];
        let a = wal.append(&big).unwrap();
        let b = wal.append(&big).unwrap(); // does not fit: a new segment
        assert_eq!(segment_files(dir.path()).len(), 2);
        a.done();
        assert_eq!(segment_files(dir.path()).len(), 2, "not before the sync");
        wal.sync().unwrap();
        let files = segment_files(dir.path());
        assert_eq!(files.len(), 2, "the current one and the spare: {files:?}");
        b.done();
        wal.close().unwrap();
        assert!(segment_files(dir.path()).is_empty());
    }

    #[test]
    fn a_log_that_cannot_be_written_keeps_records_in_memory_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let wal = Wal::open(&wal_dir).unwrap();
        let metrics = Metrics::default();
        let record = RequestLog {
            ts_ms: 7,
            ..RequestLog::default()
        };
        // The directory goes away (as a full disk would refuse a segment).
        std::fs::remove_dir_all(&wal_dir).unwrap();
        let pending = wal.write(&record, &metrics);
        let mut json = Vec::new();
        record.write_json(&mut json);
        assert!(matches!(&pending, Pending::InMemory(j) if *j == json));
        assert_eq!(metrics.log_write_errors.get(), 1);
        assert!(wal.health().unwrap_err().contains("cannot be written"));
        // Back: the next record is logged again, and health clears.
        std::fs::create_dir_all(&wal_dir).unwrap();
        let pending = wal.write(&record, &metrics);
        assert!(matches!(pending, Pending::Logged(_)));
        assert_eq!(pending.json(), &json[..]);
        assert!(wal.health().is_ok());
    }

    #[test]
    fn a_cut_write_costs_only_its_line() {
        let mut bytes = Vec::new();
        let good = |json: &str| format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()));
        bytes.extend_from_slice(good(r#"{"n":1}"#).as_bytes());
        let torn = good(r#"{"n":2}"#);
        bytes.extend_from_slice(&torn.as_bytes()[..10]);
        bytes.extend_from_slice(&[0; 64]);
        bytes.extend_from_slice(good(r#"{"n":3}"#).as_bytes());
        bytes.extend_from_slice(&[0; 64]);
        let mut out = Vec::new();
        assert_eq!(read_records(&bytes, None, &mut out), 1);
        assert_eq!(out, vec![br#"{"n":1}"#.to_vec(), br#"{"n":3}"#.to_vec()]);
    }
}

//! Raft log entries in append-only segment files.
//!
//! sled wrote every entry larger than a quarter of its segment (an event batch of a few
//! hundred KiB) as a file of its own and kept rewriting what it stored: about 2.6 bytes on disk
//! for every byte of entry, and a file created and fsync'd per batch. Entries only ever grow at
//! the end, are overwritten only at the end, and are dropped only from the front, so a log of
//! files is all they need (TiKV moved its Raft logs out of its key-value store for the same
//! reason).
//!
//! # Format
//!
//! A directory per group holding `{seq:016x}.log` files. Each starts with [`MAGIC`] and holds
//! records: `len: u32 LE | crc32: u32 LE | index: u64 LE | term: u64 LE | payload`, the payload
//! being the protobuf-encoded [`Entry`] and the checksum covering index, term and payload.
//!
//! # Recovery
//!
//! Files are read in `seq` order and records in file order; a record at an index at or below
//! the last one read replaces it and everything after it (that is how Raft overwrites a
//! conflicting suffix: the newer record comes later). A file's records end at its first short
//! or corrupt record: only the tail written after the last sync can be torn, and nothing after
//! it in that file was synced either. A new process never appends to an old file.
//!
//! Files below a *floor* are ignored (the log restarted from a snapshot), and records at or
//! below the truncation point are skipped (compacted); both live in the group's sled state.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::Entry;

use super::RaftLogError;

/// The first bytes of every segment file.
pub(super) const MAGIC: &[u8; 8] = b"MNSRLOG1";
const HEADER_LEN: usize = 24;
/// A segment is closed and a new one started once it holds this many bytes.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Where the entry at one index is stored.
#[derive(Clone, Copy, Debug)]
struct Location {
    seq: u64,
    /// Offset of the payload in the file.
    offset: u64,
    len: u32,
    term: u64,
}

#[derive(Debug)]
struct Segment {
    file: File,
    /// Entries of this file that are part of the log.
    live: usize,
}

#[derive(Debug)]
struct Writer {
    seq: u64,
    /// Unbuffered: a record is readable as soon as it is appended.
    file: File,
    len: u64,
}

/// The entries of one group's log, after the truncation point.
#[derive(Debug)]
pub(super) struct Segments {
    group: u64,
    dir: PathBuf,
    segments: BTreeMap<u64, Segment>,
    /// `locations[i]` is the entry at index `first + i`.
    locations: VecDeque<Location>,
    first: u64,
    writer: Option<Writer>,
    next_seq: u64,
    /// Written since the last sync.
    dirty: bool,
    /// A file was created since the directory was last synced.
    new_file: bool,
    /// Files no entry of the log is in any more, removed at the next sync.
    doomed: Vec<u64>,
}

impl Segments {
    /// Opens the files of `dir` at or above `floor`, skipping entries at or below
    /// `truncated`; removes files below `floor`. Fails on a hole in the log.
    pub(super) fn open(
        dir: &Path,
        floor: u64,
        truncated: u64,
        group: u64,
    ) -> Result<Segments, RaftLogError> {
        fs::create_dir_all(dir)?;
        let corrupt = |reason: String| RaftLogError::Corrupt { group, reason };
        let mut seqs = Vec::new();
        for item in fs::read_dir(dir)? {
            let name = item?.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name
                .strip_suffix(".log")
                .and_then(|s| u64::from_str_radix(s, 16).ok())
            {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let mut log = Segments {
            group,
            dir: dir.to_owned(),
            segments: BTreeMap::new(),
            locations: VecDeque::new(),
            first: truncated + 1,
            writer: None,
            next_seq: seqs.last().map_or(floor, |last| (last + 1).max(floor)),
            dirty: false,
            new_file: false,
            doomed: Vec::new(),
        };
        for seq in seqs {
            if seq < floor {
                fs::remove_file(log.path(seq))?;
                continue;
            }
            let mut file = File::open(log.path(seq))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            log.segments.insert(seq, Segment { file, live: 0 });
            if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
                // Created but never synced with a record in it: nothing to read.
                continue;
            }
            let mut at = MAGIC.len();
            while let Some((index, location)) = read_record(&bytes, at, seq) {
                at = location.offset as usize + location.len as usize;
                if index <= truncated {
                    continue;
                }
                let next = log.last_index() + 1;
                if index > next {
                    return Err(corrupt(format!(
                        "entry {index} in segment {seq:016x} follows entry {}",
                        next - 1
                    )));
                }
                log.truncate_from(index);
                log.push(location);
            }
        }
        log.forget_dead();
        Ok(log)
    }

    /// The first index held (the last one + 1 when the log is empty).
    pub(super) fn first_index(&self) -> u64 {
        self.first
    }

    /// The last index held (the truncation point when the log is empty).
    pub(super) fn last_index(&self) -> u64 {
        self.first + self.locations.len() as u64 - 1
    }

    /// The term of a held entry.
    pub(super) fn term(&self, index: u64) -> Option<u64> {
        self.location(index).map(|l| l.term)
    }

    /// Appends `entries`, which the caller checked are consecutive and start within or right
    /// after the held ones, replacing held entries at and after the first one.
    pub(super) fn append(&mut self, entries: &[Entry]) -> Result<(), RaftLogError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let next = self.last_index() + 1;
        let consecutive = entries.windows(2).all(|p| p[1].index == p[0].index + 1);
        if first.index < self.first || first.index > next || !consecutive {
            return Err(RaftLogError::Corrupt {
                group: self.group,
                reason: format!(
                    "entries from {} cannot follow entries {}..{next}",
                    first.index, self.first
                ),
            });
        }
        self.truncate_from(first.index);
        for entry in entries {
            let payload = entry.write_to_bytes()?;
            let location = self.write_record(entry.index, entry.term, &payload)?;
            self.push(location);
        }
        self.forget_dead();
        Ok(())
    }

    /// Reads the entry at `index`, which must be held.
    pub(super) fn read(&self, index: u64) -> Result<Entry, RaftLogError> {
        let group = self.group;
        let corrupt = |reason: String| RaftLogError::Corrupt { group, reason };
        let location = self
            .location(index)
            .ok_or_else(|| corrupt(format!("entry {index} is missing")))?;
        let segment = self
            .segments
            .get(&location.seq)
            .ok_or_else(|| corrupt(format!("segment {:016x} is missing", location.seq)))?;
        let mut payload = vec![0; location.len as usize];
        segment.file.read_exact_at(&mut payload, location.offset)?;
        let entry = Entry::parse_from_bytes(&payload)?;
        if entry.index != index || entry.term != location.term {
            return Err(corrupt(format!(
                "segment {:016x} holds entry {} (term {}) where entry {index} (term {}) should be",
                location.seq, entry.index, entry.term, location.term
            )));
        }
        Ok(entry)
    }

    /// Drops the entries before `index` (at most every held entry).
    pub(super) fn compact(&mut self, index: u64) {
        while self.first < index && !self.locations.is_empty() {
            let location = self.locations.pop_front().expect("not empty");
            self.release(location.seq);
            self.first += 1;
        }
        self.first = self.first.max(index);
        self.forget_dead();
    }

    /// Drops every entry and makes the log start after `truncated` in a new file. Returns the
    /// new floor: files below it no longer count, once the caller has made it durable.
    pub(super) fn restart_after(&mut self, truncated: u64) -> Result<u64, RaftLogError> {
        self.close_writer()?;
        while let Some(location) = self.locations.pop_back() {
            self.release(location.seq);
        }
        self.first = truncated + 1;
        let floor = self.next_seq;
        self.doomed.extend(self.segments.keys().copied());
        self.segments.clear();
        Ok(floor)
    }

    /// Makes every append durable, and the creation of new files. Files that compaction or a
    /// snapshot emptied stay until [`Segments::remove_doomed`].
    pub(super) fn sync(&mut self) -> Result<(), RaftLogError> {
        if self.dirty {
            if let Some(writer) = &self.writer {
                writer.file.sync_data()?;
            }
            self.dirty = false;
        }
        if self.new_file {
            File::open(&self.dir)?.sync_all()?;
            self.new_file = false;
        }
        Ok(())
    }

    /// Removes files nothing refers to any more. Call once the state that stopped referring
    /// to them (truncation point, floor) is durable.
    pub(super) fn remove_doomed(&mut self) -> Result<(), RaftLogError> {
        for seq in std::mem::take(&mut self.doomed) {
            match fs::remove_file(self.path(seq)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn location(&self, index: u64) -> Option<&Location> {
        let offset = index.checked_sub(self.first)?;
        self.locations.get(usize::try_from(offset).ok()?)
    }

    fn push(&mut self, location: Location) {
        if let Some(segment) = self.segments.get_mut(&location.seq) {
            segment.live += 1;
        }
        self.locations.push_back(location);
    }

    /// Drops the held entries at and after `index`.
    fn truncate_from(&mut self, index: u64) {
        while self.last_index() >= index && !self.locations.is_empty() {
            let location = self.locations.pop_back().expect("not empty");
            self.release(location.seq);
        }
    }

    fn release(&mut self, seq: u64) {
        if let Some(segment) = self.segments.get_mut(&seq) {
            segment.live = segment.live.saturating_sub(1);
        }
    }

    /// Dooms files no held entry is in, except the one being written.
    fn forget_dead(&mut self) {
        let writing = self.writer.as_ref().map(|w| w.seq);
        let dead: Vec<u64> = self
            .segments
            .iter()
            .filter(|(seq, s)| s.live == 0 && Some(**seq) != writing)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in dead {
            self.segments.remove(&seq);
            self.doomed.push(seq);
        }
    }

    fn write_record(
        &mut self,
        index: u64,
        term: u64,
        payload: &[u8],
    ) -> Result<Location, RaftLogError> {
        if self.writer.as_ref().is_none_or(|w| w.len >= SEGMENT_BYTES) {
            self.close_writer()?;
            self.open_writer()?;
        }
        let writer = self.writer.as_mut().expect("just opened");
        let len = u32::try_from(payload.len()).map_err(|_| RaftLogError::Corrupt {
            group: self.group,
            reason: format!("an entry of {} bytes is too large", payload.len()),
        })?;
        let mut header = [0u8; HEADER_LEN];
        header[0..4].copy_from_slice(&len.to_le_bytes());
        header[4..8].copy_from_slice(&checksum(index, term, payload).to_le_bytes());
        header[8..16].copy_from_slice(&index.to_le_bytes());
        header[16..24].copy_from_slice(&term.to_le_bytes());
        writer.file.write_all(&header)?;
        writer.file.write_all(payload)?;
        let location = Location {
            seq: writer.seq,
            offset: writer.len + HEADER_LEN as u64,
            len,
            term,
        };
        writer.len += (HEADER_LEN + payload.len()) as u64;
        self.dirty = true;
        Ok(location)
    }

    fn open_writer(&mut self) -> Result<(), RaftLogError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.path(seq);
        let mut file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .append(true)
            .open(&path)?;
        file.write_all(MAGIC)?;
        let reader = File::open(&path)?;
        self.segments.insert(
            seq,
            Segment {
                file: reader,
                live: 0,
            },
        );
        self.writer = Some(Writer {
            seq,
            file,
            len: MAGIC.len() as u64,
        });
        self.new_file = true;
        self.dirty = true;
        Ok(())
    }

    fn close_writer(&mut self) -> Result<(), RaftLogError> {
        if let Some(writer) = self.writer.take() {
            if self.dirty {
                writer.file.sync_data()?;
            }
        }
        Ok(())
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:016x}.log"))
    }
}

/// The record at `at` in `bytes` (a file of segment `seq`): its index and where its payload
/// is. `None` at the end of the file or at a torn or corrupt record.
fn read_record(bytes: &[u8], at: usize, seq: u64) -> Option<(u64, Location)> {
    let header = bytes.get(at..at + HEADER_LEN)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let index = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let term = u64::from_le_bytes(header[16..24].try_into().ok()?);
    let start = at + HEADER_LEN;
    let payload = bytes.get(start..start + len as usize)?;
    if checksum(index, term, payload) != crc {
        return None;
    }
    Some((
        index,
        Location {
            seq,
            offset: start as u64,
            len,
            term,
        },
    ))
}

fn checksum(index: u64, term: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&index.to_le_bytes());
    hasher.update(&term.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

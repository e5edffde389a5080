//! The stat cache file of one recipe: for every input file its last build
//! used, the path, the stamp it had (device, inode, size, mtime, ctime), its
//! SHA-1 and SHA-256, and its first bytes as the planner's probe read them.
//! [`crate::digest`] decides when an entry may be used; this module keeps
//! the file: loaded whole into one buffer and used in place (no value per
//! entry is made: 200,000 entries load in a few milliseconds), found by
//! the hash of a path through a sorted index and then compared byte for
//! byte, and written back in path order.
//!
//! The file (all integers little-endian): `bareroot-st\0`, the version
//! (u32), the entry count (u64); per entry, in strictly increasing path
//! order (bytes), the path's length (u16) and bytes, the stamp (7 × i64),
//! SHA-1 (20 bytes), SHA-256 (32 bytes), the length of the file's head (u8;
//! 255: not known) and [`HEAD_LEN`] bytes holding it, zero-padded; then
//! the CRC-32 of everything before it (u32). A file that fails any check
//! (magic, version, CRC, lengths, order) is an empty cache.

use std::hash::Hasher as _;
use std::io::{self, Write};
use std::path::Path;

/// The first bytes of a stat cache file, then its format version.
const MAGIC: &[u8; 12] = b"bareroot-st\0";
const VERSION: u32 = 3;
/// The header: magic, version, count.
const HEADER: usize = 12 + 4 + 8;
/// Bytes per entry after its path: stamp, SHA-1, SHA-256, head length and
/// head bytes.
const FIXED: usize = 7 * 8 + 20 + 32 + 1 + HEAD_LEN;
/// The head length of an entry whose head is not known.
const NO_HEAD: u8 = 0xff;
/// At most this many entries in one file (the first ones in path order).
pub const MAX_ENTRIES: usize = 4_000_000;
/// The longest path an entry holds (its length is a u16).
pub const MAX_PATH: usize = u16::MAX as usize;

/// The first bytes of a file (at most [`HEAD_LEN`]; fewer only when the file
/// is shorter), as a probe that tells programs from data reads them: kept in
/// the stat cache, so an unchanged file is not opened again to be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    len: u8,
    bytes: [u8; HEAD_LEN],
}

/// How many first bytes of a file a [`Head`] holds.
pub const HEAD_LEN: usize = 20;

impl Head {
    /// The first bytes of a file: `bytes` (cut at [`HEAD_LEN`]).
    pub fn new(bytes: &[u8]) -> Head {
        let len = bytes.len().min(HEAD_LEN);
        let mut h = Head {
            len: len as u8,
            bytes: [0; HEAD_LEN],
        };
        h.bytes[..len].copy_from_slice(&bytes[..len]);
        h
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// One entry's fields besides its path: the stamp's fields (device, inode,
/// size, mtime s and ns, ctime s and ns), the content's SHA-1 and SHA-256,
/// and its head when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub stamp: [i64; 7],
    pub sha1: [u8; 20],
    pub sha256: [u8; 32],
    pub head: Option<Head>,
}

/// Flags per entry, this process's: looked up (so saved again), and seen
/// at its stamp (a stat matched it).
const USED: u8 = 1;
const CHECKED: u8 = 2;

/// A loaded stat cache file, used in place.
#[derive(Default)]
pub struct Table {
    /// The file's bytes.
    bytes: Vec<u8>,
    /// Where each entry (in file order) starts: the offset of its path's
    /// length.
    offsets: Vec<u32>,
    /// An open-addressing hash table over the entries (linear probing, at
    /// most half full): the high half of the path's hash and the entry's
    /// number + 1 (0: an empty slot).
    slots: Vec<(u32, u32)>,
    /// Per entry, in file order: [`USED`], [`CHECKED`].
    flags: Vec<u8>,
    /// Entries used so far.
    used: usize,
}

/// An entry of a [`Table`]: its number and where it is.
#[derive(Clone, Copy, Debug)]
pub struct At {
    n: u32,
    offset: u32,
}

fn hash(path: &[u8]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(path);
    h.finish()
}

impl Table {
    /// The stat cache file at `file`; empty when it is missing or fails a
    /// check.
    pub fn load(file: &Path) -> Table {
        std::fs::read(file)
            .ok()
            .and_then(Table::parse)
            .unwrap_or_default()
    }

    fn parse(bytes: Vec<u8>) -> Option<Table> {
        let body_len = bytes.len().checked_sub(4)?;
        if body_len > u32::MAX as usize {
            return None;
        }
        let (body, crc) = bytes.split_at(body_len);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return None;
        }
        let rest = body.strip_prefix(MAGIC.as_slice())?;
        let (version, rest) = rest.split_first_chunk::<4>()?;
        let (count, _) = rest.split_first_chunk::<8>()?;
        if u32::from_le_bytes(*version) != VERSION {
            return None;
        }
        let count = usize::try_from(u64::from_le_bytes(*count)).ok()?;
        if count > MAX_ENTRIES {
            return None;
        }
        let mut offsets = Vec::with_capacity(count);
        let mask = (count.max(1) * 2).next_power_of_two() - 1;
        let mut slots = vec![(0u32, 0u32); mask + 1];
        let mut at = HEADER;
        let mut prev: &[u8] = &[];
        for n in 0..count {
            let len = usize::from(u16::from_le_bytes(*body.get(at..)?.first_chunk::<2>()?));
            let path = body.get(at + 2..at + 2 + len)?;
            let fixed = body.get(at + 2 + len..at + 2 + len + FIXED)?;
            let head_len = fixed[FIXED - HEAD_LEN - 1];
            if (n > 0 && path <= prev) || (head_len != NO_HEAD && usize::from(head_len) > HEAD_LEN)
            {
                return None;
            }
            let h = hash(path);
            let mut i = h as usize & mask;
            while slots[i].1 != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = ((h >> 32) as u32, n as u32 + 1);
            offsets.push(at as u32);
            prev = path;
            at += 2 + len + FIXED;
        }
        if at != body.len() {
            return None;
        }
        Some(Table {
            bytes,
            offsets,
            slots,
            flags: vec![0; count],
            used: 0,
        })
    }

    pub fn len(&self) -> usize {
        self.flags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// How many entries were used ([`Table::mark`]).
    pub fn used(&self) -> usize {
        self.used
    }

    /// The entry of `path`, if the file has one.
    pub fn find(&self, path: &[u8]) -> Option<At> {
        if self.slots.is_empty() {
            return None;
        }
        let h = hash(path);
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let (tag, n1) = self.slots[i];
            if n1 == 0 {
                return None;
            }
            if tag == (h >> 32) as u32 {
                let n = n1 - 1;
                let offset = self.offsets[n as usize];
                if self.path(offset as usize) == path {
                    return Some(At { n, offset });
                }
            }
            i = (i + 1) & mask;
        }
    }

    fn path(&self, offset: usize) -> &[u8] {
        let len = usize::from(u16::from_le_bytes([
            self.bytes[offset],
            self.bytes[offset + 1],
        ]));
        &self.bytes[offset + 2..offset + 2 + len]
    }

    fn fixed(&self, offset: usize) -> usize {
        offset + 2 + self.path(offset).len()
    }

    /// The fields of the entry at `at`.
    pub fn rec(&self, at: At) -> Rec {
        let f = &self.bytes[self.fixed(at.offset as usize)..][..FIXED];
        let mut stamp = [0i64; 7];
        for (i, s) in stamp.iter_mut().enumerate() {
            *s = i64::from_le_bytes(f[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        }
        let head = match f[108] {
            NO_HEAD => None,
            n => Some(Head::new(&f[109..109 + usize::from(n)])),
        };
        Rec {
            stamp,
            sha1: f[56..76].try_into().expect("20 bytes"),
            sha256: f[76..108].try_into().expect("32 bytes"),
            head,
        }
    }

    /// The stamp of the entry at `at`, without the rest.
    pub fn stamp(&self, at: At) -> [i64; 7] {
        let f = &self.bytes[self.fixed(at.offset as usize)..][..56];
        let mut stamp = [0i64; 7];
        for (i, s) in stamp.iter_mut().enumerate() {
            *s = i64::from_le_bytes(f[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        }
        stamp
    }

    /// Mark the entry at `at` used by this build (saved again), and, with
    /// `checked`, seen at its stamp.
    pub fn mark(&mut self, at: At, checked: bool) {
        let f = &mut self.flags[at.n as usize];
        if *f & USED == 0 {
            self.used += 1;
        }
        *f |= USED | if checked { CHECKED } else { 0 };
    }

    /// Whether the entry at `at` was seen at its stamp by this process.
    pub fn checked(&self, at: At) -> bool {
        self.flags[at.n as usize] & CHECKED != 0
    }

    /// Set the head of the entry at `at`; false when it already had it.
    pub fn set_head(&mut self, at: At, head: Head) -> bool {
        let i = self.fixed(at.offset as usize) + 108;
        let mut stored = [0u8; 1 + HEAD_LEN];
        stored[0] = head.as_slice().len() as u8;
        stored[1..1 + head.as_slice().len()].copy_from_slice(head.as_slice());
        if self.bytes[i..i + 1 + HEAD_LEN] == stored {
            return false;
        }
        self.bytes[i..i + 1 + HEAD_LEN].copy_from_slice(&stored);
        true
    }

    /// Every used entry, in path order: its path and fields.
    pub fn used_entries(&self) -> impl Iterator<Item = (&[u8], Rec)> + '_ {
        let mut at = HEADER;
        (0..self.len()).filter_map(move |n| {
            let offset = at;
            at = self.fixed(offset) + FIXED;
            (self.flags[n] & USED != 0).then(|| {
                let a = At {
                    n: n as u32,
                    offset: offset as u32,
                };
                (self.path(offset), self.rec(a))
            })
        })
    }
}

/// Write `count` entries (from `entries`, in strictly increasing path
/// order, none longer than [`MAX_PATH`]) as a stat cache file, CRC-32
/// included.
pub fn write<'a>(
    count: usize,
    entries: impl Iterator<Item = (&'a [u8], Rec)>,
    out: impl Write,
) -> io::Result<()> {
    let mut w = Crc32Writer {
        out,
        crc: crc32fast::Hasher::new(),
    };
    w.write_all(MAGIC)?;
    w.write_all(&VERSION.to_le_bytes())?;
    w.write_all(&(count as u64).to_le_bytes())?;
    let mut written = 0;
    for (path, rec) in entries.take(count) {
        w.write_all(&(path.len() as u16).to_le_bytes())?;
        w.write_all(path)?;
        for s in rec.stamp {
            w.write_all(&s.to_le_bytes())?;
        }
        w.write_all(&rec.sha1)?;
        w.write_all(&rec.sha256)?;
        match rec.head {
            Some(h) => {
                let mut stored = [0u8; 1 + HEAD_LEN];
                stored[0] = h.as_slice().len() as u8;
                stored[1..1 + h.as_slice().len()].copy_from_slice(h.as_slice());
                w.write_all(&stored)?;
            }
            None => w.write_all(&[NO_HEAD; 1 + HEAD_LEN])?,
        }
        written += 1;
    }
    if written != count {
        return Err(io::Error::other("fewer stat cache entries than counted"));
    }
    let crc = w.crc.clone().finalize();
    w.out.write_all(&crc.to_le_bytes())?;
    w.out.flush()
}

/// A writer that keeps the CRC-32 of what passed through it.
struct Crc32Writer<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Crc32Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<(Vec<u8>, Rec)> {
        ["/usr/lib/a.so", "/usr/lib/ab.so", "/usr/lib/b/c", "/x"]
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let n = i as u8;
                let stamp = [i as i64, -1, 7, 1_700_000_000, 5, i64::MAX, 0];
                // Known heads of every length a head has, and none.
                let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0";
                let head = (i != 2).then(|| Head::new(&elf[..[0, 7, 0, 20][i]]));
                (
                    p.as_bytes().to_vec(),
                    Rec {
                        stamp,
                        sha1: [n; 20],
                        sha256: [n + 100; 32],
                        head,
                    },
                )
            })
            .collect()
    }

    fn encoded() -> Vec<u8> {
        encode(&entries())
    }

    fn encode(e: &[(Vec<u8>, Rec)]) -> Vec<u8> {
        let mut out = Vec::new();
        write(
            e.len(),
            e.iter().map(|(p, r)| (p.as_slice(), r.clone())),
            &mut out,
        )
        .unwrap();
        out
    }

    #[test]
    fn the_stat_cache_format_round_trips_and_finds_by_path() {
        let bytes = encoded();
        assert!(bytes.starts_with(MAGIC));
        let mut t = Table::parse(bytes).expect("valid");
        assert_eq!(t.len(), 4);
        for (p, r) in entries() {
            let at = t.find(&p).expect("found");
            assert_eq!(t.rec(at), r);
            assert_eq!(t.stamp(at), r.stamp);
        }
        assert!(t.find(b"/usr/lib").is_none());
        assert!(t.find(b"/usr/lib/a.so2").is_none());
        assert_eq!(t.used_entries().count(), 0, "none used yet");
        let at = t.find(b"/usr/lib/b/c").unwrap();
        t.mark(at, false);
        t.mark(at, true);
        assert!(t.checked(at));
        assert_eq!(t.used(), 1);
        let head = Head::new(b"#!/bin/sh\n");
        assert!(t.set_head(at, head));
        assert!(!t.set_head(at, head), "already so");
        let used: Vec<_> = t.used_entries().collect();
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].0, b"/usr/lib/b/c");
        assert_eq!(used[0].1.head, Some(head));
    }

    #[test]
    fn a_damaged_truncated_unsorted_or_other_version_stat_cache_is_refused() {
        let good = encoded();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(Table::parse(bad).is_none(), "byte {i} flipped");
        }
        for n in 0..good.len() {
            assert!(Table::parse(good[..n].to_vec()).is_none(), "cut at {n}");
        }
        let recrc = |mut body: Vec<u8>| {
            let crc = crc32fast::hash(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            body
        };
        // A right CRC over a wrong version (an earlier bareroot's file).
        let mut other = good[..good.len() - 4].to_vec();
        other[MAGIC.len()] = 2;
        assert!(Table::parse(recrc(other)).is_none());
        // A right CRC over entries out of order.
        let mut e = entries();
        e.swap(0, 1);
        assert!(Table::parse(encode(&e)).is_none());
    }
}

//! Layer compression, deterministic whatever the number of threads.
//!
//! gzip is compressed pigz-style: the tar stream is cut into fixed-size
//! blocks; each block is deflated on its own with the previous block's last
//! 32 KiB as its dictionary and ends with a sync flush (the last with
//! FINISH), so the blocks concatenate into one valid deflate stream. The
//! output depends only on the block size and level, never on `jobs`, and
//! the deflate implementation is pinned by Cargo.lock (zlib-rs). zstd uses
//! the library's multithreaded mode with a fixed job size, whose output is
//! the same for any number of workers. `None` passes the tar through.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use flate2::{Compress, FlushCompress, Status};

/// How a layer is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip { level: u32 },
    Zstd { level: i32 },
    None,
}

impl Compression {
    /// The default: gzip at a level chosen for speed at a size no larger
    /// than other tools' default gzip (see the benchmark in docs/speed.md).
    pub const DEFAULT_GZIP_LEVEL: u32 = 3;
    pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

    /// What makes the layer's bytes: algorithm, level and the pinned
    /// implementation, recorded in each manifest's annotations.
    pub fn describe(self) -> String {
        match self {
            Compression::Gzip { level } => format!(
                "gzip level {level}, zlib-rs {}, {} KiB blocks",
                env!("BAREROOT_ZLIB_RS_VERSION"),
                GZIP_BLOCK >> 10
            ),
            Compression::Zstd { level } => format!(
                "zstd level {level}, zstd {}, {} MiB jobs",
                env!("BAREROOT_ZSTD_VERSION"),
                ZSTD_JOB >> 20
            ),
            Compression::None => "none".into(),
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd { .. } => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    /// Parse `gzip`, `gzip:6`, `zstd`, `zstd:9`, `none`.
    pub fn parse(s: &str) -> Result<Compression, String> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        let bad = || format!("{s:?}: expected gzip[:1-9], zstd[:1-19] or none");
        match name {
            "gzip" => {
                let level = match level {
                    Some(l) => l
                        .parse()
                        .ok()
                        .filter(|l| (1..=9).contains(l))
                        .ok_or_else(bad)?,
                    None => Self::DEFAULT_GZIP_LEVEL,
                };
                Ok(Compression::Gzip { level })
            }
            "zstd" => {
                let level = match level {
                    Some(l) => l
                        .parse()
                        .ok()
                        .filter(|l| (1..=19).contains(l))
                        .ok_or_else(bad)?,
                    None => Self::DEFAULT_ZSTD_LEVEL,
                };
                Ok(Compression::Zstd { level })
            }
            "none" if level.is_none() => Ok(Compression::None),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compression::Gzip { level } => write!(f, "gzip:{level}"),
            Compression::Zstd { level } => write!(f, "zstd:{level}"),
            Compression::None => f.write_str("none"),
        }
    }
}

/// Bytes per independently deflated gzip block (pigz's default).
pub const GZIP_BLOCK: usize = 128 << 10;

/// The input each zstd worker compresses at a time.
pub const ZSTD_JOB: usize = 2 << 20;
/// The deflate window a block takes from its predecessor.
const WINDOW: usize = 32 << 10;

/// A compressing writer over `W`; `finish` returns `W`.
pub enum Compressor<W: Write + Send + 'static> {
    Gzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    None(W),
}

impl<W: Write + Send + 'static> Compressor<W> {
    pub fn new(c: Compression, jobs: usize, out: W) -> io::Result<Compressor<W>> {
        Ok(match c {
            Compression::Gzip { level } => Compressor::Gzip(ParallelGzip::new(out, level, jobs)?),
            Compression::Zstd { level } => {
                let mut e = zstd::stream::write::Encoder::new(out, level)?;
                // Multithreaded mode (even with one worker) so the output
                // does not depend on the number of workers.
                e.multithread(jobs.max(1) as u32)?;
                // Fixed 2 MiB jobs: the output depends on the job size (not
                // on the workers), and zstd's default (4x the window, 8 MiB
                // at level 3) keeps ~80 MiB of buffers in flight.
                e.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB as u32))?;
                e.include_checksum(false)?;
                e.include_contentsize(false)?;
                Compressor::Zstd(e)
            }
            Compression::None => Compressor::None(out),
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Gzip(g) => g.finish(),
            Compressor::Zstd(e) => e.finish(),
            Compressor::None(w) => Ok(w),
        }
    }
}

impl<W: Write + Send + 'static> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(g) => g.write(buf),
            Compressor::Zstd(e) => e.write(buf),
            Compressor::None(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(g) => g.flush(),
            Compressor::Zstd(e) => e.flush(),
            Compressor::None(w) => w.flush(),
        }
    }
}

struct Job {
    seq: u64,
    block: Arc<Vec<u8>>,
    dict: Arc<Vec<u8>>,
    last: bool,
}

/// pigz-style gzip: blocks deflated on `jobs` threads, written in order.
pub struct ParallelGzip<W: Write> {
    out: W,
    level: u32,
    buf: Vec<u8>,
    dict: Arc<Vec<u8>>,
    crc: crc32fast::Hasher,
    len: u64,
    next_seq: u64,
    next_write: u64,
    done: BTreeMap<u64, Vec<u8>>,
    inflight: usize,
    max_inflight: usize,
    to_workers: Option<mpsc::Sender<Job>>,
    from_workers: mpsc::Receiver<(u64, io::Result<Vec<u8>>)>,
    workers: Vec<thread::JoinHandle<()>>,
    /// With one job, blocks are deflated on the calling thread.
    inline: bool,
}

impl<W: Write> ParallelGzip<W> {
    pub fn new(mut out: W, level: u32, jobs: usize) -> io::Result<ParallelGzip<W>> {
        // RFC 1952 header: no name, mtime 0, XFL 0, OS 255 (unknown).
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
        let (to_results, from_workers) = mpsc::channel();
        let jobs = jobs.max(1);
        let inline = jobs == 1;
        let mut workers = Vec::new();
        let to_workers = if inline {
            None
        } else {
            let (tx, rx) = mpsc::channel::<Job>();
            let rx = Arc::new(std::sync::Mutex::new(rx));
            for _ in 0..jobs {
                let rx = rx.clone();
                let results = to_results.clone();
                workers.push(thread::spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let r = deflate_block(&job.block, &job.dict, level, job.last);
                    if results.send((job.seq, r)).is_err() {
                        return;
                    }
                }));
            }
            Some(tx)
        };
        drop(to_results);
        Ok(ParallelGzip {
            out,
            level,
            buf: Vec::with_capacity(GZIP_BLOCK),
            dict: Arc::new(Vec::new()),
            crc: crc32fast::Hasher::new(),
            len: 0,
            next_seq: 0,
            next_write: 0,
            done: BTreeMap::new(),
            inflight: 0,
            max_inflight: jobs * 2,
            to_workers,
            from_workers,
            workers,
            inline,
        })
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let block = Arc::new(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(GZIP_BLOCK),
        ));
        let dict = self.dict.clone();
        // The next block's dictionary: this block's last 32 KiB (plus the
        // previous dictionary's tail when this block is shorter).
        let mut next = Vec::with_capacity(WINDOW);
        if block.len() < WINDOW {
            let keep = (WINDOW - block.len()).min(dict.len());
            next.extend_from_slice(&dict[dict.len() - keep..]);
        }
        next.extend_from_slice(&block[block.len().saturating_sub(WINDOW)..]);
        self.dict = Arc::new(next);
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.inline {
            let bytes = deflate_block(&block, &dict, self.level, last)?;
            self.out.write_all(&bytes)?;
            self.next_write += 1;
            return Ok(());
        }
        let job = Job {
            seq,
            block,
            dict,
            last,
        };
        self.to_workers
            .as_ref()
            .expect("workers run when not inline")
            .send(job)
            .map_err(|_| io::Error::other("a compression thread stopped"))?;
        self.inflight += 1;
        while self.inflight >= self.max_inflight {
            self.collect_one()?;
        }
        Ok(())
    }

    /// Wait for one finished block and write whatever is now in order.
    fn collect_one(&mut self) -> io::Result<()> {
        let (seq, r) = self
            .from_workers
            .recv()
            .map_err(|_| io::Error::other("the compression threads stopped"))?;
        self.inflight -= 1;
        self.done.insert(seq, r?);
        while let Some(bytes) = self.done.remove(&self.next_write) {
            self.out.write_all(&bytes)?;
            self.next_write += 1;
        }
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while self.inflight > 0 {
            self.collect_one()?;
        }
        self.to_workers = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&(self.len as u32).to_le_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = GZIP_BLOCK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        self.crc.update(&data[..n]);
        self.len += n as u64;
        if self.buf.len() == GZIP_BLOCK {
            self.dispatch(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Raw-deflate one block with a preset dictionary; a sync flush leaves it
/// byte-aligned so the next block's output can follow directly.
fn deflate_block(block: &[u8], dict: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict)
            .map_err(|e| io::Error::other(format!("deflate: {e}")))?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(block.len() / 2 + 1024);
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let status = c
            .compress_vec(&block[consumed..], &mut out, flush)
            .map_err(|e| io::Error::other(format!("deflate: {e}")))?;
        let all_in = c.total_in() as usize == block.len();
        let room_left = out.capacity() > out.len();
        match status {
            Status::StreamEnd => break,
            _ if all_in && room_left && !last => break,
            Status::Ok | Status::BufError => continue,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(n: usize) -> Vec<u8> {
        let mut x: u32 = 1;
        (0..n)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if i % 7 < 4 {
                    b"bareroot layer "[i % 15]
                } else {
                    (x >> 24) as u8
                }
            })
            .collect()
    }

    fn gzip(data: &[u8], jobs: usize, chunk: usize) -> Vec<u8> {
        let mut g = ParallelGzip::new(Vec::new(), 6, jobs).unwrap();
        for c in data.chunks(chunk.max(1)) {
            g.write_all(c).unwrap();
        }
        g.finish().unwrap()
    }

    #[test]
    fn same_bytes_for_any_jobs_and_valid_gzip() {
        for n in [0, 1, 1000, GZIP_BLOCK, GZIP_BLOCK + 1, 5 * GZIP_BLOCK + 333] {
            let data = sample(n);
            let one = gzip(&data, 1, 4096);
            for jobs in [2, 3, 8] {
                assert_eq!(gzip(&data, jobs, 777), one, "n={n} jobs={jobs}");
            }
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(one.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "n={n}");
        }
    }

    #[test]
    fn zstd_same_bytes_for_any_jobs() {
        let data = sample(3 << 20);
        let z = |jobs| {
            let mut c = Compressor::new(Compression::Zstd { level: 3 }, jobs, Vec::new()).unwrap();
            c.write_all(&data).unwrap();
            c.finish().unwrap()
        };
        let one = z(1);
        assert_eq!(z(2), one);
        assert_eq!(z(8), one);
        assert_eq!(zstd::decode_all(one.as_slice()).unwrap(), data);
    }

    #[test]
    fn parses_settings() {
        assert_eq!(
            Compression::parse("gzip:9").unwrap(),
            Compression::Gzip { level: 9 }
        );
        assert_eq!(
            Compression::parse("zstd").unwrap(),
            Compression::Zstd { level: 3 }
        );
        assert_eq!(Compression::parse("none").unwrap(), Compression::None);
        assert!(Compression::parse("gzip:0").is_err());
        assert!(Compression::parse("lz4").is_err());
    }
}

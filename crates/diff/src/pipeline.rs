//! The decode stage of apply: decompression and DiffID hashing on their own thread,
//! feeding large buffers to the tar parser through a bounded channel.
//!
//! Memory is bounded by `DEPTH` buffers of `CHUNK` bytes (plus the decoder's window).

use sha2::{Digest as _, Sha256};
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Size of one buffer passed from the decoder to the parser.
pub const CHUNK: usize = 256 << 10;
/// Buffers in flight.
pub const DEPTH: usize = 8;

/// What the decode stage saw: the sha256 of every uncompressed byte and their count.
#[derive(Debug, Clone)]
pub struct DecodeSummary {
    /// sha256 of the uncompressed stream (the DiffID), lower-case hex.
    pub sha256_hex: String,
    /// Number of uncompressed bytes.
    pub size: u64,
}

/// Runs the decode loop: reads `decoded` to its end, hashing, and sends full buffers.
/// Returns early (without error) when the receiver hung up.
pub fn decode_loop(
    mut decoded: impl Read,
    tx: ChunkSender,
    recycle: Receiver<Vec<u8>>,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> io::Result<DecodeSummary> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let mut buf = recycle
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        buf.resize(CHUNK, 0);
        let mut filled = 0;
        let mut eof = false;
        while filled < CHUNK {
            match decoded.read(&mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let kind = e.kind();
                    let msg = e.to_string();
                    let _ = tx.send(Err(io::Error::new(kind, msg)));
                    return Err(e);
                }
            }
        }
        buf.truncate(filled);
        hasher.update(&buf);
        size += filled as u64;
        if let Some(p) = progress {
            p(size);
        }
        if filled > 0 && tx.send(Ok(buf)).is_err() {
            break;
        }
        if eof {
            break;
        }
    }
    Ok(DecodeSummary {
        sha256_hex: hex::encode(hasher.finalize()),
        size,
    })
}

/// The decode side's sender of buffers (or the decode error).
pub type ChunkSender = SyncSender<io::Result<Vec<u8>>>;

/// Creates the channels of the stage: (data sender, parser-side reader, recycle receiver).
pub fn channel() -> (ChunkSender, ChunkReader, Receiver<Vec<u8>>) {
    let (tx, rx) = sync_channel(DEPTH);
    let (rtx, rrx) = sync_channel(DEPTH + 2);
    (
        tx,
        ChunkReader {
            rx,
            recycle: rtx,
            cur: Vec::new(),
            pos: 0,
            done: false,
        },
        rrx,
    )
}

/// The parser side: a [`Read`] over the buffers sent by the decode stage.
pub struct ChunkReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ChunkReader {
    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        match self.rx.recv() {
            Ok(Ok(buf)) => {
                let old = std::mem::replace(&mut self.cur, buf);
                if old.capacity() >= CHUNK {
                    let _ = self.recycle.try_send(old);
                }
                self.pos = 0;
                Ok(true)
            }
            Ok(Err(e)) => {
                self.done = true;
                Err(e)
            }
            Err(_) => {
                self.done = true;
                Ok(false)
            }
        }
    }

    /// Reads and discards everything left (bytes after the tar end-of-archive still count
    /// for the DiffID, and the decode stage must reach the end of the stream).
    pub fn drain(&mut self) -> io::Result<u64> {
        let mut n = (self.cur.len() - self.pos) as u64;
        self.pos = self.cur.len();
        while self.next_chunk()? {
            n += self.cur.len() as u64;
            self.pos = self.cur.len();
        }
        Ok(n)
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

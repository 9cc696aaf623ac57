//! The sync readers the applier consumes: over a stored blob ([`ReadAt`]) and over a
//! stream of chunks arriving on a channel ([`ChannelReader`]), e.g. a download being
//! ingested or a diff being compressed, so a layer can be applied while it is produced.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use strata_content::ReaderAt;
use tokio::sync::mpsc;

/// A sync [`Read`] over a [`ReaderAt`], from its start.
pub struct ReadAt {
    r: Arc<dyn ReaderAt>,
    off: u64,
}

impl ReadAt {
    /// A reader from the start of `r`.
    pub fn new(r: Arc<dyn ReaderAt>) -> Self {
        ReadAt { r, off: 0 }
    }
}

impl Read for ReadAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read_at(buf, self.off)?;
        self.off += n as u64;
        Ok(n)
    }
}

/// A blocking [`Read`] over the chunks sent on a tokio channel; end of file once every
/// sender is gone. Use it on a blocking thread (it calls `blocking_recv`), never on an
/// async task.
///
/// ```
/// use std::io::Read;
/// let (tx, rx) = tokio::sync::mpsc::channel(4);
/// let mut r = strata_diff::ChannelReader::new(rx);
/// std::thread::spawn(move || {
///     for part in ["hello ", "world"] {
///         tx.blocking_send(bytes::Bytes::from(part)).unwrap();
///     }
/// });
/// let mut s = String::new();
/// r.read_to_string(&mut s).unwrap();
/// assert_eq!(s, "hello world");
/// ```
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl ChannelReader {
    /// A reader over what `rx` receives.
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChannelReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

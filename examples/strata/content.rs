//! `strata content …`: the content store (blobs and ingests), like `ctr content`.
//!
//! The store lives in `<root>/content`; `--namespace` selects the namespace.

use crate::common::Global;
use clap::Subcommand;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use strata::content::digest::{self, Digest};
use strata::content::local::LocalStore;
use strata::content::time_format;
use strata::content::{
    Descriptor, Error, IngestManager, Ingester, Labels, Manager, MediaType, Provider, WriterOpts,
};

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Reads a blob from stdin and commits it; prints its digest. Re-running the same REF
    /// after an interruption resumes the ingest (stdin is seeked, or its first bytes
    /// skipped, to the stored offset).
    Ingest {
        /// The ingest reference (the key to resume it).
        reference: String,
        /// The digest the data must have; the commit fails (keeping the ingest) otherwise.
        #[arg(long)]
        expected: Option<String>,
        /// The size the data must have.
        #[arg(long)]
        size: Option<u64>,
        /// Labels for the committed blob (`k=v`, repeatable).
        #[arg(long = "label", value_name = "K=V")]
        labels: Vec<String>,
    },
    /// Writes a blob's bytes to stdout.
    Get {
        /// The blob's digest.
        digest: String,
    },
    /// Lists blobs (`DIGEST SIZE CREATED LABELS`), optionally filtered
    /// (`digest==…`, `labels."k"~=re`; several filters are ORed).
    Ls {
        /// Print digests only.
        #[arg(short, long)]
        quiet: bool,
        /// Filters.
        filters: Vec<String>,
    },
    /// Prints a blob's info as JSON.
    Info {
        /// The blob's digest.
        digest: String,
    },
    /// Sets (`k=v`) or removes (`k=`) labels of a blob; prints the resulting labels.
    Label {
        /// The blob's digest.
        digest: String,
        /// `k=v` to set, `k=` to delete.
        #[arg(required = true)]
        labels: Vec<String>,
    },
    /// Removes blobs from the namespace.
    Rm {
        /// The digests.
        #[arg(required = true)]
        digests: Vec<String>,
    },
    /// Lists in-progress ingests (`REF OFFSET TOTAL EXPECTED STARTED UPDATED`).
    Active {
        /// A filter on `ref` (e.g. `ref~=^layer-`).
        filter: Option<String>,
    },
    /// Abandons an ingest and removes its bytes.
    Abort {
        /// The ingest reference.
        reference: String,
    },
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

pub async fn run(g: &Global, cmd: Cmd) -> CliResult {
    let root = g.open()?;
    let store = root.content().clone();
    match cmd {
        Cmd::Ingest {
            reference,
            expected,
            size,
            labels,
        } => {
            let expected = expected.as_deref().map(digest::parse).transpose()?;
            let labels = parse_labels(&labels, false)?;
            let d = ingest(&store, &reference, expected, size, labels.clone()).await?;
            if !labels.is_empty() {
                // Also when the blob already existed (then the commit set nothing).
                let paths: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
                store
                    .update(strata::content::Info::for_update(d.clone(), labels), &paths)
                    .await?;
            }
            println!("{d}");
        }
        Cmd::Get { digest } => get(&store, &digest::parse(&digest)?).await?,
        Cmd::Ls { quiet, filters } => {
            let infos = store.walk(&filters).await?;
            let mut out = std::io::stdout().lock();
            if !quiet {
                writeln!(out, "DIGEST\tSIZE\tCREATED\tLABELS")?;
            }
            for i in infos {
                if quiet {
                    writeln!(out, "{}", i.digest)?;
                } else {
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}",
                        i.digest,
                        i.size,
                        time_format::rfc3339_seconds(i.created_at),
                        format_labels(&i.labels)
                    )?;
                }
            }
        }
        Cmd::Info { digest } => {
            let info = store.info(&digest::parse(&digest)?).await?;
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
        Cmd::Label { digest, labels } => {
            let d = digest::parse(&digest)?;
            let set = parse_labels(&labels, true)?;
            let paths: Vec<String> = set.keys().map(|k| format!("labels.{k}")).collect();
            let info = store
                .update(strata::content::Info::for_update(d, set), &paths)
                .await?;
            println!("{}", format_labels(&info.labels));
        }
        Cmd::Rm { digests } => {
            let mut failed = 0;
            for s in &digests {
                let res = match digest::parse(s) {
                    Ok(d) => root.freeing_space(store.delete(&d)).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = res {
                    eprintln!("strata: remove {s}: {e}");
                    failed += 1;
                }
            }
            if failed > 0 {
                return Err(format!("{failed} of {} blobs not removed", digests.len()).into());
            }
        }
        Cmd::Active { filter } => {
            let filters: Vec<String> = filter.into_iter().collect();
            let mut out = std::io::stdout().lock();
            writeln!(out, "REF\tOFFSET\tTOTAL\tEXPECTED\tSTARTED\tUPDATED")?;
            for s in store.list_statuses(&filters).await? {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    s.reference,
                    s.offset,
                    s.total,
                    s.expected
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "-".into()),
                    time_format::rfc3339_seconds(s.started_at),
                    time_format::rfc3339_seconds(s.updated_at),
                )?;
            }
        }
        Cmd::Abort { reference } => store.abort(&reference).await?,
    }
    Ok(())
}

/// Parses `k=v` arguments; with `allow_empty`, `k=` means "delete k" (an empty value).
fn parse_labels(args: &[String], allow_empty: bool) -> Result<Labels, Error> {
    let mut out = Labels::new();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| Error::invalid_argument(format!("label {a:?} is not k=v")))?;
        if k.is_empty() || (!allow_empty && v.is_empty()) {
            return Err(Error::invalid_argument(format!("label {a:?} is not k=v")));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn format_labels(l: &Labels) -> String {
    if l.is_empty() {
        return "-".into();
    }
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn descriptor(d: &Digest) -> Descriptor {
    Descriptor::new(
        MediaType::Other("application/octet-stream".into()),
        0,
        d.clone(),
    )
}

async fn get(store: &LocalStore, d: &Digest) -> CliResult {
    let ra = store.reader_at(&descriptor(d)).await?;
    let d = d.clone();
    tokio::task::spawn_blocking(move || -> Result<(), Error> {
        let mut out = std::io::stdout().lock();
        let werr = |e| Error::io("write to stdout", e);
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        loop {
            let n = ra
                .read_at(&mut buf, off)
                .map_err(|e| Error::io(format!("read blob {d}"), e))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(werr)?;
            off += n as u64;
        }
        out.flush().map_err(werr)?;
        Ok(())
    })
    .await??;
    Ok(())
}

const READ_CHUNK: usize = 1 << 20;

/// Reads stdin on a thread (seeking or skipping `skip` bytes first), sending filled
/// buffers; used buffers come back through `recycle` so memory stays bounded.
fn spawn_stdin_reader(
    skip: u64,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
    recycle: std::sync::mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let mut input = std::fs::File::from(fd);
    std::thread::spawn(move || {
        let res = (|| -> std::io::Result<()> {
            if skip > 0 && input.seek(SeekFrom::Start(skip)).is_err() {
                let n = std::io::copy(&mut (&mut input).take(skip), &mut std::io::sink())?;
                if n != skip {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("stdin ended after {n} bytes, before the resumed offset {skip}"),
                    ));
                }
            }
            loop {
                let mut buf = recycle.try_recv().unwrap_or_else(|_| vec![0u8; READ_CHUNK]);
                buf.resize(READ_CHUNK, 0);
                let mut filled = 0;
                while filled < buf.len() {
                    match input.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                if filled == 0 {
                    return Ok(());
                }
                buf.truncate(filled);
                if tx.blocking_send(Ok(buf)).is_err() {
                    return Ok(());
                }
            }
        })();
        if let Err(e) = res {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Ok(())
}

fn progress_bar(total: Option<u64>, offset: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = match total {
        Some(t) if t > 0 => {
            let pb = indicatif::ProgressBar::new(t);
            pb.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .ok()?,
            );
            pb
        }
        _ => {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec}")
                    .ok()?,
            );
            pb
        }
    };
    pb.set_position(offset);
    Some(pb)
}

/// The size of stdin when it is a regular file.
fn stdin_file_size() -> Option<u64> {
    let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let m = std::fs::File::from(fd).metadata().ok()?;
    m.is_file().then_some(m.len())
}

async fn ingest(
    store: &LocalStore,
    reference: &str,
    expected: Option<Digest>,
    size: Option<u64>,
    labels: Labels,
) -> Result<Digest, Box<dyn std::error::Error>> {
    let mut opts = WriterOpts::new(reference);
    opts.expected = expected.clone();
    opts.total = size;
    let mut w = match store.writer(opts).await {
        Err(e) if e.is_already_exists() => {
            return Ok(expected.expect("AlreadyExists at open implies an expected digest"));
        }
        other => other?,
    };
    let st = w.status().await?;
    let total = size.or_else(stdin_file_size);
    let pb = progress_bar(total, st.offset);
    if !(size.is_some_and(|s| s > 0) && st.offset == size.unwrap_or(0)) {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let (back, recycle) = std::sync::mpsc::channel();
        spawn_stdin_reader(st.offset, tx, recycle)?;
        while let Some(chunk) = rx.recv().await {
            let chunk =
                chunk.map_err(|e| Error::io(format!("read stdin for ingest {reference}"), e))?;
            w.write(&chunk).await?;
            if let Some(pb) = &pb {
                pb.inc(chunk.len() as u64);
            }
            let _ = back.send(chunk);
        }
    }
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let d = w.digest();
    match w.commit(size.unwrap_or(0), expected, labels).await {
        Err(e) if e.is_already_exists() => Ok(d),
        Err(e) => Err(e.into()),
        Ok(()) => Ok(d),
    }
}

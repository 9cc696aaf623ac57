//! `strata snapshot …`: snapshots, like `ctr snapshots`.
//!
//! The snapshotter lives in `<root>/snapshots/<name>`; `--snapshotter native|overlay`
//! selects it (default: overlay where overlayfs mounts work, else native).

use crate::common::Global;
use clap::Subcommand;
use std::path::PathBuf;
use std::sync::Arc;
use strata::Root;
use strata::content::{Error, Labels};
use strata::snapshot::{Info, Snapshotter, mount};

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Creates an active (writable) snapshot KEY on committed PARENT; prints its mounts
    /// as JSON.
    Prepare {
        /// The new snapshot's key.
        key: String,
        /// The committed parent (none: an empty snapshot).
        #[arg(conflicts_with = "from_image")]
        parent: Option<String>,
        /// Make a container snapshot on this image's top ChainID (unpacking it first if
        /// needed); the image is remembered in the `strata.io/image` label for commit.
        #[arg(long, value_name = "REF")]
        from_image: Option<String>,
        /// Labels (`k=v`, repeatable).
        #[arg(long = "label", value_name = "K=V")]
        labels: Vec<String>,
    },
    /// Creates a read-only snapshot KEY of committed PARENT; prints its mounts as JSON.
    View {
        /// The new snapshot's key.
        key: String,
        /// The committed parent.
        parent: Option<String>,
        /// Labels (`k=v`, repeatable).
        #[arg(long = "label", value_name = "K=V")]
        labels: Vec<String>,
    },
    /// Commits active snapshot KEY as NAME.
    Commit {
        /// The committed snapshot's name.
        name: String,
        /// The active snapshot's key.
        key: String,
        /// Labels of the committed snapshot (`k=v`, repeatable; not inherited).
        #[arg(long = "label", value_name = "K=V")]
        labels: Vec<String>,
    },
    /// Removes snapshots.
    #[command(alias = "remove", alias = "delete")]
    Rm {
        /// Keys to remove.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Lists snapshots (`KEY PARENT KIND`), optionally filtered (`kind==active`,
    /// `parent==p`, `labels."k"==v`; several filters are ORed).
    #[command(alias = "list")]
    Ls {
        /// Filters.
        filters: Vec<String>,
    },
    /// Prints a snapshot's info as JSON.
    Info {
        /// The snapshot's key or name.
        key: String,
    },
    /// Prints disk usage (`KEY SIZE INODES`) of one snapshot or all.
    Usage {
        /// The snapshot (default: all).
        key: Option<String>,
    },
    /// Prints the mounts of an active or view snapshot as a JSON array.
    Mounts {
        /// The snapshot's key.
        key: String,
    },
    /// Mounts an active or view snapshot at TARGET (needs privilege).
    Mount {
        /// The snapshot's key.
        key: String,
        /// An existing directory.
        target: PathBuf,
    },
    /// Unmounts everything mounted at TARGET.
    Unmount {
        /// The mount point.
        target: PathBuf,
    },
    /// Removes snapshot directories that no record owns (left by crashes).
    Cleanup,
    /// Writes the changes from PARENT to KEY as a layer into the content store and prints
    /// its descriptor and DiffID, like `ctr snapshots diff`.
    Diff(DiffArgs),
}

fn parse_labels(kvs: &[String]) -> Result<Labels, Error> {
    kvs.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| Error::invalid_argument(format!("label {kv:?} is not k=v")))
        })
        .collect()
}

fn print_json(v: impl Into<serde_json::Value>) -> Result<(), Box<dyn std::error::Error>> {
    println!("{}", serde_json::to_string_pretty(&v.into())?);
    Ok(())
}

pub async fn run(g: &Global, cmd: Cmd) -> Result<(), Box<dyn std::error::Error>> {
    if let Cmd::Unmount { target } = &cmd {
        let target = target.clone();
        tokio::task::spawn_blocking(move || mount::unmount_all(&target)).await??;
        return Ok(());
    }
    let root = g.open()?;
    let res = match cmd {
        Cmd::Diff(args) => diff(&root, args).await,
        cmd => run_with(&root, cmd).await,
    };
    root.snapshotter().close().await?;
    res
}

async fn run_with(root: &Root, cmd: Cmd) -> Result<(), Box<dyn std::error::Error>> {
    let sn = root.snapshotter().as_ref();
    match cmd {
        Cmd::Prepare {
            key,
            parent,
            from_image,
            labels,
        } => {
            let labels = parse_labels(&labels)?;
            let m = match from_image {
                Some(image) => root.prepare_container_with(&key, &image, labels).await?,
                None => {
                    sn.prepare(&key, &parent.unwrap_or_default(), labels)
                        .await?
                }
            };
            print_json(serde_json::to_value(&m)?)?;
        }
        Cmd::View {
            key,
            parent,
            labels,
        } => {
            let m = sn
                .view(
                    &key,
                    parent.as_deref().unwrap_or(""),
                    parse_labels(&labels)?,
                )
                .await?;
            print_json(serde_json::to_value(&m)?)?;
        }
        Cmd::Commit { name, key, labels } => sn.commit(&name, &key, parse_labels(&labels)?).await?,
        Cmd::Rm { keys } => {
            for k in keys {
                root.freeing_space(sn.remove(&k)).await?;
            }
        }
        Cmd::Ls { filters } => {
            let infos = sn.walk(&filters).await?;
            let w = infos.iter().map(|i| i.name.len()).max().unwrap_or(3).max(3);
            let pw = infos
                .iter()
                .map(|i| i.parent.len())
                .max()
                .unwrap_or(6)
                .max(6);
            println!("{:w$}  {:pw$}  KIND", "KEY", "PARENT");
            for Info {
                name, parent, kind, ..
            } in infos
            {
                println!("{name:w$}  {parent:pw$}  {kind}");
            }
        }
        Cmd::Info { key } => print_json(serde_json::to_value(sn.stat(&key).await?)?)?,
        Cmd::Usage { key } => {
            let keys = match key {
                Some(k) => vec![k],
                None => sn.walk(&[]).await?.into_iter().map(|i| i.name).collect(),
            };
            let w = keys.iter().map(|k| k.len()).max().unwrap_or(3).max(3);
            println!("{:w$}  {:>12}  {:>8}", "KEY", "SIZE", "INODES");
            for k in keys {
                let u = sn.usage(&k).await?;
                println!("{k:w$}  {:>12}  {:>8}", u.size, u.inodes);
            }
        }
        Cmd::Mounts { key } => print_json(serde_json::to_value(sn.mounts(&key).await?)?)?,
        Cmd::Mount { key, target } => {
            let m = sn.mounts(&key).await?;
            tokio::task::spawn_blocking(move || mount::mount_all(&m, &target)).await??;
        }
        Cmd::Cleanup => sn.cleanup().await?,
        Cmd::Unmount { .. } | Cmd::Diff(_) => unreachable!("handled in run"),
    }
    Ok(())
}

/// Arguments of `strata snapshot diff`.
#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The snapshot with the changes (active, view or committed).
    key: String,
    /// The snapshot to compare against [default: KEY's parent; "" for an empty tree].
    parent: Option<String>,
    /// Layer compression: gzip, zstd or none.
    #[arg(long, default_value = "gzip")]
    compression: strata::diff::Compression,
    /// The layer's media type (overrides --compression).
    #[arg(long)]
    media_type: Option<String>,
    /// Compression level (gzip default 1, zstd default 3).
    #[arg(long)]
    level: Option<i32>,
    /// zstd worker threads (0: single-threaded).
    #[arg(long, default_value_t = 0)]
    zstd_threads: u32,
    /// Content ingest reference [default: a random one].
    #[arg(long = "ref", value_name = "R")]
    reference: Option<String>,
    /// Labels of the blob (`k=v`, repeatable).
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,
    /// Clamp mtimes in the layer to this Unix time.
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    source_date_epoch: Option<i64>,
    /// Always walk both trees (containerd 1.6's way), never the overlay upperdir alone.
    #[arg(long)]
    double_walk: bool,
    /// Also write the blob to FILE (`-`: stdout; the descriptor then goes to stderr).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Mounts to read snapshot `key` from: none for `""` (an empty tree); its own mounts when
/// it is active or a view; for a committed snapshot a temporary view (a scratch key GC
/// collects if we die), whose key is pushed to `views` for the caller to remove.
async fn read_mounts(
    sn: &dyn Snapshotter,
    key: &str,
    views: &mut Vec<String>,
) -> Result<Vec<mount::Mount>, Error> {
    if key.is_empty() {
        return Ok(Vec::new());
    }
    let info = sn.stat(key).await?;
    if info.kind != strata::snapshot::Kind::Committed {
        return sn.mounts(key).await;
    }
    let view = format!("commit-view-diff-{:016x}", rand_u64());
    let m = sn.view(&view, key, Labels::new()).await?;
    views.push(view);
    Ok(m)
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// `strata snapshot diff`: containerd's `rootfs.CreateDiff` (no PARENT) or a Compare of
/// two snapshots' mounts, with [`WalkingDiff`](strata::diff::WalkingDiff) as the Comparer.
async fn diff(root: &Root, a: DiffArgs) -> Result<(), Box<dyn std::error::Error>> {
    let sn = root.snapshotter().as_ref();
    use strata::diff::{Comparer, DiffOpts, WalkingDiff};
    let parent = match a.parent.clone() {
        Some(p) => p,
        None => sn.stat(&a.key).await?.parent,
    };
    let media_type = a
        .media_type
        .clone()
        .unwrap_or_else(|| a.compression.media_type().to_owned());
    let store = root.content().clone();
    let opts = DiffOpts {
        media_type: Some(media_type),
        level: a.level,
        zstd_threads: a.zstd_threads,
        reference: a.reference.clone(),
        labels: parse_labels(&a.labels)?,
        source_date_epoch: a.source_date_epoch,
        double_walk: a.double_walk,
        ..Default::default()
    };
    let mut views = Vec::new();
    let res = async {
        let lower = read_mounts(sn, &parent, &mut views).await?;
        let upper = read_mounts(sn, &a.key, &mut views).await?;
        WalkingDiff::new(Arc::new(store.clone()))
            .compare(&lower, &upper, opts)
            .await
    }
    .await;
    for v in views {
        if let Err(e) = sn.remove(&v).await {
            eprintln!("strata: remove view {v}: {e}");
        }
    }
    let desc = res.map_err(|e| e.context(format!("diff {} against {parent:?}", a.key)))?;
    let diff_id = strata::content::Manager::info(&store, desc.digest())
        .await?
        .labels
        .get(strata::content::labels::UNCOMPRESSED)
        .cloned()
        .unwrap_or_default();
    let out = serde_json::json!({
        "mediaType": desc.media_type().to_string(),
        "digest": desc.digest().to_string(),
        "size": desc.size(),
        "diffID": diff_id,
    });
    let to_stdout = a.output.as_deref() == Some(std::path::Path::new("-"));
    if let Some(path) = &a.output {
        let ra = strata::content::Provider::reader_at(&store, &desc).await?;
        let path = path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut r = strata::diff::ReadAt::new(ra);
            if path.as_os_str() == "-" {
                let mut w = std::io::BufWriter::new(std::io::stdout().lock());
                std::io::copy(&mut r, &mut w)?;
                std::io::Write::flush(&mut w)
            } else {
                let mut f = std::fs::File::create(&path)?;
                std::io::copy(&mut r, &mut f).map(|_| ())
            }
        })
        .await??;
    }
    if to_stdout {
        eprintln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_json(out)?;
    }
    Ok(())
}

//! `strata snapshot …`: snapshots, like `ctr snapshots`.
//!
//! The snapshotter lives in `<root>/snapshots/<name>`; `--snapshotter native|overlay`
//! selects it (default: overlay where overlayfs mounts work, else native).

use crate::common::Global;
use clap::Subcommand;
use std::path::PathBuf;
use std::sync::Arc;
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
}

/// Which snapshotter `g` selects: `--snapshotter`, else overlay where it works, else native.
pub fn snapshotter_name(g: &Global) -> String {
    match &g.snapshotter {
        Some(n) => n.clone(),
        None => strata::snapshot::default_backend(&g.root().join("snapshots")).to_owned(),
    }
}

/// Opens the snapshotter `g` selects at `g.snapshotter_root(name)`; returns its name too.
///
/// # Errors
/// An unknown name, or the backend's open errors.
pub fn open_snapshotter(g: &Global) -> Result<(String, Arc<dyn Snapshotter>), Error> {
    let name = snapshotter_name(g);
    let sn = strata::snapshot::open(&name, &g.snapshotter_root(&name))?;
    Ok((name, sn))
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
    let (_, sn) = open_snapshotter(g)?;
    let res = run_with(g, sn.as_ref(), cmd).await;
    sn.close().await?;
    res
}

async fn run_with(
    g: &Global,
    sn: &dyn Snapshotter,
    cmd: Cmd,
) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
        Cmd::Prepare {
            key,
            parent,
            from_image,
            labels,
        } => {
            let mut labels = parse_labels(&labels)?;
            let parent = match from_image {
                Some(r) => {
                    let (image, top) = crate::image::unpacked_top(g, &r).await?;
                    labels.insert(strata::image::service::IMAGE_LABEL.into(), image);
                    top
                }
                None => parent.unwrap_or_default(),
            };
            let m = sn.prepare(&key, &parent, labels).await?;
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
                sn.remove(&k).await?;
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
        Cmd::Unmount { .. } => unreachable!("handled in run"),
    }
    Ok(())
}

//! Options shared by every subcommand, and where things live under `--root`.

use clap::Args;
use std::path::PathBuf;

/// Global options.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// State directory [default: $STRATA_ROOT, else $XDG_DATA_HOME/strata or ~/.local/share/strata].
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    /// Namespace.
    #[arg(long, global = true, default_value = "default")]
    pub namespace: String,
    /// Snapshotter: native or overlay [default: overlay where it works, else native].
    #[arg(long, global = true)]
    pub snapshotter: Option<String>,
}

impl Global {
    /// The state directory.
    pub fn root(&self) -> PathBuf {
        if let Some(r) = &self.root {
            return r.clone();
        }
        if let Some(r) = std::env::var_os("STRATA_ROOT").filter(|r| !r.is_empty()) {
            return r.into();
        }
        if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|r| !r.is_empty()) {
            return PathBuf::from(d).join("strata");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/var/lib".into());
        home.join(".local/share/strata")
    }

    /// The content store's directory.
    #[allow(dead_code)]
    pub fn content_root(&self) -> PathBuf {
        self.root().join("content")
    }

    /// The directory of snapshotter `name`.
    #[allow(dead_code)]
    pub fn snapshotter_root(&self, name: &str) -> PathBuf {
        self.root().join("snapshots").join(name)
    }
}

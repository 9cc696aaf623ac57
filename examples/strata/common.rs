//! Options shared by every subcommand; they open the state directory as a [`Root`].

use clap::Args;
use std::path::PathBuf;
use strata::{Root, RootOptions};

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
        self.root.clone().unwrap_or_else(Root::default_dir)
    }

    /// Opens the state directory with this namespace and snapshotter.
    pub fn open(&self) -> strata::content::Result<Root> {
        let opts = RootOptions {
            namespace: self.namespace.clone(),
            snapshotter: self.snapshotter.clone(),
        };
        let dir = self.root();
        Root::open_with(&dir, opts).map_err(|e| e.context(format!("open {}", dir.display())))
    }
}

/// Resolves with the signal's name once SIGINT or SIGTERM arrives. The handlers are
/// installed when this is called (not when the future is first polled), so a signal that
/// comes right after is caught rather than killing the process.
pub fn interrupted() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        let (Ok(mut int), Ok(mut term)) = handlers else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
}

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

/// Everything the flows need, opened on one root and namespace: the content store, the
/// image records, the leases, the selected snapshotter and the service over them.
#[allow(dead_code)]
pub struct State {
    pub content: strata::content::local::LocalStore,
    pub images: strata::image::store::ImageStore,
    pub leases: std::sync::Arc<strata::image::leases::LeaseManager>,
    pub sn_name: String,
    pub sn: std::sync::Arc<dyn strata::snapshot::Snapshotter>,
    pub svc: strata::image::service::ImageService,
}

impl Global {
    /// Opens [`State`] for this root, namespace and snapshotter.
    #[allow(dead_code)]
    pub fn state(&self) -> strata::content::Result<State> {
        use std::sync::Arc;
        let root = self.root();
        let content = strata::content::local::LocalStore::open(self.content_root())?
            .namespace(&self.namespace);
        let images = strata::image::store::ImageStore::open(root.join("metadata.db"))?
            .namespace(&self.namespace);
        let leases = Arc::new(
            strata::image::leases::LeaseManager::open(root.join("metadata.db"))?
                .namespace(self.namespace.clone()),
        );
        let (sn_name, sn) = crate::snapshot::open_snapshotter(self)?;
        let svc = strata::image::service::ImageService::new(
            Arc::new(content.clone()),
            Arc::new(images.clone()),
        )
        .with_snapshotter(sn_name.clone(), sn.clone())
        .with_leases(leases.clone());
        Ok(State {
            content,
            images,
            leases,
            sn_name,
            sn,
            svc,
        })
    }

    /// A garbage collector over every snapshotter that exists under this root.
    #[allow(dead_code)]
    pub fn collector(&self, st: &State) -> strata::content::Result<strata::image::gc::Collector> {
        let mut snapshotters = Vec::new();
        for name in strata::snapshot::BACKENDS {
            let dir = self.snapshotter_root(name);
            if name == st.sn_name {
                snapshotters.push((name.to_string(), st.sn.clone()));
            } else if dir.join("metadata.db").exists() {
                snapshotters.push((name.to_string(), strata::snapshot::open(name, &dir)?));
            }
        }
        Ok(strata::image::gc::Collector {
            content: st.content.clone(),
            images: st.images.clone(),
            leases: st.leases.clone(),
            snapshotters,
        })
    }
}

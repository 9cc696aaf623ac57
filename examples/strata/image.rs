//! `strata image …`: pull, push, import, export, ls, inspect, rm, tag.
//!
//! State under `--root`: the content store at `<root>/content` and the image records in
//! `<root>/metadata.db` (shared with leases), both per `--namespace`.

use crate::common::Global;
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use strata_content::local::LocalStore;
use strata_content::{Provider, Store};
use strata_image::image::{self as img, Image};
use strata_image::platforms::{self, Platform};
use strata_image::reference::normalize;
use strata_image::remote::{ParallelDownload, RegistryOptions, TlsConfig};
use strata_image::service::{
    CommitOptions, ConfigChanges, FetchOptions, LayerState, PlatformSelection, Progress,
    ProgressFn, ProgressState, PullOptions, PushOptions, UnpackEvent, UnpackOptions,
    UnpackProgressFn,
};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Fetch an image from a registry into the content store and record it.
    Pull {
        #[command(flatten)]
        reg: RegistryArgs,
        /// Platform(s) to fetch, e.g. linux/arm64/v8 [default: this host's].
        #[arg(long, conflicts_with = "all_platforms")]
        platform: Vec<String>,
        /// Fetch every platform of a multi-platform image.
        #[arg(long)]
        all_platforms: bool,
        /// Fetch only; do not unpack into snapshots.
        #[arg(long)]
        no_unpack: bool,
        /// Fetch every layer blob even when its snapshot already exists.
        #[arg(long)]
        fetch_all: bool,
        /// Let GC reclaim the compressed layer blobs once unpacked.
        #[arg(long)]
        discard_layers: bool,
        /// Concurrent blob downloads.
        #[arg(long, default_value_t = 3)]
        max_concurrent_downloads: usize,
        /// Mirror to try before the registry (repeatable, in order).
        #[arg(long)]
        mirror: Vec<String>,
        /// The reference, e.g. `127.0.0.1:5000/debian:multi` or `busybox`.
        reference: String,
    },
    /// Unpack an image into snapshots named by ChainID.
    Unpack {
        /// The image.
        reference: String,
        /// Let GC reclaim the compressed layer blobs once unpacked.
        #[arg(long)]
        discard_layers: bool,
    },
    /// Commit the active snapshot KEY (a container) as image NEW_REF.
    Commit {
        /// The container's active snapshot.
        key: String,
        /// The new image's name.
        new_ref: String,
        /// The author (history and config).
        #[arg(long)]
        author: Option<String>,
        /// The history comment.
        #[arg(long, short)]
        message: Option<String>,
        /// Layer compression: gzip, zstd or none.
        #[arg(long, default_value = "gzip")]
        compression: strata::diff::Compression,
        /// Config change, Dockerfile style: `CMD …`, `ENTRYPOINT …`, `ENV K=V`, `WORKDIR d`,
        /// `LABEL k=v`, `EXPOSE 80/tcp`, `USER u` (repeatable).
        #[arg(long = "change")]
        changes: Vec<String>,
        /// The image the container came from [default: the snapshot's strata.io/image label].
        #[arg(long)]
        base: Option<String>,
        /// Fail when the container has no changes.
        #[arg(long)]
        refuse_empty: bool,
    },
    /// Push a local image to a registry.
    Push {
        #[command(flatten)]
        reg: RegistryArgs,
        /// Only these platforms of a multi-platform image.
        #[arg(long)]
        platform: Vec<String>,
        /// The local image.
        reference: String,
        /// Where to push [default: the local name].
        remote: Option<String>,
    },
    /// Import an OCI layout (directory or tar) or a `docker save` archive.
    Import {
        /// The directory or tar.
        path: PathBuf,
        /// Name of the image (or prefix, for archives with several).
        #[arg(long)]
        name: Option<String>,
    },
    /// Export images as an OCI layout: a directory, or a tar when PATH ends in `.tar`.
    Export {
        /// The image.
        reference: String,
        /// The directory or `.tar` file.
        path: PathBuf,
        /// Only these platforms of a multi-platform image.
        #[arg(long)]
        platform: Vec<String>,
    },
    /// List images.
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
        /// containerd-style filters (`name~=debian`, `labels."k"==v`).
        filters: Vec<String>,
    },
    /// Show an image as JSON: target, manifest, config, DiffIDs, ChainID.
    Inspect {
        /// The image.
        reference: String,
    },
    /// Remove image records (content is left to GC).
    Rm {
        /// The images.
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Create DST pointing at SRC's target.
    Tag {
        /// The existing image.
        src: String,
        /// The new name.
        dst: String,
    },
}

/// Prints unpack progress, one line per layer.
fn unpack_progress() -> UnpackProgressFn {
    Arc::new(|e: &UnpackEvent| {
        let what = match e.state {
            LayerState::Applying => return,
            LayerState::Applied => "unpacked",
            LayerState::Exists => "exists",
        };
        let short = |d: &strata_content::Digest| d.digest().chars().take(12).collect::<String>();
        eprintln!(
            "layer    {} {what:10} snapshot {}",
            short(e.layer.digest()),
            short(&e.chain_id)
        );
    })
}

fn parse_platforms(ps: &[String]) -> Res<Vec<Platform>> {
    Ok(ps
        .iter()
        .flat_map(|p| p.split(','))
        .map(platforms::parse)
        .collect::<Result<_, _>>()?)
}

/// How to reach registries; the names are `ctr`'s.
#[derive(Args, Debug)]
pub struct RegistryArgs {
    /// Use http:// for the registry (loopback hosts use it unless TLS is configured).
    #[arg(long)]
    plain_http: bool,
    /// Registry credentials `user[:secret]` [default: credential helpers, ~/.docker/config.json].
    #[arg(long, short = 'u', env = "STRATA_REGISTRY_USER")]
    user: Option<String>,
    /// containerd's hosts directory: DIR/<host[:port]>/hosts.toml or DIR/_default/.
    #[arg(long, value_name = "DIR")]
    hosts_dir: Option<PathBuf>,
    /// A CA certificate (PEM) to trust besides the system roots.
    #[arg(long, value_name = "FILE")]
    tlscacert: Option<PathBuf>,
    /// A client certificate (PEM) to present.
    #[arg(long, value_name = "FILE", requires = "tlskey")]
    tlscert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, value_name = "FILE", requires = "tlscert")]
    tlskey: Option<PathBuf>,
    /// Do not verify the registry's certificate.
    #[arg(long, short = 'k')]
    skip_verify: bool,
    /// Connections per blob of 64 MiB or more, each fetching 4 MiB ranges (1: one plain
    /// download per blob).
    #[arg(long, value_name = "N", default_value_t = ParallelDownload::default().connections)]
    range_connections: usize,
}

impl RegistryArgs {
    fn options(&self, mirrors: &[String]) -> RegistryOptions {
        let mut o = RegistryOptions::default().plain_http(self.plain_http);
        if let Some(u) = &self.user {
            let (name, secret) = u.split_once(':').unwrap_or((u, ""));
            o = o.credentials(name, secret);
        }
        o.mirrors = mirrors.to_vec();
        o.hosts_dir = self.hosts_dir.clone();
        o.tls = TlsConfig {
            ca: self.tlscacert.iter().cloned().collect(),
            client: match (&self.tlscert, &self.tlskey) {
                (Some(c), Some(k)) => vec![(c.clone(), Some(k.clone()))],
                _ => Vec::new(),
            },
            skip_verify: self.skip_verify,
        };
        o.parallel_download.connections = self.range_connections.max(1);
        o
    }
}

/// Progress display: bars on a terminal, one line per finished blob otherwise.
fn progress(verb: &'static str) -> ProgressFn {
    let tty = std::io::stderr().is_terminal();
    let multi = MultiProgress::new();
    let bars: Mutex<HashMap<String, ProgressBar>> = Mutex::new(HashMap::new());
    let style = ProgressStyle::with_template(
        "{prefix:.bold} {msg:10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
    )
    .unwrap()
    .progress_chars("=> ");
    Arc::new(move |p: &Progress| {
        let short = p
            .descriptor
            .digest()
            .digest()
            .chars()
            .take(12)
            .collect::<String>();
        let kind = p.reference.split('-').next().unwrap_or("blob").to_string();
        if !tty {
            if matches!(p.state, ProgressState::Done | ProgressState::Exists) {
                let what = if p.state == ProgressState::Done {
                    verb
                } else {
                    "exists"
                };
                eprintln!("{kind:8} {short} {what:10} {} bytes", p.total);
            }
            return;
        }
        let mut bars = bars.lock().unwrap();
        let bar = bars.entry(p.reference.clone()).or_insert_with(|| {
            let b = multi.add(ProgressBar::new(p.total));
            b.set_style(style.clone());
            b.set_prefix(format!("{kind:8} {short}"));
            b
        });
        bar.set_position(p.offset);
        match p.state {
            ProgressState::Waiting => bar.set_message("waiting"),
            ProgressState::Downloading => bar.set_message(verb),
            ProgressState::Done => bar.finish_with_message("done"),
            ProgressState::Exists => bar.finish_with_message("exists"),
        }
    })
}

/// Keeps the big transient I/O buffers (the content writer's 1 MiB chunks and the apply
/// pipeline's 256 KiB buffers, moved between threads) out of glibc's per-thread arenas,
/// where they would otherwise stay resident after use: a fixed mmap threshold (which also
/// stops glibc's dynamic threshold from growing) and at most two arenas.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_MMAP_THRESHOLD: i32 = -3;
        const M_ARENA_MAX: i32 = -8;
        // SAFETY: mallopt only changes allocator tuning; called before any transfer.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 256 << 10);
            mallopt(M_ARENA_MAX, 2);
        }
    }
}

pub async fn run(g: &Global, cmd: Cmd) -> Res {
    tune_allocator();
    let root = g.open()?;
    match cmd {
        Cmd::Pull {
            reg,
            platform,
            all_platforms,
            no_unpack,
            fetch_all,
            discard_layers,
            max_concurrent_downloads,
            mirror,
            reference,
        } => {
            let platforms = if all_platforms {
                PlatformSelection::All
            } else if platform.is_empty() {
                PlatformSelection::Host
            } else {
                PlatformSelection::Only(parse_platforms(&platform)?)
            };
            let opts = FetchOptions {
                registry: reg.options(&mirror),
                platforms,
                max_concurrent_downloads,
                progress: Some(progress("fetched")),
                ..Default::default()
            };
            let t = Instant::now();
            let p = root
                .pull(
                    &reference,
                    PullOptions {
                        fetch: opts,
                        no_unpack,
                        fetch_all,
                        discard_layers,
                        unpack_progress: Some(unpack_progress()),
                        ..Default::default()
                    },
                )
                .await?;
            match p.chain_ids.last() {
                Some(top) => println!(
                    "{} {} ({:.2}s; {} layers unpacked, {} existed; snapshot {top})",
                    p.image.name,
                    p.image.target.digest(),
                    t.elapsed().as_secs_f64(),
                    p.applied,
                    p.existed
                ),
                None => println!(
                    "{} {} ({:.2}s; not unpacked)",
                    p.image.name,
                    p.image.target.digest(),
                    t.elapsed().as_secs_f64()
                ),
            }
        }
        Cmd::Unpack {
            reference,
            discard_layers,
        } => {
            let image = root.image(&reference).await?;
            let t = Instant::now();
            let u = root
                .service()
                .unpack(
                    &image,
                    UnpackOptions {
                        discard_layers,
                        progress: Some(unpack_progress()),
                        ..Default::default()
                    },
                )
                .await?;
            println!(
                "{} {} layers unpacked, {} existed ({:.2}s); snapshot {}",
                image.name,
                u.applied,
                u.existed,
                t.elapsed().as_secs_f64(),
                u.top().map(|d| d.to_string()).unwrap_or_default()
            );
        }
        Cmd::Commit {
            key,
            new_ref,
            author,
            message,
            compression,
            changes,
            base,
            refuse_empty,
        } => {
            let mut config = ConfigChanges::default();
            for c in &changes {
                config.apply_instruction(c)?;
            }
            let base_image = match base {
                Some(b) => Some(root.image(&b).await?.name),
                None => None,
            };
            let t = Instant::now();
            let c = root
                .commit(
                    &key,
                    &new_ref,
                    CommitOptions {
                        base_image,
                        author,
                        message,
                        compression,
                        changes: config,
                        refuse_empty,
                        ..Default::default()
                    },
                )
                .await?;
            match &c.layer {
                Some(l) => eprintln!(
                    "layer    {} {} bytes, DiffID {}",
                    l.digest(),
                    l.size(),
                    c.diff_id
                        .as_ref()
                        .map(|d| d.to_string())
                        .unwrap_or_default()
                ),
                None => eprintln!("layer    (empty diff: no new layer)"),
            }
            println!(
                "{} {} ({:.2}s; snapshot {})",
                c.image.name,
                c.image.target.digest(),
                t.elapsed().as_secs_f64(),
                c.chain_id.map(|d| d.to_string()).unwrap_or_default()
            );
        }
        Cmd::Push {
            reg,
            platform,
            reference,
            remote,
        } => {
            let image = root.image(&reference).await?;
            let opts = PushOptions {
                registry: reg.options(&[]),
                platforms: if platform.is_empty() {
                    None
                } else {
                    Some(parse_platforms(&platform)?)
                },
                progress: Some(progress("pushed")),
                ..Default::default()
            };
            let remote = remote.unwrap_or_else(|| image.name.clone());
            let target = root.push(&image.name, Some(&remote), opts).await?;
            println!("{remote} {}", target.digest());
        }
        Cmd::Import { path, name } => {
            let opts = strata_image::layout::ImportOpts {
                name: name.map(|n| normalize(&n)),
                ..Default::default()
            };
            let res = strata_image::layout::import(
                Arc::new(root.content().clone()) as Arc<dyn Store>,
                root.images(),
                &path,
                &opts,
            )
            .await?;
            for i in &res.images {
                println!("{} {}", i.name, i.target.digest());
            }
            for d in &res.unnamed {
                println!("(unnamed) {}", d.digest());
            }
        }
        Cmd::Export {
            reference,
            path,
            platform,
        } => {
            let image = root.image(&reference).await?;
            let opts = strata_image::layout::ExportOpts {
                platforms: if platform.is_empty() {
                    None
                } else {
                    Some(Arc::new(platforms::ordered(parse_platforms(&platform)?)))
                },
                ..Default::default()
            };
            let provider: Arc<dyn Provider> = Arc::new(root.content().clone());
            let images = [image];
            if path.extension().is_some_and(|e| e == "tar") {
                strata_image::layout::export_tar(provider, &images, &path, &opts).await?;
            } else {
                strata_image::layout::export_dir(provider, &images, &path, &opts).await?;
            }
            println!("{} → {}", images[0].name, path.display());
        }
        Cmd::Ls { quiet, filters } => {
            for i in root.images().list(&filters).await? {
                if quiet {
                    println!("{}", i.name);
                } else {
                    println!(
                        "{}\t{}\t{}\t{}",
                        i.name,
                        i.target.media_type(),
                        i.target.digest(),
                        i.target.size()
                    );
                }
            }
        }
        Cmd::Inspect { reference } => {
            let image = root.image(&reference).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&inspect(root.content(), &image).await?)?
            );
        }
        Cmd::Rm { references } => {
            for r in references {
                let image = root.image(&r).await?;
                root.remove_image(&image.name).await?;
                println!("{}", image.name);
            }
        }
        Cmd::Tag { src, dst } => {
            let image = root.image(&src).await?;
            let mut new = Image::new(normalize(&dst), image.target.clone());
            new.labels = image.labels.clone();
            match root.images().create(new.clone()).await {
                Ok(_) => {}
                Err(e) if e.is_already_exists() => {
                    root.images()
                        .update(new.clone(), &["target".to_string()])
                        .await?;
                }
                Err(e) => return Err(e.into()),
            }
            println!("{}", new.name);
        }
    }
    Ok(())
}

async fn inspect(content: &LocalStore, image: &Image) -> Res<serde_json::Value> {
    let provider: &dyn Provider = content;
    let matcher = platforms::default_matcher();
    let mut out = serde_json::to_value(image)?;
    match img::manifest(provider, &image.target, &matcher).await {
        Ok(m) => {
            let config = m.manifest.config().clone();
            out["manifest_descriptor"] = serde_json::to_value(&m.descriptor)?;
            out["manifest"] = serde_json::from_slice(&m.raw)?;
            out["config_digest"] = serde_json::json!(config.digest().to_string());
            match img::rootfs(provider, &config).await {
                Ok(diff_ids) => {
                    out["diff_ids"] = serde_json::to_value(&diff_ids)?;
                    out["chain_id"] = serde_json::to_value(
                        strata_image::identity::chain_id(&diff_ids).map(|d| d.to_string()),
                    )?;
                }
                Err(e) => out["config_error"] = serde_json::json!(e.to_string()),
            }
        }
        Err(e) => out["manifest_error"] = serde_json::json!(e.to_string()),
    }
    if let Ok(ps) = img::platforms(provider, &image.target).await {
        out["platforms"] = serde_json::json!(ps.iter().map(platforms::format).collect::<Vec<_>>());
    }
    Ok(out)
}

//! `strata lease …`, `strata gc` and `strata check`: leases that hold content against
//! garbage collection, the collector itself, and the consistency check.

use crate::common::Global;
use clap::Subcommand;
use std::time::Duration;
use strata::image::leases::LeaseOpts;

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a lease; prints its id.
    Create {
        /// The id [default: random].
        #[arg(long)]
        id: Option<String>,
        /// Expire after this long (`30m`, `24h`) [default: never].
        #[arg(long)]
        expires_in: Option<humantime::Duration>,
        /// Labels `k=v`.
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// List leases (containerd filters: `id==x`, `labels.k==v`).
    Ls {
        /// Filters.
        filters: Vec<String>,
    },
    /// Delete leases (what they held is left to GC).
    Rm {
        /// Lease ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

pub async fn run(g: &Global, cmd: Cmd) -> Result<(), Box<dyn std::error::Error>> {
    let root = g.open()?;
    match cmd {
        Cmd::Create {
            id,
            expires_in,
            labels,
        } => {
            let mut opts = LeaseOpts::default();
            if let Some(id) = id {
                opts = opts.id(id);
            }
            if let Some(d) = expires_in {
                opts = opts.expires_in(Duration::from(d));
            }
            let mut l = strata::content::Labels::new();
            for kv in labels {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("label {kv:?} is not k=v"))?;
                l.insert(k.into(), v.into());
            }
            let lease = root.leases().create(opts.labels(l)).await?;
            println!("{}", lease.id);
        }
        Cmd::Ls { filters } => {
            for lease in root.leases().list(&filters).await? {
                let n = root.leases().list_resources(&lease.id).await?.len();
                let labels: Vec<String> = lease
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                println!(
                    "{}\t{}\t{n} resources\t{}",
                    lease.id,
                    humantime::format_rfc3339_seconds(lease.created_at),
                    labels.join(",")
                );
            }
        }
        Cmd::Rm { ids } => {
            for id in ids {
                root.leases().delete(&id).await?;
                println!("{id}");
            }
        }
    }
    Ok(())
}

/// `strata gc`: mark from the roots (images, leases, gc.root labels, recent ingests, user
/// snapshots) and remove everything unreachable.
pub async fn gc(g: &Global) -> Result<(), Box<dyn std::error::Error>> {
    let root = g.open()?;
    let start = std::time::Instant::now();
    let s = root.gc().await?;
    println!(
        "gc: removed {} blob records ({} files), {} ingests, {} snapshots, {} images, {} leases in {:.2?}",
        s.content,
        s.blobs_removed,
        s.ingests,
        s.snapshots,
        s.images,
        s.leases,
        start.elapsed()
    );
    Ok(())
}

/// Arguments of `strata check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Check blob sizes only, not their digests.
    #[arg(long)]
    quick: bool,
    /// Remove what no record owns and records that point at missing or damaged bytes.
    #[arg(long)]
    repair: bool,
}

/// `strata check`: containerd's `ctr images check` plus an fsck; prints each finding and
/// a summary; fails when damage remains.
pub async fn check(g: &Global, a: CheckArgs) -> Result<(), Box<dyn std::error::Error>> {
    let root = g.open()?;
    let opts = strata::image::check::CheckOptions {
        quick: a.quick,
        repair: a.repair,
    };
    let r = root.check(&opts).await?;
    for d in &r.repaired {
        println!("repaired: {d}");
    }
    for d in &r.damage {
        println!("damaged:  {d}");
    }
    println!(
        "check: {} blobs, {} snapshots, {} images, {} labels: {} damaged, {} repaired",
        r.blobs,
        r.snapshots,
        r.images,
        r.labels,
        r.damage.len(),
        r.repaired.len()
    );
    if r.is_clean() {
        Ok(())
    } else {
        Err(format!("{} problems remain", r.damage.len()).into())
    }
}

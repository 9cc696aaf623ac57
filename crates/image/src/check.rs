//! A consistency check of a whole state directory: containerd's `ctr images check` plus
//! an fsck, and its repair.
//!
//! [`check`] reads every store through a GC [`Collector`] (all namespaces, every
//! snapshotter) and reports [`Damage`]:
//! - **blobs**: a record whose bytes are missing; bytes of another size than recorded;
//!   bytes whose sha256 is not their name (skipped with [`CheckOptions::quick`]); bytes
//!   no record owns;
//! - **ingests**: directories no ingest record owns;
//! - **snapshots**: records whose directory is missing, directories no record owns
//!   ([`Snapshotter::check`](strata_snapshot::Snapshotter::check));
//! - **images**: a target that is missing; a config or layers missing for the host
//!   platform (layers may be missing when the image is unpacked: discarded layers);
//! - **labels**: `containerd.io/gc.ref.content.*` and `…gc.ref.snapshot.<sn>` labels on
//!   blobs that point at nothing.
//!
//! With [`CheckOptions::repair`], what no record owns is removed, and so are records
//! that point at missing or damaged bytes (blob records, image records whose target is
//! gone, dangling labels, snapshot records without a directory and without children);
//! nothing that is referenced and whole is touched. What could not be repaired stays in
//! [`CheckReport::damage`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use strata_content::labels::{GC_REF_CONTENT, GC_REF_SNAPSHOT};
use strata_content::{Damage, Digest, Info, Labels, Manager, Result, digest};

use crate::gc::Collector;
use crate::image as img;
use crate::platforms;

/// Options of [`check`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Check blob sizes only, not their digests.
    pub quick: bool,
    /// Remove what no record owns and records that point at missing bytes.
    pub repair: bool,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Blobs checked (distinct digests, recorded or on disk).
    pub blobs: usize,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Image records checked.
    pub images: usize,
    /// GC reference labels checked.
    pub labels: usize,
    /// Damage found and not repaired.
    pub damage: Vec<Damage>,
    /// Damage repaired.
    pub repaired: Vec<Damage>,
}

impl CheckReport {
    /// Whether nothing is (still) damaged.
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

/// How to repair one finding.
enum Fix {
    /// Not repairable: report only.
    None,
    /// Delete the blob's records in these namespaces (its bytes are missing or bad).
    BlobRecords(Digest, Vec<String>),
    /// Remove bytes no record owns.
    OrphanBytes(Digest),
    /// Remove ingest directories no record owns.
    OrphanIngests,
    /// Remove directories no snapshot record owns.
    SnapshotCleanup(String),
    /// Remove a snapshot record whose directory is missing.
    Snapshot(String, String),
    /// Delete an image record whose target is missing.
    Image(String, String),
    /// Remove a dangling label from a blob.
    Label(String, Digest, String),
}

/// Checks (and with `opts.repair`, repairs) everything `c` reaches; see the
/// [module docs](self). A repair can expose more damage (removing a bad blob leaves the
/// labels that pointed at it dangling), so repairing passes run until one repairs
/// nothing (three at most).
///
/// # Errors
/// Store errors while reading; repair failures are reported as remaining damage.
pub async fn check(c: &Collector, opts: &CheckOptions) -> Result<CheckReport> {
    let mut report = pass(c, opts).await?;
    let mut repaired_last = !report.repaired.is_empty();
    for _ in 1..3 {
        if !opts.repair || !repaired_last {
            break;
        }
        let next = pass(c, opts).await?;
        repaired_last = !next.repaired.is_empty();
        report.repaired.extend(next.repaired);
        report.damage = next.damage;
    }
    Ok(report)
}

/// One check (and repair) of everything.
async fn pass(c: &Collector, opts: &CheckOptions) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let mut found: Vec<(Damage, Fix)> = Vec::new();
    check_blobs(c, opts, &mut report, &mut found).await?;
    for key in c.content.orphan_ingest_dirs().await? {
        let d = Damage::new("ingest", key, "no ingest record owns its directory");
        found.push((d, Fix::OrphanIngests));
    }
    check_snapshots(c, &mut report, &mut found).await?;
    check_images(c, &mut report, &mut found).await?;
    check_labels(c, &mut report, &mut found).await?;
    for (damage, fix) in found {
        if !opts.repair || matches!(fix, Fix::None) {
            report.damage.push(damage);
            continue;
        }
        match repair(c, &fix).await {
            Ok(()) => report.repaired.push(damage),
            Err(e) => {
                let mut d = damage;
                d.problem = format!("{} (repair failed: {e})", d.problem);
                report.damage.push(d);
            }
        }
    }
    Ok(report)
}

async fn check_blobs(
    c: &Collector,
    opts: &CheckOptions,
    report: &mut CheckReport,
    found: &mut Vec<(Damage, Fix)>,
) -> Result<()> {
    // Keyed by the digest's string: digests are not ordered.
    let mut recorded: BTreeMap<String, (Digest, Vec<String>)> = BTreeMap::new();
    for (ns, d) in c.content.all_blob_records().await? {
        let entry = recorded.entry(d.to_string());
        entry.or_insert_with(|| (d, Vec::new())).1.push(ns);
    }
    for (id, (d, namespaces)) in &recorded {
        let info = c.content.namespace(&namespaces[0]).info(d).await?;
        if let Some(problem) = blob_problem(c, &info, opts.quick).await? {
            let fix = Fix::BlobRecords(d.clone(), namespaces.clone());
            found.push((Damage::new("blob", id.clone(), problem), fix));
        }
    }
    report.blobs = recorded.len();
    for d in c.content.blobs_on_disk().await? {
        if !recorded.contains_key(&d.to_string()) {
            report.blobs += 1;
            let damage = Damage::new("blob", d.to_string(), "bytes that no record owns");
            found.push((damage, Fix::OrphanBytes(d)));
        }
    }
    Ok(())
}

/// What is wrong with a recorded blob's bytes, if anything.
async fn blob_problem(c: &Collector, info: &Info, quick: bool) -> Result<Option<String>> {
    let path = c.content.blob_path(&info.digest);
    let (want, size) = (info.digest.clone(), info.size);
    let task = tokio::task::spawn_blocking(move || -> std::io::Result<Option<String>> {
        let md = match std::fs::metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Some(format!("recorded, but {} is missing", path.display())));
            }
            Err(e) => return Err(e),
        };
        if md.len() != size {
            return Ok(Some(format!("{} bytes on disk, {size} recorded", md.len())));
        }
        if quick {
            return Ok(None);
        }
        let got = sha256_file(&path)?;
        Ok((got != want).then(|| format!("its bytes hash to {got}")))
    });
    let res = task
        .await
        .map_err(|e| strata_content::Error::internal(format!("check task: {e}")))?;
    res.map_err(|e| strata_content::Error::io(format!("check blob {}", info.digest), e))
}

fn sha256_file(path: &std::path::Path) -> std::io::Result<Digest> {
    let mut f = std::fs::File::open(path)?;
    let mut h = digest::Digester::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.digest());
        }
        h.update(&buf[..n]);
    }
}

async fn check_snapshots(
    c: &Collector,
    report: &mut CheckReport,
    found: &mut Vec<(Damage, Fix)>,
) -> Result<()> {
    for (name, sn) in &c.snapshotters {
        report.snapshots += sn.walk(&[]).await?.len();
        for mut d in sn.check().await? {
            let fix = match d.kind.as_str() {
                "snapshot" => Fix::Snapshot(name.clone(), d.id.clone()),
                "directory" => Fix::SnapshotCleanup(name.clone()),
                _ => Fix::None,
            };
            d.problem = format!("{} ({name} snapshotter)", d.problem);
            found.push((d, fix));
        }
    }
    Ok(())
}

async fn check_images(
    c: &Collector,
    report: &mut CheckReport,
    found: &mut Vec<(Damage, Fix)>,
) -> Result<()> {
    let matcher = platforms::default_arc();
    for (ns, image) in c.images.all_images().await? {
        report.images += 1;
        let content = c.content.namespace(&ns);
        let res = img::check(&content, &image.target, matcher.as_ref()).await?;
        let id = format!("{ns}/{}", image.name);
        if !res.available {
            let problem = format!("its target {} is missing", image.target.digest());
            found.push((
                Damage::new("image", id, problem),
                Fix::Image(ns, image.name),
            ));
            continue;
        }
        let missing = unexplained_missing(&content, &res).await?;
        if !missing.is_empty() {
            let problem = format!("missing blobs {} (and not unpacked)", missing.join(", "));
            found.push((Damage::new("image", id, problem), Fix::None));
        }
    }
    Ok(())
}

/// The missing blobs of a checked image, less the layers of an unpacked image (its
/// config names its snapshot: the layers may have been discarded).
async fn unexplained_missing(
    content: &strata_content::local::LocalStore,
    res: &img::CheckResult,
) -> Result<Vec<String>> {
    let Some(config) = res.required.first() else {
        return Ok(Vec::new());
    };
    let unpacked = match content.info(config.digest()).await {
        Ok(info) => info.labels.keys().any(|k| k.starts_with(GC_REF_SNAPSHOT)),
        Err(e) if e.is_not_found() => false,
        Err(e) => return Err(e),
    };
    Ok(res
        .missing
        .iter()
        .filter(|d| !unpacked || d.digest() == config.digest())
        .map(|d| d.digest().to_string())
        .collect())
}

async fn check_labels(
    c: &Collector,
    report: &mut CheckReport,
    found: &mut Vec<(Damage, Fix)>,
) -> Result<()> {
    let blobs = labelled_blobs(c).await?;
    let mut snapshots: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, sn) in &c.snapshotters {
        let keys = sn.walk(&[]).await?.into_iter().map(|i| i.name).collect();
        snapshots.insert(name, keys);
    }
    for key in reachable_from_images(c, &blobs).await? {
        let (ns, id) = &key;
        let Some((digest, labels)) = blobs.get(&key) else {
            continue;
        };
        for (k, v) in labels {
            let dangling = if k.starts_with(GC_REF_CONTENT) {
                !blobs.contains_key(&(ns.clone(), v.clone()))
            } else if let Some(sn) = k.strip_prefix(GC_REF_SNAPSHOT) {
                snapshots.get(sn).is_some_and(|keys| !keys.contains(v))
            } else {
                continue;
            };
            report.labels += 1;
            if dangling {
                let what = format!("{k} on blob {id} ({ns})");
                let damage = Damage::new("label", what, format!("points at {v}, which is missing"));
                found.push((damage, Fix::Label(ns.clone(), digest.clone(), k.clone())));
            }
        }
    }
    Ok(())
}

/// Every blob record, keyed by (namespace, digest string), with its digest and labels.
type Blobs = BTreeMap<(String, String), (Digest, Labels)>;

async fn labelled_blobs(c: &Collector) -> Result<Blobs> {
    let all = c.content.all_blob_infos().await?;
    Ok(all
        .into_iter()
        .map(|(ns, info)| ((ns, info.digest.to_string()), (info.digest, info.labels)))
        .collect())
}

/// The blobs image records reach through `gc.ref.content` labels. Only their labels must
/// resolve: a blob nothing reaches (e.g. the manifest of a pull that failed half-way,
/// labelled for children it never fetched) is garbage for GC, not damage.
async fn reachable_from_images(c: &Collector, blobs: &Blobs) -> Result<BTreeSet<(String, String)>> {
    let mut todo: Vec<(String, String)> = c
        .images
        .all_images()
        .await?
        .into_iter()
        .map(|(ns, i)| (ns, i.target.digest().to_string()))
        .collect();
    let mut seen = BTreeSet::new();
    while let Some(key) = todo.pop() {
        if !seen.insert(key.clone()) {
            continue;
        }
        if let Some((_, labels)) = blobs.get(&key) {
            let children = labels.iter().filter(|(k, _)| k.starts_with(GC_REF_CONTENT));
            todo.extend(children.map(|(_, v)| (key.0.clone(), v.clone())));
        }
    }
    Ok(seen)
}

async fn repair(c: &Collector, fix: &Fix) -> Result<()> {
    match fix {
        Fix::None => Ok(()),
        Fix::BlobRecords(d, namespaces) => {
            for ns in namespaces {
                match c.content.namespace(ns).delete(d).await {
                    Err(e) if !e.is_not_found() => return Err(e),
                    _ => {}
                }
            }
            c.content.remove_blob_bytes(d).await.map(|_| ())
        }
        Fix::OrphanBytes(d) => c.content.remove_blob_bytes(d).await.map(|_| ()),
        Fix::OrphanIngests => c.content.remove_orphan_ingest_dirs().await.map(|_| ()),
        Fix::SnapshotCleanup(sn) => snapshotter(c, sn)?.cleanup().await,
        Fix::Snapshot(sn, key) => snapshotter(c, sn)?.remove(key).await,
        Fix::Image(ns, name) => c.images.namespace(ns).delete(name, None).await,
        Fix::Label(ns, d, key) => {
            let update = Info::for_update(d.clone(), Labels::new());
            c.content
                .namespace(ns)
                .update(update, &[format!("labels.{key}")])
                .await
                .map(|_| ())
        }
    }
}

fn snapshotter<'a>(
    c: &'a Collector,
    name: &str,
) -> Result<&'a std::sync::Arc<dyn strata_snapshot::Snapshotter>> {
    c.snapshotters
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, sn)| sn)
        .ok_or_else(|| strata_content::Error::not_found(format!("snapshotter {name}")))
}

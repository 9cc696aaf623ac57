//! Times OCI layout import and export on a real layout.
//!
//! `cargo run --release -p strata-image --example layout_bench -- LAYOUT_DIR WORK_DIR`
//!
//! Imports LAYOUT_DIR (directory form) into a fresh content store under WORK_DIR, exports
//! every imported image as a directory and as a tar, then imports the tar into another
//! fresh store, printing the wall time and throughput of each step.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use strata_content::local::LocalStore;
use strata_content::{Manager, Store};
use strata_image::layout::{self, ExportOpts, ImportOpts};
use strata_image::store::ImageStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (src, work) = match args.as_slice() {
        [_, s, w] => (PathBuf::from(s), PathBuf::from(w)),
        _ => return Err("usage: layout_bench LAYOUT_DIR WORK_DIR".into()),
    };
    std::fs::create_dir_all(&work)?;
    let open = |name: &str| -> Result<(LocalStore, ImageStore), Box<dyn std::error::Error>> {
        let root = work.join(name);
        let _ = std::fs::remove_dir_all(&root);
        Ok((
            LocalStore::open(root.join("content"))?,
            ImageStore::open(root.join("metadata.db"))?,
        ))
    };
    let (store, images) = open("a")?;
    let arc: Arc<dyn Store> = Arc::new(store.clone());

    let t = Instant::now();
    let r = layout::import(arc.clone(), &images, &src, &ImportOpts::default()).await?;
    let secs = t.elapsed().as_secs_f64();
    let bytes: u64 = store
        .walk(&[] as &[String])
        .await?
        .iter()
        .map(|i| i.size)
        .sum();
    let mb = bytes as f64 / 1e6;
    println!(
        "import dir : {} images, {} blobs, {mb:.1} MB in {secs:.2}s ({:.0} MB/s)",
        r.images.len(),
        r.blobs_written,
        mb / secs
    );

    let out = work.join("export-dir");
    let _ = std::fs::remove_dir_all(&out);
    let t = Instant::now();
    layout::export_dir(arc.clone(), &r.images, &out, &ExportOpts::default()).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "export dir : {mb:.1} MB in {secs:.2}s ({:.0} MB/s)",
        mb / secs
    );

    let tar = work.join("export.tar");
    let t = Instant::now();
    layout::export_tar(arc.clone(), &r.images, &tar, &ExportOpts::default()).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "export tar : {mb:.1} MB in {secs:.2}s ({:.0} MB/s)",
        mb / secs
    );

    let (store2, images2) = open("b")?;
    let t = Instant::now();
    let r2 = layout::import(Arc::new(store2), &images2, &tar, &ImportOpts::default()).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "import tar : {} images, {} blobs, {mb:.1} MB in {secs:.2}s ({:.0} MB/s)",
        r2.images.len(),
        r2.blobs_written,
        mb / secs
    );
    for (a, b) in r.images.iter().zip(&r2.images) {
        assert_eq!(a.target.digest(), b.target.digest(), "{}", a.name);
    }
    Ok(())
}

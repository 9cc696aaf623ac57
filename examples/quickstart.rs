//! strata in one run, with no registry: build a small OCI image, import it, unpack it into
//! snapshots, change files in a container snapshot, commit a new image, export it as an
//! OCI layout and check the export imports back to the same digest.
//!
//! `cargo run --release --example quickstart [-- STATE_DIR]`
//!
//! As root it uses the overlay snapshotter where overlayfs works (else native) and mounts
//! the container; as another user it uses the native snapshotter and writes into the
//! container snapshot's directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata::content::{Manager, Result};
use strata::image::build::{ImageBuilder, LayerBuilder};
use strata::image::layout::{self, ExportOpts, ImportOpts};
use strata::image::service::{CommitOptions, ConfigChanges, LayerState, UnpackOptions};
use strata::snapshot::Mount;
use strata::{Root, RootOptions};

fn short(d: &impl std::fmt::Display) -> String {
    let s = d.to_string();
    s.chars().take(19).collect::<String>() + "…"
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// A state directory with the native snapshotter (for stores that only hold blobs).
fn blob_root(dir: &Path) -> Result<Root> {
    let opts = RootOptions {
        snapshotter: Some("native".into()),
        ..Default::default()
    };
    Root::open_with(dir, opts)
}

/// Builds the "upstream" image in a scratch store and exports it as an OCI layout, as a
/// registry or another tool would hand it to us.
async fn build_upstream_layout(scratch: &Path, layout_dir: &Path) -> Result<()> {
    let scratch = blob_root(scratch)?;
    let (content, images) = (Arc::new(scratch.content().clone()), scratch.images());
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid() as u64, libc::getgid() as u64) };
    let mut base = LayerBuilder::new();
    base.owner(uid, gid).mtime(1_700_000_000);
    base.dir("bin", 0o755)?
        .file(
            "bin/hello",
            0o755,
            b"#!/bin/sh\necho \"hello from strata\"\n",
        )?
        .symlink("bin/hi", "hello")?
        .dir("etc", 0o755)?
        .file(
            "etc/os-release",
            0o644,
            b"NAME=\"strata quickstart\"\nVERSION_ID=1\n",
        )?
        .dir("usr", 0o755)?
        .dir("usr/share", 0o755)?
        .dir("usr/share/doc", 0o755)?
        .file(
            "usr/share/doc/README",
            0o644,
            b"A tiny image built by strata's own code.\n",
        )?
        .file("usr/share/doc/CHANGES", 0o644, b"1: first\n")?;
    let mut app = LayerBuilder::new();
    app.owner(uid, gid).mtime(1_700_000_100);
    app.dir("srv", 0o755)?
        .file("srv/index.html", 0o644, b"<h1>v1</h1>\n")?
        .hardlink("srv/index.htm", "srv/index.html")?
        .whiteout("usr/share/doc/CHANGES")?;
    ImageBuilder::new()
        .layer(base.finish_gzip()?)
        .layer(app.finish_gzip()?)
        .config("Cmd", serde_json::json!(["/bin/hello"]))
        .config("WorkingDir", serde_json::json!("/srv"))
        .write(content.as_ref(), images, "quickstart/base:1")
        .await?;
    let img = images.get("quickstart/base:1").await?;
    layout::export_dir(content, &[img], layout_dir, &ExportOpts::default()).await?;
    Ok(())
}

/// Changes the container's files: through a mount as root, else in the snapshot's
/// directory (native snapshots are plain directories bound in place).
fn change_container(mounts: &[Mount]) -> Result<Vec<&'static str>> {
    let edit = |root: &Path| -> std::io::Result<()> {
        std::fs::write(
            root.join("srv/index.html"),
            b"<h1>v2, committed by strata</h1>\n",
        )?;
        std::fs::write(root.join("etc/motd"), b"built with strata\n")?;
        std::fs::remove_file(root.join("usr/share/doc/README"))?;
        std::fs::create_dir_all(root.join("var/log/app"))?;
        std::fs::write(root.join("var/log/app/started"), b"1\n")?;
        Ok(())
    };
    let io = |e| strata::content::Error::io("change container files", e);
    match mounts {
        [m] if m.kind == "bind" && !is_root() => edit(Path::new(&m.source)).map_err(io)?,
        _ => strata::snapshot::mount::with_temp_mount(mounts, |root| edit(root))?.map_err(io)?,
    }
    Ok(vec![
        "modified /srv/index.html",
        "added /etc/motd",
        "removed /usr/share/doc/README",
        "added /var/log/app/started",
    ])
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let keep = std::env::args().nth(1).map(PathBuf::from);
    let tmp = tempfile::tempdir().map_err(|e| strata::content::Error::io("create temp dir", e))?;
    let keep_dir = keep.is_some();
    let dir = keep.clone().unwrap_or_else(|| tmp.path().join("state"));

    // 0. The state directory: content, snapshots, images, leases and the service.
    let root = match is_root() {
        true => Root::open(&dir)?,
        false => blob_root(&dir)?,
    };
    println!(
        "strata quickstart: state in {} (snapshotter {})\n",
        dir.display(),
        root.snapshotter_name()
    );

    // 1. An image built by strata's own code, handed over as an OCI layout.
    let layout_dir = tmp.path().join("upstream-layout");
    build_upstream_layout(&tmp.path().join("scratch"), &layout_dir).await?;
    println!("1. built an OCI image layout    {}", layout_dir.display());

    // 2. Import.
    let imported = layout::import(
        Arc::new(root.content().clone()),
        root.images(),
        &layout_dir,
        &ImportOpts::default(),
    )
    .await?;
    let base = imported
        .images
        .into_iter()
        .next()
        .ok_or_else(|| strata::content::Error::not_found("imported image"))?;
    println!(
        "2. imported {:<20} manifest {}",
        base.name,
        base.target.digest()
    );

    // 3. Unpack into snapshots named by ChainID.
    let progress = Arc::new(|e: &strata::image::service::UnpackEvent| {
        if e.state != LayerState::Applying {
            println!(
                "   layer {} {} → snapshot {} ({:?})",
                e.index,
                short(e.layer.digest()),
                short(&e.chain_id),
                e.state
            );
        }
    });
    let unpacked = root
        .service()
        .unpack(
            &base,
            UnpackOptions {
                progress: Some(progress),
                ..Default::default()
            },
        )
        .await?;
    let top = unpacked.top().expect("the image has layers").to_string();
    println!(
        "3. unpacked {} layers           top ChainID {top}",
        unpacked.chain_ids.len()
    );

    // 4. A container: an active snapshot on the image's top ChainID.
    let key = format!("quickstart-ctr-{}", std::process::id());
    let mounts = root.prepare_container(&key, &base.name).await?;
    println!(
        "4. prepared container snapshot {key:?} ({} mount)",
        mounts[0].kind
    );

    // 5. Change files in it.
    let m2 = mounts.clone();
    let changes = tokio::task::spawn_blocking(move || change_container(&m2))
        .await
        .map_err(|e| strata::content::Error::internal(format!("change task: {e}")))??;
    println!(
        "5. changed the container's files through its {} mount",
        if is_root() {
            "overlay/bind"
        } else {
            "directory"
        }
    );
    for c in &changes {
        println!("   {c}");
    }

    // 6. Commit a new image.
    let mut config = ConfigChanges::default();
    config.apply_instruction("CMD [\"/bin/sh\", \"-c\", \"cat /srv/index.html\"]")?;
    config.apply_instruction("LABEL org.opencontainers.image.title=quickstart")?;
    let committed = root
        .commit(
            &key,
            "quickstart/app:2",
            CommitOptions {
                author: Some("strata quickstart".into()),
                message: Some("change four files".into()),
                changes: config,
                ..Default::default()
            },
        )
        .await?;
    let layer = committed.layer.as_ref().expect("the container changed");
    println!(
        "6. committed {:<19} manifest {}",
        committed.image.name,
        committed.image.target.digest()
    );
    println!(
        "   new layer {} ({} bytes gzip), DiffID {}",
        short(layer.digest()),
        layer.size(),
        short(committed.diff_id.as_ref().unwrap())
    );
    println!(
        "   new snapshot (ChainID) {}",
        committed.chain_id.as_ref().unwrap()
    );

    // 7. Export as an OCI layout, and check it reads back to the same digest.
    let out = keep
        .map(|k| k.join("export"))
        .unwrap_or_else(|| tmp.path().join("export"));
    layout::export_dir(
        Arc::new(root.content().clone()),
        std::slice::from_ref(&committed.image),
        &out,
        &ExportOpts::default(),
    )
    .await?;
    let check = blob_root(&tmp.path().join("check"))?;
    let back = layout::import(
        Arc::new(check.content().clone()),
        check.images(),
        &out,
        &ImportOpts::default(),
    )
    .await?;
    let same = back
        .images
        .first()
        .map(|i| i.target.digest() == committed.image.target.digest())
        .unwrap_or(false);
    println!(
        "7. exported OCI layout          {} (re-import: {})",
        out.display(),
        if same { "same digest" } else { "DIFFERENT" }
    );
    if !same {
        return Err(strata::content::Error::internal(
            "exported layout does not import to the committed digest",
        ));
    }

    // 8. Clean up the container and collect garbage: the images keep their blobs.
    root.remove_container(&key).await?;
    let stats = root.gc().await?;
    let blobs = root.content().walk(&[]).await?.len();
    println!(
        "8. removed the container; GC kept {blobs} blobs, removed {} blob records and {} snapshots",
        stats.content, stats.snapshots
    );
    if keep_dir {
        println!(
            "\nState kept. Try: cargo run --release --example strata -- --root {} image ls",
            dir.display()
        );
    }
    Ok(())
}

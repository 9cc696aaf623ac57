//! Interop of OCI layout tars with containerd's own importer and exporter (`ctr images
//! import/export` against a private containerd started by the test).
//!
//! Skips (with a message) when `containerd` or `ctr` is missing, unless
//! `STRATA_REQUIRE_PEERS=1`, in which case it fails.

use std::io::Write;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use strata_content::digest::sha256;
use strata_content::helpers::write_blob;
use strata_content::local::LocalStore;
use strata_content::{Descriptor, Labels, Store};
use strata_image::image::{self, Image};
use strata_image::layout::{self, ExportOpts, ImportOpts};
use strata_image::media_types as mt;
use strata_image::platforms;
use strata_image::store::ImageStore;

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("STRATA_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("{tool} is required (STRATA_REQUIRE_PEERS=1) but not installed");
        }
        eprintln!("SKIP: {tool} not installed");
    }
    found
}

/// A private containerd daemon, stopped (by its pid) on drop.
struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("ctd")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
             [debug]\n  level = \"warn\"\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let c = Containerd { dir, child };
        for _ in 0..100 {
            if c.ctr_status(&["version"]).0 {
                return c;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "containerd did not come up: {}",
            std::fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default()
        );
    }

    fn ctr_status(&self, args: &[&str]) -> (bool, String) {
        let sock = self.dir.path().join("c.sock");
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&sock)
            .args(["-n", "strata-test"])
            .args(args)
            .output()
            .expect("run ctr");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn ctr(&self, args: &[&str]) -> String {
        let (ok, text) = self.ctr_status(args);
        assert!(ok, "ctr {args:?} failed: {text}");
        text
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Unmount anything containerd left under its root.
        if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
            let root = self.dir.path().display().to_string();
            let mut targets: Vec<&str> = m
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|t| t.starts_with(&root))
                .collect();
            targets.sort_by(|a, b| b.cmp(a));
            for t in targets {
                let _ = Command::new("umount").arg("-l").arg(t).status();
            }
        }
    }
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn put(store: &LocalStore, media_type: &str, data: &[u8]) -> Descriptor {
    let d = Descriptor::new(media_type.into(), data.len() as u64, sha256(data));
    write_blob(store, &format!("t-{}", d.digest()), data, &d, Labels::new())
        .await
        .unwrap();
    d
}

fn host_platform() -> (String, String) {
    let p = platforms::default_spec();
    (p.os, p.architecture)
}

#[tokio::test]
async fn containerd_imports_our_tar_and_we_import_its_export() {
    if !have("containerd") || !have("ctr") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("content")).unwrap();
    let images = ImageStore::open(dir.path().join("metadata.db")).unwrap();
    let arc: Arc<dyn Store> = Arc::new(store.clone());

    // A real image for the host platform, so containerd's import unpacks it.
    let l1 = tar_of(&[("hello.txt", b"hello\n")]);
    let l2 = tar_of(&[("etc/", b""), ("etc/motd", b"strata\n")]);
    let mut layers = Vec::new();
    for l in [&l1, &l2] {
        layers.push(put(&store, mt::OCI_LAYER_GZIP, &gzip(l)).await);
    }
    let (os, arch) = host_platform();
    let config = format!(
        r#"{{"architecture":"{arch}","os":"{os}","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{}","{}"]}}}}"#,
        sha256(&l1),
        sha256(&l2)
    );
    let config = put(&store, mt::OCI_CONFIG, config.as_bytes()).await;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST, "config": config, "layers": layers,
    }))
    .unwrap();
    let md = put(&store, mt::OCI_MANIFEST, &manifest).await;
    let name = "example.com/strata/ctr:v1";
    let img = images.create(Image::new(name, md.clone())).await.unwrap();
    let ours = dir.path().join("ours.tar");
    layout::export_tar(
        arc,
        std::slice::from_ref(&img),
        &ours,
        &ExportOpts::default(),
    )
    .await
    .unwrap();

    let ctd = Containerd::start();
    let out = ctd.ctr(&["images", "import", ours.to_str().unwrap()]);
    assert!(
        out.contains(name),
        "ctr import names the image from our annotation: {out}"
    );
    let ls = ctd.ctr(&["images", "ls"]);
    let line = ls
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{ls}"));
    assert!(
        line.contains(&md.digest().to_string()),
        "same manifest digest: {line}"
    );
    // containerd unpacked it: the snapshot named by our ChainID exists.
    let chain = strata_image::identity::chain_id(&[sha256(&l1), sha256(&l2)]).unwrap();
    let snaps = ctd.ctr(&["snapshots", "ls"]);
    assert!(
        snaps.contains(&chain.to_string()),
        "snapshot {chain} in {snaps}"
    );

    // containerd's export imports into strata with identical digests.
    let theirs = dir.path().join("theirs.tar");
    ctd.ctr(&["images", "export", theirs.to_str().unwrap(), name]);
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = LocalStore::open(dir2.path().join("content")).unwrap();
    let images2 = ImageStore::open(dir2.path().join("metadata.db")).unwrap();
    let r = layout::import(
        Arc::new(store2.clone()),
        &images2,
        &theirs,
        &ImportOpts::default(),
    )
    .await
    .unwrap();
    let got = r
        .images
        .iter()
        .find(|i| i.name == name)
        .expect("named from containerd's export");
    let m = image::manifest(&store2, &got.target, &platforms::default_matcher())
        .await
        .unwrap();
    assert_eq!(m.descriptor.digest(), md.digest());
    assert_eq!(m.raw, manifest);
    let check = image::check(&store2, &got.target, &platforms::default_matcher())
        .await
        .unwrap();
    assert!(check.available && check.missing.is_empty(), "{check:?}");
    drop(ctd);
}

//! Embedding strata: pull an image, prepare a container, write a file through its
//! mount, commit the container as a new image and push it; prints the new manifest's
//! digest.
//!
//! `STRATA_ROOT=/tmp/state REGISTRY=127.0.0.1:5000 cargo run --release --example embed`
//! (as root, to mount; a registry on loopback is spoken to in plain HTTP).

use strata::Root;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Root::open(std::env::var("STRATA_ROOT")?)?;
    let registry = std::env::var("REGISTRY")?;
    let base = format!("{registry}/debian:minbase");
    root.pull(&base, Default::default()).await?;
    root.prepare_container("embed", &base).await?;
    let hello = |dir: &std::path::Path| std::fs::write(dir.join("hello.txt"), "hello\n");
    root.with_mounted("embed", hello).await??;
    let new = format!("{registry}/embed/test:1");
    root.commit("embed", &new, Default::default()).await?;
    root.remove_container("embed").await?;
    let pushed = root.push(&new, None, Default::default()).await?;
    println!("{}", pushed.digest());
    Ok(())
}

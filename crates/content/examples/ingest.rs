//! Ingests stdin into a `LocalStore` and prints the digest: the content store alone,
//! without the `strata` CLI, for profiling.
//!
//! `cargo run --release -p strata-content --example ingest -- ROOT REF < FILE`

use std::io::Read;
use strata_content::local::LocalStore;
use strata_content::{Ingester, Labels, WriterOpts};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let root = args.next().ok_or("usage: ingest ROOT REF < FILE")?;
    let reference = args.next().ok_or("usage: ingest ROOT REF < FILE")?;
    let store = LocalStore::open(&root)?;
    let mut w = store.writer(WriterOpts::new(reference)).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut buf = vec![0u8; 1 << 20];
            let mut filled = 0;
            while filled < buf.len() {
                match stdin.read(&mut buf[filled..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => filled += n,
                }
            }
            if filled == 0 {
                return;
            }
            buf.truncate(filled);
            if tx.blocking_send(buf).is_err() {
                return;
            }
        }
    });
    while let Some(b) = rx.recv().await {
        w.write(&b).await?;
    }
    let d = w.digest();
    match w.commit(0, None, Labels::new()).await {
        Err(e) if !e.is_already_exists() => return Err(e.into()),
        _ => {}
    }
    println!("{d}");
    Ok(())
}

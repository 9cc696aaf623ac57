//! `strata`: a command-line front end to the strata library, for trying it out and for
//! benchmarks. `cargo run --release --example strata -- --help`.
//!
//! Each area has its own module: `content`, `snapshot`, `image`.

mod common;
mod content;
mod image;
mod lease;
mod serve;
mod snapshot;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// strata: containerd's image storage core, in-process.
#[derive(Parser, Debug)]
#[command(name = "strata", version, about)]
struct Cli {
    #[command(flatten)]
    global: common::Global,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The content store: blobs and ingests.
    #[command(subcommand)]
    Content(content::Cmd),
    /// Snapshots.
    #[command(subcommand)]
    Snapshot(snapshot::Cmd),
    /// Images: pull, push, import, export, list.
    #[command(subcommand)]
    Image(image::Cmd),
    /// Leases: hold content and snapshots against garbage collection.
    #[command(subcommand)]
    Lease(lease::Cmd),
    /// Remove every blob, ingest and snapshot that nothing references.
    Gc,
    /// Check blobs, ingests, snapshots, images and GC labels; exit 1 on damage.
    Check(lease::CheckArgs),
    /// Serve containerd's Snapshots and Content APIs on a unix socket (a containerd proxy plugin).
    Serve(serve::Cmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let cmd = match cli.cmd {
            // The server stops on SIGINT/SIGTERM itself, draining its calls.
            Cmd::Serve(c) => return report(serve::run(&cli.global, c).await),
            cmd => cmd,
        };
        let run = async move {
            match cmd {
                Cmd::Content(c) => content::run(&cli.global, c).await,
                Cmd::Snapshot(c) => snapshot::run(&cli.global, c).await,
                Cmd::Image(c) => image::run(&cli.global, c).await,
                Cmd::Lease(c) => lease::run(&cli.global, c).await,
                Cmd::Gc => lease::gc(&cli.global).await,
                Cmd::Check(a) => lease::check(&cli.global, a).await,
                Cmd::Serve(_) => unreachable!("served above"),
            }
        };
        tokio::select! {
            res = run => report(res),
            signal = common::interrupted() => {
                // The command's future is dropped: its flows clean up after themselves.
                strata::image::service::wait_for_cleanups().await;
                eprintln!("strata: interrupted by {signal}; cleaned up");
                ExitCode::from(130)
            }
        }
    })
}

/// The exit code of a command's result, printing its error.
fn report(res: Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e}");
            ExitCode::FAILURE
        }
    }
}

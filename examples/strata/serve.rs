//! `strata serve`: containerd's Snapshots and Content gRPC services on a unix socket, so a
//! containerd daemon can use strata as a proxy plugin (`--print-config` shows how).

use crate::common::Global;
use clap::Args;
use std::path::{Path, PathBuf};
use strata_grpc::{ContentService, SnapshotsService};

/// The socket file's mode: owner and group may connect.
const SOCKET_MODE: u32 = 0o660;

#[derive(Args, Debug)]
pub struct Cmd {
    /// The unix socket to listen on (refused while a live server holds it; a dead server's
    /// stale socket is replaced; removed on exit).
    #[arg(long)]
    address: PathBuf,
    /// Print containerd's config.toml `[proxy_plugins]` snippet for this socket, and exit.
    #[arg(long)]
    print_config: bool,
}

/// Serves the `--snapshotter` snapshotter and the content store of `--root` until SIGTERM
/// or SIGINT; calls still open 5 s later are cut.
pub async fn run(g: &Global, cmd: Cmd) -> Result<(), Box<dyn std::error::Error>> {
    let address = std::path::absolute(&cmd.address)?;
    if cmd.print_config {
        print!("{}", proxy_config(&address));
        return Ok(());
    }
    let root = g.open()?;
    let sn = root.snapshotter().clone();
    let store = root.content().clone();
    // Signal handlers first: a client may signal as soon as the socket appears.
    let signal = crate::common::interrupted();
    let (listener, socket) = strata_grpc::socket::bind(&address, SOCKET_MODE)?;
    eprintln!(
        "strata: serving snapshotter {} and the content store of {} on {}",
        root.snapshotter_name(),
        root.path().display(),
        socket.path().display()
    );
    let stop = async {
        signal.await;
    };
    let served = strata_grpc::serve(
        listener,
        SnapshotsService::new(sn.clone()),
        ContentService::new(store),
        stop,
    )
    .await;
    drop(socket);
    sn.close().await?;
    served?;
    eprintln!("strata: stopped");
    Ok(())
}

/// containerd's `config.toml` lines that make `address` its `strata` snapshotter and a
/// `strata-content` content plugin.
fn proxy_config(address: &Path) -> String {
    let a = address.display();
    format!(
        "version = 2\n\n\
         [proxy_plugins]\n  \
         [proxy_plugins.strata]\n    type = \"snapshot\"\n    address = \"{a}\"\n  \
         [proxy_plugins.strata-content]\n    type = \"content\"\n    address = \"{a}\"\n"
    )
}

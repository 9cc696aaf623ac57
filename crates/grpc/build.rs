//! Compiles strata's own description of containerd's API (`proto/`) with `protox`, a
//! pure-Rust protobuf compiler, so that building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTOS: [&str; 4] = [
        "proto/containerd/types/mount.proto",
        "proto/containerd/types/descriptor.proto",
        "proto/containerd/services/snapshots/v1/snapshots.proto",
        "proto/containerd/services/content/v1/content.proto",
    ];
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Labels are strata's `Labels` (a BTreeMap); blob data is `bytes::Bytes`.
        .btree_map(".")
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}

//! Applies arbitrary bytes as a layer (plain tar, gzip-wrapped tar, and raw bytes as gzip)
//! into a fresh root inside a sandbox directory; asserts no panic and that nothing outside
//! the root changed (the sandbox holds canary files, a canary directory and a symlink to
//! it beside the root).
#![no_main]

mod sandbox;

use libfuzzer_sys::fuzz_target;
use std::io::Write;
use strata_diff::{ApplyOptions, Compression, Encoding, apply_layer};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let root = sandbox::root();
    let opts = ApplyOptions::default();
    let _ = match mode % 3 {
        0 => apply_layer(rest, Compression::None, root.path(), &opts),
        1 => {
            let mut e = strata_diff::compression::encoder(
                Vec::new(),
                Encoding { compression: Compression::Gzip, level: Some(1), threads: 0 },
            )
            .unwrap();
            e.write_all(rest).unwrap();
            let gz = e.finish().unwrap();
            apply_layer(&gz[..], Compression::Gzip, root.path(), &opts)
        }
        _ => apply_layer(rest, Compression::Detect, root.path(), &opts),
    };
    sandbox::check(root);
});

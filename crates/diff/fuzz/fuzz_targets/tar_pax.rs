//! The tar reader with PAX extended headers: builds well-formed tar headers around
//! fuzzer-chosen PAX records (path, linkpath, size, uid/gid, times, xattrs, …, or a raw and
//! possibly malformed record block), entry types, names and link targets, then applies the
//! archive. Asserts no panic and that nothing outside the root changed.
//!
//! Input: `[type, flags, rest…]`; `rest` split on `0xFF` into name, link name, content, then
//! PAX records `key=value` (or, with flag bit 0, one raw record block).
#![no_main]

mod sandbox;

use libfuzzer_sys::fuzz_target;
use strata_diff::{ApplyOptions, Compression, apply_layer};

const TYPES: &[u8] = b"0125679gxKLS";

fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    let mut r = format!("{len} ").into_bytes();
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn header(kind: u8, name: &[u8], link: &[u8], size: usize, mode: u32) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    let n = name.len().min(100);
    h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
    let l = link.len().min(100);
    h.as_old_mut().linkname[..l].copy_from_slice(&link[..l]);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(size as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    *h.as_bytes()
}

fn push_entry(out: &mut Vec<u8>, head: [u8; 512], body: &[u8]) {
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn archive(data: &[u8]) -> Option<Vec<u8>> {
    let (&kind, rest) = data.split_first()?;
    let (&flags, rest) = rest.split_first()?;
    let mut parts = rest.split(|&b| b == 0xFF);
    let name = parts.next().unwrap_or_default();
    let link = parts.next().unwrap_or_default();
    let content = parts.next().unwrap_or_default();
    let records: Vec<u8> = if flags & 1 == 1 {
        parts.flatten().copied().collect()
    } else {
        parts
            .flat_map(|kv| {
                let eq = kv.iter().position(|&b| b == b'=').unwrap_or(kv.len());
                pax_record(&kv[..eq], kv.get(eq + 1..).unwrap_or_default())
            })
            .collect()
    };
    let mut out = Vec::new();
    if !records.is_empty() {
        let pax_type = if flags & 2 == 2 { b'g' } else { b'x' };
        push_entry(&mut out, header(pax_type, b"pax", b"", records.len(), 0o644), &records);
    }
    let kind = TYPES[kind as usize % TYPES.len()];
    let body = if matches!(kind, b'0' | b'7') { content } else { &[][..] };
    let mode = if flags & 4 == 4 { 0o4755 } else { 0o644 };
    push_entry(&mut out, header(kind, name, link, body.len(), mode), body);
    if flags & 8 == 8 {
        // A second entry through what the first one made.
        let mut second = name.to_vec();
        second.extend_from_slice(b"/child");
        push_entry(&mut out, header(b'0', &second, b"", 5, 0o644), b"child");
    }
    out.extend_from_slice(&[0; 1024]);
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some(tar) = archive(data) else { return };
    let root = sandbox::root();
    let _ = apply_layer(&tar[..], Compression::None, root.path(), &ApplyOptions::default());
    sandbox::check(root);
});

//! The WWW-Authenticate parser: never panics or loops; schemes and keys come out
//! lowercased.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_image::remote::parse_www_authenticate;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    for c in parse_www_authenticate(&s) {
        assert!(!c.scheme.is_empty());
        assert_eq!(c.scheme, c.scheme.to_ascii_lowercase());
        for k in c.params.keys() {
            assert_eq!(*k, k.to_ascii_lowercase());
        }
    }
});

//! Reference parsing: never panics; what parses prints back to something that parses
//! to the same reference.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_image::reference::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Reference::parse(s) {
        let again = Reference::parse(&r.to_string()).expect("printed reference parses");
        assert_eq!(again, r);
        let _ = r.familiar();
    }
    if let Ok(r) = Reference::parse_normalized(s) {
        let printed = r.to_string();
        let again = Reference::parse_normalized(&printed).expect("normalized reference parses");
        assert_eq!(again, r, "{printed}");
        let fam = Reference::parse_normalized(&r.familiar()).expect("familiar form parses");
        assert_eq!(fam, r);
        assert!(!r.with_default_tag().object().is_empty());
    }
});

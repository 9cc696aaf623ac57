//! Manifest, index and config decoding (the image core's pub decode functions) and the
//! media-type check: never panic on any bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_image::image;
use strata_image::media_types as mt;

fuzz_target!(|data: &[u8]| {
    let _ = image::decode_manifest(data);
    let _ = image::decode_index(data);
    let _ = image::decode_config(data);
    let _ = image::decode_config_platform(data);
    let _ = image::decode_diff_ids(data);
    for t in [mt::OCI_MANIFEST, mt::OCI_INDEX, mt::DOCKER_MANIFEST, mt::DOCKER_MANIFEST_LIST] {
        let _ = image::validate_media_type(data, t);
    }
});

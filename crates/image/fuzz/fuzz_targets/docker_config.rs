//! Docker config.json parsing: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_image::remote::docker_config::DockerConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = DockerConfig::parse(data) {
        let _ = c.get("docker.io");
    }
});

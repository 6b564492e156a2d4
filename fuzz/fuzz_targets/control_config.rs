//! Config text: validation never panics, every error displays, and what validates keeps the
//! model's promises about named endpoints and DDNS entries.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match control::Config::from_toml_str(text, "fuzz.toml") {
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
        Ok(config) => {
            for t in &config.tunnels {
                for p in &t.paths {
                    // An endpoint is an address, or a name/device waiting as the unspecified
                    // address of the path's family.
                    assert_eq!(p.remote_name.is_some(), p.remote.is_unspecified());
                    assert_eq!(p.local_device.is_some(), p.local.is_unspecified());
                    assert_eq!(p.local.is_ipv4(), p.remote.is_ipv4());
                }
            }
            for d in &config.ddns {
                assert!(!d.hostname.ends_with('.'));
                assert_eq!(d.hostname, d.hostname.to_ascii_lowercase());
            }
        }
    }
});

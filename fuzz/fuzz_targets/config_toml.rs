//! The config parser and validator: any text is a config or a list of problems, never a
//! panic; an accepted config's MAP-E and DS-Lite tunnels lower without panicking, its named
//! endpoints wait as the unspecified address of their path's family, and its `[[ddns]]`
//! hostnames are canonical.
#![no_main]

use control::Config;
use control::softwire::{Facts, lower};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml_str(text, "fuzz.toml") {
        Ok(config) => {
            let facts = Facts {
                prefix: "240b:10:1234:5600::/56".parse().ok(),
                aftr: "2001:db8::1".parse().ok(),
                wan_address: "2001:db8:1::2".parse().ok(),
            };
            for sw in &config.softwires {
                let _ = lower(sw, &facts);
            }
            for t in &config.tunnels {
                for p in &t.paths {
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
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});

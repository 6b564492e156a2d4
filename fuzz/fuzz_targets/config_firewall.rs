//! Config text with the firewall sections: validation never panics, a valid config always
//! renders a ruleset that serialises, and a ports string that parses prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ports) = control::firewall::parse_ports(text) {
        let shown: Vec<String> = ports.iter().map(ToString::to_string).collect();
        assert_eq!(control::firewall::parse_ports(&shown.join(" ")).unwrap(), ports);
    }
    let Ok(config) = control::Config::from_toml_str(text, "fuzz.toml") else {
        return;
    };
    if let Some(r) = control::firewall::ruleset::ruleset(&config, |_, _| Some("eth0".into())) {
        for object in &r.content {
            rendered_len(object);
        }
    }
    let _ = control::firewall::routing::rules(&config);
    let _ = control::firewall::routing::routes(&config);
});

fn rendered_len<T: std::fmt::Debug>(value: &T) -> usize {
    format!("{value:?}").len()
}

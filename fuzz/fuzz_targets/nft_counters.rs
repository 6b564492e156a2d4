//! The counters `status` reads from `nft -j list table`: any text is refused or read into
//! counted rules, never more than the text can hold (a counted rule takes over 60 bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(counted) = sys::nft::parse_counters(text) {
        assert!(counted.len() <= text.len() / 60, "{} from {text}", counted.len());
    }
});

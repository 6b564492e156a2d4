//! The instance journal, which the root daemon reads at start: any text is either refused line
//! by line or read into entries that render and read back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sys::netlink::{Family, Rule};
use v6gate::daemon::host::{Accept, Journal};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let rule = |family| Rule {
        fwmark: Some(0x7636),
        invert: true,
        ..Rule::lookup(family, 100, 6464)
    };
    // A `[[rule]]` with selectors.
    let policy = Rule {
        from: "198.51.100.5/32".parse().ok(),
        iif: Some("br0".to_owned()),
        ..Rule::lookup(Family::V4, 1000, 300)
    };
    let accept = Accept {
        sysctl_keys: vec![
            "net/ipv4/ip_forward".to_owned(),
            "net/ipv6/conf/all/forwarding".to_owned(),
        ],
        route_tables: vec![254, 300, 6464],
        route_protocol: 118,
        rules: vec![rule(Family::V4), rule(Family::V6), policy],
        keep_table: false,
        mss_table: "v6gate_mss_v6gate".to_owned(),
    };
    let (journal, _refused) = Journal::parse(text, &accept);
    for (key, _) in &journal.originals {
        assert!(accept.sysctl_keys.contains(key), "accepted {key:?}");
    }
    let (again, refused) = Journal::parse(&journal.render("/run/v6gate/v6gate.sock"), &accept);
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(again, journal);
});

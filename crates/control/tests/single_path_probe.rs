//! The single-path form with `probe`: one path that is watched, so a dead peer reads `down`.

mod support;

use std::time::Duration;

use control::Probe;
use support::*;

#[test]
fn a_single_path_is_unprobed_unless_asked() {
    let c = valid(&tunnel("home", "2001:db8:a::2", ""));
    assert_eq!(c.tunnels[0].paths[0].probe, Probe::None);
    let c = valid(&tunnel(
        "home",
        "2001:db8:a::2",
        "probe = \"keepalive\"\n[tunnel.health]\ninterval = \"200ms\"\ndown_after = 3\n",
    ));
    let t = &c.tunnels[0];
    assert_eq!(t.paths.len(), 1);
    assert_eq!(t.paths[0].probe, Probe::Keepalive);
    assert_eq!(t.health.interval, Duration::from_millis(200));
    assert_eq!(t.health.down_after, 3);
}

#[test]
fn a_single_path_may_ping_a_peer_that_is_not_v6gate() {
    let c = valid(&tunnel(
        "home",
        "2001:db8:a::2",
        "address = \"198.51.100.2/30\"\nallowed_sources = [\"198.51.100.0/30\"]\n\
         probe = \"icmp\"\nprobe_target = \"198.51.100.1\"\n",
    ));
    match c.tunnels[0].paths[0].probe {
        Probe::Icmp { target, .. } => assert_eq!(target.to_string(), "198.51.100.1"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn probe_keys_are_checked_in_the_single_path_form_too() {
    let text = tunnel("home", "2001:db8:a::2", "probe = \"arp\"\n");
    only_problem(&text, "tunnel[0].probe", "arp", "probe =");
    let text = tunnel("home", "2001:db8:a::2", "probe_target = \"198.51.100.1\"\n");
    only_problem(
        &text,
        "tunnel[0].probe_target",
        "only used with probe = \"icmp\"",
        "probe_target",
    );
    let text = tunnel(
        "home",
        "2001:db8:a::2",
        "probe = \"none\"\n[tunnel.health]\ninterval = \"1s\"\n",
    );
    only_problem(
        &text,
        "tunnel[0].health",
        "unless `probe` is set",
        "[tunnel.health]",
    );
}

#[test]
fn a_tunnel_level_probe_does_not_mix_with_path_tables() {
    let text = "[[tunnel]]\nname = \"home\"\nmode = \"ipip6\"\nprobe = \"keepalive\"\n\
                [[tunnel.path]]\nname = \"a\"\nlocal = \"2001:db8:a::1\"\n\
                remote = \"2001:db8:a::2\"\n";
    only_problem(
        text,
        "tunnel[0].probe",
        "cannot be mixed with [[tunnel.path]]",
        "probe =",
    );
}

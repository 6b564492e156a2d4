//! `dataplane`: which of the kernel path and the TUN dataplane moves a tunnel's packets.

mod support;

use control::Dataplane;
use support::*;

#[test]
fn dataplane_defaults_to_auto() {
    let text = tunnel("home", "2001:db8:a::2", "routes = [\"203.0.113.0/24\"]\n");
    assert_eq!(valid(&text).tunnels[0].dataplane, Dataplane::Auto);
}

#[test]
fn dataplane_words() {
    for (word, want) in [
        ("auto", Dataplane::Auto),
        ("kernel", Dataplane::Kernel),
        ("userspace", Dataplane::Userspace),
    ] {
        let text = tunnel(
            "home",
            "2001:db8:a::2",
            &format!("dataplane = \"{word}\"\n"),
        );
        let got = valid(&text).tunnels[0].dataplane;
        assert_eq!(got, want);
        assert_eq!(got.to_string(), word);
    }
}

#[test]
fn dataplane_refuses_other_values() {
    let text = tunnel("home", "2001:db8:a::2", "dataplane = \"bpf\"\n");
    only_problem(
        &text,
        "tunnel[0].dataplane",
        "expected one of \"auto\", \"kernel\", \"userspace\", found \"bpf\"",
        "dataplane",
    );
    let text = tunnel("home", "2001:db8:a::2", "dataplane = true\n");
    only_problem(
        &text,
        "tunnel[0].dataplane",
        "expected \"auto\", \"kernel\" or \"userspace\"",
        "dataplane",
    );
}

#[test]
fn an_ipsec_tunnel_has_no_kernel_path() {
    let text = "[[tunnel]]\nname = \"vps\"\nmode = \"ipsec\"\nlocal = \"2001:db8:a::2\"\n\
                remote = \"2001:db8:a::1\"\nlocal_subnets = [\"203.0.113.0/24\"]\n\
                routes = [\"198.51.100.0/24\"]\ndataplane = \"kernel\"\n[tunnel.ike]\n\
                psk = \"secret\"\n";
    let e = invalid(text);
    has_problem(
        &e,
        "tunnel[0].dataplane",
        line_of(text, "dataplane"),
        "the kernel path carries IP-in-IP",
    );
}

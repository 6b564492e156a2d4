//! Configs the size of a large hub: what validation finds in them, and how long it takes.

use std::fmt::Write;
use std::time::Instant;

use control::Config;

/// A hub with `n` tunnels from one local address, each to its own remote and with its own
/// /24, all in the main table.
fn hub(n: u32) -> String {
    let mut text = String::with_capacity(n as usize * 160);
    for i in 0..n {
        let _ = write!(
            text,
            "[[tunnel]]\nname = \"t{i}\"\nmode = \"ipip6\"\nlocal = \"2001:db8:ffff::1\"\n\
             remote = \"2001:db8:1:{:x}::2\"\nroutes = [\"10.{}.{}.0/24\"]\n\n",
            i,
            i >> 8,
            i & 0xff,
        );
    }
    text
}

#[test]
fn a_ten_thousand_tunnel_hub_is_valid() {
    let config = Config::from_toml_str(&hub(10_000), "hub.toml").unwrap();
    assert_eq!(config.tunnels.len(), 10_000);
    assert_eq!(config.tunnels[9_999].device, "v6g-t9999");
}

#[test]
fn clashes_are_found_among_ten_thousand_tunnels() {
    let mut text = hub(10_000);
    // The last tunnel shares the first one's endpoints; another one routes a prefix that
    // contains a /24 of a tunnel far before it.
    text.push_str(
        "[[tunnel]]\nname = \"late\"\nmode = \"ipip6\"\nlocal = \"2001:db8:ffff::1\"\n\
         remote = \"2001:db8:1:0::2\"\nroutes = [\"10.20.0.0/16\"]\n",
    );
    let e = Config::from_toml_str(&text, "hub.toml").unwrap_err();
    let problems: Vec<(String, String)> = e
        .diagnostics()
        .iter()
        .map(|d| (d.key.clone(), d.message.clone()))
        .collect();
    assert!(
        problems.iter().any(|(k, m)| k == "tunnel[10000].remote"
            && m.contains("tunnel[0] (\"t0\") already runs between")),
        "{problems:?}"
    );
    // 10.20.0.0/16 holds the /24s of tunnels 5120 to 5375: each one is a clash.
    let routes: Vec<_> = problems
        .iter()
        .filter(|(k, _)| k == "tunnel[10000].routes[0]")
        .collect();
    assert_eq!(routes.len(), 256, "{routes:?}");
    assert!(
        routes[0]
            .1
            .contains("overlaps 10.20.0.0/24 of tunnel[5120]"),
        "{}",
        routes[0].1
    );
    assert_eq!(problems.len(), 257);
}

/// Prints how long a 10,000-tunnel hub takes to check; run with `--ignored --nocapture`
/// (in release for the figure that matters).
#[test]
#[ignore = "a timing to read, not a check"]
fn time_to_check_a_ten_thousand_tunnel_hub() {
    let text = hub(10_000);
    let start = Instant::now();
    let config = Config::from_toml_str(&text, "hub.toml").unwrap();
    println!(
        "{} tunnels, {} bytes checked in {:?}",
        config.tunnels.len(),
        text.len(),
        start.elapsed()
    );
}

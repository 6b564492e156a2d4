//! `[[watch]]`: uplink probes that install or withdraw a route, with hooks.

mod support;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use control::{Health, Hook, WatchRoute, diff, plan};
use support::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn every_watch_key_is_read() {
    let text = r#"
[[watch]]
name = "mape"
target = "198.18.2.254"
source = "198.18.1.1"
device = "wan4"
interval = "500ms"
timeout = "1.5s"
down_after = 4
up_after = 6
hold_down = "2m"
route = { dst = "0.0.0.0/0", via = "198.18.1.254", device = "wan4", table = 100, metric = 10 }
on_down = ["/usr/local/bin/led", "on"]
on_up = ["/usr/local/bin/led", "off", ""]
"#;
    let c = valid(text);
    let w = c.watch("mape").unwrap();
    assert_eq!(w.target, ip("198.18.2.254"));
    assert_eq!(w.source, Some(ip("198.18.1.1")));
    assert_eq!(w.device, "wan4");
    assert_eq!(
        w.health,
        Health {
            interval: ms(500),
            timeout: ms(1500),
            down_after: 4,
            up_after: 6,
            hold_down: ms(120_000),
        }
    );
    assert_eq!(
        w.route,
        WatchRoute {
            dst: "0.0.0.0/0".parse().unwrap(),
            via: Some(ip("198.18.1.254")),
            device: Some("wan4".into()),
            table: 100,
            metric: 10,
        }
    );
    assert_eq!(
        w.on_down,
        Some(Hook {
            program: PathBuf::from("/usr/local/bin/led"),
            args: vec!["on".into()],
        })
    );
    assert_eq!(
        w.on_up.as_ref().unwrap().args,
        ["off", ""],
        "empty arguments are arguments"
    );
}

#[test]
fn watch_defaults() {
    let text = "[gateway]\nroute_metric = 77\n[[watch]]\nname = \"w\"\ntarget = \"2001:db8::1\"\n\
                device = \"wan6\"\nroute = { dst = \"::/0\", via = \"fe80::1\", device = \"wan6\" }\n";
    let c = valid(text);
    let w = &c.watches[0];
    assert_eq!(w.health, Health::WATCH_DEFAULT);
    assert_eq!(w.source, None);
    assert_eq!(w.route.table, 254);
    assert_eq!(
        w.route.metric, 77,
        "metric defaults to gateway.route_metric"
    );
    assert_eq!((w.on_down.as_ref(), w.on_up.as_ref()), (None, None));
}

#[test]
fn default_health_fits_its_purpose() {
    // S4: a dead tunnel path is given up within a second.
    assert!(Health::TUNNEL_DEFAULT.worst_detection() < Duration::from_secs(1));
    assert_eq!(Health::TUNNEL_DEFAULT.worst_detection(), ms(900));
    assert_eq!(Health::WATCH_DEFAULT.worst_detection(), ms(4000));
}

#[test]
fn durations_are_strings_with_units_in_range() {
    for (line, needle) in [
        (
            "interval = 100",
            "expected a duration string like \"100ms\"",
        ),
        ("interval = \"100\"", "no unit"),
        ("interval = \"1.5ms\"", "finer than a millisecond"),
        (
            "interval = \"9ms\"",
            "expected a duration 10ms..=1h, found \"9ms\"",
        ),
        ("interval = \"61m\"", "10ms..=1h"),
        ("timeout = \"0s\"", "10ms..=1h"),
        ("timeout = \"1 s\"", "unknown unit \" s\""),
        ("hold_down = \"2h\"", "0s..=1h"),
        ("hold_down = true", "found true"),
    ] {
        let text = watch("w", &format!("{line}\n"));
        let key = format!("watch[0].{}", line.split(' ').next().unwrap());
        only_problem(&text, &key, needle, line);
    }
    let text = watch(
        "w",
        "interval = \"10ms\"\ntimeout = \"1h\"\nhold_down = \"0ms\"\n",
    );
    let h = valid(&text).watches[0].health;
    assert_eq!(
        (h.interval, h.timeout, h.hold_down),
        (ms(10), ms(3_600_000), ms(0))
    );
}

#[test]
fn probe_counts_in_range() {
    for key in ["down_after", "up_after"] {
        for bad in [0, 1001, -1] {
            let text = watch("w", &format!("{key} = {bad}\n"));
            only_problem(&text, &format!("watch[0].{key}"), "1..=1000", key);
        }
        for good in [1, 1000] {
            valid(&watch("w", &format!("{key} = {good}\n")));
        }
    }
}

#[test]
fn target_and_source_are_unicast_addresses_of_one_family() {
    let base = watch("w", "");
    for (target, needle) in [
        (
            "dns.example.net",
            "is a host name; names are not resolved yet",
        ),
        ("198.18.2", "expected an IPv4 or IPv6 address"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("0.0.0.0", "unspecified"),
        ("::1", "loopback"),
    ] {
        let text = base.replace("198.18.2.254", target);
        only_problem(&text, "watch[0].target", needle, "target =");
    }
    // The device scopes a link-local target.
    valid(&base.replace("198.18.2.254", "fe80::1"));
    only_problem(
        &watch("w", "source = \"2001:db8::1\"\n"),
        "watch[0].source",
        "2001:db8::1 is IPv6, but target 198.18.2.254 is IPv4",
        "source =",
    );
    only_problem(
        &watch("w", "source = \"127.0.0.1\"\n"),
        "watch[0].source",
        "loopback",
        "source =",
    );
}

#[test]
fn device_is_an_interface_name() {
    let text = watch("w", "").replace("device = \"wan4\"\nroute", "device = \"a/b\"\nroute");
    only_problem(
        &text,
        "watch[0].device",
        "interface name",
        "device = \"a/b\"",
    );
}

fn with_route(route: &str) -> String {
    format!(
        "[[watch]]\nname = \"w\"\ntarget = \"198.18.2.254\"\ndevice = \"wan4\"\nroute = {{ {route} }}\n"
    )
}

#[test]
fn route_rules() {
    for (route, key, needle) in [
        (
            "dst = \"0.0.0.0/0\"",
            "dst",
            "needs `via`, `device` or both",
        ),
        (
            "dst = \"0.0.0.0/0\", via = \"2001:db8::1\"",
            "via",
            "2001:db8::1 is IPv6, but dst 0.0.0.0/0 is IPv4",
        ),
        (
            "dst = \"::/0\", via = \"fe80::1\"",
            "via",
            "link-local, which needs `device`",
        ),
        (
            "dst = \"198.18.0.1/15\", device = \"wan4\"",
            "dst",
            "host bits set; the prefix is 198.18.0.0/15",
        ),
        (
            "dst = \"default\", device = \"wan4\"",
            "dst",
            "expected a prefix",
        ),
        (
            "dst = \"0.0.0.0/0\", via = \"gw.example\"",
            "via",
            "host name",
        ),
        (
            "dst = \"0.0.0.0/0\", device = \"wan4\", table = 255",
            "table",
            "kernel's `local` table",
        ),
        (
            "dst = \"0.0.0.0/0\", device = \"wan4\", table = 6464",
            "table",
            "gateway.pin_table",
        ),
        (
            "dst = \"0.0.0.0/0\", device = \"wan4\", table = \"all\"",
            "table",
            "expected \"main\" or a routing table id",
        ),
        (
            "dst = \"0.0.0.0/0\", device = \"wan4\", metric = -1",
            "metric",
            "0..=4294967295",
        ),
        (
            "dst = \"0.0.0.0/0\", device = \"sixteen-bytes-xx\"",
            "device",
            "interface name",
        ),
    ] {
        only_problem(
            &with_route(route),
            &format!("watch[0].route.{key}"),
            needle,
            "route =",
        );
    }
    let c = valid(&with_route(
        "dst = \"::/0\", via = \"fe80::1\", device = \"wan6\", table = \"main\"",
    ));
    assert_eq!(c.watches[0].route.via, Some(ip("fe80::1")));
    let c = valid(&with_route(
        "dst = \"198.18.0.0/15\", via = \"198.18.1.254\"",
    ));
    assert_eq!(c.watches[0].route.device, None);
}

#[test]
fn hooks_are_absolute_commands() {
    only_problem(
        &watch("w", "on_down = [\"led\", \"on\"]\n"),
        "watch[0].on_down[0]",
        "expected an absolute path",
        "on_down",
    );
    only_problem(
        &watch("w", "on_up = []\n"),
        "watch[0].on_up",
        "found []",
        "on_up",
    );
    only_problem(
        &watch("w", "on_up = [\"/bin/echo\", \"a\\u0000b\"]\n"),
        "watch[0].on_up[1]",
        "NUL byte",
        "on_up",
    );
    only_problem(
        &watch("w", "on_up = \"/bin/true\"\n"),
        "watch[0].on_up",
        "invalid type: string",
        "on_up",
    );
}

#[test]
fn required_keys_and_unknown_keys() {
    let text = "[[watch]]\nname = \"w\"\ntarget = \"198.18.2.254\"\ndevice = \"wan4\"\n";
    only_problem(text, "watch[0].route", "missing field `route`", "[[watch]]");
    // The misspelt key is named with its fix, and the route it leaves without a device too.
    let text = with_route("dst = \"0.0.0.0/0\", dev = \"wan4\"");
    let e = invalid(&text);
    let line = line_of(&text, "route =");
    has_problem(&e, "watch[0].route.dev", line, "did you mean `device`?");
    has_problem(
        &e,
        "watch[0].route.dst",
        line,
        "needs `via`, `device` or both",
    );
    assert_eq!(e.diagnostics().len(), 2, "{e}");
    only_problem(
        &watch("w", "probe = \"icmp\"\n"),
        "watch[0].probe",
        "unknown field `probe`",
        "probe =",
    );
}

#[test]
fn watch_names_are_unique_and_restricted() {
    let text = watch("a", "") + &watch("a", "").replace("metric = 10", "metric = 11");
    let e = invalid(&text);
    has_problem(
        &e,
        "watch[1].name",
        last_line_starting(&text, "name ="),
        "already the name of watch[0]",
    );
    assert_eq!(e.diagnostics().len(), 1, "{e}");
    only_problem(&watch("a b", ""), "watch[0].name", "A-Z a-z 0-9", "name =");
}

#[test]
fn two_routes_in_one_slot_clash() {
    let text = watch("a", "") + &watch("b", "");
    let e = invalid(&text);
    has_problem(
        &e,
        "watch[1].route.dst",
        last_line_starting(&text, "route ="),
        "watch[0] (\"a\") already installs 0.0.0.0/0 in table 254 at metric 10",
    );
    assert_eq!(e.diagnostics().len(), 1, "{e}");
    // Another metric is the backup route mwan3-style set-ups want.
    valid(&(watch("a", "") + &watch("b", "").replace("metric = 10", "metric = 100")));

    // A tunnel route at the gateway's metric in the same table is the same slot.
    let text = tunnel("t", "2001:db8:a::2", "routes = [\"0.0.0.0/0\"]\n")
        + &watch("a", "").replace("metric = 10", "metric = 50");
    only_problem(
        &text,
        "watch[0].route.dst",
        "tunnel[0] (\"t\") already installs 0.0.0.0/0 in table 254 at metric 50 (on v6g-t)",
        "route =",
    );
    valid(&(tunnel("t", "2001:db8:a::2", "routes = [\"0.0.0.0/0\"]\n") + &watch("a", "")));
    valid(
        &(tunnel(
            "t",
            "2001:db8:a::2",
            "routes = [\"0.0.0.0/0\"]\nenabled = false\n",
        ) + &watch("a", "").replace("metric = 10", "metric = 50")),
    );
}

#[test]
fn plan_carries_watch_routes() {
    let text = watch("a", "") + &watch("b", "").replace("metric = 10", "metric = 100");
    let c = valid(&text);
    let p = plan(&c, |_, _| 1500);
    let names: Vec<&str> = p.watches.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(p.watch("b").unwrap().route.metric, 100);
    assert_eq!(p.watch("a").unwrap().route, c.watches[0].route);
    assert!(p.watch("c").is_none());
}

#[test]
fn diff_sorts_watches() {
    let old = valid(
        &(watch("keep", "")
            + &watch("edit", "interval = \"2s\"\n").replace("metric = 10", "metric = 11")
            + &watch("drop", "").replace("metric = 10", "metric = 12")),
    );
    let new = valid(
        &(watch("new", "").replace("metric = 10", "metric = 13")
            + &watch("edit", "interval = \"3s\"\n").replace("metric = 10", "metric = 11")
            + &watch("keep", "")),
    );
    let d = diff(&old, &new);
    assert_eq!(d.watches_removed, ["drop"]);
    assert_eq!(d.watches_added, ["new"]);
    assert_eq!(d.watches_changed, ["edit"]);
    assert_eq!(d.watches_unchanged, ["keep"]);
    assert!(d.removed.is_empty() && d.added.is_empty() && d.changed.is_empty());
    assert!(!d.is_empty());
    let same = diff(&old, &old);
    assert!(same.is_empty(), "{same:?}");
    assert_eq!(same.watches_unchanged, ["keep", "edit", "drop"]);
}

#[test]
fn route_metric_change_reaches_watches_that_use_it() {
    let base = "[[watch]]\nname = \"w\"\ntarget = \"198.18.2.254\"\ndevice = \"wan4\"\n\
                route = { dst = \"0.0.0.0/0\", device = \"wan4\" }\n";
    let old = valid(base);
    let new = valid(&format!("[gateway]\nroute_metric = 60\n{base}"));
    let d = diff(&old, &new);
    assert!(d.gateway_changed);
    assert_eq!(d.watches_changed, ["w"]);
    let fixed = watch("w", "");
    let d = diff(
        &valid(&fixed),
        &valid(&format!("[gateway]\nroute_metric = 60\n{fixed}")),
    );
    assert_eq!(d.watches_unchanged, ["w"]);
}

//! Host settings: forwarding and reverse-path filtering where tunnels route, a global IPv6
//! address, TUN, the clock, conntrack headroom.

use std::fs;
use std::net::Ipv6Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use control::{Config, Tunnel};
use ipnet::IpNet;

use super::Check;

pub(super) fn checks(config: Option<&Config>) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(config) = config {
        out.extend(forwarding(config));
        out.extend(rp_filter(config));
    }
    out.push(global_ipv6(config));
    out.push(tun());
    out.push(clock(SystemTime::now()));
    out.push(conntrack(
        read_number("/proc/sys/net/netfilter/nf_conntrack_count"),
        read_number("/proc/sys/net/netfilter/nf_conntrack_max"),
    ));
    out
}

fn read_number(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A sysctl by its dotted name; the device part of `net.ipv4.conf.DEV.x` may hold dots of its
/// own (`eth0.10`), so those keys are built with [`conf`].
fn sysctl(key: &str) -> Option<u64> {
    sys::sysctl::read(&key.replace('.', "/"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `net.ipv4.conf.DEVICE.KEY`, with the device name kept whole.
fn conf(device: &str, key: &str) -> Option<u64> {
    sys::sysctl::read(&format!("net/ipv4/conf/{device}/{key}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn routes_family(t: &Tunnel, v4: bool) -> bool {
    t.enabled && t.routes.iter().any(|r| matches!(r, IpNet::V4(_)) == v4)
}

fn forwarding(config: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    for (v4, key, setting, wanted) in [
        (
            true,
            "net.ipv4.ip_forward",
            "ipv4_forwarding",
            config.gateway.ipv4_forwarding,
        ),
        (
            false,
            "net.ipv6.conf.all.forwarding",
            "ipv6_forwarding",
            config.gateway.ipv6_forwarding,
        ),
    ] {
        let Some(tunnel) = config.tunnels.iter().find(|t| routes_family(t, v4)) else {
            continue;
        };
        let name = format!("forwarding: {key}");
        let on = sysctl(key) == Some(1);
        out.push(if on {
            Check::pass(
                name,
                format!("on; tunnel {} routes through this host", tunnel.name),
            )
        } else if wanted == Some(true) {
            Check::pass(
                name,
                format!("off now; [gateway] {setting} = true turns it on while v6gate runs"),
            )
        } else {
            Check::fail(
                name,
                format!(
                    "off, yet tunnel {} routes {} traffic: packets from the LAN are not \
                     forwarded into the tunnel, nor from the tunnel on",
                    tunnel.name,
                    if v4 { "IPv4" } else { "IPv6" }
                ),
                format!(
                    "set [gateway] {setting} = true (v6gate sets it at start and restores it \
                     at stop), or `sysctl -w {key}=1` in /etc/sysctl.d"
                ),
            )
        });
    }
    out
}

fn rp_filter(config: &Config) -> Vec<Check> {
    let all = conf("all", "rp_filter").unwrap_or(0);
    let mut out = Vec::new();
    for t in config
        .tunnels
        .iter()
        .filter(|t| t.enabled && t.inner_families.ipv4)
    {
        for device in t.devices() {
            // A device that does not exist yet gets `default` when it is created.
            let own = conf(device, "rp_filter")
                .or_else(|| conf("default", "rp_filter"))
                .unwrap_or(0);
            // The kernel applies the larger of `all` and the device's value.
            let effective = all.max(own);
            let name = format!("rp_filter: {device}");
            out.push(if effective == 1 {
                Check::warn(
                    name,
                    format!(
                        "strict reverse-path filtering (all={all}, {device}={own}) drops \
                         packets from tunnel {} whose source is not routed back through \
                         {device}: the peer's own tunnel address, other paths, asymmetric \
                         routes",
                        t.name
                    ),
                    format!(
                        "`sysctl -w net.ipv4.conf.all.rp_filter=2 \
                         net.ipv4.conf.{device}.rp_filter=2` (loose) in /etc/sysctl.d"
                    ),
                )
            } else {
                Check::pass(name, format!("{effective} (off or loose)"))
            });
        }
    }
    out
}

/// Global unicast (2000::/3); documentation addresses count, so that a lab passes.
fn is_global(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xe000 == 0x2000
}

fn global_ipv6(config: Option<&Config>) -> Check {
    let name = "global IPv6 address";
    let text = fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    let found = text.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let hex = f.next()?;
        let device = f.nth(4)?;
        let addr = Ipv6Addr::from(u128::from_str_radix(hex, 16).ok()?);
        is_global(&addr).then(|| format!("{addr} on {device}"))
    });
    let needed = config.is_some_and(|c| {
        c.tunnels
            .iter()
            .any(|t| t.enabled && t.paths.iter().any(control::Path::is_ipv6))
    });
    match found {
        Some(at) => Check::pass(name, at),
        None if needed => Check::fail(
            name,
            "none on any interface, and the tunnels run over IPv6: no endpoint can be reached",
            "check the uplink's IPv6 (router advertisements, DHCPv6-PD, `accept_ra = 2` on a \
             forwarding host)",
        ),
        None => Check::warn(
            name,
            "none on any interface: IPv6 underlays will not work",
            "check the uplink's IPv6 (router advertisements, DHCPv6-PD)",
        ),
    }
}

fn tun() -> Check {
    let name = "TUN device";
    match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        Ok(_) => Check::pass(name, "/dev/net/tun opens"),
        Err(e) => Check::fail(
            name,
            format!("/dev/net/tun: {e}: v6gate cannot create its tunnel devices"),
            "`modprobe tun`; in a container or LXC, pass /dev/net/tun through (lxc.mount.entry, \
             --device /dev/net/tun)",
        ),
    }
}

/// 2025-01-01T00:00:00Z: no clock that is right reads earlier.
const EARLIEST: Duration = Duration::from_secs(1_735_689_600);
/// 2100-01-01T00:00:00Z.
const LATEST: Duration = Duration::from_secs(4_102_444_800);

fn clock(now: SystemTime) -> Check {
    let name = "clock";
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    if (EARLIEST..LATEST).contains(&since) {
        Check::pass(name, format!("{} s since 1970", since.as_secs()))
    } else {
        Check::fail(
            name,
            format!(
                "the clock reads {} s since 1970, which cannot be right: logs, DDNS updates \
                 and certificate checks go wrong",
                since.as_secs()
            ),
            "start time synchronisation (systemd-timesyncd, chrony)",
        )
    }
}

fn conntrack(count: Option<u64>, max: Option<u64>) -> Check {
    let name = "conntrack table";
    let (Some(count), Some(max)) = (count, max) else {
        return Check::pass(name, "connection tracking is not loaded");
    };
    let percent = (count * 100).checked_div(max).unwrap_or(100);
    let detail = format!(
        "{count} of {max} entries ({percent}%): when full, new connections through the \
         tunnel are dropped"
    );
    let fix = "raise net.netfilter.nf_conntrack_max (the field's VPS used 65535)";
    match percent {
        0..75 => Check::pass(name, format!("{count} of {max} entries ({percent}%)")),
        75..90 => Check::warn(name, detail, fix),
        _ => Check::fail(name, detail, fix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Outcome;

    #[test]
    fn documentation_prefix_counts_as_global() {
        assert!(is_global(&"2001:db8::1".parse().unwrap()));
        assert!(is_global(&"2400:4050::1".parse().unwrap()));
        assert!(!is_global(&"fe80::1".parse().unwrap()));
        assert!(!is_global(&"fd00::1".parse().unwrap()));
        assert!(!is_global(&"::1".parse().unwrap()));
    }

    #[test]
    fn conntrack_thresholds() {
        assert_eq!(conntrack(Some(10), Some(100)).result, Outcome::Pass);
        assert_eq!(conntrack(Some(80), Some(100)).result, Outcome::Warn);
        assert_eq!(conntrack(Some(95), Some(100)).result, Outcome::Fail);
        assert_eq!(conntrack(None, Some(100)).result, Outcome::Pass);
    }

    #[test]
    fn clock_before_2025_is_wrong() {
        assert_eq!(clock(UNIX_EPOCH).result, Outcome::Fail);
        assert_eq!(clock(SystemTime::now()).result, Outcome::Pass);
    }
}

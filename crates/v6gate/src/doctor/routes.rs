//! Each endpoint's route (never through a tunnel, which would carry itself), and MTU / MSS
//! consistency per tunnel against the underlay the kernel would use.

use std::collections::HashSet;
use std::fs;
use std::net::IpAddr;

use control::{Config, MssClamp, Tunnel};
use sys::netlink::{Netlink, RouteKind};

use super::Check;

/// ARPHRD types of tunnel devices: TUN (NONE), IPIP, ip6tnl, SIT, GRE, ip6gre.
const TUNNEL_TYPES: [u32; 6] = [65534, 768, 769, 776, 778, 823];

struct Lookup {
    device: Option<String>,
    kind: RouteKind,
    mtu: Option<u32>,
}

pub(super) fn checks(config: Option<&Config>) -> Vec<Check> {
    let Some(config) = config else {
        return Vec::new();
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return vec![Check::fail("routes", format!("no runtime: {e}"), "")],
    };
    runtime.block_on(async {
        let netlink = match Netlink::new() {
            Ok(n) => n,
            Err(e) => {
                return vec![Check::fail(
                    "routes",
                    format!("cannot ask the kernel for routes: {e}"),
                    "run doctor as root",
                )];
            }
        };
        let ours: HashSet<&str> = config.tunnels.iter().flat_map(Tunnel::devices).collect();
        let mut out = Vec::new();
        for t in config.tunnels.iter().filter(|t| t.enabled) {
            let mut underlays = Vec::new();
            for path in &t.paths {
                let lookup = lookup(&netlink, path.remote).await;
                out.push(endpoint(t, path, &lookup, &ours));
                underlays.push(path.underlay_mtu.map(u32::from).or(lookup.mtu));
            }
            out.push(mtu(t, &underlays));
        }
        out
    })
}

async fn lookup(netlink: &Netlink, dst: IpAddr) -> Lookup {
    let Ok(route) = netlink.route_get(dst, None).await else {
        return Lookup {
            device: None,
            kind: RouteKind::Unreachable,
            mtu: None,
        };
    };
    let device = route.oif.and_then(device_name);
    let mtu = match route.oif {
        Some(index) => netlink.link_mtu(index).await.ok(),
        None => None,
    };
    Lookup {
        device,
        kind: route.kind,
        mtu,
    }
}

/// The interface with index `index`, from sysfs (this namespace's view).
fn device_name(index: u32) -> Option<String> {
    fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .find_map(|e| {
            let text = fs::read_to_string(e.path().join("ifindex")).ok()?;
            (text.trim().parse::<u32>().ok()? == index)
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
}

fn is_tunnel_device(name: &str) -> bool {
    fs::read_to_string(format!("/sys/class/net/{name}/type"))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .is_some_and(|t| TUNNEL_TYPES.contains(&t))
}

fn endpoint(t: &Tunnel, path: &control::Path, lookup: &Lookup, ours: &HashSet<&str>) -> Check {
    let name = format!(
        "endpoint route: {} {} -> {}",
        t.name, path.name, path.remote
    );
    let Some(device) = &lookup.device else {
        return Check::fail(
            name,
            format!(
                "no route to {} ({:?}): the tunnel cannot reach its peer",
                path.remote, lookup.kind
            ),
            "check the uplink's address and default route for this family",
        );
    };
    if lookup.kind != RouteKind::Unicast {
        return Check::fail(
            name,
            format!("{} is routed as {}", path.remote, lookup.kind),
            "remove the route that catches the endpoint",
        );
    }
    if ours.contains(device.as_str()) || is_tunnel_device(device) {
        return Check::fail(
            name,
            format!(
                "{} is routed through {device}, a tunnel device: the tunnel would carry its \
                 own packets (a routing loop)",
                path.remote
            ),
            format!(
                "route {} via the uplink (v6gate pins it at start when the uplink route \
                 exists), or narrow the route that sends it into {device}",
                path.remote
            ),
        );
    }
    Check::pass(name, format!("via {device}"))
}

fn mtu(t: &Tunnel, underlays: &[Option<u32>]) -> Check {
    let name = format!("mtu: {}", t.name);
    let mut problems = Vec::new();
    let mut smallest: Option<u16> = None;
    for (path, underlay) in t.paths.iter().zip(underlays) {
        let Some(underlay) = underlay.map(|m| u16::try_from(m).unwrap_or(u16::MAX)) else {
            continue;
        };
        let fits = t.path_mtu(path, underlay);
        smallest = Some(smallest.map_or(fits, |s| s.min(fits)));
        let room = underlay.saturating_sub(t.overhead(path));
        if let Some(configured) = t.mtu.filter(|m| *m > room) {
            problems.push(format!(
                "mtu {configured} + {} bytes of outer headers exceeds path {}'s underlay MTU \
                 {underlay}: outer packets are fragmented",
                t.overhead(path),
                path.name
            ));
        }
    }
    let mtu = t.mtu.or(smallest);
    match (t.mss_clamp, mtu) {
        (MssClamp::Fixed(mss), Some(mtu)) if u32::from(mss) + 40 > u32::from(mtu) => {
            problems.push(format!(
                "mss_clamp {mss} + 40 bytes of IPv4/TCP headers exceeds the tunnel MTU {mtu}"
            ));
        }
        (MssClamp::Off, _) => problems.push(
            "mss_clamp = \"off\": TCP through the tunnel relies on path MTU discovery, which \
             filtered ICMP breaks"
                .to_owned(),
        ),
        _ => {}
    }
    if problems.is_empty() {
        Check::pass(
            name,
            match mtu {
                Some(m) => format!("tunnel MTU {m}, MSS clamp {:?}", t.mss_clamp),
                None => "no underlay to measure".to_owned(),
            },
        )
    } else {
        Check::warn(
            name,
            problems.join("; "),
            "leave mtu unset (derived from the underlays) and mss_clamp = \"auto\"",
        )
    }
}

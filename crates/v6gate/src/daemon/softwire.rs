//! MAP-E CEs and DS-Lite B4s (`mode = "map-e"` / `"ds-lite"`): each is lowered by
//! `control::softwire` to the RFC 2473 tunnel the packet loop already runs, with the facts the
//! host knows now, and lowered again on every netlink change.
//!
//! MAP-E: the prefix is read from `device_prefix` (its first global address shorter than a
//! /128, as the prefix length the kernel holds); the MAP address is a /128 host-state object on
//! that device, owned by the softwire, put there before the tunnel sends from it. A
//! re-delegation gives another MAP address, shared IPv4 address or port set: that softwire's
//! tunnel alone is rebuilt from the new plan, the old MAP address goes, the new one comes.
//!
//! DS-Lite: an AFTR given by name becomes the tunnel's named remote, so the names machinery
//! resolves it, re-resolves it and rebuilds the tunnel when it moves. Without `local`, the
//! local end is the source address the host picks towards the AFTR (or, while the AFTR is a
//! name, towards the IPv6 internet), followed like the prefix; never an address v6gate added
//! (a CE's MAP address on the same device), then the host's own address on that device.
//!
//! The RFC 2473 core accepts packets only from its one remote, so nothing but the BR or AFTR
//! reaches the LAN through a softwire.
//!
//! A softwire on the kernel path sends through the underlay device, where a MAP-E CE's NAPT
//! cannot tell it by device: each softwire holds a routing realm of its own for its
//! kernel-path routes, which the NAPT matches (the NAPT with the realm is in place before those
//! routes are), and by which the pins of other tunnels behind it find its device.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use control::ddns::select::{HostAddress, select};
use control::ddns::{Family, Select};
use control::firewall::PortRange;
use control::firewall::napt::Napt;
use control::softwire::{Aftr, Facts, Lowered, Softwire, SoftwireKind, lower};
use ipnet::{IpNet, Ipv6Net};
use sys::address::{AddressReader, DeviceAddress};
use sys::netlink::RouteLookup;
use tracing::{info, warn};

use super::host::Object;
use super::{Daemon, LOOKUP_MARK, link_index, probe_address};
use crate::ddns::runner::host_address;
use crate::softwire_status::{self as status, SoftwireStatus};

/// How long a softwire that failed to start waits before the next try.
const RETRY: Duration = Duration::from_secs(5);

/// The first routing realm a softwire's kernel-path routes carry; each takes the lowest free
/// one from here. High, so that realms an administrator numbers from 1 stay clear.
const FIRST_REALM: u16 = 0xf600;

/// The enabled softwires of the running config and what each runs with.
#[derive(Default)]
pub(super) struct Softwires {
    list: Vec<Running>,
    reader: Option<AddressReader>,
}

impl Softwires {
    /// Whether a running softwire is called `name`.
    pub(super) fn has(&self, name: &str) -> bool {
        self.list.iter().any(|r| r.sw.name == name)
    }
}

struct Running {
    sw: Softwire,
    /// What the softwire's tunnel runs with now, if it runs.
    current: Option<Lowered>,
    /// What was tried last and failed, and when to try it again.
    failed: Option<(Lowered, Instant)>,
    /// Why it does not run, as last logged.
    waiting: Option<String>,
    /// What is being started now, before it runs: its NAPT goes in ahead of its routes.
    starting: Option<Lowered>,
    /// The realm of its kernel-path routes, for as long as it is configured.
    realm: u16,
}

impl Running {
    /// A softwire not started yet.
    fn new(sw: Softwire) -> Self {
        Self {
            sw,
            current: None,
            failed: None,
            waiting: None,
            starting: None,
            realm: 0,
        }
    }
}

impl Softwires {
    /// Gives every softwire without a realm the lowest free one; the others keep theirs, which
    /// their routes carry.
    fn assign_realms(&mut self) {
        for i in 0..self.list.len() {
            if self.list[i].realm != 0 {
                continue;
            }
            let realm = (FIRST_REALM..=u16::MAX)
                .find(|r| !self.list.iter().any(|o| o.realm == *r))
                .unwrap_or(u16::MAX);
            self.list[i].realm = realm;
        }
    }
}

/// The host-state owner name of a softwire's own objects (the MAP address).
fn owner(name: &str) -> String {
    format!("softwire {name}")
}

impl Daemon {
    /// Replaces the running softwires with those of the config, and starts what can start.
    pub(super) async fn start_softwires(&mut self) {
        self.stop_softwires().await;
        self.softwires.list = self
            .config
            .softwires
            .iter()
            .filter(|s| s.enabled)
            .map(|sw| Running::new(sw.clone()))
            .collect();
        self.softwires.assign_realms();
        self.follow_softwires().await;
    }

    /// Removes every softwire's tunnel and objects.
    pub(super) async fn stop_softwires(&mut self) {
        for r in std::mem::take(&mut self.softwires.list) {
            self.remove_softwire(&r.sw.name, r.current.as_ref()).await;
        }
    }

    /// After a reload: a softwire whose config is unchanged keeps running as it is (its
    /// tunnel, MAP address, NAPT and, for a named AFTR, the name it follows); a changed one is
    /// removed and started again from its new config, a new one started, a dropped one removed.
    pub(super) async fn reload_softwires(&mut self) {
        let wanted: Vec<Softwire> = self
            .config
            .softwires
            .iter()
            .filter(|s| s.enabled)
            .cloned()
            .collect();
        let mut kept = Vec::new();
        let mut removed = false;
        // Removals first: a changed softwire comes back under the same name and device.
        for r in std::mem::take(&mut self.softwires.list) {
            if wanted.contains(&r.sw) {
                kept.push(r);
            } else {
                info!(tunnel = %r.sw.name, "changed or removed by the reload: stopping");
                self.remove_softwire(&r.sw.name, r.current.as_ref()).await;
                removed = true;
            }
        }
        self.softwires.list = wanted
            .into_iter()
            .map(|sw| match kept.iter().position(|r| r.sw == sw) {
                Some(i) => kept.swap_remove(i),
                None => Running::new(sw),
            })
            .collect();
        self.softwires.assign_realms();
        self.follow_softwires().await;
        if removed {
            // A dropped MAP-E softwire's NAPT goes with it.
            self.refresh_firewall().await;
        }
    }

    /// The tunnel of softwire `name`, the name it follows and its MAP address.
    async fn remove_softwire(&mut self, name: &str, current: Option<&Lowered>) {
        self.unfollow(name);
        self.remove_softwire_tunnel(name, current).await;
        if let Err(e) = self.host.set(&owner(name), Vec::new()).await {
            warn!(tunnel = %name, "removing the MAP address: {e:#}");
        }
    }

    /// Retries softwires whose start failed, once their wait is over.
    pub(super) async fn retry_softwires(&mut self) {
        let now = Instant::now();
        let due = self
            .softwires
            .list
            .iter()
            .any(|r| r.failed.as_ref().is_some_and(|(_, at)| now >= *at));
        if due {
            self.follow_softwires().await;
        }
    }

    /// Lowers every softwire with the facts of now; (re)builds those whose tunnel differs.
    pub(super) async fn follow_softwires(&mut self) {
        let now = Instant::now();
        let mut touched = false;
        for i in 0..self.softwires.list.len() {
            let sw = self.softwires.list[i].sw.clone();
            let wanted = match self.softwire_facts(&sw).await {
                Ok(facts) => lower(&sw, &facts).map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            let r = &mut self.softwires.list[i];
            let lowered = match wanted {
                Ok(l) => named_aftr(&sw, l),
                Err(why) => {
                    // A running softwire keeps what it has until a new prefix or address
                    // comes (a re-delegation may withdraw the old one first).
                    if r.current.is_none() && r.waiting.as_deref() != Some(why.as_str()) {
                        warn!(tunnel = %sw.name, "waiting: {why}");
                        r.waiting = Some(why);
                    }
                    continue;
                }
            };
            if r.current.as_ref() == Some(&lowered) {
                continue;
            }
            if let Some((tried, at)) = &r.failed
                && *tried == lowered
                && now < *at
            {
                continue;
            }
            if let Some(old) = r.current.take() {
                info!(tunnel = %sw.name, "its prefix or addresses changed: rebuilding");
                self.unfollow(&sw.name);
                self.remove_softwire_tunnel(&sw.name, Some(&old)).await;
            }
            touched = true;
            self.softwires.list[i].starting = Some(lowered.clone());
            let result = self.start_softwire(&sw, &lowered).await;
            let r = &mut self.softwires.list[i];
            r.starting = None;
            match result {
                Ok(()) => {
                    r.current = Some(lowered);
                    r.failed = None;
                    r.waiting = None;
                }
                Err(e) => {
                    let why = format!("{e:#}; trying again in {}s", RETRY.as_secs());
                    warn!(tunnel = %sw.name, "{why}");
                    r.waiting = Some(why);
                    r.failed = Some((lowered, now + RETRY));
                }
            }
        }
        if touched {
            // The NAPT follows the shared address and port set.
            self.refresh_firewall().await;
        }
    }

    /// Removes a softwire's tunnel. A MAP-E CE on the kernel path translated with `snat`, which
    /// the kernel does not forget with a device as it does masquerading: its flows are
    /// forgotten here, so that none keeps the old shared address or a port of the old set
    /// (another CE's now) after a re-delegation, a reload or a stop.
    async fn remove_softwire_tunnel(&mut self, name: &str, current: Option<&Lowered>) {
        let kernel = self.on_kernel_path(name);
        self.remove_tunnel(name).await;
        let Some((_, map)) = current.and_then(|l| l.map.as_ref()) else {
            return;
        };
        if !kernel {
            return;
        }
        // Blocking, but short: one dump of the IPv4 entries, one delete per flow of the CE.
        match sys::conntrack::forget_replies_to(map.ipv4) {
            Ok(0) => {}
            Ok(n) => info!(tunnel = %name, "forgot {n} translated flows to {}", map.ipv4),
            Err(e) => warn!(tunnel = %name, "forgetting the NAPT's flows: {e}"),
        }
    }

    /// Whether the tunnel called `name` is a softwire's.
    pub(super) fn is_softwire(&self, name: &str) -> bool {
        self.softwires.has(name)
    }

    /// The `softwires` section of status, `None` without softwires.
    pub(super) fn softwire_status(&self) -> Option<Vec<SoftwireStatus>> {
        if self.softwires.list.is_empty() {
            return None;
        }
        let conntrack = read_bounded("/proc/net/nf_conntrack");
        let failed = read_bounded("/proc/net/stat/nf_conntrack")
            .as_deref()
            .and_then(status::insert_failed);
        let list = self.softwires.list.iter().map(|r| {
            let mut s = SoftwireStatus {
                name: r.sw.name.clone(),
                mode: r.sw.kind.mode().to_owned(),
                state: if r.current.is_some() {
                    "running"
                } else {
                    "waiting"
                }
                .to_owned(),
                reason: r.current.is_none().then(|| r.waiting.clone()).flatten(),
                ..SoftwireStatus::default()
            };
            if let Some((_, map)) = r.current.as_ref().and_then(|l| l.map.as_ref()) {
                let ranges: Vec<_> = map.ports.ranges().collect();
                s.ipv4 = Some(map.ipv4.to_string());
                s.psid = Some(map.ports.psid());
                s.psid_len = Some(map.ports.psid_len());
                s.ports = ranges.iter().map(|r| [*r.start(), *r.end()]).collect();
                s.map_address = Some(map.map_address.to_string());
                s.br = Some(map.br.to_string());
                s.napt_ports_total = Some(map.ports.len());
                s.napt_ports_in_use = Some(
                    conntrack
                        .as_deref()
                        .map_or(0, |c| status::ports_in_use(c, map.ipv4, &ranges)),
                );
                s.napt_exhausted = Some(failed.unwrap_or(0));
            }
            s
        });
        Some(list.collect())
    }

    /// The realm of the kernel-path routes of tunnel `name`, when it is a softwire's.
    pub(super) fn kernel_realm(&self, name: &str) -> Option<u16> {
        self.softwires
            .list
            .iter()
            .find(|r| r.sw.name == name)
            .map(|r| r.realm)
    }

    /// Points `lookup` at the softwire's device when it found a softwire's kernel-path route:
    /// another tunnel's remote behind a softwire is pinned through that device, as on the TUN
    /// dataplane. The kernel-path route leads to the underlay via an IPv6 next hop, which no
    /// pin to an IPv4 remote could name, and there the NAPT translates what leaves through the
    /// device.
    pub(super) fn through_softwire(&self, lookup: &mut RouteLookup) {
        let Some(realm) = lookup.realm else {
            return;
        };
        let Some(r) = self.softwires.list.iter().find(|r| r.realm == realm) else {
            return;
        };
        if !self.on_kernel_path(&r.sw.name) {
            return;
        }
        let device = self
            .tunnels
            .iter()
            .find(|t| t.config.name == r.sw.name)
            .and_then(|t| t.ifindexes.first().copied());
        if let Some(device) = device {
            lookup.oif = Some(device);
            lookup.gateway = None;
        }
    }

    /// The port-restricted NAPT of every running MAP-E softwire, and of the one starting. The
    /// realm is matched for a CE on the kernel path and for one starting that may take it.
    pub(super) fn softwire_napts(&self) -> Vec<Napt> {
        self.softwires
            .list
            .iter()
            .filter_map(|r| {
                let (lowered, kernel) = match (&r.current, &r.starting) {
                    (_, Some(starting)) => (
                        starting,
                        starting.tunnel.dataplane != control::Dataplane::Userspace,
                    ),
                    (Some(current), None) => (current, self.on_kernel_path(&r.sw.name)),
                    (None, None) => return None,
                };
                let (_, map) = lowered.map.as_ref()?;
                Some(Napt {
                    tunnel: r.sw.name.clone(),
                    device: lowered.tunnel.device.clone(),
                    ipv4: map.ipv4,
                    ports: map
                        .ports
                        .ranges()
                        .map(|p| PortRange {
                            first: *p.start(),
                            last: *p.end(),
                        })
                        .collect(),
                    realm: kernel.then_some(r.realm),
                })
            })
            .collect()
    }

    /// The MAP address first (the tunnel sends from it), then the tunnel.
    async fn start_softwire(&mut self, sw: &Softwire, lowered: &Lowered) -> anyhow::Result<()> {
        let mut objects = Vec::new();
        if let Some((device, address)) = &lowered.wan_address {
            let ifindex = link_index(device)
                .ok_or_else(|| anyhow::anyhow!("device_prefix: no device {device}"))?;
            objects.push(Object::Address {
                ifindex,
                device: device.clone(),
                net: IpNet::V6(Ipv6Net::new(*address, 128).expect("/128 is a prefix length")),
            });
        }
        let changes = self.host.set(&owner(&sw.name), objects).await?;
        for line in &changes.added {
            info!(tunnel = %sw.name, "{line}");
        }
        if lowered.map.is_some() && lowered.tunnel.dataplane != control::Dataplane::Userspace {
            // Translated from the first packet the kernel-path routes carry.
            self.refresh_firewall().await;
        }
        if let Some((_, map)) = &lowered.map {
            info!(
                tunnel = %sw.name,
                "MAP-E: {} PSID {} ({} ports), MAP address {}, BR {}",
                map.ipv4,
                map.ports.psid(),
                map.ports.len(),
                map.map_address,
                map.br
            );
        }
        self.add_tunnel(lowered.tunnel.clone()).await
    }

    /// What the host knows that `sw` needs.
    async fn softwire_facts(&mut self, sw: &Softwire) -> Result<Facts, String> {
        let mut facts = Facts::default();
        match &sw.kind {
            SoftwireKind::MapE(m) => {
                facts.prefix = self.device_prefix(&m.device_prefix).await?;
            }
            SoftwireKind::DsLite(d) => {
                let towards = match &d.aftr {
                    Aftr::Address(a) => *a,
                    Aftr::Name(_) => {
                        facts.aftr = Some(Ipv6Addr::UNSPECIFIED);
                        match probe_address(&"::/0".parse().expect("a prefix")) {
                            IpAddr::V6(a) => a,
                            IpAddr::V4(_) => unreachable!("an IPv6 probe"),
                        }
                    }
                };
                if d.local.is_none() {
                    facts.wan_address = self.b4_source(towards).await?;
                }
            }
        }
        Ok(facts)
    }

    /// The address a B4 without `local` sends from towards `towards`: the kernel's choice,
    /// unless that is an address v6gate put there itself (a MAP-E CE's /128 on the same
    /// device, which no AFTR accepts), then the host's own address on that device.
    async fn b4_source(&mut self, towards: Ipv6Addr) -> Result<Option<Ipv6Addr>, String> {
        let lookup = self
            .netlink
            .route_get(IpAddr::V6(towards), Some(LOOKUP_MARK))
            .await
            .map_err(|e| e.to_string())?;
        let kernel = match lookup.prefsrc {
            Some(IpAddr::V6(a)) => Some(a),
            _ => None,
        };
        let ours: Vec<Ipv6Addr> = self
            .host
            .addresses()
            .filter_map(|a| match a {
                IpAddr::V6(v6) => Some(v6),
                IpAddr::V4(_) => None,
            })
            .collect();
        if kernel.is_some_and(|a| !ours.contains(&a)) {
            return Ok(kernel);
        }
        let Some(index) = lookup.oif else {
            return Ok(None);
        };
        let list = self
            .address_reader()?
            .addresses(index)
            .await
            .map_err(|e| format!("reading the addresses of device {index}: {e}"))?;
        Ok(b4_source(kernel, &list, &ours))
    }

    /// The reader of device addresses, opened on first use.
    fn address_reader(&mut self) -> Result<&AddressReader, String> {
        if self.softwires.reader.is_none() {
            let reader = AddressReader::new().map_err(|e| format!("reading addresses: {e}"))?;
            self.softwires.reader = Some(reader);
        }
        Ok(self.softwires.reader.as_ref().expect("set above"))
    }

    /// The prefix of `device`'s first usable global IPv6 address that is not a host address
    /// (so not a MAP address of ours). A deprecated address is passed over: on a
    /// re-delegation the old prefix lingers deprecated while the new one is preferred.
    async fn device_prefix(&mut self, device: &str) -> Result<Option<Ipv6Net>, String> {
        let reader = self.address_reader()?;
        let index = reader
            .link_index(device)
            .await
            .map_err(|e| format!("looking up {device}: {e}"))?
            .ok_or_else(|| format!("no device {device}"))?;
        let list = reader
            .addresses(index)
            .await
            .map_err(|e| format!("reading the addresses of {device}: {e}"))?;
        Ok(list.iter().find_map(|a| match a.addr {
            IpAddr::V6(v6) if a.prefix_len < 128 && host_address(a).is_publishable() => {
                Ipv6Net::new(v6, a.prefix_len).ok().map(|n| n.trunc())
            }
            _ => None,
        }))
    }
}

/// At most [`status::CONNTRACK_READ_LIMIT`] bytes of a `/proc` file, `None` when unreadable.
fn read_bounded(path: &str) -> Option<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(status::CONNTRACK_READ_LIMIT as u64)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// A B4's source address: the kernel's choice `kernel` unless it is one of `ours` (addresses
/// v6gate added), else the address DDNS would publish for the device the AFTR is reached
/// through, leaving ours out (a stable one before a temporary one).
fn b4_source(
    kernel: Option<Ipv6Addr>,
    device: &[DeviceAddress],
    ours: &[Ipv6Addr],
) -> Option<Ipv6Addr> {
    if let Some(a) = kernel
        && !ours.contains(&a)
    {
        return Some(a);
    }
    let candidates: Vec<HostAddress> = device
        .iter()
        .filter(|a| !matches!(a.addr, IpAddr::V6(v6) if ours.contains(&v6)))
        .map(host_address)
        .collect();
    match select(&candidates, Family::Ipv6, Select::Any) {
        Some(IpAddr::V6(a)) => Some(a),
        _ => None,
    }
}

/// A DS-Lite tunnel whose AFTR is a name: its one path's remote is that name, for the names
/// machinery to resolve and follow.
fn named_aftr(sw: &Softwire, mut lowered: Lowered) -> Lowered {
    if let SoftwireKind::DsLite(d) = &sw.kind
        && let Aftr::Name(name) = &d.aftr
    {
        let path = &mut lowered.tunnel.paths[0];
        path.remote_name = Some(name.clone());
        path.remote = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    }
    lowered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn on_device(addr: &str, prefix_len: u8) -> DeviceAddress {
        DeviceAddress {
            index: 2,
            addr: IpAddr::V6(v6(addr)),
            prefix_len,
            global: true,
            temporary: false,
            deprecated: false,
            tentative: false,
            preferred: None,
            created: 0,
        }
    }

    const MAP: &str = "2001:db8:0:1:c6:1208:100:100";
    const HOST: &str = "2001:db8:0:1::1";

    #[test]
    fn the_kernel_choice_stands_when_it_is_the_hosts_own() {
        let device = [on_device(MAP, 128), on_device(HOST, 64)];
        let chosen = b4_source(Some(v6("2001:db8:0:1::7")), &device, &[v6(MAP)]);
        assert_eq!(chosen, Some(v6("2001:db8:0:1::7")));
    }

    #[test]
    fn a_map_address_of_ours_gives_way_to_the_hosts_address() {
        let device = [on_device(MAP, 128), on_device(HOST, 64)];
        let chosen = b4_source(Some(v6(MAP)), &device, &[v6(MAP)]);
        assert_eq!(chosen, Some(v6(HOST)));
    }

    #[test]
    fn deprecated_tentative_link_local_and_temporary_addresses_come_last_or_never() {
        let mut deprecated = on_device("2001:db8:0:1::2", 64);
        deprecated.deprecated = true;
        let mut tentative = on_device("2001:db8:0:1::3", 64);
        tentative.tentative = true;
        let mut link_local = on_device("fe80::1", 64);
        link_local.global = false;
        let mut temporary = on_device("2001:db8:0:1:aaaa::1", 64);
        temporary.temporary = true;
        let stable = on_device(HOST, 64);
        let ours = [v6(MAP)];
        let device = [
            on_device(MAP, 128),
            deprecated,
            tentative,
            link_local,
            temporary,
            stable,
        ];
        assert_eq!(b4_source(Some(v6(MAP)), &device, &ours), Some(v6(HOST)));
        assert_eq!(
            b4_source(None, &device[..5], &ours),
            Some(v6("2001:db8:0:1:aaaa::1"))
        );
        assert_eq!(b4_source(Some(v6(MAP)), &device[..4], &ours), None);
    }
}

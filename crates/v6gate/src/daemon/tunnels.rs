//! Tunnels on the host: pin their endpoints, create and configure their devices, hand them to
//! the packet thread, and describe everything they need as objects of the host state.
//!
//! Order of set-up (undone whole when a step fails, so a config is never half-applied): for
//! every path, check its local address and decide its pin; install the tunnel's pin objects
//! (pin route, loop guard, the family's pin rule); create the TUN device(s), set MTU and
//! per-device sysctls, bring them up; install the addresses and inner routes; hand the devices
//! to the packet thread. An ipsec tunnel then starts its IKE tasks, one per path.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::{Context, bail};
use control::Tunnel;
use sys::netlink::{Family, Route, RouteKind, Rule};
use sys::tun::TunDevice;
use tracing::{info, warn};

use super::host::{Changes, Object};
use super::ipsec::{IkeSockets, IpsecTunnel};
use super::packet::{EspLinks, TunnelDevice};
use super::pin::{self, Decision, Facts, Pin};
use super::{
    Daemon, LOOKUP_MARK, MAIN_TABLE, PathRuntime, ROUTE_PROTOCOL, TUN_TXQUEUELEN, TunnelRuntime,
    link_name, probe_address, tun_options, wait_for_local_address,
};

/// Metric of the loop guard: the last resort for the remote's address.
const GUARD_METRIC: u32 = u32::MAX;

/// The host-state owner name of a tunnel's objects.
pub(super) fn owner(name: &str) -> String {
    format!("tunnel {name}")
}

impl Daemon {
    pub(super) async fn add_tunnel(&mut self, tunnel: Tunnel) -> anyhow::Result<()> {
        // Ends given by name or device: started with their addresses once they are known.
        if !tunnel.paths.iter().all(control::Path::is_resolved) {
            return Box::pin(self.follow_tunnel(tunnel)).await;
        }
        match self.try_add_tunnel(&tunnel).await {
            Ok(runtime) => {
                let paths: Vec<String> = tunnel
                    .paths
                    .iter()
                    .map(|p| format!("{} {} -> {} cost {}", p.name, p.local, p.remote, p.cost))
                    .collect();
                info!(
                    tunnel = %tunnel.name,
                    "up: {} on {}, mtu {}, {} route(s); path(s): {}",
                    tunnel.mode,
                    tunnel.devices().join(", "),
                    runtime.mtu,
                    runtime.config.routes.len(),
                    paths.join("; ")
                );
                self.tunnels.push(runtime);
                Ok(())
            }
            Err(e) => {
                // Routes and addresses go before the devices they use close.
                if let Err(undo) = self.host.set(&owner(&tunnel.name), Vec::new()).await {
                    warn!(tunnel = %tunnel.name, "undoing: {undo:#}");
                }
                Err(e.context(format!("tunnel {}", tunnel.name)))
            }
        }
    }

    async fn try_add_tunnel(&mut self, t: &Tunnel) -> anyhow::Result<TunnelRuntime> {
        let gateway = self.config.gateway.clone();
        let mut paths = Vec::new();
        let mut underlay_mtus = HashMap::new();
        for path in &t.paths {
            wait_for_local_address(path.local)
                .await
                .with_context(|| format!("path {}", path.name))?;
            let remote = path.remote;
            let pin = match self.decide_pin(remote).await? {
                Decision::Pin(pin) => pin,
                Decision::Loop { through } => bail!(
                    "path {}: routing loop: the remote endpoint {remote} is reachable only \
                     through v6gate tunnel device {}; it must be reachable over the underlay \
                     (check the routes of the other tunnels and the main table)",
                    path.name,
                    link_name(through).unwrap_or_else(|| through.to_string())
                ),
            };
            if pin == Pin::Blackhole {
                warn!(
                    tunnel = %t.name,
                    path = %path.name,
                    "no underlay route to {remote} yet: endpoint blackholed until one appears"
                );
            }
            let underlay_mtu = match pin {
                Pin::Via { oif, .. } => self
                    .netlink
                    .link_mtu(oif)
                    .await
                    .ok()
                    .and_then(|m| u16::try_from(m).ok())
                    .unwrap_or(1500),
                Pin::Blackhole => 1500,
            };
            underlay_mtus.insert(path.name.clone(), underlay_mtu);
            paths.push(PathRuntime {
                remote,
                pin,
                pin_route: pin::route(remote, pin, gateway.pin_table, ROUTE_PROTOCOL),
            });
        }
        let owner = owner(&t.name);
        self.host
            .set(&owner, self.pin_objects(&paths))
            .await
            .context("pinning the endpoints")?;

        let plan = control::tunnel_plan(&gateway, t, |p| {
            underlay_mtus.get(&p.name).copied().unwrap_or(1500)
        });
        let mut devices = Vec::new();
        let mut ifindexes = Vec::new();
        let mut mtu = u16::MAX;
        for device in &plan.devices {
            // Offloads let one read carry up to 64 KiB of a TCP flow (the packet thread splits
            // it) instead of one packet per system call.
            let tun = TunDevice::create_with(&device.name, tun_options())
                .with_context(|| format!("creating TUN device {}", device.name))?;
            let ifindex = tun.index();
            // The device must be here until the objects that use it are gone again.
            let path = if t.device_per_path {
                plan.paths
                    .iter()
                    .position(|p| p.device == device.name)
                    .and_then(|i| u8::try_from(i).ok())
                    .map(dataplane::PathId)
            } else {
                None
            };
            devices.push(TunnelDevice { path, tun });
            ifindexes.push(ifindex);
            self.configure_device(device, ifindex).await?;
            mtu = mtu.min(device.mtu);
        }
        let objects = self.tunnel_objects(&paths, &plan, &ifindexes);
        if let Err(e) = self.host.set(&owner, objects).await {
            // Remove the objects while the devices they use still exist.
            let _ = self.host.set(&owner, Vec::new()).await;
            drop(devices);
            return Err(e);
        }

        let dp_config = self.dataplane_config(t, mtu).await;
        let started = if t.ipsec.is_some() {
            // With a device per path, each path's packets fit its own device's MTU.
            let path_mtus = plan
                .paths
                .iter()
                .map(|p| {
                    plan.devices
                        .iter()
                        .find(|d| t.device_per_path && d.name == p.device)
                        .map_or(dp_config.mtu, |d| d.mtu)
                })
                .collect();
            self.start_ipsec(t, dp_config, devices, path_mtus).await
        } else {
            self.datapath
                .add_tunnel(dp_config, devices)
                .await
                .map(|id| (id, Vec::new()))
        };
        let (id, ipsec) = match started {
            Ok(started) => started,
            Err(e) => {
                // The devices are closed by now; their routes and addresses went with them.
                let _ = self.host.set(&owner, Vec::new()).await;
                return Err(e);
            }
        };
        let dataplane = match self.choose_dataplane(t, &paths, mtu).await {
            Ok(chosen) => chosen,
            Err(e) => {
                if let Err(undo) = self.datapath.remove_tunnel(id).await {
                    warn!(tunnel = %t.name, "undoing: {undo:#}");
                }
                let _ = self.host.set(&owner, Vec::new()).await;
                return Err(e);
            }
        };
        Ok(TunnelRuntime {
            dataplane,
            config: t.clone(),
            id,
            ifindexes,
            device_mtus: plan.devices.iter().map(|d| d.mtu).collect(),
            paths,
            mtu,
            ipsec,
        })
    }

    /// The pin route of every path, a loop guard for its remote, and the pin rule of its
    /// family.
    ///
    /// The guard is a blackhole host route for the remote in the main table at the largest
    /// metric: while the pin route or the pin rule is missing (deleted by someone, about to be
    /// repaired), the remote's outer packets hit the guard rather than any route through a
    /// tunnel, which would make the tunnel carry itself (scenario S0).
    fn pin_objects(&self, paths: &[PathRuntime]) -> Vec<Object> {
        let mut objects = Vec::new();
        for p in paths {
            objects.push(Object::Route(p.pin_route.clone()));
            objects.push(Object::Route(Route {
                dst: p.pin_route.dst,
                table: MAIN_TABLE,
                protocol: ROUTE_PROTOCOL,
                metric: Some(GUARD_METRIC),
                oif: None,
                gateway: None,
                kind: RouteKind::Blackhole,
                mtu: None,
                prefsrc: None,
                realm: None,
            }));
            objects.push(Object::Rule(self.pin_rule(Family::of(p.remote))));
        }
        objects
    }

    /// Everything the tunnel holds on the host, in the order it is installed.
    fn tunnel_objects(
        &self,
        paths: &[PathRuntime],
        plan: &control::TunnelPlan,
        ifindexes: &[u32],
    ) -> Vec<Object> {
        let mut objects = self.pin_objects(paths);
        for (device, ifindex) in plan.devices.iter().zip(ifindexes) {
            objects.push(Object::Link {
                ifindex: *ifindex,
                device: device.name.clone(),
                mtu: u32::from(device.mtu),
            });
            for net in &device.addresses {
                objects.push(Object::Address {
                    ifindex: *ifindex,
                    device: device.name.clone(),
                    net: *net,
                });
            }
            for planned in &device.routes {
                objects.push(Object::Route(Route {
                    dst: planned.dst,
                    table: planned.table,
                    protocol: ROUTE_PROTOCOL,
                    metric: Some(planned.metric),
                    oif: Some(*ifindex),
                    gateway: None,
                    kind: RouteKind::Unicast,
                    mtu: None,
                    prefsrc: None,
                    realm: None,
                }));
            }
        }
        objects
    }

    /// The tunnel's objects for its current pins and `config`, on its existing devices.
    fn current_objects(&self, t: &TunnelRuntime, config: &Tunnel) -> Vec<Object> {
        let mut plan = control::tunnel_plan(&self.config.gateway, config, |_| t.mtu);
        // The MTUs the devices were made with, from the underlay of that moment.
        for (device, mtu) in plan.devices.iter_mut().zip(&t.device_mtus) {
            device.mtu = *mtu;
        }
        self.tunnel_objects(&t.paths, &plan, &t.ifindexes)
    }

    pub(super) fn pin_rule(&self, family: Family) -> Rule {
        Rule {
            family,
            priority: self.config.gateway.pin_rule_priority,
            table: self.config.gateway.pin_table,
            fwmark: Some(LOOKUP_MARK),
            // All bits, the kernel's default, which is how dumps report it.
            fwmask: None,
            invert: true,
            suppress_prefixlen: None,
            from: None,
            to: None,
            iif: None,
        }
    }

    pub(super) async fn remove_tunnel(&mut self, name: &str) {
        let Some(pos) = self.tunnels.iter().position(|t| t.config.name == name) else {
            return;
        };
        let mut t = self.tunnels.remove(pos);
        for ike in std::mem::take(&mut t.ipsec) {
            ike.stop().await;
        }
        let kernel = t.dataplane.take_kernel();
        self.stop_kernel_path(name, kernel).await;
        // Routes and addresses first, while the devices they use exist; then the devices.
        match self.host.set(&owner(name), Vec::new()).await {
            Ok(changes) => info!(tunnel = name, "removed: {}", changes.describe()),
            Err(e) => warn!(tunnel = name, "{e:#}"),
        }
        if let Err(e) = self.datapath.remove_tunnel(t.id).await {
            warn!(tunnel = name, "{e:#}");
        }
    }

    /// Applies a changed config to a running tunnel without touching its devices, when only
    /// what the host state and the core can change in place differs (its `routes`,
    /// `allowed_sources`). Returns `None` when the tunnel must be rebuilt instead.
    pub(super) async fn update_tunnel(&mut self, new: &Tunnel) -> Option<anyhow::Result<Changes>> {
        let pos = self
            .tunnels
            .iter()
            .position(|t| t.config.name == new.name)?;
        let old = &self.tunnels[pos].config;
        let in_place = Tunnel {
            routes: new.routes.clone(),
            allowed_sources: new.allowed_sources.clone(),
            ..old.clone()
        } == *new
            && old.ipsec.is_none()
            && new.ipsec.is_none()
            // Rebuilt, it falls back to the TUN dataplane as it would at start.
            && !self.kernel_update_overlaps(new);
        if !in_place {
            return None;
        }
        let kernel = matches!(self.tunnels[pos].dataplane, super::kpath::Chosen::Kernel(_));
        let objects = self.current_objects(&self.tunnels[pos], new);
        let previous = self.current_objects(&self.tunnels[pos], &self.tunnels[pos].config.clone());
        let owner = owner(&new.name);
        let mut changes = match self.host.set(&owner, objects).await {
            Ok(changes) => changes,
            Err(e) => return Some(Err(e)),
        };
        let mtu = self.tunnels[pos].mtu;
        let id = self.tunnels[pos].id;
        let old = self.tunnels[pos].config.clone();
        let dp_config = self.dataplane_config(new, mtu).await;
        let mut result = self.datapath.update_tunnel(id, dp_config).await;
        if result.is_ok() && kernel {
            match self.update_kernel_path(&old, new, mtu).await {
                Ok(more) => changes.extend(more),
                Err(e) => {
                    let dp_config = self.dataplane_config(&old, mtu).await;
                    if let Err(undo) = self.datapath.update_tunnel(id, dp_config).await {
                        warn!(tunnel = %new.name, "undoing: {undo:#}");
                    }
                    result = Err(e);
                }
            }
        }
        if let Err(e) = result {
            if let Err(undo) = self.host.set(&owner, previous).await {
                warn!(tunnel = %new.name, "undoing: {undo:#}");
            }
            return Some(Err(e));
        }
        self.tunnels[pos].config = new.clone();
        Some(Ok(changes))
    }

    /// The devices an endpoint must not be reached through. A softwire's device is not one:
    /// it is the ISP's IPv4 access, an underlay for IPv4 endpoints, and carries nothing but
    /// IPv4 while its own outer packets are IPv6, so no tunnel's path can loop through it.
    fn own_devices(&self) -> Vec<u32> {
        self.tunnels
            .iter()
            .filter(|t| !self.is_softwire(&t.config.name))
            .flat_map(|t| t.ifindexes.iter().copied())
            .collect()
    }

    pub(super) async fn decide_pin(&self, remote: IpAddr) -> anyhow::Result<Decision> {
        let mut lookup = self.netlink.route_get(remote, Some(LOOKUP_MARK)).await.ok();
        if let Some(lookup) = lookup.as_mut() {
            self.through_softwire(lookup);
        }
        let main_routes = self
            .netlink
            .routes(Family::of(remote), Some(MAIN_TABLE), None)
            .await
            .context("reading the main routing table")?;
        Ok(pin::decide(
            remote,
            &Facts {
                lookup: lookup.as_ref(),
                main_routes: &main_routes,
                own_devices: &self.own_devices(),
                kernel_routes: &self.kernel_route_facts(),
            },
        ))
    }

    /// Re-decides every pin after the host's routes or links changed, and hands the tunnels
    /// whose pins moved to the host state.
    pub(super) async fn repin(&mut self) {
        for i in 0..self.tunnels.len() {
            let mut moved = false;
            for j in 0..self.tunnels[i].paths.len() {
                let remote = self.tunnels[i].paths[j].remote;
                let decision = match self.decide_pin(remote).await {
                    Ok(d) => d,
                    Err(e) => {
                        warn!("re-checking pins: {e:#}");
                        return;
                    }
                };
                let wanted = match decision {
                    Decision::Pin(pin) => pin,
                    Decision::Loop { .. } => Pin::Blackhole,
                };
                let current = self.tunnels[i].paths[j].pin;
                if wanted == current {
                    continue;
                }
                info!(
                    tunnel = %self.tunnels[i].config.name,
                    "underlay changed: endpoint {remote} re-pinned {} -> {}",
                    describe_pin(current),
                    describe_pin(wanted)
                );
                let table = self.config.gateway.pin_table;
                let p = &mut self.tunnels[i].paths[j];
                p.pin = wanted;
                p.pin_route = pin::route(remote, wanted, table, ROUTE_PROTOCOL);
                moved = true;
            }
            if moved {
                let t = &self.tunnels[i];
                let objects = self.current_objects(t, &t.config);
                let name = t.config.name.clone();
                if let Err(e) = self.host.set(&owner(&name), objects).await {
                    warn!(tunnel = %name, "re-pinning: {e:#}");
                }
            }
        }
    }

    /// The ipsec tunnel's ESP cores in the packet thread, then one IKE task per path. Nothing
    /// may be awaited between starting the tasks and handing the cores over: the first SA
    /// change must find the cores there.
    pub(super) async fn start_ipsec(
        &mut self,
        t: &Tunnel,
        dp: dataplane::TunnelConfig,
        tuns: Vec<TunnelDevice>,
        path_mtus: Vec<u16>,
    ) -> anyhow::Result<(dataplane::TunnelId, Vec<IpsecTunnel>)> {
        if t.paths.is_empty() {
            bail!("an ipsec tunnel needs its local and remote");
        }
        let mut sockets = Vec::new();
        for path in &t.paths {
            let s = match self.ike_sockets.get(&path.local) {
                Some(s) => s.clone(),
                None => {
                    let s = IkeSockets::bind(path.local).await?;
                    self.ike_sockets.insert(path.local, s.clone());
                    s
                }
            };
            sockets.push(s);
        }
        let paths: Vec<dataplane::esp::EspPathConfig> = t
            .paths
            .iter()
            .zip(path_mtus)
            .map(|(path, mtu)| dataplane::esp::EspPathConfig {
                name: path.name.clone(),
                cost: path.cost,
                probed: path.probe != control::Probe::None,
                esp: dataplane::esp::EspTunnelConfig {
                    local: path.local,
                    remote: path.remote,
                    local_subnets: t.local_subnets.clone(),
                    routes: t.routes.clone(),
                    allowed_sources: dp.allowed_sources.clone(),
                    mtu,
                    mss_clamp: dp.mss_clamp,
                    hop_limit: dp.hop_limit,
                    icmp_source_v4: dp.icmp_source_v4,
                    icmp_source_v6: dp.icmp_source_v6,
                },
            })
            .collect();
        let mut ikes: Vec<IpsecTunnel> = Vec::new();
        let mut links = Vec::new();
        for (i, s) in sockets.iter().enumerate() {
            match IpsecTunnel::start(t, i, s, self.datapath.sa_inbox()) {
                Ok(ike) => {
                    links.push(EspLinks {
                        udp: s.esp_socket(),
                        ike: s.ike_from_4500(),
                        liveness: ike.liveness(),
                        unknown_spi: ike.unknown_spi(),
                    });
                    ikes.push(ike);
                }
                Err(e) => {
                    for ike in ikes {
                        ike.stop().await;
                    }
                    return Err(e);
                }
            }
        }
        match self
            .datapath
            .add_esp_tunnel(&t.name, dp.health, paths, tuns, links)
            .await
        {
            Ok(id) => Ok((id, ikes)),
            Err(e) => {
                for ike in ikes {
                    ike.stop().await;
                }
                Err(e)
            }
        }
    }

    async fn configure_device(
        &mut self,
        plan: &control::DevicePlan,
        ifindex: u32,
    ) -> anyhow::Result<()> {
        let dev = &plan.name;
        // Per-device sysctls vanish with the device, so they need no journal.
        for change in &plan.sysctls {
            sys::sysctl::write(&change.key, &change.value)
                .with_context(|| format!("setting sysctl {} on {dev}", change.key))?;
        }
        self.netlink
            .link_set_mtu(ifindex, u32::from(plan.mtu))
            .await
            .with_context(|| format!("setting mtu {} on {dev}", plan.mtu))?;
        // The kernel drops what the packet thread has not read once this queue is full; at
        // Linux's default of 500 a single TCP flow loses packets to every scheduling hiccup
        // (1,434 retransmits in 4 s in the lab), at 1,000 none.
        self.netlink
            .link_set_txqueuelen(ifindex, TUN_TXQUEUELEN)
            .await
            .with_context(|| format!("setting txqueuelen on {dev}"))?;
        self.netlink
            .link_set_up(ifindex)
            .await
            .with_context(|| format!("bringing {dev} up"))?;
        Ok(())
    }

    /// Source addresses for the ICMP errors the core generates toward LAN hosts: the tunnel's
    /// own address if it has one, else the address the kernel would pick toward the tunnel.
    async fn dataplane_config(&self, t: &Tunnel, mtu: u16) -> dataplane::TunnelConfig {
        let mut icmp_v4 = t.addresses.iter().find_map(|a| match a.addr() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        });
        let mut icmp_v6 = t.addresses.iter().find_map(|a| match a.addr() {
            IpAddr::V6(v6) if !v6.is_unicast_link_local() => Some(v6),
            _ => None,
        });
        for route in &t.routes {
            let probe = probe_address(route);
            let Ok(lookup) = self.netlink.route_get(probe, None).await else {
                continue;
            };
            match lookup.prefsrc {
                Some(IpAddr::V4(src)) if icmp_v4.is_none() => icmp_v4 = Some(src),
                Some(IpAddr::V6(src)) if icmp_v6.is_none() => icmp_v6 = Some(src),
                _ => {}
            }
        }
        super::convert::dataplane_config(t, mtu, icmp_v4, icmp_v6)
    }
}

fn describe_pin(pin: Pin) -> String {
    match pin {
        Pin::Via { oif, gateway } => {
            let dev = link_name(oif).unwrap_or_else(|| format!("if{oif}"));
            match gateway {
                Some(gw) => format!("via {gw} dev {dev}"),
                None => format!("dev {dev}"),
            }
        }
        Pin::Blackhole => "blackhole".to_string(),
    }
}

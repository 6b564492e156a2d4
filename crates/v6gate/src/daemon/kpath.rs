//! The kernel path of a tunnel in the daemon: tc-BPF programs on the underlay device of the
//! tunnel's path that encapsulate and decapsulate, and inner routes that send the tunnel's
//! prefixes straight to that device (`via inet6 <next hop> dev <underlay> src <tunnel address>
//! mtu <MTU>`, `src` when the tunnel has an address of the family), so TCP
//! super-packets cross the underlay whole.
//!
//! The TUN dataplane of the tunnel keeps running beside it: its routes stay, one metric
//! behind, and it gets whatever the programs pass on (probes and their replies, fragments,
//! unusual headers, ICMP errors). The programs (one object per device and hook) and the
//! routes are objects of the host-state owner under their own owner name, so stop, reload,
//! repair and crash take-over treat them like any other object. The programs hang off tcx
//! links, which belong to this process: they go when it stops, however it stops; on kernels
//! before 6.6 they are `clsact` filters, which the journal lets the next start remove.
//! `mss_clamp` is done by nftables rules in the instance's clamping table
//! (`control::firewall::kernel_mss`, set in `kpath_mss.rs`) before the routes lead to the
//! underlay. A reload that changes only a tunnel's `routes` or `allowed_sources` changes its
//! maps, routes and clamping in place.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ::kpath::{Hook, KernelPath, Spec};
use anyhow::{Context, anyhow};
use control::firewall::kernel_mss::{KernelMss, KernelMssSize};
use control::{Dataplane, Tunnel};
use sys::netlink::{Route, RouteKind};
use tracing::{info, warn};

use super::host::program::Program;
use super::host::{Changes, Object};
use super::pin::Pin;
use super::{Daemon, PathRuntime, ROUTE_PROTOCOL, link_name};
use crate::kpath_status::{DataplaneStatus, KernelPathStatus};

/// One tunnel's programs, attached.
pub(super) struct KernelTunnel {
    /// One copy of the programs per underlay device a path leaves on, each holding every
    /// path, so that failover is a map update on each and the routes' move.
    /// Attached through the host-state owner: each device's two programs are objects of
    /// the tunnel's kernel-path owner name, with the routes.
    attached: Vec<(String, Shared)>,
    spec: Spec,
    /// The path the routes and the programs send on, and its device.
    active: usize,
    device: String,
    oif: u32,
    next_hop: IpAddr,
    /// The MTU of the inner routes: the tunnel MTU, or less once the underlay said so.
    route_mtu: u16,
    /// The realm of the inner routes: a softwire's, which a MAP-E CE's NAPT matches.
    realm: Option<u16>,
    /// The inner routes are off the host because the active path's underlay is gone (its
    /// pin a blackhole): the programs stay, and the tunnel's traffic meets the TUN
    /// dataplane's blackholed pin, as without the kernel path.
    withdrawn: bool,
    /// The programs' receive count when the daemon last looked, and when it last saw it grow.
    heard: Mutex<Heard>,
}

#[derive(Debug, Default)]
struct Heard {
    rx_packets: u64,
    at: Option<Instant>,
}

/// One device's loaded programs, shared with the host-state objects that attach them.
type Shared = Arc<Mutex<KernelPath>>;

/// What a tunnel runs on: the kernel path, or the TUN dataplane and why.
pub(super) enum Chosen {
    Kernel(Box<KernelTunnel>),
    Userspace { fallback: Option<String> },
}

/// The host-state owner name of a tunnel's kernel-path routes.
pub(super) fn owner(name: &str) -> String {
    format!("kernel path {name}")
}

impl Daemon {
    /// Puts `t` on the kernel path when its `dataplane` asks for it and the host allows it.
    /// With `kernel`, a failure is the tunnel's failure; with `auto`, it is logged and the
    /// TUN dataplane carries the tunnel alone.
    pub(super) async fn choose_dataplane(
        &mut self,
        t: &Tunnel,
        paths: &[PathRuntime],
        mtu: u16,
    ) -> anyhow::Result<Chosen> {
        if t.dataplane == Dataplane::Userspace || t.ipsec.is_some() {
            return Ok(Chosen::Userspace { fallback: None });
        }
        match self.start_kernel_path(t, paths, mtu).await {
            Ok(kernel) => {
                info!(
                    tunnel = %t.name,
                    "dataplane: kernel (tc-BPF on {}), the TUN device takes what it passes on",
                    kernel.device
                );
                Ok(Chosen::Kernel(Box::new(kernel)))
            }
            Err(e) if t.dataplane == Dataplane::Auto => {
                let _ = self.host.set(&owner(&t.name), Vec::new()).await;
                let _ = self.set_kernel_mss(None).await;
                warn!(tunnel = %t.name, "dataplane: userspace; kernel path not used: {e:#}");
                Ok(Chosen::Userspace {
                    fallback: Some(format!("{e:#}")),
                })
            }
            Err(e) => {
                let _ = self.host.set(&owner(&t.name), Vec::new()).await;
                let _ = self.set_kernel_mss(None).await;
                Err(e.context("dataplane = \"kernel\""))
            }
        }
    }

    async fn start_kernel_path(
        &mut self,
        t: &Tunnel,
        paths: &[PathRuntime],
        mtu: u16,
    ) -> anyhow::Result<KernelTunnel> {
        let (active, oif, next_hop) = paths
            .iter()
            .enumerate()
            .find_map(|(i, p)| match p.pin {
                Pin::Via { oif, gateway } => Some((i, oif, gateway.unwrap_or(p.remote))),
                Pin::Blackhole => None,
            })
            .ok_or_else(|| anyhow!("no path has an underlay route yet"))?;
        let config = super::convert::dataplane_config(t, mtu, None, None);
        let mut spec = Spec::from_config(&config);
        spec.active = active;
        let mut attached: Vec<(String, Shared)> = Vec::new();
        for p in paths {
            let Pin::Via { oif, .. } = p.pin else {
                continue;
            };
            let device = link_name(oif).ok_or_else(|| anyhow!("underlay device #{oif} is gone"))?;
            if !attached.iter().any(|(d, _)| *d == device) {
                let path = KernelPath::load(&spec).context("loading the BPF programs")?;
                attached.push((device, Arc::new(Mutex::new(path))));
            }
        }
        let device = link_name(oif).ok_or_else(|| anyhow!("underlay device #{oif} is gone"))?;
        if let Some(other) = self.kernel_overlap(t, &attached) {
            anyhow::bail!(
                "tunnel {other} is on the kernel path of the same underlay device with \
                 overlapping routes; its programs would take this tunnel's packets"
            );
        }
        let realm = self.kernel_realm(&t.name);
        let metric = self.config.gateway.route_metric;
        let routes = kernel_routes(t, oif, next_hop, mtu, metric, realm);
        if routes.is_empty() {
            anyhow::bail!("no inner route can go via the underlay next hop {next_hop}");
        }
        // Before the routes, so that no SYN takes the kernel path unclamped.
        let devices = attached.iter().map(|(d, _)| d.clone()).collect();
        self.set_kernel_mss(clamp_of(t, devices, next_hop, mtu, &spec))
            .await
            .context("MSS clamping on the kernel path (nftables)")?;
        self.host
            .set(&owner(&t.name), kernel_objects(&t.name, &attached, routes))
            .await
            .context("attaching the programs and routing the tunnel's prefixes to the underlay")?;
        Ok(KernelTunnel {
            attached,
            spec,
            active,
            device,
            oif,
            next_hop,
            route_mtu: mtu,
            realm,
            withdrawn: false,
            heard: Mutex::default(),
        })
    }

    /// Follows the path changes the packet thread reported for the tunnels `changed` (see
    /// [`Self::follow_kernel_paths`]); nothing to do unless one of them is on the kernel path.
    pub(super) async fn follow_path_changes(&mut self, changed: &[dataplane::TunnelId]) {
        if self
            .tunnels
            .iter()
            .any(|t| matches!(t.dataplane, Chosen::Kernel(_)) && changed.contains(&t.id))
        {
            self.follow_kernel_paths().await;
        }
    }

    /// Brings the kernel path of every tunnel in line with its userspace core, read from one
    /// snapshot, so that a change reported more than once or dropped on the way is followed
    /// once: the programs and routes move to the core's active path (or to where that path's
    /// underlay route moved), and the inner routes' MTU follows the path MTU the core learnt
    /// from the underlay's Packet Too Big (down, and up again when it expires): the programs
    /// do not see the kernel's IPv6 PMTU cache, but the route MTU makes the kernel answer DF
    /// packets that no longer fit.
    pub(super) async fn follow_kernel_paths(&mut self) {
        if !self
            .tunnels
            .iter()
            .any(|t| matches!(t.dataplane, Chosen::Kernel(_)))
        {
            return;
        }
        let snapshot = match self.datapath.snapshot().await {
            Ok(snapshot) => snapshot,
            Err(e) => {
                warn!("kernel path MTU: {e:#}");
                return;
            }
        };
        let metric = self.config.gateway.route_metric;
        let mut updates = Vec::new();
        let mut switches = Vec::new();
        let mut withdrawals = Vec::new();
        for t in &self.tunnels {
            let Chosen::Kernel(k) = &t.dataplane else {
                continue;
            };
            k.last_received();
            let Some(s) = snapshot.tunnels.iter().find(|s| s.id == t.id) else {
                continue;
            };
            let active = s.active_path.map_or(k.active, |p| p.index());
            // The routes lead to the underlay next hop whatever the pin says: without an
            // underlay they would carry on where the TUN dataplane stops.
            let blackholed = t.paths.get(active).is_some_and(|p| p.pin == Pin::Blackhole);
            if blackholed {
                if !k.withdrawn {
                    withdrawals.push(t.config.name.clone());
                }
                continue;
            }
            if k.withdrawn {
                switches.push((t.config.name.clone(), active));
                continue;
            }
            // The active path's underlay route moved (repinned): the routes follow it.
            let moved = t.paths.get(active).is_some_and(|p| match p.pin {
                Pin::Via { oif, gateway } => {
                    (oif, gateway.unwrap_or(p.remote)) != (k.oif, k.next_hop)
                }
                Pin::Blackhole => false,
            });
            if active != k.active || moved {
                switches.push((t.config.name.clone(), active));
                continue;
            }
            let mtu = s.stats.path_mtu.min(t.mtu);
            if mtu != k.route_mtu {
                let routes = kernel_routes(&t.config, k.oif, k.next_hop, mtu, metric, k.realm);
                let objects = kernel_objects(&t.config.name, &k.attached, routes);
                updates.push((t.config.name.clone(), k.route_mtu, mtu, objects));
            }
        }
        for (name, old, mtu, objects) in updates {
            if let Err(e) = self.host.set(&owner(&name), objects).await {
                warn!(tunnel = %name, "kernel path route MTU {old} -> {mtu}: {e:#}");
                continue;
            }
            info!(tunnel = %name, "kernel path: route MTU {old} -> {mtu} (path MTU)");
            if let Some(Chosen::Kernel(k)) = self
                .tunnels
                .iter_mut()
                .find(|t| t.config.name == name)
                .map(|t| &mut t.dataplane)
            {
                k.route_mtu = mtu;
            }
            // SYNs out of the tunnel are clamped to a number derived from the route MTU.
            if let Err(e) = self.set_kernel_mss(None).await {
                warn!(tunnel = %name, "kernel path MSS clamping: {e:#}");
            }
        }
        for name in withdrawals {
            self.withdraw_kernel_routes(&name).await;
        }
        for (name, active) in switches {
            if let Err(e) = self.switch_kernel_path(&name, active).await {
                warn!(tunnel = %name, "kernel path to path {active}: {e:#}");
            }
        }
    }

    /// Takes the inner routes of `name` off the host, keeping its programs, until its active
    /// path has an underlay again ([`Self::switch_kernel_path`] puts them back).
    async fn withdraw_kernel_routes(&mut self, name: &str) {
        let Some(k) = self.kernel_tunnel_mut(name) else {
            return;
        };
        let objects = kernel_objects(name, &k.attached, Vec::new());
        match self.host.set(&owner(name), objects).await {
            Ok(_) => {
                info!(tunnel = %name, "kernel path: routes withdrawn, the active path has no underlay");
                if let Some(k) = self.kernel_tunnel_mut(name) {
                    k.withdrawn = true;
                }
            }
            Err(e) => warn!(tunnel = %name, "kernel path: withdrawing the routes: {e:#}"),
        }
    }

    /// The inner routes of the tunnels on the kernel path, for deciding pins: they lead into
    /// a tunnel as a route into its TUN device does.
    pub(super) fn kernel_route_facts(&self) -> Vec<super::pin::KernelRoute> {
        self.tunnels
            .iter()
            .filter_map(|t| match &t.dataplane {
                Chosen::Kernel(k) if !k.withdrawn => Some((t, k)),
                _ => None,
            })
            .flat_map(|(t, k)| {
                let metric = self.config.gateway.route_metric;
                kernel_routes(&t.config, k.oif, k.next_hop, k.route_mtu, metric, k.realm)
                    .into_iter()
                    .map(|r| super::pin::KernelRoute {
                        dst: r.dst,
                        oif: k.oif,
                        gateway: k.next_hop,
                        device: t.ifindexes.first().copied().unwrap_or(k.oif),
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Follows the userspace core's choice of path: the programs send on `active` from the
    /// next packet on (one map update per device, no reattaching), and the inner routes move
    /// to that path's next hop and device. A device no path left on at start is attached now.
    async fn switch_kernel_path(&mut self, name: &str, active: usize) -> anyhow::Result<()> {
        let metric = self.config.gateway.route_metric;
        let Some(t) = self.tunnels.iter_mut().find(|t| t.config.name == name) else {
            return Ok(());
        };
        let Chosen::Kernel(k) = &mut t.dataplane else {
            return Ok(());
        };
        let path = t
            .paths
            .get(active)
            .ok_or_else(|| anyhow!("no path {active}"))?;
        let Pin::Via { oif, gateway } = path.pin else {
            anyhow::bail!("path {active} has no underlay route");
        };
        let next_hop = gateway.unwrap_or(path.remote);
        let device = link_name(oif).ok_or_else(|| anyhow!("underlay device #{oif} is gone"))?;
        k.spec.active = active;
        if !k.attached.iter().any(|(d, _)| *d == device) {
            let path = KernelPath::load(&k.spec).context("loading the BPF programs")?;
            k.attached
                .push((device.clone(), Arc::new(Mutex::new(path))));
        }
        for (d, program) in &k.attached {
            lock(program)
                .set_active(active)
                .with_context(|| format!("switching the programs on {d}"))?;
        }
        let routes = kernel_routes(&t.config, oif, next_hop, k.route_mtu, metric, k.realm);
        let from = std::mem::replace(&mut k.active, active);
        k.oif = oif;
        k.next_hop = next_hop;
        k.device = device.clone();
        let objects = kernel_objects(name, &k.attached, routes);
        // The clamping covers a newly attached device before the routes lead there.
        self.set_kernel_mss(None)
            .await
            .context("MSS clamping on the kernel path (nftables)")?;
        self.host.set(&owner(name), objects).await?;
        if let Some(k) = self.kernel_tunnel_mut(name) {
            k.withdrawn = false;
        }
        info!(tunnel = %name, "kernel path: path {from} -> {active}, via {next_hop} dev {device}");
        Ok(())
    }

    /// Whether the kernel-path tunnel `new.name`, with `new`'s routes, would overlap another
    /// kernel-path tunnel on a device they share: then a reload rebuilds it rather than
    /// change it in place, and it falls back to the TUN dataplane as it would at start.
    pub(super) fn kernel_update_overlaps(&self, new: &Tunnel) -> bool {
        self.kernel_tunnel(&new.name)
            .is_some_and(|k| self.kernel_overlap(new, &k.attached).is_some())
    }

    /// Follows a reload that changed only `routes` and `allowed_sources` of the kernel-path
    /// tunnel `old` into `new`, keeping its programs, counters and TUN device: the maps claim
    /// the new prefixes, the clamping covers old and new, the inner routes change, then the
    /// maps and the clamping let go of what is gone. So no packet meets a route to the
    /// underlay that its program would not encapsulate, nor a SYN one without its clamping.
    /// On failure the programs, routes and clamping are as before.
    pub(super) async fn update_kernel_path(
        &mut self,
        old: &Tunnel,
        new: &Tunnel,
        mtu: u16,
    ) -> anyhow::Result<Changes> {
        let Some(k) = self.kernel_tunnel(&new.name) else {
            return Ok(Changes::default());
        };
        let attached = k.attached.clone();
        let (oif, next_hop, route_mtu, withdrawn, realm) =
            (k.oif, k.next_hop, k.route_mtu, k.withdrawn, k.realm);
        let before = k.spec.clone();
        let config = super::convert::dataplane_config(new, mtu, None, None);
        let wanted = Spec::from_config(&config);
        let both = Spec {
            routes: union(&before.routes, &wanted.routes),
            allowed_sources: union(&before.allowed_sources, &wanted.allowed_sources),
            ..before.clone()
        };
        let both_tunnel = Tunnel {
            routes: union(&old.routes, &new.routes),
            ..new.clone()
        };
        let devices: Vec<String> = attached.iter().map(|(d, _)| d.clone()).collect();
        let metric = self.config.gateway.route_metric;
        let routes_of = |t: &Tunnel| {
            if withdrawn {
                Vec::new()
            } else {
                kernel_routes(t, oif, next_hop, route_mtu, metric, realm)
            }
        };
        let routes = routes_of(new);
        let result = async {
            set_prefixes(&attached, &both)?;
            self.set_kernel_mss(clamp_of(
                &both_tunnel,
                devices.clone(),
                next_hop,
                route_mtu,
                &both,
            ))
            .await
            .context("MSS clamping on the kernel path (nftables)")?;
            let changes = self
                .host
                .set(
                    &owner(&new.name),
                    kernel_objects(&new.name, &attached, routes),
                )
                .await
                .context("the kernel path's routes")?;
            set_prefixes(&attached, &wanted)?;
            self.set_kernel_mss(clamp_of(new, devices, next_hop, route_mtu, &wanted))
                .await
                .context("MSS clamping on the kernel path (nftables)")?;
            anyhow::Ok(changes)
        }
        .await;
        match result {
            Ok(changes) => {
                if let Some(k) = self.kernel_tunnel_mut(&new.name) {
                    k.spec.routes = wanted.routes;
                    k.spec.allowed_sources = wanted.allowed_sources;
                }
                Ok(changes)
            }
            Err(e) => {
                let previous = routes_of(old);
                if let Err(undo) = self
                    .host
                    .set(
                        &owner(&new.name),
                        kernel_objects(&new.name, &attached, previous),
                    )
                    .await
                {
                    warn!(tunnel = %new.name, "undoing the kernel path's routes: {undo:#}");
                }
                if let Err(undo) = set_prefixes(&attached, &before) {
                    warn!(tunnel = %new.name, "undoing the kernel path's maps: {undo:#}");
                }
                // The tunnel's config is still `old`: this is its clamping as it was.
                if let Err(undo) = self.set_kernel_mss(None).await {
                    warn!(tunnel = %new.name, "undoing the kernel path's clamping: {undo:#}");
                }
                Err(e)
            }
        }
    }

    /// The kernel path of tunnel `name`, when it runs on one.
    fn kernel_tunnel(&self, name: &str) -> Option<&KernelTunnel> {
        self.tunnels
            .iter()
            .find(|t| t.config.name == name)
            .and_then(|t| match &t.dataplane {
                Chosen::Kernel(k) => Some(k.as_ref()),
                Chosen::Userspace { .. } => None,
            })
    }

    fn kernel_tunnel_mut(&mut self, name: &str) -> Option<&mut KernelTunnel> {
        self.tunnels
            .iter_mut()
            .find(|t| t.config.name == name)
            .and_then(|t| match &mut t.dataplane {
                Chosen::Kernel(k) => Some(k.as_mut()),
                Chosen::Userspace { .. } => None,
            })
    }

    /// Takes a tunnel off the kernel path: routes first (back to the TUN device), then the
    /// programs.
    pub(super) async fn stop_kernel_path(&mut self, name: &str, kernel: Option<Box<KernelTunnel>>) {
        if let Err(e) = self.host.set(&owner(name), Vec::new()).await {
            warn!(tunnel = name, "kernel path routes: {e:#}");
        }
        // The tunnel has left `self.tunnels`: its clamping goes with this.
        if let Err(e) = self.set_kernel_mss(None).await {
            warn!(tunnel = name, "kernel path MSS clamping: {e:#}");
        }
        // Detached by the owner with the routes; the maps go with this.
        drop(kernel);
    }
}

impl Daemon {
    /// Whether tunnel `name` runs on the kernel path.
    pub(super) fn on_kernel_path(&self, name: &str) -> bool {
        self.kernel_tunnel(name).is_some()
    }

    /// Another tunnel on the kernel path of one of `attached`'s devices whose routes overlap
    /// `t`'s. Each egress program claims packets by its own tunnel's prefixes, not by the
    /// route the kernel chose, so of two such tunnels the first attached would carry both.
    fn kernel_overlap(&self, t: &Tunnel, attached: &[(String, Shared)]) -> Option<String> {
        self.tunnels
            .iter()
            .filter(|o| o.config.name != t.name)
            .find_map(|o| {
                let Chosen::Kernel(k) = &o.dataplane else {
                    return None;
                };
                let shared = k
                    .attached
                    .iter()
                    .any(|(d, _)| attached.iter().any(|(a, _)| a == d));
                (shared && overlap(&o.config.routes, &t.routes)).then(|| o.config.name.clone())
            })
    }

    /// The MSS clamping of every tunnel on the kernel path, and of `joining`, which is
    /// about to be.
    pub(super) fn kernel_mss(&self, joining: Option<KernelMss>) -> Vec<KernelMss> {
        let joining_name = joining.as_ref().map(|j| j.tunnel.clone());
        self.tunnels
            .iter()
            .filter_map(|t| match &t.dataplane {
                Chosen::Kernel(k) => clamp_of(
                    &t.config,
                    k.attached.iter().map(|(d, _)| d.clone()).collect(),
                    k.next_hop,
                    k.route_mtu,
                    &k.spec,
                ),
                Chosen::Userspace { .. } => None,
            })
            .filter(|c| joining_name.as_ref() != Some(&c.tunnel))
            .chain(joining)
            .collect()
    }
}

/// What `mss_clamp` means for a tunnel on the kernel path: SYNs to its routed prefixes
/// leaving through `devices`, and SYNs from its peer's sources arriving there.
fn clamp_of(
    t: &Tunnel,
    devices: Vec<String>,
    next_hop: IpAddr,
    route_mtu: u16,
    spec: &Spec,
) -> Option<KernelMss> {
    let size = match t.mss_clamp {
        control::MssClamp::Off => return None,
        control::MssClamp::Auto => KernelMssSize::Route { mtu: route_mtu },
        control::MssClamp::Fixed(mss) => KernelMssSize::Fixed(mss),
    };
    Some(KernelMss {
        tunnel: t.name.clone(),
        devices,
        routes: t
            .routes
            .iter()
            .copied()
            .filter(|net| !(matches!(net, ipnet::IpNet::V6(_)) && next_hop.is_ipv4()))
            .collect(),
        sources: spec.allowed_sources.clone(),
        size,
    })
}

/// The programs of every device, then the routes: what a tunnel's kernel-path owner name
/// holds. The programs go on first and come off last.
fn kernel_objects(tunnel: &str, attached: &[(String, Shared)], routes: Vec<Route>) -> Vec<Object> {
    let clsact = !::kpath::attaches_tcx();
    attached
        .iter()
        .flat_map(|(device, path)| {
            Hook::BOTH.map(|hook| {
                Object::Program(Program {
                    tunnel: tunnel.to_owned(),
                    device: device.clone(),
                    hook,
                    clsact,
                    path: Some(Arc::clone(path)),
                })
            })
        })
        .chain(routes.into_iter().map(Object::Route))
        .collect()
}

/// Every device's programs claim `spec`'s routes and accept its sources.
fn set_prefixes(attached: &[(String, Shared)], spec: &Spec) -> anyhow::Result<()> {
    for (device, path) in attached {
        lock(path)
            .set_prefixes(&spec.routes, &spec.allowed_sources)
            .with_context(|| format!("the programs' prefixes on {device}"))?;
    }
    Ok(())
}

/// `a`, then what `b` adds to it.
fn union(a: &[ipnet::IpNet], b: &[ipnet::IpNet]) -> Vec<ipnet::IpNet> {
    let mut all = a.to_vec();
    all.extend(b.iter().filter(|n| !a.contains(n)));
    all
}

/// Whether a prefix of `a` and one of `b` share an address.
fn overlap(a: &[ipnet::IpNet], b: &[ipnet::IpNet]) -> bool {
    a.iter().any(|x| {
        b.iter()
            .any(|y| x.contains(&y.network()) || y.contains(&x.network()))
    })
}

fn lock(path: &Mutex<KernelPath>) -> std::sync::MutexGuard<'_, KernelPath> {
    path.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tunnel's prefixes, each via the underlay next hop at one metric better than the
/// route into the TUN device. An IPv6 prefix cannot go via an IPv4 next hop; it stays on the
/// TUN device.
///
/// Packets the gateway itself sends into the tunnel leave with the tunnel device's first
/// address of their family, as they do through the TUN device, rather than with the
/// underlay's: the routes name it as preferred source. The kernel takes only a local address
/// there, so these routes go on after the device's addresses. `realm` marks the IPv4 ones.
fn kernel_routes(
    t: &Tunnel,
    oif: u32,
    next_hop: IpAddr,
    mtu: u16,
    metric: u32,
    realm: Option<u16>,
) -> Vec<Route> {
    t.routes
        .iter()
        .filter(|net| !(matches!(net, ipnet::IpNet::V6(_)) && next_hop.is_ipv4()))
        .map(|net| Route {
            dst: *net,
            table: t.route_table,
            protocol: ROUTE_PROTOCOL,
            metric: Some(metric.saturating_sub(1)),
            oif: Some(oif),
            gateway: Some(next_hop),
            kind: RouteKind::Unicast,
            mtu: Some(u32::from(mtu)),
            prefsrc: t
                .addresses
                .iter()
                .map(ipnet::IpNet::addr)
                .find(|a| a.is_ipv4() == net.addr().is_ipv4()),
            realm: realm.filter(|_| net.addr().is_ipv4()),
        })
        .collect()
}

impl KernelTunnel {
    /// When the programs last took a packet from the peer, as far as the daemon has looked
    /// (at every `status` and every look at the kernel paths, 2 s apart at most). The TUN
    /// dataplane's "last received" sees only what the programs pass on, so a busy tunnel
    /// would otherwise read as never heard.
    pub(super) fn last_received(&self) -> Option<Instant> {
        let rx = self
            .attached
            .iter()
            .map(|(_, path)| lock(path).counters().map_or(0, |c| c.rx_packets))
            .sum();
        self.note_received(rx)
    }

    /// Notes the programs' receive count `rx`, just read, and answers as
    /// [`Self::last_received`] does.
    pub(super) fn note_received(&self, rx: u64) -> Option<Instant> {
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        if rx > heard.rx_packets {
            heard.at = Some(Instant::now());
        }
        heard.rx_packets = rx;
        heard.at
    }

    pub(super) fn status(&self) -> DataplaneStatus {
        let mut counters = ::kpath::Counters::default();
        for (_, path) in &self.attached {
            let c = lock(path).counters().unwrap_or_default();
            counters.tx_packets += c.tx_packets;
            counters.tx_bytes += c.tx_bytes;
            counters.rx_packets += c.rx_packets;
            counters.rx_bytes += c.rx_bytes;
            counters.punted += c.punted;
            counters.gso_tx += c.gso_tx;
            counters.gso_rx += c.gso_rx;
            for (sum, n) in counters.drops.iter_mut().zip(c.drops) {
                *sum += n;
            }
        }
        let drops = dataplane::DropReason::ALL
            .iter()
            .zip(counters.drops)
            .filter(|(_, n)| *n > 0)
            .map(|(reason, n)| (reason.to_string(), n))
            .collect();
        DataplaneStatus {
            dataplane: "kernel".into(),
            dataplane_fallback: None,
            kernel_path: Some(KernelPathStatus {
                device: self.device.clone(),
                attach: match self
                    .attached
                    .first()
                    .map(|(_, p)| lock(p).attachment().map(|a| a.tcx))
                {
                    Some(Some(true)) => "tcx",
                    Some(Some(false)) => "clsact",
                    _ => "detached",
                }
                .into(),
                tx_packets: counters.tx_packets,
                tx_bytes: counters.tx_bytes,
                rx_packets: counters.rx_packets,
                rx_bytes: counters.rx_bytes,
                punted: counters.punted,
                gso_tx: counters.gso_tx,
                gso_rx: counters.gso_rx,
                drops,
            }),
        }
    }
}

impl Chosen {
    pub(super) fn status(&self) -> DataplaneStatus {
        match self {
            Self::Kernel(k) => k.status(),
            Self::Userspace { fallback } => DataplaneStatus {
                dataplane: "userspace".into(),
                dataplane_fallback: fallback.clone(),
                kernel_path: None,
            },
        }
    }

    pub(super) fn take_kernel(&mut self) -> Option<Box<KernelTunnel>> {
        match std::mem::replace(self, Self::Userspace { fallback: None }) {
            Self::Kernel(k) => Some(k),
            Self::Userspace { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::overlap;

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn prefixes_overlap_when_one_holds_the_other() {
        let lan = nets(&["198.51.100.0/24"]);
        assert!(overlap(&lan, &nets(&["198.51.100.10/32"])));
        assert!(overlap(&nets(&["198.51.100.10/32"]), &lan));
        assert!(overlap(&nets(&["0.0.0.0/0"]), &lan));
        assert!(!overlap(&lan, &nets(&["203.0.113.0/24", "2001:db8::/32"])));
        assert!(!overlap(&nets(&["::/0"]), &lan));
        assert!(!overlap(&[], &lan));
    }
}

//! Tunnels whose path ends are names (`remote = "home.example.jp"`) or devices
//! (`local_device = "ppp0"`): the daemon runs each with the addresses known now and rebuilds
//! that tunnel alone when one of them changes.
//!
//! A named remote is resolved by a `PeerName` task (A or AAAA by the path's family, again at
//! the record's TTL while the peer answers, every 5 s once the path's probes or the ESP core
//! declare it gone); a device's address is read again on every netlink change. A tunnel runs
//! the paths that have both addresses; with none it waits (status says why), and a tunnel that
//! fails to start is tried again every few seconds, while every other tunnel runs on. The
//! running tunnel's config is the written one with the addresses filled in, so status, the
//! pins and IKE all see plain addresses.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use control::ddns::select::{HostAddress, select};
use control::ddns::{Family, Select};
use control::{Config, Tunnel};
use dataplane::HealthState;
use sys::address::AddressReader;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Daemon;
use crate::names::{EndpointStatus, NamesStatus, WaitingTunnel};
use crate::peer_name::{Moved, PeerName};

/// How long a tunnel that failed to start waits before the next try.
const RETRY: Duration = Duration::from_secs(5);

/// How often path states are passed on to the names' schedules.
const LIVENESS_CHECK: Duration = Duration::from_millis(500);

/// Answers arriving before they are handled.
const MOVED_QUEUE: usize = 64;

/// The tunnels with named or device-following ends, and the tasks that resolve them.
pub(super) struct Names {
    followed: Vec<Followed>,
    moved_tx: mpsc::Sender<Moved>,
    moved_rx: Option<mpsc::Receiver<Moved>>,
    reader: Option<AddressReader>,
    last_check: Option<Instant>,
}

impl Names {
    pub(super) fn new() -> Self {
        let (moved_tx, moved_rx) = mpsc::channel(MOVED_QUEUE);
        Self {
            followed: Vec::new(),
            moved_tx,
            moved_rx: Some(moved_rx),
            reader: None,
            last_check: None,
        }
    }

    /// The answers of the name tasks, for the daemon's main loop (once).
    pub(super) fn take_moved(&mut self) -> Option<mpsc::Receiver<Moved>> {
        self.moved_rx.take()
    }

    /// Stops every name task.
    pub(super) fn clear(&mut self) {
        self.followed.clear();
    }

    pub(super) fn is_empty(&self) -> bool {
        self.followed.is_empty()
    }
}

struct Followed {
    written: Tunnel,
    /// One per written path, in order.
    ends: Vec<End>,
    /// The config the tunnel runs with now, if it runs.
    running: Option<Tunnel>,
    /// The config last tried, and when to try it again after it failed.
    failed: Option<(Tunnel, Instant)>,
    /// Why the tunnel failed to start, while it is not running.
    waiting: Option<String>,
    /// Whether the log already says that the tunnel waits for addresses.
    waiting_logged: bool,
}

#[derive(Default)]
struct End {
    peer: Option<PeerName>,
    /// The answer of the task `peer` replaced (the resolvers changed), kept until the new task
    /// has one: a tunnel whose answer does not change keeps running across the change.
    carried: Option<IpAddr>,
    /// The device's current address of the path's family, for `local_device`.
    device_address: Option<IpAddr>,
    device_since: Option<u64>,
    device_error: Option<String>,
    /// What the path's probes said last, as told to `peer`.
    alive: Option<bool>,
}

fn family(path: &control::Path) -> Family {
    if path.is_ipv6() {
        Family::Ipv6
    } else {
        Family::Ipv4
    }
}

fn unix_now() -> Option<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

impl Followed {
    /// The written tunnel with every known address filled in; see [`resolve`].
    fn resolved(&self) -> Result<Tunnel, String> {
        let known: Vec<Known> = self
            .ends
            .iter()
            .map(|end| {
                let status = end.peer.as_ref().map(PeerName::status);
                Known {
                    device: end.device_address,
                    remote: status.as_ref().and_then(|s| s.address).or(end.carried),
                    remote_error: status.and_then(|s| s.error),
                }
            })
            .collect();
        resolve(&self.written, &known)
    }
}

/// What is known of one path's ends that are not addresses in the config.
#[derive(Debug, Default, Clone)]
struct Known {
    /// The `local_device`'s address of the path's family.
    device: Option<IpAddr>,
    /// The named remote's answer.
    remote: Option<IpAddr>,
    remote_error: Option<String>,
}

/// `written` with the known addresses filled in, keeping the paths that have both ends; `Err`
/// says why none has. `known` has one entry per written path.
fn resolve(written: &Tunnel, known: &[Known]) -> Result<Tunnel, String> {
    let mut paths = Vec::new();
    let mut missing = Vec::new();
    for (path, k) in written.paths.iter().zip(known) {
        let mut p = path.clone();
        if let Some(device) = &path.local_device {
            match k.device {
                Some(a) if a.is_ipv6() == path.is_ipv6() => p.local = a,
                _ => missing.push(format!(
                    "path {}: device {device} has no usable {} address",
                    path.name,
                    family(path)
                )),
            }
        }
        if let Some(name) = &path.remote_name {
            match k.remote {
                Some(a) if a.is_ipv6() == path.is_ipv6() => p.remote = a,
                _ => {
                    let why = k.remote_error.as_deref().unwrap_or("no answer yet");
                    missing.push(format!(
                        "path {}: {name} ({}) not resolved: {why}",
                        path.name,
                        family(path).record_type()
                    ));
                }
            }
        }
        if p.is_resolved() && p.local != p.remote {
            paths.push(p);
        }
    }
    if paths.is_empty() {
        return Err(missing.join("; "));
    }
    Ok(Tunnel {
        paths,
        ..written.clone()
    })
}

impl Daemon {
    /// Takes over a tunnel with named or device-following ends: starts its name tasks, reads
    /// its devices and starts it with the addresses known so far (or lets it wait).
    pub(super) async fn follow_tunnel(&mut self, tunnel: Tunnel) -> anyhow::Result<()> {
        self.unfollow(&tunnel.name);
        let mut ends = Vec::new();
        for path in &tunnel.paths {
            ends.push(End {
                peer: self.start_peer(&tunnel.name, path),
                ..End::default()
            });
        }
        info!(tunnel = %tunnel.name, "follows its peers' names and devices");
        self.names.followed.push(Followed {
            written: tunnel,
            ends,
            running: None,
            failed: None,
            waiting: None,
            waiting_logged: false,
        });
        self.read_devices().await;
        self.follow_names().await;
        Ok(())
    }

    /// The name task of `path`'s named remote, asking the running config's resolvers.
    fn start_peer(&self, tunnel: &str, path: &control::Path) -> Option<PeerName> {
        let name = path.remote_name.as_ref()?;
        let servers = &self.config.gateway.resolvers;
        let servers = (!servers.is_empty()).then_some(servers.as_slice());
        let moved = self.names.moved_tx.clone();
        match PeerName::start(name, family(path), servers, moved) {
            Ok(peer) => Some(peer),
            Err(e) => {
                warn!(tunnel = %tunnel, "resolving {name}: {e:#}");
                None
            }
        }
    }

    /// After a reload that changed `[gateway] resolvers`: every name task starts again asking
    /// the new servers. Each running tunnel keeps its last answer until the new task has one,
    /// so it is rebuilt only if the new servers answer differently.
    pub(super) fn restart_names(&mut self) {
        let mut followed = std::mem::take(&mut self.names.followed);
        for f in &mut followed {
            for (path, end) in f.written.paths.iter().zip(&mut f.ends) {
                if path.remote_name.is_none() {
                    continue;
                }
                let last = end.peer.as_ref().and_then(|p| p.status().address);
                end.carried = last.or(end.carried);
                end.alive = None;
                end.peer = self.start_peer(&f.written.name, path);
            }
        }
        self.names.followed = followed;
        if !self.names.is_empty() {
            info!("the resolvers changed: asking the new ones for every followed name");
        }
    }

    /// Stops following `name` (its tunnel, if running, stays for the caller to remove).
    pub(super) fn unfollow(&mut self, name: &str) {
        self.names.followed.retain(|f| f.written.name != name);
    }

    /// After a reload: forgets tunnels the new config no longer has in this form. A softwire's
    /// tunnel (a DS-Lite B4 with a named AFTR) is not among the config's tunnels: the softwires
    /// follow it and let it go themselves when they change or go.
    pub(super) fn prune_names(&mut self) {
        let config: &Config = &self.config;
        let softwires = &self.softwires;
        self.names.followed.retain(|f| {
            softwires.has(&f.written.name)
                || config
                    .enabled_tunnels()
                    .any(|t| *t == f.written && !t.paths.iter().all(control::Path::is_resolved))
        });
    }

    /// Rebuilds every followed tunnel whose addresses changed, starts those that can start now
    /// and retries those that failed.
    pub(super) async fn follow_names(&mut self) {
        let now = Instant::now();
        let mut touched = false;
        for i in 0..self.names.followed.len() {
            let f = &self.names.followed[i];
            let wanted = f.resolved();
            let name = f.written.name.clone();
            match (&wanted, &f.running) {
                (Ok(w), Some(r)) if w == r => continue,
                (Err(why), None) => {
                    let f = &mut self.names.followed[i];
                    if !f.waiting_logged {
                        warn!(tunnel = %name, "waiting: {why}");
                        f.waiting_logged = true;
                    }
                    f.failed = None;
                    f.waiting = None;
                    continue;
                }
                _ => {}
            }
            if let (Ok(w), Some((tried, at))) = (&wanted, &f.failed)
                && w == tried
                && now < *at
            {
                continue;
            }
            touched = true;
            if self.names.followed[i].running.take().is_some() {
                info!(tunnel = %name, "an address changed: rebuilding the tunnel");
                self.remove_tunnel(&name).await;
            }
            let f = &mut self.names.followed[i];
            let tunnel = match wanted {
                Err(why) => {
                    warn!(tunnel = %name, "waiting: {why}");
                    f.waiting_logged = true;
                    f.waiting = None;
                    f.failed = None;
                    continue;
                }
                Ok(t) => t,
            };
            let ends: Vec<String> = tunnel
                .paths
                .iter()
                .map(|p| format!("{} {} -> {}", p.name, p.local, p.remote))
                .collect();
            info!(tunnel = %name, "starting with {}", ends.join(", "));
            let result = self.add_tunnel(tunnel.clone()).await;
            let f = &mut self.names.followed[i];
            match result {
                Ok(()) => {
                    f.running = Some(tunnel);
                    f.failed = None;
                    f.waiting = None;
                    f.waiting_logged = false;
                }
                Err(e) => {
                    let why = format!("{e:#}; trying again in {}s", RETRY.as_secs());
                    warn!(tunnel = %name, "{why}");
                    f.waiting = Some(why);
                    f.failed = Some((tunnel, now + RETRY));
                }
            }
        }
        if touched {
            self.feed_ddns_paths().await;
        }
    }

    /// Reads the current address of every followed device; rebuilds what moved.
    pub(super) async fn follow_devices(&mut self) {
        if self.names.is_empty() {
            return;
        }
        self.read_devices().await;
        self.follow_names().await;
    }

    async fn read_devices(&mut self) {
        let wanted = self
            .names
            .followed
            .iter()
            .any(|f| f.written.paths.iter().any(|p| p.local_device.is_some()));
        if !wanted {
            return;
        }
        if self.names.reader.is_none() {
            match AddressReader::new() {
                Ok(r) => self.names.reader = Some(r),
                Err(e) => {
                    warn!("reading device addresses: {e:#}");
                    return;
                }
            }
        }
        let Some(reader) = &self.names.reader else {
            return;
        };
        for f in &mut self.names.followed {
            for (path, end) in f.written.paths.iter().zip(&mut f.ends) {
                let Some(device) = &path.local_device else {
                    continue;
                };
                let (address, error) = match device_address(reader, device, family(path)).await {
                    Ok(a) => (a, None),
                    Err(e) => (None, Some(e)),
                };
                if address != end.device_address {
                    match address {
                        Some(a) => info!(tunnel = %f.written.name, "{device} is at {a}"),
                        None => warn!(
                            tunnel = %f.written.name,
                            "{device} lost its {} address",
                            family(path)
                        ),
                    }
                    end.device_address = address;
                    end.device_since = unix_now();
                }
                end.device_error = error;
            }
        }
    }

    /// Passes the followed paths' probe states to their name tasks (a gone peer is asked for
    /// every 5 s), and retries tunnels that failed to start.
    pub(super) async fn tick_names(&mut self) {
        if self.names.is_empty() {
            return;
        }
        let now = Instant::now();
        if self
            .names
            .last_check
            .is_some_and(|at| now.duration_since(at) < LIVENESS_CHECK)
        {
            return;
        }
        self.names.last_check = Some(now);
        if let Ok(snapshot) = self.datapath.snapshot().await {
            for f in &mut self.names.followed {
                let Some(running) = &f.running else { continue };
                let Some(rt) = self.tunnels.iter().find(|t| t.config.name == running.name) else {
                    continue;
                };
                let states: Vec<(String, HealthState)> =
                    if let Some(esp) = snapshot.esp.iter().find(|e| e.id == rt.id) {
                        running
                            .paths
                            .iter()
                            .zip(&esp.paths)
                            .map(|(p, s)| (p.name.clone(), s.stats.state))
                            .collect()
                    } else if let Some(t) = snapshot.tunnels.iter().find(|t| t.id == rt.id) {
                        running
                            .paths
                            .iter()
                            .zip(&t.paths)
                            .map(|(p, s)| (p.name.clone(), s.state))
                            .collect()
                    } else {
                        continue;
                    };
                for (path, end) in f.written.paths.iter().zip(&mut f.ends) {
                    let Some(peer) = &end.peer else { continue };
                    let Some((_, state)) = states.iter().find(|(n, _)| *n == path.name) else {
                        continue;
                    };
                    let alive = match state {
                        HealthState::Down => false,
                        HealthState::Up => true,
                        HealthState::Unknown => continue,
                    };
                    if end.alive != Some(alive) {
                        end.alive = Some(alive);
                        peer.peer_alive(alive);
                    }
                }
            }
        }
        let retry = self
            .names
            .followed
            .iter()
            .any(|f| f.failed.as_ref().is_some_and(|(_, at)| now >= *at));
        if retry {
            self.follow_names().await;
        }
    }

    /// The `names` section of status, `None` when nothing is published or followed.
    pub(super) fn names_status(&self) -> Option<NamesStatus> {
        let ddns = self.ddns_status();
        if ddns.is_empty() && self.names.is_empty() {
            return None;
        }
        let mut endpoints = Vec::new();
        let mut waiting = Vec::new();
        for f in &self.names.followed {
            for (path, end) in f.written.paths.iter().zip(&f.ends) {
                let base = EndpointStatus {
                    tunnel: f.written.name.clone(),
                    path: path.name.clone(),
                    family: family(path).to_string(),
                    ..EndpointStatus::default()
                };
                if let Some(device) = &path.local_device {
                    endpoints.push(EndpointStatus {
                        end: "local_device".into(),
                        name: device.clone(),
                        address: end.device_address,
                        resolved_at: end.device_address.and(end.device_since),
                        error: end.device_error.clone().or_else(|| {
                            end.device_address
                                .is_none()
                                .then(|| format!("no usable {} address", family(path)))
                        }),
                        ..base.clone()
                    });
                }
                if let (Some(name), Some(peer)) = (&path.remote_name, &end.peer) {
                    let s = peer.status();
                    endpoints.push(EndpointStatus {
                        end: "remote".into(),
                        name: name.clone(),
                        address: s.address,
                        resolved_at: s.resolved_at,
                        error: s.error,
                        ..base
                    });
                }
            }
            // Why it does not run: it failed to start, or no path has both addresses.
            let reason = match (&f.running, &f.waiting) {
                (Some(_), _) => None,
                (None, Some(why)) => Some(why.clone()),
                (None, None) => f.resolved().err(),
            };
            if let Some(reason) = reason {
                waiting.push(WaitingTunnel {
                    tunnel: f.written.name.clone(),
                    reason,
                });
            }
        }
        Some(NamesStatus {
            ddns,
            endpoints,
            waiting,
        })
    }
}

/// The address of `device` to run a path of `family` from: the stable one for IPv6 (global,
/// not temporary, deprecated or tentative), the primary one for IPv4.
async fn device_address(
    reader: &AddressReader,
    device: &str,
    family: Family,
) -> Result<Option<IpAddr>, String> {
    let index = match reader.link_index(device).await {
        Ok(Some(i)) => i,
        Ok(None) => return Err(format!("no device {device}")),
        Err(e) => return Err(format!("looking up {device}: {e}")),
    };
    let list = reader
        .addresses(index)
        .await
        .map_err(|e| format!("reading the addresses of {device}: {e}"))?;
    let list: Vec<HostAddress> = list.iter().map(crate::ddns::runner::host_address).collect();
    let how = match family {
        Family::Ipv6 => Select::Stable,
        Family::Ipv4 => Select::Any,
    };
    Ok(select(&list, family, how))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S4: &str = r#"
[[tunnel]]
name = "siteb"
mode = "ipip6"
routes = ["198.51.100.128/25"]

[[tunnel.path]]
name = "ipoe"
local = "2001:db8:1::1"
remote = "siteb-v6.example.jp"

[[tunnel.path]]
name = "pppoe"
local_device = "ppp0"
family = "ipv4"
remote = "siteb-v4.example.jp"
"#;

    fn written() -> Tunnel {
        let config = Config::from_toml_str(S4, "s4.toml").unwrap();
        config.tunnels[0].clone()
    }

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nothing_known_waits_and_says_why_for_every_path() {
        let known = [
            Known {
                remote_error: Some("NXDOMAIN".into()),
                ..Known::default()
            },
            Known::default(),
        ];
        let why = resolve(&written(), &known).unwrap_err();
        assert_eq!(
            why,
            "path ipoe: siteb-v6.example.jp (AAAA) not resolved: NXDOMAIN; path pppoe: device \
             ppp0 has no usable ipv4 address; path pppoe: siteb-v4.example.jp (A) not \
             resolved: no answer yet"
        );
    }

    #[test]
    fn a_tunnel_runs_the_paths_that_have_both_ends() {
        let known = [
            Known {
                remote: Some(addr("2001:db8:2::1")),
                ..Known::default()
            },
            // The device has its address, the name no answer yet.
            Known {
                device: Some(addr("198.18.1.1")),
                ..Known::default()
            },
        ];
        let t = resolve(&written(), &known).unwrap();
        assert_eq!(t.paths.len(), 1);
        assert_eq!(t.paths[0].name, "ipoe");
        assert_eq!(t.paths[0].local, addr("2001:db8:1::1"));
        assert_eq!(t.paths[0].remote, addr("2001:db8:2::1"));
        assert!(t.paths[0].is_resolved());
        assert_eq!(
            t.paths[0].remote_name.as_deref(),
            Some("siteb-v6.example.jp")
        );
    }

    #[test]
    fn every_known_address_is_filled_in_and_a_change_changes_the_tunnel() {
        let mut known = vec![
            Known {
                remote: Some(addr("2001:db8:2::1")),
                ..Known::default()
            },
            Known {
                device: Some(addr("198.18.1.1")),
                remote: Some(addr("198.18.2.1")),
                remote_error: None,
            },
        ];
        let before = resolve(&written(), &known).unwrap();
        assert_eq!(before.paths.len(), 2);
        assert_eq!(before.paths[1].local, addr("198.18.1.1"));
        assert_eq!(before.paths[1].remote, addr("198.18.2.1"));
        assert_eq!(
            resolve(&written(), &known).unwrap(),
            before,
            "same answers, same tunnel"
        );

        known[1].device = Some(addr("198.18.1.2"));
        let after = resolve(&written(), &known).unwrap();
        assert_ne!(after, before);
        assert_eq!(after.paths[1].local, addr("198.18.1.2"));
    }

    #[test]
    fn an_address_of_the_other_family_is_not_used() {
        let known = [
            Known {
                remote: Some(addr("198.18.2.1")),
                ..Known::default()
            },
            Known::default(),
        ];
        assert!(resolve(&written(), &known).is_err());
    }
}

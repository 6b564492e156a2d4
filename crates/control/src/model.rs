//! The validated, typed configuration: what the rest of v6gate works from.
//!
//! Every value here has passed validation (see [`Config::from_toml_str`]); defaults are already
//! filled in except where they depend on the host (the tunnel MTU, derived from the underlay).

use std::net::IpAddr;
use std::path::PathBuf;

/// The words the config and the packet core share: what a tunnel carries (`mode`,
/// `inner_families`), how a path is probed, how probe results turn into up and down
/// (`[tunnel.health]` and the same keys in `[[watch]]`, defaults `Health::TUNNEL_DEFAULT` and
/// `Health::WATCH_DEFAULT`), how TCP MSS is clamped, what traffic class the outer header
/// carries. The dataplane owns them, since they are what it acts on; the config only spells
/// them.
pub use dataplane::{HealthConfig as Health, InnerFamilies, Mode, MssClamp, Probe, TrafficClass};

use ipnet::IpNet;

pub use crate::dataplane_choice::Dataplane;
use crate::error::Diagnostic;
use crate::ipsec::IpsecConfig;

/// Default path of the JSON control/status socket.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/v6gate/v6gate.sock";
/// Default of `gateway.state_dir`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/v6gate";
/// Default routing table for pinned endpoint routes ("64" twice: v6gate's mark is 0x76 0x36, "v6").
pub const DEFAULT_PIN_TABLE: u32 = 6464;
/// Default priority of the ip rule that consults the pin table: well before `main` (32766) so a
/// pinned endpoint wins over any route a tunnel installs, and after `local` (0).
pub const DEFAULT_PIN_RULE_PRIORITY: u32 = 100;
/// Default metric of tunnel routes: below what DHCP/RA clients install (NetworkManager 100+,
/// dhcpcd 200+, systemd-networkd and kernel RA 1024), so a configured tunnel route wins over a
/// learned one, yet above 0 so a route an administrator adds by hand still wins.
pub const DEFAULT_ROUTE_METRIC: u32 = 50;
/// Default outer hop limit, the same as Linux ip6tnl.
pub const DEFAULT_HOP_LIMIT: u8 = 64;
/// The kernel's `main` routing table.
pub const MAIN_TABLE: u32 = 254;
/// Firewall mark the daemon puts on its own route lookups and outer packets; the pin rule is
/// `not fwmark PIN_BYPASS_MARK lookup pin_table`, so marked lookups see the underlay behind the pin.
pub const PIN_BYPASS_MARK: u32 = 0x7636;
/// Prefix of the TUN device name derived from the tunnel name.
pub const DEVICE_PREFIX: &str = "v6g-";
/// Longest Linux interface name in bytes (IFNAMSIZ - 1).
pub const MAX_DEVICE_LEN: usize = 15;
/// Outer IPv6 header added by RFC 2473 encapsulation.
pub const IPV6_HEADER_LEN: u16 = 40;
/// Outer IPv4 header added on a path over IPv4 (RFC 2003 IPv4-in-IPv4, RFC 4213 IPv6-in-IPv4).
pub const IPV4_HEADER_LEN: u16 = 20;
/// Name of the one path of a tunnel written in the single-path form (`local`/`remote` on the
/// tunnel itself).
pub const DEFAULT_PATH: &str = "default";
/// Smallest MTU of an IPv6 link (RFC 8200 §5).
pub const IPV6_MIN_MTU: u16 = 1280;
/// Destination options header carrying the Tunnel Encapsulation Limit option (RFC 2473 §5.1).
pub const ENCAP_LIMIT_OPTION_LEN: u16 = 8;

/// A whole, validated v6gate configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub gateway: Gateway,
    /// In file order; names and devices are unique.
    pub tunnels: Vec<Tunnel>,
    /// `mode = "map-e"` and `"ds-lite"` tunnels, in file order: RFC 2473 tunnels once their
    /// ends are known from the host (see [`crate::softwire::lower`]). Names and devices are
    /// unique together with `tunnels`'.
    pub softwires: Vec<crate::softwire::Softwire>,
    /// In file order; names are unique.
    pub watches: Vec<Watch>,
    /// `[[ddns]]` entries in file order; names are unique.
    pub ddns: Vec<crate::ddns::Ddns>,
    /// Things that work but deserve attention (a secret in the config, a key file others can
    /// read, a legacy suite), each with its key and line; `check` prints them, `run` logs them.
    pub warnings: Vec<Diagnostic>,
    /// `[firewall]` with its zones, pinholes and port forwards; `None` = install no ruleset.
    pub firewall: Option<crate::firewall::Firewall>,
    /// `[[table]]` and `[[rule]]`.
    pub routing: crate::firewall::Routing,
    /// `[sysctl]`: set at start, restored at stop.
    pub sysctls: Vec<crate::sysctl::SysctlChange>,
}

impl Config {
    /// The tunnel called `name`, if any.
    pub fn tunnel(&self, name: &str) -> Option<&Tunnel> {
        self.tunnels.iter().find(|t| t.name == name)
    }

    /// Tunnels that should be up (`enabled = true`), in file order.
    pub fn enabled_tunnels(&self) -> impl Iterator<Item = &Tunnel> {
        self.tunnels.iter().filter(|t| t.enabled)
    }

    /// The watch called `name`, if any.
    pub fn watch(&self, name: &str) -> Option<&Watch> {
        self.watches.iter().find(|w| w.name == name)
    }

    /// Enabled tunnels' paths whose endpoints are not addresses yet (a host name as
    /// `remote`, a `local_device`), as `(tunnel, path)`.
    pub fn unresolved_paths(&self) -> Vec<(&Tunnel, &Path)> {
        self.enabled_tunnels()
            .flat_map(|t| t.paths.iter().map(move |p| (t, p)))
            .filter(|(_, p)| !p.is_resolved())
            .collect()
    }
}

/// Default of `gateway.max_config_size`: room for some 100,000 tunnels.
pub const DEFAULT_MAX_CONFIG_SIZE: u64 = 16 << 20;

/// Most bytes of a config file v6gate ever reads, whatever `max_config_size` says, so that a
/// path naming something endless (a device, a pipe) costs bounded memory.
pub const MAX_CONFIG_SIZE: u64 = 64 << 20;

/// Least `gateway.max_config_size`: below this a limit would refuse ordinary configs.
pub const MIN_MAX_CONFIG_SIZE: u64 = 4 << 10;

/// Settings of the gateway as a whole: the `[gateway]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub control_socket: PathBuf,
    pub pin_table: u32,
    pub pin_rule_priority: u32,
    /// `Some` = set `net.ipv4.ip_forward` at start and restore the old value at stop.
    pub ipv4_forwarding: Option<bool>,
    /// `Some` = set `net.ipv6.conf.all.forwarding` at start and restore the old value at stop.
    pub ipv6_forwarding: Option<bool>,
    pub route_metric: u32,
    /// Largest config file, in bytes, this config accepts (itself and what a reload reads).
    pub max_config_size: u64,
    /// Where Prometheus metrics are served (`http://ADDRESS/metrics`); off when `None`.
    pub metrics: Option<std::net::SocketAddr>,
    /// Directory where the ESP keys are written for Wireshark; off when `None`.
    pub key_log: Option<PathBuf>,
    /// Root-only directory of what outlives a run (what each `[[ddns]]` entry last published).
    pub state_dir: PathBuf,
    /// Name servers asked for peers given by name; empty = the system's (`/etc/resolv.conf`).
    pub resolvers: Vec<std::net::SocketAddr>,
}

impl Default for Gateway {
    fn default() -> Self {
        Self {
            control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
            pin_table: DEFAULT_PIN_TABLE,
            pin_rule_priority: DEFAULT_PIN_RULE_PRIORITY,
            ipv4_forwarding: None,
            ipv6_forwarding: None,
            route_metric: DEFAULT_ROUTE_METRIC,
            max_config_size: DEFAULT_MAX_CONFIG_SIZE,
            metrics: None,
            key_log: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            resolvers: Vec::new(),
        }
    }
}

/// One tunnel to one peer: a `[[tunnel]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    pub name: String,
    /// TUN device name, `v6g-<name>` unless configured. With `device_per_path` no device of this
    /// name exists: it is the stem of the paths' device names.
    pub device: String,
    pub mode: Mode,
    /// Underlay paths to the peer, in file order; never empty. The single-path form (`local` and
    /// `remote` on the tunnel) is one path named [`DEFAULT_PATH`] with cost 0 and no probe.
    pub paths: Vec<Path>,
    /// One TUN device per path (see [`Path::device`]) instead of one for the tunnel, so that a
    /// routing daemon (BIRD, FRR) sees each path as a link of its own.
    pub device_per_path: bool,
    /// Probe timing of the paths (unused when no path is probed).
    pub health: Health,
    /// `None` = send no Tunnel Encapsulation Limit option (the default; see docs/config.md).
    /// Applies to paths over IPv6 only.
    pub encap_limit: Option<u8>,
    /// `None` = derive from the underlays, see [`Tunnel::effective_mtu`].
    pub mtu: Option<u16>,
    /// Inner prefixes routed into this tunnel.
    pub routes: Vec<IpNet>,
    /// Inner source prefixes accepted from the peer (defaults to `routes`).
    pub allowed_sources: Vec<IpNet>,
    pub inner_families: InnerFamilies,
    pub mss_clamp: MssClamp,
    /// Where the tunnel's packets are encapsulated and decapsulated.
    pub dataplane: Dataplane,
    /// Addresses put on the TUN device (on every path's device with `device_per_path`).
    pub addresses: Vec<IpNet>,
    pub tclass: TrafficClass,
    /// Outer hop limit, or TTL on paths over IPv4.
    pub hop_limit: u8,
    pub route_table: u32,
    pub enabled: bool,
    /// `mode = "ipsec"`: our side's inner prefixes, the local traffic selectors (`routes` are
    /// the remote ones). Empty for the other modes.
    pub local_subnets: Vec<IpNet>,
    /// `Some` exactly for `mode = "ipsec"`.
    pub ipsec: Option<IpsecConfig>,
}

impl Tunnel {
    /// A tunnel in the single-path form with every optional setting at its default (as if only
    /// `name`, `mode`, `local` and `remote` were written in the file). Not validated: for
    /// building configs in code.
    pub fn new(name: &str, mode: Mode, local: IpAddr, remote: IpAddr) -> Self {
        let device = default_device(name);
        let mut path = Path::new(DEFAULT_PATH, local, remote, &device);
        path.probe = Probe::None;
        Self {
            name: name.to_owned(),
            device,
            mode,
            paths: vec![path],
            device_per_path: false,
            health: Health::TUNNEL_DEFAULT,
            encap_limit: None,
            mtu: None,
            routes: Vec::new(),
            allowed_sources: Vec::new(),
            inner_families: mode.families(),
            mss_clamp: MssClamp::Auto,
            dataplane: Dataplane::Auto,
            addresses: Vec::new(),
            tclass: TrafficClass::default(),
            hop_limit: DEFAULT_HOP_LIMIT,
            route_table: MAIN_TABLE,
            enabled: true,
            local_subnets: Vec::new(),
            ipsec: None,
        }
    }

    /// The path called `name`, if any.
    pub fn path(&self, name: &str) -> Option<&Path> {
        self.paths.iter().find(|p| p.name == name)
    }

    /// The TUN devices the tunnel creates: its own, or one per path.
    pub fn devices(&self) -> Vec<&str> {
        if self.device_per_path {
            self.paths.iter().map(|p| p.device.as_str()).collect()
        } else {
            vec![self.device.as_str()]
        }
    }

    /// Bytes the encapsulation adds in front of each inner packet on `path`: an IPv4 header, or
    /// an IPv6 header and, when the option is sent, the destination options header carrying it.
    /// For ipsec only the outer IP header: what ESP adds depends on the packet's length, see
    /// [`Tunnel::path_mtu`].
    pub fn overhead(&self, path: &Path) -> u16 {
        if self.ipsec.is_some() {
            return if path.is_ipv6() {
                IPV6_HEADER_LEN
            } else {
                IPV4_HEADER_LEN
            };
        }
        match (path.is_ipv6(), self.encap_limit) {
            (false, _) => IPV4_HEADER_LEN,
            (true, Some(_)) => IPV6_HEADER_LEN + ENCAP_LIMIT_OPTION_LEN,
            (true, None) => IPV6_HEADER_LEN,
        }
    }

    /// The configured MTU, or the largest inner packet that fits `path`'s underlay of
    /// `underlay_mtu` bytes unfragmented: `underlay_mtu - overhead(path)`, and for ipsec what
    /// [`IpsecConfig::inner_fits`] leaves of that (UDP 8, ESP header 8, IV, padding, trailer 2
    /// and ICV of the worst configured suite).
    ///
    /// A tunnel that carries IPv6 never goes below 1280, IPv6's minimum link MTU (the kernel
    /// turns IPv6 off on a smaller device); on a smaller underlay the outer packet is then
    /// fragmented, as RFC 2473 §7.1 and RFC 4213 §3.2 prescribe.
    pub fn path_mtu(&self, path: &Path, underlay_mtu: u16) -> u16 {
        self.mtu.unwrap_or_else(|| {
            let room = underlay_mtu.saturating_sub(self.overhead(path));
            let fits = match &self.ipsec {
                Some(ipsec) => ipsec.inner_fits(room),
                None => room,
            };
            if self.inner_families.ipv6 {
                fits.max(IPV6_MIN_MTU)
            } else {
                fits
            }
        })
    }

    /// MTU of the tunnel's one device: the configured MTU, or the smallest [`Tunnel::path_mtu`]
    /// over the paths, so that a packet fits whichever path carries it. Each path's underlay MTU
    /// is its `underlay_mtu`, else `host_mtu(path)` (asked only then).
    pub fn effective_mtu(&self, host_mtu: impl Fn(&Path) -> u16) -> u16 {
        self.mtu.unwrap_or_else(|| {
            self.paths
                .iter()
                .map(|p| self.path_mtu(p, p.underlay_mtu.unwrap_or_else(|| host_mtu(p))))
                .min()
                .unwrap_or(0)
        })
    }
}

/// One underlay path of a tunnel: a `[[tunnel.path]]` table.
///
/// Both endpoints are of one family. Over IPv6 the inner packets are framed as RFC 2473 (next
/// header 4 or 41), over IPv4 as RFC 2003 IPv4-in-IPv4 (protocol 4) or RFC 4213 IPv6-in-IPv4
/// (protocol 41); the tunnel's mode says which inner families, for every path alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub name: String,
    /// Outer source address.
    pub local: IpAddr,
    /// Outer destination; the only source accepted for incoming outer packets on this path.
    pub remote: IpAddr,
    /// Preference among live paths: the lowest cost carries the traffic, ties go to the path
    /// listed first. With `device_per_path` also added to the route metric of the path's device.
    pub cost: u32,
    pub probe: Probe,
    /// TUN device carrying this path's inner packets: the tunnel's `device`, or with
    /// `device_per_path` the path's own (`device`, else `<tunnel device>-<path name>`).
    pub device: String,
    /// Addresses of the path's own device besides the tunnel's (`device_per_path` only).
    pub addresses: Vec<IpNet>,
    /// `None` = the daemon reads the MTU of the device the remote is routed through.
    pub underlay_mtu: Option<u16>,
    /// `Some` when `remote` was written as a host name: `remote` then holds the unspecified
    /// address of the path's family until the name is resolved (A or AAAA by that family).
    pub remote_name: Option<String>,
    /// `Some` when the path follows the address of a device (`local_device`, a PPPoE link):
    /// `local` then holds the unspecified address of the path's family until one is known.
    pub local_device: Option<String>,
}

impl Path {
    /// A path with cost 0, keepalive probes and no settings of its own, carried by `device`.
    pub fn new(name: &str, local: IpAddr, remote: IpAddr, device: &str) -> Self {
        Self {
            name: name.to_owned(),
            local,
            remote,
            cost: 0,
            probe: Probe::Keepalive,
            device: device.to_owned(),
            addresses: Vec::new(),
            underlay_mtu: None,
            remote_name: None,
            local_device: None,
        }
    }

    /// Whether the path runs over IPv6 (else over IPv4).
    pub fn is_ipv6(&self) -> bool {
        self.remote.is_ipv6()
    }

    /// Whether both endpoints are addresses already: neither a name waits for its answer nor a
    /// device for its address.
    pub fn is_resolved(&self) -> bool {
        !self.local.is_unspecified() && !self.remote.is_unspecified()
    }

    /// The endpoints as written: a name or a device where one was given, else the address.
    /// Two paths with the same ends cannot be told apart on receive.
    pub fn ends(&self) -> (String, String) {
        let local = match &self.local_device {
            Some(device) => format!("device {device}"),
            None => self.local.to_string(),
        };
        let remote = match &self.remote_name {
            Some(name) => name.clone(),
            None => self.remote.to_string(),
        };
        (local, remote)
    }
}

/// An uplink watch: a `[[watch]]` table. While ICMP echoes to `target` through `device` are
/// answered, `route` is installed; while they are not, it is withdrawn, so a backup route with a
/// higher metric takes over (S4's IX watch-group, OpenWrt's mwan3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub name: String,
    /// Address the echo requests go to.
    pub target: IpAddr,
    /// Source address of the echo requests; `None` = the kernel's choice on `device`.
    pub source: Option<IpAddr>,
    /// Uplink the probes are bound to (SO_BINDTODEVICE), whatever the routing table says.
    pub device: String,
    pub health: Health,
    pub route: WatchRoute,
    /// Run when the watch goes down.
    pub on_down: Option<Hook>,
    /// Run when the watch comes up.
    pub on_up: Option<Hook>,
}

/// The route a watch installs while it is up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchRoute {
    pub dst: IpNet,
    /// Gateway; same family as `dst`. At least one of `via` and `device` is set.
    pub via: Option<IpAddr>,
    pub device: Option<String>,
    pub table: u32,
    pub metric: u32,
}

/// Environment variable naming the watch, for [`Hook`]s.
pub const HOOK_ENV_WATCH: &str = "V6GATE_WATCH";
/// Environment variable holding `up` or `down`, for [`Hook`]s.
pub const HOOK_ENV_STATE: &str = "V6GATE_STATE";
/// Environment variable saying why the state changed, for [`Hook`]s.
pub const HOOK_ENV_REASON: &str = "V6GATE_REASON";

/// A program run on a watch transition, without a shell, with [`HOOK_ENV_WATCH`],
/// [`HOOK_ENV_STATE`] and [`HOOK_ENV_REASON`] set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hook {
    /// Absolute path: the daemon's `PATH` is not the administrator's.
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// TUN device name used when `device` is not configured.
pub fn default_device(tunnel_name: &str) -> String {
    format!("{DEVICE_PREFIX}{tunnel_name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel() -> Tunnel {
        Tunnel::new(
            "home",
            Mode::Ipip6,
            "2001:db8:a::1".parse().unwrap(),
            "2001:db8:a::2".parse().unwrap(),
        )
    }

    fn ipv4_path(name: &str) -> Path {
        Path::new(
            name,
            "198.18.0.1".parse().unwrap(),
            "198.18.0.2".parse().unwrap(),
            "v6g-home",
        )
    }

    #[test]
    fn effective_mtu_subtracts_outer_header() {
        let t = tunnel();
        assert_eq!(t.effective_mtu(|_| 1500), 1460);
        assert_eq!(t.effective_mtu(|_| 1280), 1240);
    }

    #[test]
    fn effective_mtu_subtracts_encap_limit_option_when_sent() {
        let mut t = tunnel();
        t.encap_limit = Some(4);
        assert_eq!(t.effective_mtu(|_| 1500), 1452);
        t.encap_limit = Some(0);
        assert_eq!(t.effective_mtu(|_| 1500), 1452);
    }

    #[test]
    fn effective_mtu_prefers_configured_value() {
        let mut t = tunnel();
        t.mtu = Some(1400);
        assert_eq!(t.effective_mtu(|_| 1500), 1400);
        assert_eq!(t.effective_mtu(|_| 9000), 1400);
        assert_eq!(t.path_mtu(&t.paths[0], 9000), 1400);
    }

    #[test]
    fn effective_mtu_keeps_ipv6_minimum_when_carrying_ipv6() {
        let mut t = tunnel();
        t.mode = Mode::Any;
        t.inner_families = InnerFamilies::BOTH;
        assert_eq!(t.effective_mtu(|_| 1280), 1280);
        assert_eq!(t.effective_mtu(|_| 1500), 1460);
        t.inner_families = InnerFamilies::IPV4;
        assert_eq!(t.effective_mtu(|_| 1280), 1240);
    }

    #[test]
    fn effective_mtu_saturates_on_tiny_underlay() {
        assert_eq!(tunnel().effective_mtu(|_| 20), 0);
    }

    #[test]
    fn ipv4_paths_cost_20_bytes_and_no_option() {
        let mut t = tunnel();
        t.encap_limit = Some(4);
        let p = ipv4_path("pppoe");
        assert_eq!(t.overhead(&p), 20);
        assert_eq!(t.overhead(&t.paths[0]), 48);
        assert_eq!(t.path_mtu(&p, 1454), 1434);
    }

    #[test]
    fn effective_mtu_is_the_smallest_over_paths() {
        let mut t = tunnel();
        let mut pppoe = ipv4_path("pppoe");
        t.paths.push(pppoe.clone());
        // IPoE 1500 - 40 = 1460, PPPoE 1454 - 20 = 1434.
        let host = |p: &Path| if p.is_ipv6() { 1500 } else { 1454 };
        assert_eq!(t.effective_mtu(host), 1434);
        // A configured underlay wins over the host's, path by path.
        pppoe.underlay_mtu = Some(1500);
        t.paths[1] = pppoe;
        assert_eq!(t.effective_mtu(host), 1460);
    }

    #[test]
    fn configured_underlays_are_not_asked_for() {
        let mut t = tunnel();
        t.paths[0].underlay_mtu = Some(1400);
        assert_eq!(t.effective_mtu(|_| panic!("asked")), 1360);
    }

    #[test]
    fn devices_follow_device_per_path() {
        let mut t = tunnel();
        let mut b = ipv4_path("b");
        b.device = "v6g-home-b".into();
        t.paths.push(b);
        assert_eq!(t.devices(), ["v6g-home"]);
        t.paths[0].device = "v6g-home-a".into();
        t.device_per_path = true;
        assert_eq!(t.devices(), ["v6g-home-a", "v6g-home-b"]);
        assert_eq!(t.path("b").map(|p| p.cost), Some(0));
        assert!(t.path("c").is_none());
    }

    #[test]
    fn defaults_follow_mode() {
        let t = tunnel();
        assert_eq!(t.device, "v6g-home");
        assert_eq!(t.inner_families, InnerFamilies::IPV4);
        assert_eq!(t.tclass, TrafficClass::Fixed(0));
        assert_eq!(t.hop_limit, 64);
        assert_eq!(t.route_table, 254);
        assert_eq!(t.paths.len(), 1);
        let p = &t.paths[0];
        assert_eq!(
            (p.name.as_str(), p.cost, p.probe),
            ("default", 0, Probe::None)
        );
        assert_eq!(p.device, "v6g-home");
        assert!(p.is_ipv6());
    }

    #[test]
    fn family_subsets() {
        assert!(InnerFamilies::IPV4.is_subset_of(InnerFamilies::BOTH));
        assert!(!InnerFamilies::BOTH.is_subset_of(InnerFamilies::IPV6));
        assert!(InnerFamilies::IPV6.is_subset_of(InnerFamilies::IPV6));
        assert!(!InnerFamilies::IPV6.is_subset_of(InnerFamilies::IPV4));
    }
}

//! Two-path tunnels in the lab (scenario S4): an IPv6 "IPoE" primary and an IPv4 "PPPoE"
//! backup between siteA and siteB, the failures that hit them in the field, and a 10 ms ping
//! that measures how long traffic was lost. Shared by the failover tests and the failover
//! benchmark.

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::{Gateway, Lab, LabError, LabOptions, Node, Site, Transfer};

/// Health timers of a two-path tunnel.
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub down_after: u32,
    pub up_after: u32,
    pub hold_down_ms: u64,
}

impl Default for Timers {
    /// The shipped defaults except a shorter hold-down, so tests see failback soon.
    fn default() -> Self {
        Self {
            interval_ms: 100,
            timeout_ms: 300,
            down_after: 3,
            up_after: 10,
            hold_down_ms: 2000,
        }
    }
}

/// What the two paths carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// IPv4 in IPv6 on the primary, IPv4 in IPv4 (RFC 2003) on the backup.
    Ipip6,
    /// ESP on both, one IKE SA per path.
    Ipsec,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ipip6 => "ipip6",
            Self::Ipsec => "ipsec",
        }
    }
}

/// The two-path tunnel config of `site`. An ipsec config reads its key from a file it
/// writes into `dir`.
pub fn config(kind: Kind, dir: &Path, site: Site, socket: &Path, timers: Timers) -> String {
    let (local6, remote6, local4, remote4, routes) = match site {
        Site::A => (
            "2001:db8:0:1::1",
            "2001:db8:0:2::1",
            "198.18.1.1",
            "198.18.2.1",
            Site::B.lan4(),
        ),
        Site::B => (
            "2001:db8:0:2::1",
            "2001:db8:0:1::1",
            "198.18.2.1",
            "198.18.1.1",
            Site::A.lan4(),
        ),
    };
    let tunnel = match kind {
        Kind::Ipip6 => format!("mode = \"ipip6\"\nroutes = [\"{routes}\"]\n"),
        Kind::Ipsec => {
            let psk = dir.join(format!("two-paths-{site:?}.psk"));
            // Written here rather than returned: the config names it, and the key must exist
            // (mode 0600) before the config validates.
            let _ = fs::write(&psk, super::strongswan::LAB_PSK);
            let _ = fs::set_permissions(&psk, fs::Permissions::from_mode(0o600));
            // The responder must be up first (siteB starts first in `TwoPaths::start`).
            let start = if site == Site::A { "auto" } else { "respond" };
            format!(
                "mode = \"ipsec\"\nlocal_subnets = [\"{ours}\"]\nroutes = [\"{routes}\"]\n\n\
                 [tunnel.ike]\npsk_file = \"{psk}\"\nstart = \"{start}\"\n",
                ours = site.lan4(),
                psk = psk.display()
            )
        }
    };
    format!(
        r#"[gateway]
control_socket = "{socket}"
ipv4_forwarding = true

[[tunnel]]
name = "ab"
{tunnel}
[[tunnel.path]]
name = "ipoe"
local = "{local6}"
remote = "{remote6}"
cost = 10

[[tunnel.path]]
name = "pppoe"
local = "{local4}"
remote = "{remote4}"
cost = 100

[tunnel.health]
interval = "{interval}ms"
timeout = "{timeout}ms"
down_after = {down}
up_after = {up}
hold_down = "{hold}ms"
"#,
        socket = socket.display(),
        interval = timers.interval_ms,
        timeout = timers.timeout_ms,
        down = timers.down_after,
        up = timers.up_after,
        hold = timers.hold_down_ms,
    )
}

/// A lab with both underlays and a two-path gateway in each site, carrying traffic on the
/// primary.
pub struct TwoPaths {
    pub lab: Lab,
    pub a: Gateway,
    pub b: Gateway,
}

impl TwoPaths {
    /// An ipip6 two-path lab.
    pub fn start(binary: &Path, timers: Timers) -> Result<Self, LabError> {
        Self::start_kind(binary, Kind::Ipip6, timers)
    }

    pub fn start_kind(binary: &Path, kind: Kind, timers: Timers) -> Result<Self, LabError> {
        let lab = Lab::two_sites(LabOptions {
            ipv4_underlay: true,
            ..LabOptions::default()
        })?;
        let start = |site: Site| {
            let socket = lab.dir().join(format!("two-paths-{site:?}.sock"));
            let path = lab.dir().join(format!("two-paths-{site:?}.toml"));
            fs::write(&path, config(kind, lab.dir(), site, &socket, timers))
                .map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
            lab.start_gateway_with(binary, site.node(), &path, &socket)
        };
        // siteB first: with IPsec it is the responder, and an initiator that starts first
        // loses its first IKE_SA_INIT and retries only seconds later.
        let b = start(Site::B)?;
        let a = start(Site::A)?;
        Ok(Self { lab, a, b })
    }

    /// Name of the path carrying siteA's traffic now.
    pub fn active_path(&self) -> String {
        self.a
            .tunnel_status("ab")
            .ok()
            .and_then(|status| {
                status["paths"]
                    .as_array()?
                    .iter()
                    .find(|p| p["active"] == true)?["name"]
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "none".into())
    }

    /// Waits (bounded) until siteA sees path `name` up; how long it took.
    pub fn wait_for_path_up(&self, name: &str, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < within {
            let up = self.a.tunnel_status("ab").ok().is_some_and(|status| {
                status["paths"].as_array().is_some_and(|paths| {
                    paths
                        .iter()
                        .any(|p| p["name"] == name && p["state"] == "up")
                })
            });
            if up {
                return Some(start.elapsed());
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits (bounded) until `want` carries the traffic; how long it took.
    pub fn wait_for_active(&self, want: &str, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.active_path() == want {
                return Some(start.elapsed());
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn cut(&self, failure: Failure) -> Result<(), LabError> {
        match failure {
            Failure::LinkDown => {
                // An ISP router keeps its address across a link flap; Linux drops IPv6
                // addresses of a device set down unless told not to.
                self.lab
                    .sysctl_set(Node::Wan, "net.ipv6.conf.to-a.keep_addr_on_down", "1")?;
                self.lab.ip(Node::Wan, &["link", "set", "to-a", "down"])?;
            }
            Failure::SilentDrop => {
                for script in [
                    "add table inet cut",
                    "add chain inet cut cut { type filter hook forward priority 0; }",
                    "add rule inet cut cut meta nfproto ipv6 drop",
                ] {
                    self.lab.exec_ok(Node::Wan, &["nft", script])?;
                }
            }
        }
        Ok(())
    }

    pub fn restore(&self, failure: Failure) -> Result<(), LabError> {
        match failure {
            Failure::LinkDown => self.lab.ip(Node::Wan, &["link", "set", "to-a", "up"])?,
            Failure::SilentDrop => self
                .lab
                .exec_ok(Node::Wan, &["nft", "delete table inet cut"])?,
        };
        Ok(())
    }

    /// Cuts the primary `failure`-style two seconds into an 8 s, 10 ms ping flood while
    /// `bytes` cross by TCP from hostA to hostB, and reports what the traffic saw. The primary
    /// stays cut.
    pub fn run_through_failure(&self, failure: Failure, bytes: u64) -> FailureRun {
        let pings = self.ping_flood(800);
        let (transfer, switched) = thread::scope(|scope| {
            let t = scope.spawn(|| {
                self.lab.tcp_transfer(
                    Node::HostB,
                    SocketAddr::new(IpAddr::V4(Site::B.host4()), 0),
                    Node::HostA,
                    bytes,
                    Duration::from_secs(60),
                )
            });
            thread::sleep(Duration::from_secs(2));
            let switched = self
                .cut(failure)
                .ok()
                .and_then(|()| self.wait_for_active("pppoe", Duration::from_secs(5)));
            (
                t.join().unwrap_or_else(|_| {
                    Err(LabError::io(
                        "TCP transfer",
                        std::io::Error::other("the transfer thread panicked"),
                    ))
                }),
                switched,
            )
        });
        FailureRun {
            pings: pings.join().unwrap_or_default(),
            transfer,
            switched,
        }
    }

    /// Starts a `ping -i 0.01` of `count` packets from hostA to hostB in the background.
    pub fn ping_flood(&self, count: u32) -> thread::JoinHandle<PingResult> {
        let ns = self.lab.namespace(Node::HostA).to_string();
        let target = Site::B.host4().to_string();
        thread::spawn(move || {
            let out = Command::new("ip")
                .args([
                    "netns", "exec", &ns, "ping", "-n", "-q", "-i", "0.01", "-W", "1",
                ])
                .args(["-c", &count.to_string(), &target])
                .output();
            match out {
                Ok(out) => PingResult::parse(&String::from_utf8_lossy(&out.stdout)),
                Err(_) => PingResult::default(),
            }
        })
    }
}

/// What [`TwoPaths::run_through_failure`] saw.
#[derive(Debug)]
pub struct FailureRun {
    pub pings: PingResult,
    pub transfer: Result<Transfer, LabError>,
    /// How long after the cut the backup carried the traffic; `None` if it never did.
    pub switched: Option<Duration>,
}

/// How the primary path fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The access link goes down (the kernel sees it).
    LinkDown,
    /// Packets vanish while the link stays up: a home gateway's state timeout, an upstream
    /// fault (the realistic failure; only probes can see it).
    SilentDrop,
}

impl Failure {
    pub const ALL: [Self; 2] = [Self::LinkDown, Self::SilentDrop];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LinkDown => "link down",
            Self::SilentDrop => "silent drop",
        }
    }
}

/// What a 10 ms ping flood saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PingResult {
    pub sent: u32,
    pub received: u32,
}

impl PingResult {
    fn parse(text: &str) -> Self {
        let Some(line) = text.lines().find(|l| l.contains("packets transmitted")) else {
            return Self::default();
        };
        let mut numbers = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse::<u32>().ok());
        Self {
            sent: numbers.next().unwrap_or(0),
            received: numbers.next().unwrap_or(0),
        }
    }

    /// Traffic lost, in milliseconds, at one packet per 10 ms.
    pub fn outage_ms(&self) -> u32 {
        self.sent.saturating_sub(self.received) * 10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summary_is_parsed() {
        let text = "--- 203.0.113.10 ping statistics ---\n\
                    800 packets transmitted, 765 received, 4.375% packet loss, time 8123ms\n";
        let r = PingResult::parse(text);
        assert_eq!(
            r,
            PingResult {
                sent: 800,
                received: 765
            }
        );
        assert_eq!(r.outage_ms(), 350);
        assert_eq!(PingResult::parse("garbage"), PingResult::default());
    }

    #[test]
    fn config_names_both_paths_and_timers() {
        let text = config(
            Kind::Ipip6,
            Path::new("/tmp"),
            Site::A,
            Path::new("/tmp/x.sock"),
            Timers::default(),
        );
        let parsed = control::Config::from_toml_str(&text, "two-paths").expect("valid config");
        let t = &parsed.tunnels[0];
        assert_eq!(t.paths.len(), 2);
        assert_eq!(t.paths[0].name, "ipoe");
        assert_eq!(t.paths[1].cost, 100);
        assert_eq!(t.health.interval, Duration::from_millis(100));
    }
}

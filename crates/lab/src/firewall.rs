//! A one-gateway lab for the firewall: an "internet" router, a gateway with an IPv6 "IPoE"
//! uplink, an IPv4 "PPPoE" uplink and a second IPv4 uplink that holds the main default route
//! (MAP-E's place in S2), a LAN bridge with a server and a client, and a host beyond a 1280-byte
//! link for Packet Too Big.
//!
//! ```text
//!   server ─┐                ┌─ wan0 (IPv6 IPoE) ─── to-gw6 ┐
//!           br0 ── gateway ──┼─ ppp0 (IPv4 PPPoE) ── to-ppp ┼─ internet ── to-far (MTU 1280) ── far
//!   client ─┘                └─ map0 (IPv4 default) ─ to-map ┘
//! ```
//!
//! Namespaces are named like the two-site lab's (`v6gl-{pid}-…`), so a lab left behind by a
//! killed test is swept by the next one, and all of them are deleted on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use crate::command::{checked, is_root, run};
use crate::error::LabError;
use crate::gateway::{GATEWAY_STOP_TIMEOUT, query_status, wait_for_daemon};
use crate::lab::LAB_COUNTER;
use crate::netns::{NAME_PREFIX, enter_netns, random_tag};
use crate::process::{Process, spawn_in};

/// Addresses of the firewall lab.
pub mod addr {
    /// The gateway on its IPv6 uplink, and the internet router there.
    pub const GW_WAN6: &str = "2001:db8:0:1::1";
    pub const INET_WAN6: &str = "2001:db8:0:1::ff";
    /// The gateway on its PPPoE uplink, and the router there.
    pub const GW_PPP4: &str = "198.18.1.1";
    pub const INET_PPP4: &str = "198.18.1.254";
    /// The gateway on the uplink of its main default route, and the router there.
    pub const GW_MAP4: &str = "198.18.3.1";
    pub const INET_MAP4: &str = "198.18.3.254";
    /// The gateway on its LAN.
    pub const GW_LAN4: &str = "198.51.100.1";
    pub const GW_LAN6: &str = "2001:db8:1::1";
    pub const LAN6: &str = "2001:db8:1::/64";
    pub const SERVER4: &str = "198.51.100.5";
    pub const SERVER6: &str = "2001:db8:1::5";
    pub const CLIENT4: &str = "198.51.100.10";
    pub const CLIENT6: &str = "2001:db8:1::10";
    /// A host on the IPv4 internet (an address of the internet router).
    pub const INTERNET4: &str = "203.0.113.1";
    /// A tunnel peer on the internet, and another address of the same router.
    pub const PEER6: &str = "2001:db8:0:2::1";
    pub const STRANGER6: &str = "2001:db8:0:2::2";
    /// The host beyond the small link.
    pub const FAR6: &str = "2001:db8:0:3::1";
    pub const INET_FAR6: &str = "2001:db8:0:3::ff";
}

/// Device names in the gateway.
pub mod dev {
    pub const WAN6: &str = "wan0";
    pub const PPP: &str = "ppp0";
    pub const MAP: &str = "map0";
    pub const LAN: &str = "br0";
}

/// A machine of the firewall lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Internet,
    Gateway,
    Server,
    Client,
    Far,
}

impl Role {
    pub const ALL: [Self; 5] = [
        Self::Internet,
        Self::Gateway,
        Self::Server,
        Self::Client,
        Self::Far,
    ];

    fn tag(self) -> &'static str {
        match self {
            Self::Internet => "inet",
            Self::Gateway => "gw",
            Self::Server => "srv",
            Self::Client => "cli",
            Self::Far => "far",
        }
    }
}

/// A running firewall lab; dropping it deletes its namespaces.
pub struct FirewallLab {
    namespaces: Vec<String>,
    created: Vec<String>,
    dir: PathBuf,
    /// Daemons started so far, for unique log file names.
    daemons: AtomicU32,
}

impl FirewallLab {
    pub fn new() -> Result<Self, LabError> {
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        crate::netns::sweep_stale_namespaces();
        let id = format!(
            "{NAME_PREFIX}-{}-{}-{:04x}",
            std::process::id(),
            LAB_COUNTER.fetch_add(1, Ordering::Relaxed),
            random_tag()
        );
        let dir = std::env::temp_dir().join(&id);
        fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        let mut lab = Self {
            namespaces: Role::ALL
                .iter()
                .map(|r| format!("{id}-{}", r.tag()))
                .collect(),
            created: Vec::new(),
            dir,
            daemons: AtomicU32::new(0),
        };
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), LabError> {
        use addr::*;
        for role in Role::ALL {
            let name = self.namespace(role).to_owned();
            checked(
                format!("ip netns add {name}"),
                run("ip", &["netns", "add", &name])?,
            )?;
            self.created.push(name);
            self.ip(role, &["link", "set", "lo", "up"])?;
            for key in ["all", "default"] {
                self.sysctl(role, &format!("net.ipv6.conf.{key}.accept_dad"), "0")?;
            }
        }
        let (inet, gw) = (Role::Internet, Role::Gateway);
        self.link(
            gw,
            dev::WAN6,
            &[&format!("{GW_WAN6}/64")],
            inet,
            "to-gw6",
            &[&format!("{INET_WAN6}/64")],
        )?;
        self.link(
            gw,
            dev::PPP,
            &[&format!("{GW_PPP4}/24")],
            inet,
            "to-ppp",
            &[&format!("{INET_PPP4}/24")],
        )?;
        self.link(
            gw,
            dev::MAP,
            &[&format!("{GW_MAP4}/24")],
            inet,
            "to-map",
            &[&format!("{INET_MAP4}/24")],
        )?;
        // PPPoE's MTU, so MSS clamping has something to clamp to.
        self.ip(gw, &["link", "set", dev::PPP, "mtu", "1454"])?;
        self.ip(inet, &["link", "set", "to-ppp", "mtu", "1454"])?;
        self.link(
            Role::Far,
            "eth0",
            &[&format!("{FAR6}/64")],
            inet,
            "to-far",
            &[&format!("{INET_FAR6}/64")],
        )?;
        for (role, device) in [(Role::Far, "eth0"), (inet, "to-far")] {
            self.ip(role, &["link", "set", device, "mtu", "1280"])?;
        }
        self.ip(
            Role::Far,
            &["-6", "route", "add", "default", "via", INET_FAR6],
        )?;

        self.ip(gw, &["link", "add", dev::LAN, "type", "bridge"])?;
        self.ip(gw, &["link", "set", dev::LAN, "up"])?;
        self.addr(gw, dev::LAN, &format!("{GW_LAN4}/24"))?;
        self.addr(gw, dev::LAN, &format!("{GW_LAN6}/64"))?;
        for (role, port, v4, v6) in [
            (Role::Server, "lan-srv", SERVER4, SERVER6),
            (Role::Client, "lan-cli", CLIENT4, CLIENT6),
        ] {
            self.link(
                gw,
                port,
                &[],
                role,
                "eth0",
                &[&format!("{v4}/24"), &format!("{v6}/64")],
            )?;
            self.ip(gw, &["link", "set", port, "master", dev::LAN])?;
            self.ip(role, &["route", "add", "default", "via", GW_LAN4])?;
            self.ip(role, &["-6", "route", "add", "default", "via", GW_LAN6])?;
        }

        // The gateway: IPv6 out of the IPoE uplink, IPv4 by default out of map0; the PPPoE
        // uplink is used only through the policy table the test installs.
        self.ip(gw, &["-6", "route", "add", "default", "via", INET_WAN6])?;
        self.ip(gw, &["route", "add", "default", "via", INET_MAP4])?;
        self.sysctl(gw, "net.ipv4.ip_forward", "1")?;
        self.sysctl(gw, "net.ipv6.conf.all.forwarding", "1")?;

        // The internet: routes the LAN's IPv6 prefix to the gateway, not its IPv4 (private
        // behind NAT), and checks sources strictly, so a reply that leaves the gateway by
        // the wrong uplink is dropped instead of delivered.
        self.addr(inet, "lo", &format!("{INTERNET4}/32"))?;
        for a in [PEER6, STRANGER6] {
            self.addr(inet, "lo", &format!("{a}/128"))?;
        }
        self.ip(inet, &["-6", "route", "add", LAN6, "via", GW_WAN6])?;
        self.sysctl(inet, "net.ipv4.ip_forward", "1")?;
        self.sysctl(inet, "net.ipv6.conf.all.forwarding", "1")?;
        for device in ["all", "default", "to-ppp", "to-map"] {
            self.sysctl(inet, &format!("net.ipv4.conf.{device}.rp_filter"), "1")?;
        }
        Ok(())
    }

    /// A veth pair between two namespaces, addressed and up.
    fn link(
        &self,
        a: Role,
        a_dev: &str,
        a_addrs: &[&str],
        b: Role,
        b_dev: &str,
        b_addrs: &[&str],
    ) -> Result<(), LabError> {
        let b_ns = self.namespace(b).to_owned();
        self.ip(
            a,
            &[
                "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b_ns,
            ],
        )?;
        for (role, device, addrs) in [(a, a_dev, a_addrs), (b, b_dev, b_addrs)] {
            for address in addrs {
                self.addr(role, device, address)?;
            }
            self.ip(role, &["link", "set", device, "up"])?;
        }
        Ok(())
    }

    fn addr(&self, role: Role, device: &str, prefix: &str) -> Result<(), LabError> {
        let mut args = vec!["addr", "add", prefix, "dev", device];
        if prefix.contains(':') {
            args.push("nodad");
        }
        self.ip(role, &args).map(drop)
    }

    fn sysctl(&self, role: Role, key: &str, value: &str) -> Result<(), LabError> {
        self.exec_ok(role, &["sysctl", "-qw", &format!("{key}={value}")])
            .map(drop)
    }

    /// The namespace of `role`.
    pub fn namespace(&self, role: Role) -> &str {
        &self.namespaces[Role::ALL.iter().position(|r| *r == role).expect("a role")]
    }

    /// The lab's own temporary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ip -n NS args...`, insisting on success; returns stdout.
    pub fn ip(&self, role: Role, args: &[&str]) -> Result<String, LabError> {
        let mut full = vec!["-n", self.namespace(role)];
        full.extend_from_slice(args);
        let output = run("ip", &full)?;
        checked(format!("[{role:?}] ip {}", args.join(" ")), output)
    }

    /// Runs `args` in `role`'s namespace to completion.
    pub fn exec(&self, role: Role, args: &[&str]) -> Result<Output, LabError> {
        let mut full = vec!["netns", "exec", self.namespace(role)];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Like [`FirewallLab::exec`], insisting on exit code 0; returns stdout.
    pub fn exec_ok(&self, role: Role, args: &[&str]) -> Result<String, LabError> {
        let output = self.exec(role, args)?;
        checked(format!("[{role:?}] {}", args.join(" ")), output)
    }

    /// Runs `f` on a thread inside `role`'s namespace and returns what it returns.
    pub fn on<T: Send + 'static>(
        &self,
        role: Role,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, LabError> {
        let ns = self.namespace(role).to_owned();
        thread::spawn(move || enter_netns(&ns).map(|()| f()))
            .join()
            .map_err(|_| {
                LabError::io(
                    format!("thread in {role:?}"),
                    std::io::Error::other("panicked"),
                )
            })?
            .map_err(|e| LabError::io(format!("entering {role:?}"), e))
    }
}

/// `v6gate run` in the gateway's namespace. Dropping it terminates it; declare it after the
/// lab so it goes first.
pub struct FirewallDaemon {
    process: Process,
    binary: PathBuf,
    socket: PathBuf,
}

impl FirewallLab {
    /// Starts `binary run --config CONFIG` in the gateway and waits until `socket` answers.
    pub fn start_daemon(
        &self,
        binary: &Path,
        config: &Path,
        socket: &Path,
    ) -> Result<FirewallDaemon, LabError> {
        let n = self.daemons.fetch_add(1, Ordering::Relaxed);
        let config = config.to_string_lossy();
        let process = spawn_in(
            self.namespace(Role::Gateway),
            &self.dir,
            format!("v6gate-{n}"),
            &[&binary.to_string_lossy(), "run", "--config", &config],
        )?;
        let daemon = FirewallDaemon {
            process,
            binary: binary.to_owned(),
            socket: socket.to_owned(),
        };
        wait_for_daemon(&daemon.process, binary, socket, "the firewall lab", || {
            daemon.log()
        })?;
        Ok(daemon)
    }
}

impl FirewallDaemon {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.process.stderr()
    }

    /// `v6gate status --json`.
    pub fn status(&self) -> Result<serde_json::Value, LabError> {
        query_status(&self.binary, &self.socket).map_err(|message| LabError::Gateway {
            message,
            log: self.log(),
        })
    }

    /// SIGTERM and insist on a clean exit within [`GATEWAY_STOP_TIMEOUT`].
    pub fn stop(self) -> Result<(), LabError> {
        self.process
            .signal(libc::SIGTERM)
            .map_err(|e| LabError::io("cannot send SIGTERM", e))?;
        match self.process.wait_timeout(GATEWAY_STOP_TIMEOUT) {
            Ok(Some(status)) if status.success() => Ok(()),
            other => Err(LabError::Gateway {
                message: format!("no clean exit after SIGTERM: {other:?}"),
                log: self.log(),
            }),
        }
    }

    /// SIGKILL: leaves what it installed behind, like a crash. Returns its log.
    pub fn kill(self) -> Result<String, LabError> {
        self.process
            .kill()
            .map_err(|e| LabError::io("cannot kill the daemon", e))?;
        // The kernel has let go of the killed process's sockets once it is reaped.
        thread::sleep(Duration::from_millis(50));
        Ok(self.log())
    }
}

impl Drop for FirewallLab {
    fn drop(&mut self) {
        for name in self.created.iter().rev() {
            let _ = run("ip", &["netns", "del", name]);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

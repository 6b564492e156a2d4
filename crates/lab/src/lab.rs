//! The two-site lab itself: its namespaces and links, commands run in them, and teardown.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::command::{checked, is_root, run, run_ok};
use crate::error::LabError;
use crate::netns::{NAME_PREFIX, random_tag, sweep_stale_namespaces};
use crate::process::{Process, ProcessSlot, TERMINATE_GRACE, spawn_in};
use crate::topology::{LabOptions, Node, Site, addr, dev};

/// A running lab. Dropping it stops its processes and deletes its namespaces.
pub struct Lab {
    id: String,
    namespaces: [String; 5],
    created: Vec<String>,
    pub(crate) dir: PathBuf,
    processes: Mutex<Vec<Arc<Mutex<ProcessSlot>>>>,
    counter: AtomicU32,
    options: LabOptions,
}

pub(crate) static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// hostA —lan— siteA —wan6— wan —wan6— siteB —lan— hostB, addressed as in [`addr`].
    pub fn two_sites(options: LabOptions) -> Result<Self, LabError> {
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        sweep_stale_namespaces();
        let id = format!(
            "{NAME_PREFIX}-{}-{}-{:04x}",
            std::process::id(),
            LAB_COUNTER.fetch_add(1, Ordering::Relaxed),
            random_tag()
        );
        let namespaces = Node::ALL.map(|node| format!("{id}-{}", node.tag()));
        let dir = std::env::temp_dir().join(&id);
        fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        let mut lab = Self {
            id,
            namespaces,
            created: Vec::new(),
            dir,
            processes: Mutex::new(Vec::new()),
            counter: AtomicU32::new(0),
            options,
        };
        // On error `lab` drops here and removes whatever was already built.
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), LabError> {
        for node in Node::ALL {
            let name = self.namespaces[node.index()].clone();
            run_ok("ip", &["netns", "add", &name])?;
            self.created.push(name);
            self.ip(node, &["link", "set", "lo", "up"])?;
            // Without DAD, addresses are usable at once instead of after ~1 s, on veths and
            // on the gateways' TUN devices alike.
            self.sysctl_set(node, "net.ipv6.conf.all.accept_dad", "0")?;
            self.sysctl_set(node, "net.ipv6.conf.default.accept_dad", "0")?;
        }
        for site in [Site::A, Site::B] {
            self.build_site(site)?;
        }
        self.sysctl_set(Node::Wan, "net.ipv6.conf.all.forwarding", "1")?;
        if self.options.ipv4_underlay {
            self.sysctl_set(Node::Wan, "net.ipv4.ip_forward", "1")?;
        }
        Ok(())
    }

    fn build_site(&self, site: Site) -> Result<(), LabError> {
        let (site_node, host) = (site.node(), site.host());
        let (wan_dev, wan_dev4) = match site {
            Site::A => (dev::WAN_TO_A6, dev::WAN_TO_A4),
            Site::B => (dev::WAN_TO_B6, dev::WAN_TO_B4),
        };
        let (site_lan4, site_lan6, host4, host6, wan6, site_wan6) = match site {
            Site::A => (
                addr::SITE_A_LAN4,
                addr::SITE_A_LAN6,
                addr::HOST_A4,
                addr::HOST_A6,
                addr::WAN_A6,
                addr::SITE_A_WAN6,
            ),
            Site::B => (
                addr::SITE_B_LAN4,
                addr::SITE_B_LAN6,
                addr::HOST_B4,
                addr::HOST_B6,
                addr::WAN_B6,
                addr::SITE_B_WAN6,
            ),
        };

        // LAN: site <-> host.
        self.veth(site_node, dev::LAN, host, dev::LAN)?;
        self.addr_add(site_node, dev::LAN, &format!("{site_lan4}/24"))?;
        self.addr_add(site_node, dev::LAN, &format!("{site_lan6}/64"))?;
        self.addr_add(host, dev::LAN, &format!("{host4}/24"))?;
        self.addr_add(host, dev::LAN, &format!("{host6}/64"))?;
        self.ip(site_node, &["link", "set", dev::LAN, "up"])?;
        self.ip(host, &["link", "set", dev::LAN, "up"])?;
        self.ip(
            host,
            &["route", "add", "default", "via", &site_lan4.to_string()],
        )?;
        self.ip(
            host,
            &[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &site_lan6.to_string(),
            ],
        )?;

        // IPv6 underlay: site <-> wan.
        self.veth(site_node, dev::WAN6, Node::Wan, wan_dev)?;
        let mtu = match site {
            Site::A => self.options.wan_a_mtu,
            Site::B => self.options.wan_b_mtu,
        };
        if let Some(mtu) = mtu {
            let mtu = mtu.to_string();
            self.ip(site_node, &["link", "set", dev::WAN6, "mtu", &mtu])?;
            self.ip(Node::Wan, &["link", "set", wan_dev, "mtu", &mtu])?;
        }
        self.addr_add(site_node, dev::WAN6, &format!("{site_wan6}/64"))?;
        self.addr_add(Node::Wan, wan_dev, &format!("{wan6}/64"))?;
        self.ip(site_node, &["link", "set", dev::WAN6, "up"])?;
        self.ip(Node::Wan, &["link", "set", wan_dev, "up"])?;
        self.ip(
            site_node,
            &["-6", "route", "add", "default", "via", &wan6.to_string()],
        )?;

        // The sites route IPv6 for their LANs (ip6ip6 tests); IPv4 forwarding is the
        // gateway's business unless asked for.
        self.sysctl_set(site_node, "net.ipv6.conf.all.forwarding", "1")?;
        if self.options.site_ipv4_forwarding {
            self.sysctl_set(site_node, "net.ipv4.ip_forward", "1")?;
        }

        if self.options.ipv4_underlay {
            let (site4, wan4) = match site {
                Site::A => (addr::SITE_A_WAN4, addr::WAN_A4),
                Site::B => (addr::SITE_B_WAN4, addr::WAN_B4),
            };
            self.veth(site_node, dev::WAN4, Node::Wan, wan_dev4)?;
            self.addr_add(site_node, dev::WAN4, &format!("{site4}/24"))?;
            self.addr_add(Node::Wan, wan_dev4, &format!("{wan4}/24"))?;
            self.ip(site_node, &["link", "set", dev::WAN4, "up"])?;
            self.ip(Node::Wan, &["link", "set", wan_dev4, "up"])?;
            // A route to the other site's underlay only, not a default: the IPv4 LANs stay
            // unrouted until a tunnel (or a test) routes them.
            let other = match site {
                Site::A => "198.18.2.0/24",
                Site::B => "198.18.1.0/24",
            };
            self.ip(
                site_node,
                &["route", "add", other, "via", &wan4.to_string()],
            )?;
        }
        Ok(())
    }

    fn veth(&self, a: Node, a_dev: &str, b: Node, b_dev: &str) -> Result<(), LabError> {
        let b_ns = self.namespace(b).to_owned();
        self.ip(
            a,
            &[
                "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b_ns,
            ],
        )
        .map(drop)
    }

    fn addr_add(&self, node: Node, device: &str, prefix: &str) -> Result<(), LabError> {
        let mut args = vec!["addr", "add", prefix, "dev", device];
        if prefix.contains(':') {
            args.push("nodad");
        }
        self.ip(node, &args).map(drop)
    }

    /// `ip -n NS args...`, insisting on success; returns stdout.
    pub fn ip(&self, node: Node, args: &[&str]) -> Result<String, LabError> {
        let mut full = vec!["-n", self.namespace(node)];
        full.extend_from_slice(args);
        run_ok("ip", &full)
    }

    /// Unique id of this lab (also the prefix of its namespace names).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The network namespace name of `node`.
    pub fn namespace(&self, node: Node) -> &str {
        &self.namespaces[node.index()]
    }

    /// All namespace names of this lab.
    pub fn namespaces(&self) -> &[String; 5] {
        &self.namespaces
    }

    /// The lab's private temporary directory (configs, sockets, logs, captures).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &LabOptions {
        &self.options
    }

    pub(crate) fn unique(&self, stem: &str) -> String {
        format!("{stem}-{}", self.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// Runs `args` inside `node`'s namespace to completion (stdin closed).
    pub fn exec(&self, node: Node, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", self.namespace(node)];
        full.extend_from_slice(args);
        run("ip", &full).unwrap_or_else(|e| Output {
            status: failed_status(),
            stdout: Vec::new(),
            stderr: e.to_string().into_bytes(),
        })
    }

    /// Like [`Lab::exec`] but insists on exit code 0; returns stdout.
    pub fn exec_ok(&self, node: Node, args: &[&str]) -> Result<String, LabError> {
        let output = self.exec(node, args);
        checked(format!("[{node}] {}", args.join(" ")), output)
    }

    /// Reads a sysctl inside `node`, e.g. `net.ipv4.ip_forward`.
    pub fn sysctl(&self, node: Node, key: &str) -> Result<String, LabError> {
        Ok(self
            .exec_ok(node, &["sysctl", "-n", key])?
            .trim()
            .to_owned())
    }

    /// Writes a sysctl inside `node`.
    pub fn sysctl_set(&self, node: Node, key: &str, value: &str) -> Result<(), LabError> {
        self.exec_ok(node, &["sysctl", "-qw", &format!("{key}={value}")])
            .map(drop)
    }

    /// Starts `args` in the background inside `node`, stdout and stderr to files in the
    /// lab directory. The lab terminates it on drop if the handle has not already.
    pub fn spawn(&self, node: Node, label: &str, args: &[&str]) -> Result<Process, LabError> {
        let label = self.unique(&format!("{}-{label}", node.tag()));
        let process = spawn_in(self.namespace(node), &self.dir, label, args)?;
        self.processes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&process.slot));
        Ok(process)
    }
}

fn failed_status() -> ExitStatus {
    std::os::unix::process::ExitStatusExt::from_raw(1 << 8)
}

impl Drop for Lab {
    fn drop(&mut self) {
        let processes =
            std::mem::take(&mut *self.processes.lock().unwrap_or_else(|e| e.into_inner()));
        for slot in processes {
            let _ = slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .terminate(TERMINATE_GRACE);
        }
        for name in self.created.iter().rev() {
            let _ = run("ip", &["netns", "del", name]);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::netns_names;

    fn lab(options: LabOptions) -> Lab {
        Lab::two_sites(options).unwrap_or_else(|e| panic!("cannot build the lab: {e}"))
    }

    #[test]
    fn two_sites_route_ipv6_across_wan_and_leave_nothing_behind() {
        let lab = lab(LabOptions::default());
        let id = lab.id().to_owned();
        assert_eq!(
            netns_names().iter().filter(|n| n.starts_with(&id)).count(),
            5
        );
        // Site to site through the wan router, and each host to its own site.
        assert!(lab.ping(Node::SiteA, addr::SITE_B_WAN6.into(), 2));
        assert!(lab.ping(Node::SiteB, addr::SITE_A_WAN6.into(), 2));
        assert!(lab.ping(Node::HostA, addr::SITE_A_LAN4.into(), 1));
        assert!(lab.ping(Node::HostB, addr::SITE_B_LAN6.into(), 1));
        // No tunnel, no IPv4 route between the LANs.
        assert!(!lab.ping(Node::HostA, addr::HOST_B4.into(), 1));
        assert_eq!(lab.sysctl(Node::SiteA, "net.ipv4.ip_forward").unwrap(), "0");
        assert_eq!(
            lab.sysctl(Node::SiteA, "net.ipv6.conf.all.forwarding")
                .unwrap(),
            "1"
        );
        let sleeper = lab.spawn(Node::Wan, "sleep", &["sleep", "60"]).unwrap();
        let pid = sleeper.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        let dir = lab.dir().to_owned();
        drop(lab);
        assert!(netns_names().iter().all(|n| !n.starts_with(&id)));
        assert!(!dir.exists());
        // The lab reaped it, so the pid is gone (or at least no longer our sleep).
        let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(!cmdline.starts_with("sleep"));
        drop(sleeper);
    }

    #[test]
    fn wan_mtu_and_ipv4_underlay_options() {
        let lab = lab(LabOptions {
            ipv4_underlay: true,
            wan_b_mtu: Some(1400),
            ..LabOptions::default()
        });
        let link = lab.ip(Node::SiteB, &["link", "show", dev::WAN6]).unwrap();
        assert!(link.contains("mtu 1400"), "{link}");
        assert!(lab.ping(Node::SiteA, addr::SITE_B_WAN4.into(), 2));
        // A 1400-byte IPv6 packet fits siteA's link but not siteB's: the wan router
        // answers Packet Too Big, which ping reports as an error.
        let out = lab.ping_output(
            Node::SiteA,
            addr::SITE_B_WAN6.into(),
            2,
            &["-M", "do", "-s", "1380"],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains("1400") || text.to_lowercase().contains("too big"),
            "{text}"
        );
    }
}

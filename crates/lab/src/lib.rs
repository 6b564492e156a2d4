//! Network-namespace lab: two sites joined by an IPv6 router, for the demo (`v6gate-demo`)
//! and the end-to-end tests. The product does not depend on it: the tests take it as a
//! dev-dependency and start the `v6gate` binary they were built with.
//!
//! ```text
//!  hostA ──lan── siteA ──wan6── wan ──wan6── siteB ──lan── hostB
//!                  └────wan4───┘  └───wan4────┘            (optional IPv4 underlay)
//! ```
//!
//! Every namespace, link and process belongs to one [`Lab`] and goes away when it is
//! dropped, also while a test unwinds from a panic. Veth pairs are created from inside a lab
//! namespace straight into their peer namespace, so the root namespace is never touched, and
//! device names only need to be unique per namespace. Namespace names carry the process id,
//! a counter and a random tag so that labs can be built in parallel, and so that a lab left
//! behind by a killed test process can be recognised and swept by the next one.
//!
//! Only documentation prefixes are used: 2001:db8::/32, 198.51.100.0/24, 203.0.113.0/24 and
//! 198.18.0.0/15.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

pub mod demo;
pub mod firewall;
pub mod multipath;
pub mod strongswan;

/// Prefix of every namespace and temporary directory a lab creates.
const NAME_PREFIX: &str = "v6gl";

/// How long a process gets between SIGTERM and SIGKILL when the lab tears it down.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(3);

/// How long [`Lab::start_gateway`] waits for the control socket to answer.
pub const GATEWAY_START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`Gateway::stop`] waits for a clean exit after SIGTERM.
pub const GATEWAY_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Addresses of the two-site topology.
pub mod addr {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// siteA's underlay address, the A end of the tunnel.
    pub const SITE_A_WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
    /// siteB's underlay address, the B end of the tunnel.
    pub const SITE_B_WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1);
    /// The wan router on siteA's link.
    pub const WAN_A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0xff);
    /// The wan router on siteB's link.
    pub const WAN_B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 0xff);

    pub const LAN_A4: &str = "198.51.100.0/24";
    pub const SITE_A_LAN4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    pub const HOST_A4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    pub const LAN_A6: &str = "2001:db8:a::/64";
    pub const SITE_A_LAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
    pub const HOST_A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 0x10);

    pub const LAN_B4: &str = "203.0.113.0/24";
    pub const SITE_B_LAN4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    pub const HOST_B4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    pub const LAN_B6: &str = "2001:db8:b::/64";
    pub const SITE_B_LAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 1);
    pub const HOST_B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 0x10);

    /// Second (IPv4) underlay, present with `LabOptions::ipv4_underlay`.
    pub const SITE_A_WAN4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
    pub const WAN_A4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 254);
    pub const SITE_B_WAN4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
    pub const WAN_B4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 254);
}

/// Device names inside the lab namespaces.
pub mod dev {
    /// A site's LAN link, and the host's only link.
    pub const LAN: &str = "lan0";
    /// A site's IPv6 underlay link.
    pub const WAN6: &str = "wan0";
    /// A site's IPv4 underlay link.
    pub const WAN4: &str = "wan4";
    /// The wan router's links towards siteA and siteB.
    pub const WAN_TO_A6: &str = "to-a";
    pub const WAN_TO_B6: &str = "to-b";
    pub const WAN_TO_A4: &str = "to-a4";
    pub const WAN_TO_B4: &str = "to-b4";
}

/// One machine of the two-site topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    HostA,
    SiteA,
    Wan,
    SiteB,
    HostB,
}

impl Node {
    pub const ALL: [Self; 5] = [
        Self::HostA,
        Self::SiteA,
        Self::Wan,
        Self::SiteB,
        Self::HostB,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// Short tag used in namespace and file names.
    pub fn tag(self) -> &'static str {
        match self {
            Self::HostA => "ha",
            Self::SiteA => "sa",
            Self::Wan => "wan",
            Self::SiteB => "sb",
            Self::HostB => "hb",
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HostA => "hostA",
            Self::SiteA => "siteA",
            Self::Wan => "wan",
            Self::SiteB => "siteB",
            Self::HostB => "hostB",
        })
    }
}

/// One of the two tunnel gateways.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Site {
    A,
    B,
}

impl Site {
    pub fn node(self) -> Node {
        match self {
            Self::A => Node::SiteA,
            Self::B => Node::SiteB,
        }
    }

    pub fn host(self) -> Node {
        match self {
            Self::A => Node::HostA,
            Self::B => Node::HostB,
        }
    }

    pub fn peer(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    /// The site's underlay address, its tunnel endpoint.
    pub fn wan6(self) -> Ipv6Addr {
        match self {
            Self::A => addr::SITE_A_WAN6,
            Self::B => addr::SITE_B_WAN6,
        }
    }

    /// The IPv4 prefix of the site's LAN.
    pub fn lan4(self) -> &'static str {
        match self {
            Self::A => addr::LAN_A4,
            Self::B => addr::LAN_B4,
        }
    }

    /// The IPv6 prefix of the site's LAN.
    pub fn lan6(self) -> &'static str {
        match self {
            Self::A => addr::LAN_A6,
            Self::B => addr::LAN_B6,
        }
    }

    /// The LAN host's IPv4 address.
    pub fn host4(self) -> Ipv4Addr {
        match self {
            Self::A => addr::HOST_A4,
            Self::B => addr::HOST_B4,
        }
    }

    /// The LAN host's IPv6 address.
    pub fn host6(self) -> Ipv6Addr {
        match self {
            Self::A => addr::HOST_A6,
            Self::B => addr::HOST_B6,
        }
    }

    fn letter(self) -> char {
        match self {
            Self::A => 'a',
            Self::B => 'b',
        }
    }
}

/// Knobs of [`Lab::two_sites`].
#[derive(Clone, Debug, Default)]
pub struct LabOptions {
    /// Add the second, IPv4 underlay (198.18.1.0/24 and 198.18.2.0/24 through wan).
    pub ipv4_underlay: bool,
    /// MTU of the siteA <-> wan IPv6 link (both ends); `None` keeps the veth default, 1500.
    pub wan_a_mtu: Option<u32>,
    /// MTU of the wan <-> siteB IPv6 link (both ends). Smaller than siteA's link, it makes
    /// the wan router answer big packets from siteA with ICMPv6 Packet Too Big.
    pub wan_b_mtu: Option<u32>,
    /// Turn IPv4 forwarding on in the sites. Off by default, so that a gateway's
    /// `ipv4_forwarding` setting, and its restore on stop, are what is observed.
    pub site_ipv4_forwarding: bool,
}

/// What went wrong while building or driving a lab.
#[derive(Debug)]
pub enum LabError {
    /// Namespaces, veths and TUN devices need CAP_NET_ADMIN; the lab insists on root.
    NotRoot,
    /// An external command failed.
    Command {
        command: String,
        status: Option<i32>,
        stderr: String,
    },
    /// A local I/O operation failed.
    Io { context: String, source: io::Error },
    /// Something did not happen in time.
    Timeout { what: String, detail: String },
    /// A gateway misbehaved: early exit, unclean stop, unreadable status.
    Gateway { message: String, log: String },
}

impl LabError {
    fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRoot => write!(
                f,
                "the network-namespace lab must run as root (it creates namespaces, veth \
                 pairs and TUN devices); run the tests as root, e.g. with sudo"
            ),
            Self::Command {
                command,
                status,
                stderr,
            } => {
                write!(f, "`{command}` failed")?;
                if let Some(code) = status {
                    write!(f, " with exit code {code}")?;
                }
                if !stderr.trim().is_empty() {
                    write!(f, ": {}", stderr.trim())?;
                }
                Ok(())
            }
            Self::Io { context, source } => write!(f, "{context}: {source}"),
            Self::Timeout { what, detail } => {
                write!(f, "timed out waiting for {what}")?;
                if !detail.trim().is_empty() {
                    write!(f, "\n{}", detail.trim_end())?;
                }
                Ok(())
            }
            Self::Gateway { message, log } => {
                write!(f, "{message}")?;
                if !log.trim().is_empty() {
                    write!(f, "\n--- gateway log ---\n{}", log.trim_end())?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LabError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// True when the process runs as root.
pub fn is_root() -> bool {
    // The real uid from /proc avoids an unsafe libc call; the "Uid:" line is
    // "real effective saved fs".
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn describe(program: &str, args: &[&str]) -> String {
    let mut text = program.to_owned();
    for arg in args {
        text.push(' ');
        text.push_str(arg);
    }
    text
}

/// Runs a command to completion with no stdin and returns its output, an error only when
/// it could not be started.
fn run(program: &str, args: &[&str]) -> Result<Output, LabError> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::io(format!("cannot run `{}`", describe(program, args)), e))
}

/// Runs a command and insists on exit code 0; returns stdout.
fn run_ok(program: &str, args: &[&str]) -> Result<String, LabError> {
    let output = run(program, args)?;
    checked(describe(program, args), output)
}

fn checked(command: String, output: Output) -> Result<String, LabError> {
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command,
            status: output.status.code(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

fn random_tag() -> u16 {
    let mut bytes = [0u8; 2];
    if fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        // Uniqueness already comes from pid + counter; the tag only guards against a
        // recycled pid meeting a lab that was never torn down.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        bytes = (nanos as u16).to_le_bytes();
    }
    u16::from_le_bytes(bytes)
}

/// Deletes namespaces left by lab processes that no longer exist (a test run killed
/// before its Drop could run), and their temporary directories. Namespaces of live lab
/// processes are never touched, nor namespaces some process still runs in (a lab kept up
/// on purpose by `v6gate-demo --keep`).
fn sweep_stale_namespaces() {
    let _sweeping = SWEEP.lock().unwrap_or_else(|e| e.into_inner());
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    let in_use = namespaces_in_use();
    let mut kept_labs = HashSet::new();
    let mut dead_labs = HashSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|r| r.strip_prefix('-'))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        // "{prefix}-{pid}-{counter}-{tag}-{node}" without the node is the lab id.
        let lab_id = name
            .rsplit_once('-')
            .map_or(name.as_str(), |(id, _)| id)
            .to_owned();
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let inode = std::os::unix::fs::MetadataExt::ino(&match entry.metadata() {
            Ok(metadata) => metadata,
            Err(_) => continue,
        });
        if in_use.contains(&inode) {
            kept_labs.insert(lab_id);
        } else {
            let _ = run("ip", &["netns", "del", &name]);
            dead_labs.insert(lab_id);
        }
    }
    for lab_id in dead_labs.difference(&kept_labs) {
        let _ = fs::remove_dir_all(std::env::temp_dir().join(lab_id));
    }
    // Directories whose namespaces were removed by hand (a kept demo taken down).
    let Ok(dirs) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for dir in dirs.flatten() {
        let id = dir.file_name().to_string_lossy().into_owned();
        let Some(pid) = id
            .strip_prefix(NAME_PREFIX)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let has_namespaces = fs::read_dir("/run/netns").is_ok_and(|mut entries| {
            entries.any(|e| {
                e.is_ok_and(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{id}-"))
                })
            })
        });
        if !has_namespaces && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(dir.path());
        }
    }
}

/// Serialises sweeps within this process (and lets a test set up a namespace without a
/// parallel sweep taking it for stale).
static SWEEP: Mutex<()> = Mutex::new(());

/// Inode numbers of the network namespaces that some process runs in.
fn namespaces_in_use() -> HashSet<u64> {
    let Ok(processes) = fs::read_dir("/proc") else {
        return HashSet::new();
    };
    processes
        .flatten()
        .filter_map(|p| fs::read_link(p.path().join("ns/net")).ok())
        .filter_map(|link| {
            // "net:[4026531840]"
            let text = link.to_string_lossy().into_owned();
            text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Sends `signal` to `pid`.
fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    sys::process::signal(pid, signal)
}

/// Moves the calling thread into the network namespace `/run/netns/{name}`.
///
/// Network namespace membership is per thread, so this must only be called on a thread
/// spawned for the purpose, which then never runs anything else.
pub fn enter_netns(name: &str) -> io::Result<()> {
    sys::netns::enter(name)
}

struct ProcessSlot {
    child: Child,
    status: Option<ExitStatus>,
}

impl ProcessSlot {
    fn poll(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Signals the child unless it has already been reaped (its pid may be reused then).
    fn signal(&mut self, signal: libc::c_int) -> io::Result<()> {
        if self.poll()?.is_some() {
            return Ok(());
        }
        send_signal(self.child.id(), signal)
    }

    fn wait_until(&mut self, deadline: Instant) -> io::Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.poll()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    fn terminate(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        if let Some(status) = self.wait_until(Instant::now() + grace)? {
            return Ok(status);
        }
        self.signal(libc::SIGKILL)?;
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }
}

/// Starts `args` in the background inside the namespace `namespace`, stdout and stderr to
/// `dir/LABEL.out` and `.err`.
fn spawn_in(
    namespace: &str,
    dir: &Path,
    label: String,
    args: &[&str],
) -> Result<Process, LabError> {
    let stdout = dir.join(format!("{label}.out"));
    let stderr = dir.join(format!("{label}.err"));
    let open = |path: &Path| {
        fs::File::create(path).map_err(|e| LabError::io(format!("creating {}", path.display()), e))
    };
    let child = Command::new("ip")
        .args(["netns", "exec", namespace])
        .args(args)
        .stdin(Stdio::null())
        .stdout(open(&stdout)?)
        .stderr(open(&stderr)?)
        .spawn()
        .map_err(|e| LabError::io(format!("cannot start `{}`", args.join(" ")), e))?;
    let pid = child.id();
    let slot = Arc::new(Mutex::new(ProcessSlot {
        child,
        status: None,
    }));
    Ok(Process {
        slot,
        pid,
        label,
        stdout,
        stderr,
    })
}

/// Waits (bounded by [`GATEWAY_START_TIMEOUT`]) until a daemon started as `process` answers
/// `status` on `control_socket`; `log` says what it logged, for the error.
fn wait_for_daemon(
    process: &Process,
    binary: &Path,
    control_socket: &Path,
    place: &str,
    log: impl Fn() -> String,
) -> Result<(), LabError> {
    let deadline = Instant::now() + GATEWAY_START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = process.exit_status() {
            return Err(LabError::Gateway {
                message: format!("gateway in {place} exited during start-up: {status}"),
                log: log(),
            });
        }
        let Err(last_error) = query_status(binary, control_socket) else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(LabError::Gateway {
                message: format!(
                    "gateway in {place} did not answer on {} within {GATEWAY_START_TIMEOUT:?}: {last_error}",
                    control_socket.display()
                ),
                log: log(),
            });
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A background process inside a lab namespace. Dropping it terminates it (SIGTERM, then
/// SIGKILL after [`TERMINATE_GRACE`]); so does dropping the lab.
pub struct Process {
    slot: Arc<Mutex<ProcessSlot>>,
    pid: u32,
    label: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProcessSlot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a signal unless the process has already exited.
    pub fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        self.lock().signal(signal)
    }

    /// The exit status if it has exited.
    pub fn exit_status(&self) -> io::Result<Option<ExitStatus>> {
        self.lock().poll()
    }

    /// Waits for exit up to `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        self.lock().wait_until(Instant::now() + timeout)
    }

    /// SIGTERM, then SIGKILL after `grace`; returns how it ended.
    pub fn terminate(&self, grace: Duration) -> io::Result<ExitStatus> {
        self.lock().terminate(grace)
    }

    /// SIGKILL and reap.
    pub fn kill(&self) -> io::Result<ExitStatus> {
        let mut slot = self.lock();
        slot.signal(libc::SIGKILL)?;
        let status = slot.child.wait()?;
        slot.status = Some(status);
        Ok(status)
    }

    /// What it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.lock().terminate(TERMINATE_GRACE);
    }
}

/// A tcpdump running in a lab namespace, writing a pcap file.
pub struct Capture {
    process: Process,
    file: PathBuf,
}

impl Capture {
    /// Stops tcpdump (letting it flush) and returns the pcap bytes.
    pub fn finish(self) -> Result<Vec<u8>, LabError> {
        // tcpdump -U flushes per packet, but give in-flight packets a moment to land.
        thread::sleep(Duration::from_millis(200));
        self.process
            .terminate(TERMINATE_GRACE)
            .map_err(|e| LabError::io("cannot stop tcpdump", e))?;
        warn_dropped(&self.process);
        fs::read(&self.file)
            .map_err(|e| LabError::io(format!("reading {}", self.file.display()), e))
    }

    pub fn path(&self) -> &Path {
        &self.file
    }
}

/// A tcpdump running in a lab namespace, printing decoded packets (`-n -v -l`).
pub struct TextCapture {
    process: Process,
}

impl TextCapture {
    /// Stops tcpdump and returns what it printed.
    pub fn finish(self) -> Result<String, LabError> {
        thread::sleep(Duration::from_millis(200));
        self.process
            .terminate(TERMINATE_GRACE)
            .map_err(|e| LabError::io("cannot stop tcpdump", e))?;
        warn_dropped(&self.process);
        Ok(self.process.stdout())
    }
}

/// Result of [`Lab::tcp_transfer`].
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    /// Bytes the receiver got.
    pub bytes: u64,
    /// From connect to the receiver's acknowledgement of the last byte.
    pub elapsed: Duration,
}

impl Transfer {
    pub fn bits_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        self.bytes as f64 * 8.0 / secs
    }
}

/// Optional `mss_clamp` setting of a tunnel: the config's own type.
pub use control::MssClamp;

/// A `[[tunnel]]` table, rendered to TOML by [`GatewayConfig::to_toml`]. `None` leaves a
/// key out so the daemon's default applies.
#[derive(Clone, Debug)]
pub struct TunnelConfig {
    pub name: String,
    pub device: Option<String>,
    pub mode: String,
    pub local: Ipv6Addr,
    pub remote: Ipv6Addr,
    /// `Some(None)` writes `encap_limit = "none"`, `Some(Some(n))` writes the number.
    pub encap_limit: Option<Option<u8>>,
    pub mtu: Option<u16>,
    pub routes: Vec<String>,
    pub allowed_sources: Option<Vec<String>>,
    pub inner_families: Option<Vec<String>>,
    pub mss_clamp: Option<MssClamp>,
    pub addresses: Vec<String>,
    /// Raw `key = value` lines appended to the table, for keys this struct does not know.
    pub extra: Vec<String>,
}

impl TunnelConfig {
    /// The lab's standard tunnel from `site` to its peer: ipip6 over the IPv6 underlay,
    /// routing the peer's IPv4 LAN.
    pub fn between(site: Site) -> Self {
        Self {
            name: "ab".to_owned(),
            device: None,
            mode: "ipip6".to_owned(),
            local: site.wan6(),
            remote: site.peer().wan6(),
            encap_limit: None,
            mtu: None,
            routes: vec![site.peer().lan4().to_owned()],
            allowed_sources: None,
            inner_families: None,
            mss_clamp: None,
            addresses: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// TUN device name the daemon uses for this tunnel.
    pub fn device_name(&self) -> String {
        self.device
            .clone()
            .unwrap_or_else(|| format!("v6g-{}", self.name))
    }

    fn render(&self, out: &mut String) {
        out.push_str("\n[[tunnel]]\n");
        push_kv(out, "name", &quote(&self.name));
        if let Some(device) = &self.device {
            push_kv(out, "device", &quote(device));
        }
        push_kv(out, "mode", &quote(&self.mode));
        push_kv(out, "local", &quote(&self.local.to_string()));
        push_kv(out, "remote", &quote(&self.remote.to_string()));
        match self.encap_limit {
            None => {}
            Some(None) => push_kv(out, "encap_limit", "\"none\""),
            Some(Some(limit)) => push_kv(out, "encap_limit", &limit.to_string()),
        }
        if let Some(mtu) = self.mtu {
            push_kv(out, "mtu", &mtu.to_string());
        }
        push_kv(out, "routes", &quote_list(&self.routes));
        if let Some(sources) = &self.allowed_sources {
            push_kv(out, "allowed_sources", &quote_list(sources));
        }
        if let Some(families) = &self.inner_families {
            push_kv(out, "inner_families", &quote_list(families));
        }
        match self.mss_clamp {
            None => {}
            Some(MssClamp::Auto) => push_kv(out, "mss_clamp", "\"auto\""),
            Some(MssClamp::Off) => push_kv(out, "mss_clamp", "\"off\""),
            Some(MssClamp::Fixed(mss)) => push_kv(out, "mss_clamp", &mss.to_string()),
        }
        if !self.addresses.is_empty() {
            push_kv(out, "address", &quote_list(&self.addresses));
        }
        for line in &self.extra {
            out.push_str(line);
            out.push('\n');
        }
    }
}

/// A whole v6gate config file for one lab gateway.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub control_socket: PathBuf,
    pub ipv4_forwarding: Option<bool>,
    pub ipv6_forwarding: Option<bool>,
    /// Raw `key = value` lines appended to `[gateway]`.
    pub extra: Vec<String>,
    pub tunnels: Vec<TunnelConfig>,
}

impl GatewayConfig {
    pub fn to_toml(&self) -> String {
        let mut out = String::from("[gateway]\n");
        push_kv(
            &mut out,
            "control_socket",
            &quote(&self.control_socket.to_string_lossy()),
        );
        if let Some(on) = self.ipv4_forwarding {
            push_kv(&mut out, "ipv4_forwarding", &on.to_string());
        }
        if let Some(on) = self.ipv6_forwarding {
            push_kv(&mut out, "ipv6_forwarding", &on.to_string());
        }
        for line in &self.extra {
            out.push_str(line);
            out.push('\n');
        }
        for tunnel in &self.tunnels {
            tunnel.render(&mut out);
        }
        out
    }

    /// The first tunnel, which the lab's standard configs have exactly one of.
    pub fn tunnel_mut(&mut self) -> &mut TunnelConfig {
        &mut self.tunnels[0]
    }
}

fn push_kv(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str(" = ");
    out.push_str(value);
    out.push('\n');
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A v6gate daemon running in a lab namespace.
pub struct Gateway {
    process: Process,
    binary: PathBuf,
    node: Node,
    config_path: PathBuf,
    control_socket: PathBuf,
}

impl Gateway {
    pub fn node(&self) -> Node {
        self.node
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn control_socket(&self) -> &Path {
        &self.control_socket
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        let mut log = self.process.stderr();
        let out = self.process.stdout();
        if !out.trim().is_empty() {
            log.push_str("\n--- stdout ---\n");
            log.push_str(&out);
        }
        log
    }

    /// `v6gate status --json` through the control socket.
    pub fn status(&self) -> Result<serde_json::Value, LabError> {
        query_status(&self.binary, &self.control_socket).map_err(|message| LabError::Gateway {
            message,
            log: self.log(),
        })
    }

    /// The status object of the tunnel called `name`.
    pub fn tunnel_status(&self, name: &str) -> Result<serde_json::Value, LabError> {
        let status = self.status()?;
        status["tunnels"]
            .as_array()
            .and_then(|tunnels| tunnels.iter().find(|t| t["name"] == name).cloned())
            .ok_or_else(|| LabError::Gateway {
                message: format!("status has no tunnel {name:?}: {status}"),
                log: self.log(),
            })
    }

    /// Rewrites the config file (same path) for a later [`Gateway::reload`].
    pub fn rewrite_config(&self, config: &GatewayConfig) -> Result<(), LabError> {
        fs::write(&self.config_path, config.to_toml())
            .map_err(|e| LabError::io(format!("writing {}", self.config_path.display()), e))
    }

    /// SIGHUP: reload the config file.
    pub fn reload(&self) -> Result<(), LabError> {
        self.process
            .signal(libc::SIGHUP)
            .map_err(|e| LabError::io("cannot send SIGHUP", e))?;
        if let Ok(Some(status)) = self.process.exit_status() {
            return Err(LabError::Gateway {
                message: format!("gateway exited ({status}) on SIGHUP"),
                log: self.log(),
            });
        }
        Ok(())
    }

    /// SIGTERM and insist on a clean exit (code 0) within [`GATEWAY_STOP_TIMEOUT`].
    pub fn stop(self) -> Result<(), LabError> {
        self.process
            .signal(libc::SIGTERM)
            .map_err(|e| LabError::io("cannot send SIGTERM", e))?;
        let status = self
            .process
            .wait_timeout(GATEWAY_STOP_TIMEOUT)
            .map_err(|e| LabError::io("waiting for the gateway", e))?;
        match status {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(LabError::Gateway {
                message: format!(
                    "gateway in {} exited uncleanly after SIGTERM: {status}",
                    self.node
                ),
                log: self.log(),
            }),
            None => Err(LabError::Gateway {
                message: format!(
                    "gateway in {} still running {GATEWAY_STOP_TIMEOUT:?} after SIGTERM",
                    self.node
                ),
                log: self.log(),
            }),
        }
    }

    /// SIGKILL: leaves whatever it installed behind, like a crash.
    pub fn kill(self) -> Result<(), LabError> {
        self.process
            .kill()
            .map(drop)
            .map_err(|e| LabError::io("cannot kill the gateway", e))
    }
}

/// Runs `v6gate status --json --socket PATH` and parses the JSON; the error is a message.
pub fn query_status(binary: &Path, socket: &Path) -> Result<serde_json::Value, String> {
    let socket = socket.to_string_lossy();
    let args = ["status", "--json", "--socket", socket.as_ref()];
    let program = binary.to_string_lossy();
    let output = run(&program, &args).map_err(|e| e.to_string())?;
    let text = checked(describe(&program, &args), output).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("status is not JSON ({e}): {text}"))
}

/// A running lab. Dropping it stops its processes and deletes its namespaces.
pub struct Lab {
    id: String,
    namespaces: [String; 5],
    created: Vec<String>,
    dir: PathBuf,
    processes: Mutex<Vec<Arc<Mutex<ProcessSlot>>>>,
    counter: AtomicU32,
    options: LabOptions,
}

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

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

    fn unique(&self, stem: &str) -> String {
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

    /// `ping -c count -W 1` from `node`; true when every echo came back.
    pub fn ping(&self, node: Node, destination: IpAddr, count: u32) -> bool {
        self.ping_output(node, destination, count, &[])
            .status
            .success()
    }

    /// `ping -n -c count -W 1 -i 0.2 [extra...] destination` from `node`.
    pub fn ping_output(
        &self,
        node: Node,
        destination: IpAddr,
        count: u32,
        extra: &[&str],
    ) -> Output {
        let count = count.to_string();
        let destination = destination.to_string();
        let mut args = vec!["ping", "-n", "-c", &count, "-W", "1", "-i", "0.2"];
        args.extend_from_slice(extra);
        args.push(&destination);
        self.exec(node, &args)
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

    /// Starts tcpdump on `device` in `node` writing a pcap, and waits until it listens.
    pub fn capture(&self, node: Node, device: &str, filter: &str) -> Result<Capture, LabError> {
        let file = self.dir.join(format!(
            "{}.pcap",
            self.unique(&format!("{}-{device}", node.tag()))
        ));
        let file_arg = file.to_string_lossy().into_owned();
        // Immediate mode: otherwise packets wait in the capture ring for up to a second
        // and are lost when the capture is stopped right after the traffic.
        let mut args = vec![
            "tcpdump",
            "--immediate-mode",
            "-Z",
            "root",
            "-n",
            "-U",
            "-i",
            device,
            "-w",
            &file_arg,
        ];
        args.extend(filter.split_whitespace());
        let process = self.spawn(node, "tcpdump", &args)?;
        wait_listening(&process)?;
        Ok(Capture { process, file })
    }

    /// Starts tcpdump on `device` in `node` printing packets (`-n -v -l`), and waits until
    /// it listens.
    pub fn capture_text(
        &self,
        node: Node,
        device: &str,
        filter: &str,
    ) -> Result<TextCapture, LabError> {
        let mut args = vec![
            "tcpdump",
            "--immediate-mode",
            "-Z",
            "root",
            "-n",
            "-v",
            "-l",
            "-i",
            device,
        ];
        args.extend(filter.split_whitespace());
        let process = self.spawn(node, "tcpdump", &args)?;
        wait_listening(&process)?;
        Ok(TextCapture { process })
    }

    /// The lab's standard gateway config for `site`: one ipip6 tunnel "ab" to the other
    /// site, routing its IPv4 LAN, IPv4 forwarding on, control socket in the lab dir.
    pub fn site_config(&self, site: Site) -> GatewayConfig {
        GatewayConfig {
            control_socket: self.dir.join(format!("site-{}.sock", site.letter())),
            ipv4_forwarding: Some(true),
            ipv6_forwarding: None,
            extra: Vec::new(),
            tunnels: vec![TunnelConfig::between(site)],
        }
    }

    /// Writes `config` to a new file in the lab dir, starts `binary run --config FILE` in
    /// `node`, and waits (bounded) until its control socket answers `status`.
    pub fn start_gateway(
        &self,
        binary: &Path,
        node: Node,
        config: &GatewayConfig,
    ) -> Result<Gateway, LabError> {
        let config_path = self.dir.join(format!(
            "{}.toml",
            self.unique(&format!("{}-v6gate", node.tag()))
        ));
        fs::write(&config_path, config.to_toml())
            .map_err(|e| LabError::io(format!("writing {}", config_path.display()), e))?;
        self.start_gateway_with(binary, node, &config_path, &config.control_socket)
    }

    /// Starts a gateway on an existing config file (a restart after a crash).
    pub fn start_gateway_with(
        &self,
        binary: &Path,
        node: Node,
        config_path: &Path,
        control_socket: &Path,
    ) -> Result<Gateway, LabError> {
        let program = binary.to_string_lossy().into_owned();
        let config_arg = config_path.to_string_lossy().into_owned();
        let process = self.spawn(node, "v6gate", &[&program, "run", "--config", &config_arg])?;
        let gateway = Gateway {
            process,
            binary: binary.to_owned(),
            node,
            config_path: config_path.to_owned(),
            control_socket: control_socket.to_owned(),
        };
        wait_for_daemon(
            &gateway.process,
            binary,
            control_socket,
            &node.to_string(),
            || gateway.log(),
        )?;
        Ok(gateway)
    }

    /// Sends `bytes` over TCP from `client` to a listener bound to `server_address` (port 0
    /// picks one) in `server`, using threads that enter the namespaces. The whole exchange
    /// is bounded by `timeout`. The receiver checks every byte against what the sender wrote.
    pub fn tcp_transfer(
        &self,
        server: Node,
        server_address: SocketAddr,
        client: Node,
        bytes: u64,
        timeout: Duration,
    ) -> Result<Transfer, LabError> {
        let deadline = Instant::now() + timeout;
        let server_ns = self.namespace(server).to_owned();
        let client_ns = self.namespace(client).to_owned();
        let (port_tx, port_rx) = mpsc::channel::<io::Result<SocketAddr>>();

        let receiver = thread::spawn(move || -> io::Result<u64> {
            let listener = enter_netns(&server_ns).and_then(|()| TcpListener::bind(server_address));
            let listener = match listener {
                Ok(listener) => listener,
                Err(e) => {
                    let _ = port_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            };
            let _ = port_tx.send(listener.local_addr());
            receive(listener, deadline)
        });

        let bound = port_rx
            .recv_timeout(timeout)
            .map_err(|_| LabError::Timeout {
                what: format!("the TCP listener in {server}"),
                detail: String::new(),
            })?
            .map_err(|e| {
                LabError::io(format!("TCP listener on {server_address} in {server}"), e)
            })?;

        let sender = thread::spawn(move || -> io::Result<Transfer> {
            enter_netns(&client_ns)?;
            send(bound, bytes, deadline)
        });

        let sent = sender
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("sender thread panicked")));
        let received = receiver
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("receiver thread panicked")));
        let transfer =
            sent.map_err(|e| LabError::io(format!("TCP sender {client} -> {bound}"), e))?;
        let got = received
            .map_err(|e| LabError::io(format!("TCP receiver on {bound} in {server}"), e))?;
        Ok(Transfer {
            bytes: got,
            elapsed: transfer.elapsed,
        })
    }
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "transfer deadline passed",
        ))
    } else {
        Ok(left)
    }
}

/// Bytes a sender writes at a time; the content restarts with each.
const TRANSFER_CHUNK: usize = 64 * 1024;

/// Byte `offset` of a transfer: a pattern the receiver checks, so a packet that reached it
/// with other content than was sent (a checksum completed wrongly) fails the transfer.
fn transfer_byte(offset: u64) -> u8 {
    ((offset % TRANSFER_CHUNK as u64) % 251) as u8
}

/// Accepts one connection, checks and counts bytes until EOF, and acknowledges with the count.
fn receive(listener: TcpListener, deadline: Instant) -> io::Result<u64> {
    listener.set_nonblocking(true)?;
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                remaining(deadline)?;
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_nonblocking(false)?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(at) = (0..n).find(|&i| buffer[i] != transfer_byte(total + i as u64)) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("byte {} differs from what was sent", total + at as u64),
                    ));
                }
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    stream.write_all(&total.to_be_bytes())?;
    Ok(total)
}

/// Connects, writes `bytes` bytes, half-closes and waits for the receiver's count.
fn send(to: SocketAddr, bytes: u64, deadline: Instant) -> io::Result<Transfer> {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(&to, remaining(deadline)?)?;
    let chunk: Vec<u8> = (0..TRANSFER_CHUNK as u64).map(transfer_byte).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream.set_write_timeout(Some(remaining(deadline)?))?;
        stream.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut ack = [0u8; 8];
    stream.set_read_timeout(Some(remaining(deadline)?))?;
    stream.read_exact(&mut ack)?;
    Ok(Transfer {
        bytes: u64::from_be_bytes(ack),
        elapsed: start.elapsed(),
    })
}

/// Says so on stderr when a stopped tcpdump's ring overflowed: a burst of small packets can
/// arrive faster than tcpdump takes them, and the capture then holds only some of them.
fn warn_dropped(process: &Process) {
    if let Some(n) = kernel_drops(&process.stderr()).filter(|&n| n > 0) {
        eprintln!(
            "{}: tcpdump dropped {n} packets (its ring overflowed); the capture holds only part \
             of the traffic",
            process.label()
        );
    }
}

/// The "N packets dropped by kernel" of tcpdump's closing statistics.
fn kernel_drops(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        l.strip_suffix(" packets dropped by kernel")?
            .trim()
            .parse()
            .ok()
    })
}

fn wait_listening(process: &Process) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if process.stderr().contains("listening on") {
            return Ok(());
        }
        if let Ok(Some(status)) = process.exit_status() {
            return Err(LabError::Command {
                command: "tcpdump".to_owned(),
                status: status.code(),
                stderr: process.stderr(),
            });
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                what: "tcpdump to listen".to_owned(),
                detail: process.stderr(),
            });
        }
        thread::sleep(Duration::from_millis(20));
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

    fn lab(options: LabOptions) -> Lab {
        Lab::two_sites(options).unwrap_or_else(|e| panic!("cannot build the lab: {e}"))
    }

    fn netns_names() -> Vec<String> {
        fs::read_dir("/run/netns")
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
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

    #[test]
    fn tcp_transfer_across_the_wan() {
        let lab = lab(LabOptions::default());
        let transfer = lab
            .tcp_transfer(
                Node::SiteB,
                SocketAddr::new(addr::SITE_B_WAN6.into(), 0),
                Node::SiteA,
                3 * 1024 * 1024 + 17,
                Duration::from_secs(20),
            )
            .unwrap();
        assert_eq!(transfer.bytes, 3 * 1024 * 1024 + 17);
        assert!(transfer.bits_per_second() > 0.0);
    }

    #[test]
    fn sweep_removes_labs_of_dead_processes_but_not_namespaces_in_use() {
        assert!(is_root(), "the lab tests must run as root");
        // A pid that surely belonged to a process which has exited.
        let mut exited = Command::new("true").spawn().unwrap();
        exited.wait().unwrap();
        let dead = exited.id();
        let stale = format!("{NAME_PREFIX}-{dead}-0-{:04x}", random_tag());
        let kept = format!("{NAME_PREFIX}-{dead}-1-{:04x}", random_tag());
        let setting_up = SWEEP.lock().unwrap_or_else(|e| e.into_inner());
        let stale_dir = std::env::temp_dir().join(&stale);
        fs::create_dir_all(&stale_dir).unwrap();
        let orphan_dir = std::env::temp_dir().join(format!("{NAME_PREFIX}-{dead}-2-0000"));
        fs::create_dir_all(&orphan_dir).unwrap();
        run_ok("ip", &["netns", "add", &format!("{stale}-sa")]).unwrap();
        run_ok("ip", &["netns", "add", &format!("{kept}-sa")]).unwrap();
        let mut resident = Command::new("ip")
            .args(["netns", "exec", &format!("{kept}-sa"), "sleep", "30"])
            .spawn()
            .unwrap();
        // Wait until the sleeper has entered the namespace.
        let entered = (0..100).any(|_| {
            thread::sleep(Duration::from_millis(20));
            fs::read_to_string(format!("/proc/{}/cmdline", resident.id()))
                .is_ok_and(|c| c.starts_with("sleep"))
        });
        drop(setting_up);

        sweep_stale_namespaces();
        let names = netns_names();
        let stale_gone = !names.contains(&format!("{stale}-sa"));
        let kept_there = names.contains(&format!("{kept}-sa"));
        let _ = resident.kill();
        let _ = resident.wait();
        let _ = run("ip", &["netns", "del", &format!("{kept}-sa")]);
        assert!(entered);
        assert!(stale_gone, "{names:?}");
        assert!(!stale_dir.exists());
        assert!(!orphan_dir.exists());
        assert!(kept_there, "a namespace in use was swept: {names:?}");
    }

    #[test]
    fn config_renders_the_contract_keys() {
        let mut config = GatewayConfig {
            control_socket: PathBuf::from("/tmp/x \"y\".sock"),
            ipv4_forwarding: Some(true),
            ipv6_forwarding: None,
            extra: vec!["pin_table = 7000".to_owned()],
            tunnels: vec![TunnelConfig::between(Site::A)],
        };
        let tunnel = config.tunnel_mut();
        tunnel.encap_limit = Some(Some(4));
        tunnel.mss_clamp = Some(MssClamp::Fixed(1300));
        tunnel.addresses = vec!["198.51.100.1/32".to_owned()];
        let text = config.to_toml();
        let expected = "[gateway]\n\
            control_socket = \"/tmp/x \\\"y\\\".sock\"\n\
            ipv4_forwarding = true\n\
            pin_table = 7000\n\
            \n[[tunnel]]\n\
            name = \"ab\"\n\
            mode = \"ipip6\"\n\
            local = \"2001:db8:0:1::1\"\n\
            remote = \"2001:db8:0:2::1\"\n\
            encap_limit = 4\n\
            routes = [\"203.0.113.0/24\"]\n\
            mss_clamp = 1300\n\
            address = [\"198.51.100.1/32\"]\n";
        assert_eq!(text, expected);
        assert_eq!(TunnelConfig::between(Site::B).device_name(), "v6g-ab");
        assert_eq!(
            TunnelConfig::between(Site::B).routes,
            vec![addr::LAN_A4.to_owned()]
        );
    }
    #[test]
    fn a_capture_reads_the_kernel_drops_of_tcpdump() {
        // tcpdump's statistics on exit, as it prints them to stderr.
        let stderr = "tcpdump: listening on lan0, link-type EN10MB (Ethernet), snapshot \
                      length 262144 bytes\n37 packets captured\n240 packets received by \
                      filter\n203 packets dropped by kernel\n";
        assert_eq!(kernel_drops(stderr), Some(203));
        assert_eq!(kernel_drops("listening on lan0\n"), None);
    }
}

//! Loading the programs, filling their maps, attaching them to a device.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;

use aya::maps::lpm_trie::Key;
use aya::maps::{Array, HashMap, LpmTrie, MapData, MapError, PerCpuArray};
use aya::programs::tc::{self, SchedClassifierLinkId, TcAttachType};
use aya::programs::{ProgramError, SchedClassifier};
use aya::util::KernelVersion;
use aya::{Ebpf, EbpfError, include_bytes_aligned};
use ipnet::IpNet;
use sys::bpf::TestRun;

use crate::counters::{COUNTERS, Counters, PER_PATH, PathCounters};
use crate::spec::{self, MAX_PATHS, Spec};
use crate::{DECAP_PROGRAM, ENCAP_PROGRAM};

static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tunnel.bpf.o"));

/// Bytes an encapsulation may add in one run: an IPv6 header and the encapsulation limit.
const MAX_GROWTH: usize = 48;

#[derive(Debug, thiserror::Error)]
pub enum KernelPathError {
    #[error("loading the kernel path's BPF object: {0}")]
    Load(#[from] EbpfError),
    #[error("BPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("BPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("kernel path: {0}")]
    Spec(String),
    #[error("attaching the kernel path to {device}: {source}")]
    Attach {
        device: String,
        #[source]
        source: ProgramError,
    },
    #[error("running {name} on a test packet: {source}")]
    TestRun {
        name: &'static str,
        #[source]
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, KernelPathError>;

/// Where the programs of one [`KernelPath`] are attached.
#[derive(Debug, PartialEq, Eq)]
pub struct Attachment {
    pub device: String,
    /// Bound to descriptors of this process (tcx links, Linux 6.6+): they go when it exits,
    /// however it exits. Otherwise filters on the device's `clsact` qdisc, which outlive it
    /// and are removed by name with [`KernelPath::detach_leftover`].
    pub tcx: bool,
    egress: Option<SchedClassifierLinkId>,
    ingress: Option<SchedClassifierLinkId>,
}

/// A tc hook of a device, and the program v6gate hangs off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// Encapsulation, on the way out.
    Egress,
    /// Decapsulation, on the way in.
    Ingress,
}

impl Hook {
    pub const BOTH: [Self; 2] = [Self::Egress, Self::Ingress];

    /// The program's name in the kernel.
    pub fn program(self) -> &'static str {
        match self {
            Self::Egress => ENCAP_PROGRAM,
            Self::Ingress => DECAP_PROGRAM,
        }
    }

    fn kind(self) -> TcAttachType {
        match self {
            Self::Egress => TcAttachType::Egress,
            Self::Ingress => TcAttachType::Ingress,
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Egress => "egress",
            Self::Ingress => "ingress",
        })
    }
}

impl std::str::FromStr for Hook {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "egress" => Ok(Self::Egress),
            "ingress" => Ok(Self::Ingress),
            _ => Err(()),
        }
    }
}

/// Set in the environment, the programs are attached as `clsact` filters even where tcx
/// links exist: what a kernel before 6.6 does, for the tests of what such a host is left
/// with after a crash.
pub const FORCE_CLSACT_ENV: &str = "V6GATE_KPATH_CLSACT";

/// Whether attachments on this host are tcx links (Linux 6.6+) rather than `clsact`
/// filters.
pub fn attaches_tcx() -> bool {
    std::env::var_os(FORCE_CLSACT_ENV).is_none()
        && KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

/// One tunnel's programs, loaded and verified, with their maps filled.
///
/// Dropping it detaches what it attached; with `clsact` filters (kernels before 6.6) that
/// must happen in the network namespace it attached in.
pub struct KernelPath {
    ebpf: Ebpf,
    spec: Spec,
    attachment: Option<Attachment>,
}

impl std::fmt::Debug for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelPath")
            .field("spec", &self.spec)
            .field("attachment", &self.attachment)
            .finish_non_exhaustive()
    }
}

/// Whether this host lets v6gate load the kernel path at all (root on a host or in a
/// privileged container, a kernel with BPF and tc classifiers): `dataplane = "auto"` falls
/// back to the TUN dataplane when not.
pub fn probe() -> Result<()> {
    let spec = Spec {
        carry_ipv4: true,
        carry_ipv6: false,
        encap_limit: None,
        hop_limit: 64,
        traffic_class: Some(0),
        paths: vec![spec::SpecPath {
            local: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            remote: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        }],
        routes: Vec::new(),
        allowed_sources: Vec::new(),
        probe_echo: false,
        active: 0,
    };
    KernelPath::load(&spec).map(drop)
}

impl KernelPath {
    /// Loads and verifies both programs and fills their maps from `spec`.
    pub fn load(spec: &Spec) -> Result<Self> {
        check(spec)?;
        let mut ebpf = Ebpf::load(OBJECT)?;
        for name in [ENCAP_PROGRAM, DECAP_PROGRAM] {
            classifier(&mut ebpf, name)?
                .load()
                .map_err(|source| KernelPathError::Program { name, source })?;
        }
        let mut path = Self {
            ebpf,
            spec: spec.clone(),
            attachment: None,
        };
        path.fill()?;
        Ok(path)
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn attachment(&self) -> Option<&Attachment> {
        self.attachment.as_ref()
    }

    fn fill(&mut self) -> Result<()> {
        let spec = self.spec.clone();
        array::<[u8; 8]>(&mut self.ebpf, "tunnel")?
            .set(0, spec.tunnel_value(), 0)
            .map_err(map_error("tunnel"))?;
        let mut paths = array::<[u8; 36]>(&mut self.ebpf, "paths")?;
        for (i, path) in spec.paths.iter().enumerate() {
            paths
                .set(i as u32, spec::path_value(path), 0)
                .map_err(map_error("paths"))?;
        }
        let mut peers = hash::<[u8; 36]>(&mut self.ebpf, "peers")?;
        for (i, path) in spec.paths.iter().enumerate() {
            // Same layout as `struct path`, read from our side: local, then remote.
            peers
                .insert(spec::path_value(path), i as u32, 0)
                .map_err(map_error("peers"))?;
        }
        for (name, addr_of) in [
            (
                "locals",
                (|p: &spec::SpecPath| p.local) as fn(&spec::SpecPath) -> IpAddr,
            ),
            ("remotes", |p: &spec::SpecPath| p.remote),
        ] {
            let mut map = hash::<[u8; 20]>(&mut self.ebpf, name)?;
            for path in &spec.paths {
                map.insert(spec::endpoint_key(addr_of(path)), 1, 0)
                    .map_err(map_error(name))?;
            }
        }
        self.fill_prefixes("routes4", "routes6", &spec.routes)?;
        self.fill_prefixes("sources4", "sources6", &spec.allowed_sources)?;
        self.set_active(spec.active)
    }

    fn fill_prefixes(&mut self, v4: &'static str, v6: &'static str, nets: &[IpNet]) -> Result<()> {
        for net in nets {
            self.insert_prefix(v4, v6, *net)?;
        }
        Ok(())
    }

    fn insert_prefix(&mut self, v4: &'static str, v6: &'static str, net: IpNet) -> Result<()> {
        match net.trunc() {
            IpNet::V4(net) => lpm::<[u8; 4]>(&mut self.ebpf, v4)?
                .insert(
                    &Key::new(u32::from(net.prefix_len()), net.addr().octets()),
                    1,
                    0,
                )
                .map_err(map_error(v4)),
            IpNet::V6(net) => lpm::<[u8; 16]>(&mut self.ebpf, v6)?
                .insert(
                    &Key::new(u32::from(net.prefix_len()), net.addr().octets()),
                    1,
                    0,
                )
                .map_err(map_error(v6)),
        }
    }

    fn remove_prefix(&mut self, v4: &'static str, v6: &'static str, net: IpNet) -> Result<()> {
        match net.trunc() {
            IpNet::V4(net) => lpm::<[u8; 4]>(&mut self.ebpf, v4)?
                .remove(&Key::new(u32::from(net.prefix_len()), net.addr().octets()))
                .map_err(map_error(v4)),
            IpNet::V6(net) => lpm::<[u8; 16]>(&mut self.ebpf, v6)?
                .remove(&Key::new(u32::from(net.prefix_len()), net.addr().octets()))
                .map_err(map_error(v6)),
        }
    }

    /// Makes the programs claim `routes` and accept `allowed_sources` from the next packet
    /// on: one map update per prefix that is new or gone, the new ones first, nothing
    /// reattached, counters kept. The spec follows each update that took, so after a failure
    /// a call with the previous prefixes puts the maps back.
    pub fn set_prefixes(&mut self, routes: &[IpNet], allowed_sources: &[IpNet]) -> Result<()> {
        for (v4, v6, sources, wanted) in [
            ("routes4", "routes6", false, routes),
            ("sources4", "sources6", true, allowed_sources),
        ] {
            let held = |spec: &Spec| {
                if sources {
                    spec.allowed_sources.clone()
                } else {
                    spec.routes.clone()
                }
            };
            for net in missing_from(&held(&self.spec), wanted) {
                self.insert_prefix(v4, v6, net)?;
                self.prefixes_mut(sources).push(net);
            }
            for net in missing_from(wanted, &held(&self.spec)) {
                self.remove_prefix(v4, v6, net)?;
                self.prefixes_mut(sources)
                    .retain(|n| n.trunc() != net.trunc());
            }
            *self.prefixes_mut(sources) = wanted.to_vec();
        }
        Ok(())
    }

    fn prefixes_mut(&mut self, sources: bool) -> &mut Vec<IpNet> {
        if sources {
            &mut self.spec.allowed_sources
        } else {
            &mut self.spec.routes
        }
    }

    /// Sends from now on over path `index`: failover is this one map update, without
    /// reattaching anything.
    pub fn set_active(&mut self, index: usize) -> Result<()> {
        if index >= self.spec.paths.len() {
            return Err(KernelPathError::Spec(format!(
                "no path {index} (the tunnel has {})",
                self.spec.paths.len()
            )));
        }
        array::<u32>(&mut self.ebpf, "active")?
            .set(0, index as u32, 0)
            .map_err(map_error("active"))?;
        self.spec.active = index;
        Ok(())
    }

    /// The tunnel's counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        let map = per_cpu(&self.ebpf, "counters")?;
        let mut slots = vec![0u64; COUNTERS as usize];
        for (i, slot) in slots.iter_mut().enumerate() {
            let values = map.get(&(i as u32), 0).map_err(map_error("counters"))?;
            *slot = values.iter().sum();
        }
        Ok(Counters::from_slots(&slots))
    }

    pub fn path_counters(&self, index: usize) -> Result<PathCounters> {
        if index >= MAX_PATHS {
            return Err(KernelPathError::Spec(format!("no path {index}")));
        }
        let map = per_cpu(&self.ebpf, "path_counters")?;
        let mut slots = [0u64; PER_PATH as usize];
        for (i, slot) in slots.iter_mut().enumerate() {
            let key = index as u32 * PER_PATH + i as u32;
            let values = map.get(&key, 0).map_err(map_error("path_counters"))?;
            *slot = values.iter().sum();
        }
        Ok(PathCounters::from_slots(slots))
    }

    /// Attaches encapsulation to egress and decapsulation to ingress of `device`, in the
    /// network namespace of the calling thread. After the device's own programs, so that
    /// several tunnels share one underlay: each passes on what is not its own.
    pub fn attach(&mut self, device: &str) -> Result<&Attachment> {
        if self.attachment.is_some() {
            return Err(KernelPathError::Spec(format!(
                "already attached; detach before attaching to {device}"
            )));
        }
        self.attach_hook(device, Hook::Egress)?;
        if let Err(e) = self.attach_hook(device, Hook::Ingress) {
            let _ = self.detach();
            return Err(e);
        }
        self.attachment
            .as_ref()
            .ok_or_else(|| KernelPathError::Spec("attachment vanished".into()))
    }

    /// Attaches the program of `hook` to `device` (the calling thread's namespace). A
    /// program already attached there is attached anew: the kernel may have lost it.
    pub fn attach_hook(&mut self, device: &str, hook: Hook) -> Result<()> {
        if let Some(a) = &self.attachment
            && a.device != device
        {
            return Err(KernelPathError::Spec(format!(
                "attached to {}; detach before attaching to {device}",
                a.device
            )));
        }
        let _ = self.detach_hook(hook);
        let tcx = match &self.attachment {
            Some(a) => a.tcx,
            None => attaches_tcx(),
        };
        let attach_error = |source| KernelPathError::Attach {
            device: device.to_owned(),
            source,
        };
        let program = classifier(&mut self.ebpf, hook.program())?;
        let link = if tcx {
            program.attach(device, hook.kind()).map_err(attach_error)?
        } else {
            // Before tcx the programs hang off a clsact qdisc; an existing one is reused.
            if let Err(e) = tc::qdisc_add_clsact(device)
                && e.kind() != io::ErrorKind::AlreadyExists
            {
                return Err(attach_error(ProgramError::IOError(e)));
            }
            program
                .attach_with_options(
                    device,
                    hook.kind(),
                    tc::TcAttachOptions::Netlink(tc::NlOptions::default()),
                )
                .map_err(attach_error)?
        };
        let attachment = self.attachment.get_or_insert_with(|| Attachment {
            device: device.to_owned(),
            tcx,
            egress: None,
            ingress: None,
        });
        match hook {
            Hook::Egress => attachment.egress = Some(link),
            Hook::Ingress => attachment.ingress = Some(link),
        }
        Ok(())
    }

    /// Detaches the program of `hook` (in the namespace of the calling thread, for
    /// `clsact` filters).
    pub fn detach_hook(&mut self, hook: Hook) -> Result<()> {
        let Some(attachment) = self.attachment.as_mut() else {
            return Ok(());
        };
        let link = match hook {
            Hook::Egress => attachment.egress.take(),
            Hook::Ingress => attachment.ingress.take(),
        };
        if attachment.egress.is_none() && attachment.ingress.is_none() {
            self.attachment = None;
        }
        let Some(link) = link else {
            return Ok(());
        };
        classifier(&mut self.ebpf, hook.program())?
            .detach(link)
            .map_err(|source| KernelPathError::Program {
                name: hook.program(),
                source,
            })
    }

    /// Detaches both programs (in the namespace of the calling thread, for `clsact`
    /// filters). The maps stay, so counters can still be read.
    pub fn detach(&mut self) -> Result<()> {
        let egress = self.detach_hook(Hook::Egress);
        let ingress = self.detach_hook(Hook::Ingress);
        egress.and(ingress)
    }

    /// The kernel's id of the program of `hook`: what a listing of the device's attached
    /// programs shows when it is there.
    pub fn program_id(&self, hook: Hook) -> Result<u32> {
        let program: &SchedClassifier = self
            .ebpf
            .program(hook.program())
            .ok_or(KernelPathError::Program {
                name: hook.program(),
                source: ProgramError::NotLoaded,
            })?
            .try_into()
            .map_err(|source| KernelPathError::Program {
                name: hook.program(),
                source,
            })?;
        program
            .info()
            .map(|info| info.id())
            .map_err(|source| KernelPathError::Program {
                name: hook.program(),
                source,
            })
    }

    /// Removes `clsact` filters of v6gate's programs that a process which has gone left on
    /// `device` (tcx links never outlive their process). Returns how many went.
    pub fn detach_leftovers(device: &str) -> io::Result<usize> {
        let mut removed = 0;
        for hook in Hook::BOTH {
            removed += Self::detach_leftover(device, hook)?;
        }
        Ok(removed)
    }

    /// Removes the `clsact` filters of v6gate's program of `hook` from `device`. Returns
    /// how many kinds went (0 or 1).
    pub fn detach_leftover(device: &str, hook: Hook) -> io::Result<usize> {
        match tc::qdisc_detach_program(device, hook.kind(), hook.program()) {
            Ok(()) => Ok(1),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Ids of the programs attached to `hook` of `device` through tcx, in the network
    /// namespace of the calling thread.
    pub fn tcx_ids(device: &str, hook: Hook) -> Result<Vec<u32>> {
        let (_, programs) = SchedClassifier::query_tcx(device, hook.kind()).map_err(|source| {
            KernelPathError::Attach {
                device: device.to_owned(),
                source,
            }
        })?;
        Ok(programs.iter().map(|p| p.id()).collect())
    }

    /// Names of the programs attached to `device` through tcx (egress, then ingress), in the
    /// network namespace of the calling thread: what an operator or a test sees of v6gate's
    /// attachments on a kernel with tcx.
    pub fn attached_tcx(device: &str) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for kind in [TcAttachType::Egress, TcAttachType::Ingress] {
            let (_, programs) = SchedClassifier::query_tcx(device, kind).map_err(|source| {
                KernelPathError::Attach {
                    device: device.to_owned(),
                    source,
                }
            })?;
            names.extend(
                programs
                    .iter()
                    .map(|p| p.name_as_str().unwrap_or("?").to_owned()),
            );
        }
        Ok(names)
    }

    /// Runs the encapsulation program once on an Ethernet frame, as tc egress would.
    pub fn run_encap(&mut self, frame: &[u8]) -> Result<TestRun> {
        self.test_run(ENCAP_PROGRAM, frame)
    }

    /// Runs the decapsulation program once on an Ethernet frame, as tc ingress would.
    pub fn run_decap(&mut self, frame: &[u8]) -> Result<TestRun> {
        self.test_run(DECAP_PROGRAM, frame)
    }

    fn test_run(&mut self, name: &'static str, frame: &[u8]) -> Result<TestRun> {
        let program = classifier(&mut self.ebpf, name)?;
        let fd = program
            .fd()
            .map_err(|source| KernelPathError::Program { name, source })?;
        sys::bpf::test_run(fd.as_fd(), frame, MAX_GROWTH)
            .map_err(|source| KernelPathError::TestRun { name, source })
    }
}

/// The prefixes of `nets` that `held` lacks, as the maps key them (truncated), once each.
fn missing_from(held: &[IpNet], nets: &[IpNet]) -> Vec<IpNet> {
    let mut missing: Vec<IpNet> = Vec::new();
    for net in nets.iter().map(IpNet::trunc) {
        if !held.iter().any(|h| h.trunc() == net) && !missing.contains(&net) {
            missing.push(net);
        }
    }
    missing
}

fn check(spec: &Spec) -> Result<()> {
    if spec.paths.is_empty() || spec.paths.len() > MAX_PATHS {
        return Err(KernelPathError::Spec(format!(
            "a tunnel has 1 to {MAX_PATHS} paths, not {}",
            spec.paths.len()
        )));
    }
    if let Some(p) = spec
        .paths
        .iter()
        .find(|p| p.local.is_ipv4() != p.remote.is_ipv4())
    {
        return Err(KernelPathError::Spec(format!(
            "path {} -> {} mixes address families",
            p.local, p.remote
        )));
    }
    if spec.active >= spec.paths.len() {
        return Err(KernelPathError::Spec(format!(
            "active path {} of {}",
            spec.active,
            spec.paths.len()
        )));
    }
    Ok(())
}

fn map_error(name: &'static str) -> impl Fn(MapError) -> KernelPathError {
    move |source| KernelPathError::Map { name, source }
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut SchedClassifier> {
    let program = ebpf.program_mut(name).ok_or(KernelPathError::Program {
        name,
        source: ProgramError::NotLoaded,
    })?;
    program
        .try_into()
        .map_err(|source| KernelPathError::Program { name, source })
}

fn missing(name: &'static str) -> KernelPathError {
    KernelPathError::Map {
        name,
        source: MapError::InvalidName {
            name: name.to_owned(),
        },
    }
}

fn array<'a, V: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<Array<&'a mut MapData, V>> {
    Array::try_from(ebpf.map_mut(name).ok_or_else(|| missing(name))?).map_err(map_error(name))
}

fn hash<'a, K: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<HashMap<&'a mut MapData, K, u32>> {
    HashMap::try_from(ebpf.map_mut(name).ok_or_else(|| missing(name))?).map_err(map_error(name))
}

fn lpm<'a, K: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<LpmTrie<&'a mut MapData, K, u8>> {
    LpmTrie::try_from(ebpf.map_mut(name).ok_or_else(|| missing(name))?).map_err(map_error(name))
}

fn per_cpu<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<PerCpuArray<&'a MapData, u64>> {
    PerCpuArray::try_from(ebpf.map(name).ok_or_else(|| missing(name))?).map_err(map_error(name))
}

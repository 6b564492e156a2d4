//! The kernel path of an RFC 2473 / RFC 2003 tunnel: tc-BPF programs on the underlay device
//! that encapsulate on egress and decapsulate on ingress, so that TCP super-packets (GSO)
//! cross the underlay whole instead of one send per packet through a TUN device.
//!
//! | module | does | does not |
//! | --- | --- | --- |
//! | [`spec`] | turn a [`dataplane::TunnelConfig`] into what the programs' maps hold | decide whether a tunnel may take the kernel path (the daemon does) |
//! | [`object`] | load the programs, fill and update their maps, attach them to a device (tcx links on Linux 6.6+, a `clsact` qdisc before), read their counters | ICMP errors, fragments, probes, MSS clamping (the userspace core and nftables keep those) |
//! | [`counters`] | name the programs' counters and sum them over CPUs | export metrics |
//!
//! One loaded [`KernelPath`] is one tunnel. It acts on the network namespace of the calling
//! thread when it attaches, as everything in `sys` does.

pub mod counters;
pub mod object;
pub mod spec;

pub use counters::{Counters, PathCounters};
pub use object::{
    Attachment, FORCE_CLSACT_ENV, Hook, KernelPath, KernelPathError, attaches_tcx, probe,
};
pub use spec::{Spec, SpecPath};

/// The names the programs carry in the kernel (`bpftool prog`, `tc filter show`): what
/// v6gate attached is known by them.
pub const ENCAP_PROGRAM: &str = "v6gate_encap";
pub const DECAP_PROGRAM: &str = "v6gate_decap";

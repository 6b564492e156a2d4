//! The I/O shell of v6gate: everything that talks to the Linux kernel, and nothing else.
//!
//! | module | does | does not |
//! | --- | --- | --- |
//! | [`tun`] | create a non-persistent `IFF_TUN \| IFF_NO_PI` device by exact name; read and write whole packets on a pollable descriptor | configure addresses, MTU or link state (that is [`netlink`]) |
//! | [`raw`] | raw IPv6 and IPv4 sockets: send caller-built packets (`IPV6_HDRINCL`/`IP_HDRINCL`) for one protocol, one at a time or batched (`sendmmsg`/`recvmmsg`), receive them with outer addresses (and for IPv6 traffic class and encapsulation limit); an ICMPv6 socket filtered to Packet Too Big, and `ICMP_FILTER` for a raw ICMPv4 socket | build or check headers, fragment, decide what to accept |
//! | [`netlink`] | links, addresses, routes and rules over rtnetlink (async, tokio); route lookups; change notifications | decide what to install; remember what it installed (dumps filtered by table and protocol serve reconciliation) |
//! | [`address`] | a device's addresses with flags (temporary, deprecated, tentative) and lifetimes | choose the one to publish |
//! | [`ping`] | ICMP/ICMPv6 echo bound to a device (and source), datagram socket or raw fallback, for uplink watches | schedule probes or judge an uplink |
//! | [`udp`] | UDP segmentation (`UDP_SEGMENT`) and receive offload (`UDP_GRO`) on the ESP-in-UDP socket | decide which datagrams form a train |
//! | [`nft`] | replace, delete and read back one nftables table through `nft -j -f -`, each change one atomic transaction | decide the ruleset, touch any other table |
//! | [`netns`] | run a closure (and the processes it starts) in a fresh, private network namespace; enter a named namespace | anything that must outlive the closure |
//! | [`process`] | send a signal to a child process by pid | find or choose processes |
//! | [`bpf`] | run a loaded BPF program on given bytes (`BPF_PROG_TEST_RUN`) | load or attach programs (the kernel path's loader does, with aya) |
//! | [`sysctl`] | read and write `/proc/sys` keys; a journal that restores originals | choose values |
//! | [`conntrack`] | delete the IPv4 conntrack entries whose replies go to one address (ctnetlink) | decide which flows to forget, or when |
//!
//! Everything acts in the network namespace of the *calling thread*: devices, sockets and
//! netlink connections are bound to it when created, and `/proc/sys/net` keys resolve against
//! the thread that opens them. Errors are [`SysError`], whose text names the operation, the
//! object and the kernel's answer.
//!
//! TUN offloads (`IFF_VNET_HDR`, TSO/USO) and multi-queue TUN are
//! in [`tun`]; the daemon owns its UDP sockets for IKE and ESP-in-UDP through std and tokio.
//!
//! This is the only crate of the workspace allowed `unsafe`: `deny` at the root, allowed only
//! in the private `fd` and `msg` modules (descriptor flags and options; `recvmsg`,
//! `recvmmsg`, `sendmmsg`), [`bpf`]'s one system call, [`netns`] and [`process`] (unshare, setns, kill), the `sys` submodule of [`tun`], and the notification socket's
//! registration in [`netlink`]; each block carries a `// SAFETY:` comment.

#![deny(unsafe_code)]

pub mod address;
#[allow(unsafe_code)]
pub mod bpf;
pub mod conntrack;
mod error;
#[allow(unsafe_code)]
mod fd;
#[allow(unsafe_code)]
mod msg;
pub mod netlink;
#[allow(unsafe_code)]
pub mod netns;
pub mod nft;
pub mod ping;
#[allow(unsafe_code)]
pub mod process;
pub mod raw;
#[allow(unsafe_code)]
pub mod reactor;
#[allow(unsafe_code)]
pub mod runtime_dir;
pub mod sysctl;
pub mod tun;
pub mod udp;

pub use error::{Result, SysError};

//! strongSwan inside the lab: the reference IKEv2/IPsec peer for interoperability tests.
//!
//! [`Charon::start`] runs strongSwan's IKE daemon in one lab namespace with a
//! self-contained `strongswan.conf` (pointed to by `STRONGSWAN_CONF`; Debian's snippets in
//! `/etc/strongswan.d` disable the plugin we need) and a `swanctl.conf` rendered from a
//! [`StrongswanConfig`], both written into a per-instance directory under the lab dir.
//!
//! How it runs, and why:
//! - ESP is done in userspace by the `kernel-libipsec` plugin on a TUN device (`ipsec0`),
//!   because the machines the lab runs on may lack the kernel's ESP/XFRM modules. It must
//!   come before `kernel-netlink` in an explicit plugin list (`load_modular = no`), and
//!   strongSwan 5.9.8 also needs `kdf` for IKEv2 key derivation; see [`CHARON_PLUGINS`].
//! - libipsec always encapsulates ESP in UDP: it pretends a NAT was detected, so after
//!   IKE_SA_INIT both IKE and ESP move to port 4500 and `swanctl --list-sas` shows
//!   `TUNNEL-in-UDP`. A peer under test must therefore accept UDP-encapsulated ESP.
//! - It installs routes to the remote traffic selectors via `ipsec0` in table 220 with a
//!   rule in front of the main table; the site forwarding LAN traffic into the tunnel needs
//!   `net.ipv4.ip_forward = 1` (`LabOptions::site_ipv4_forwarding`).
//! - charon writes its pid file to the hard-coded `/run/charon.pid` and will not start
//!   while another live charon holds it, so each instance gets a private `/run`:
//!   `ip netns exec` puts the command in a new mount namespace (slave to the root one),
//!   where a bind mount of the instance's `run` directory over `/run` is invisible to
//!   everyone else. The shell doing the mount `exec`s charon, so the pid the lab tracks is
//!   charon's own.
//! - Each instance has its own vici socket in its directory; every `swanctl` call passes
//!   `--uri` (after the command: `swanctl --list-sas --uri ...`, not before it).
//! - Trap policies do not work with libipsec: it drops a packet that matches a policy
//!   without an SA ("could not find an outbound IPsec SA for reqid") instead of asking
//!   charon to negotiate one, so `start_action = trap` and `dpd_action = trap` never bring
//!   a tunnel up. Use [`StartAction::Start`] or [`Charon::initiate`], and `restart`.
//! - Dead peer detection: in IKEv2 `dpd_timeout` is ignored. A liveness check is an
//!   INFORMATIONAL request sent after `dpd_delay` of silence and retransmitted like any
//!   other request, so a dead peer is declared after about
//!   `dpd_delay + Retransmit::give_up_after()`; [`Retransmit`] sets those daemon-wide knobs.

mod charon;
mod check;
mod config;
mod render;
mod sas;

pub use charon::{
    CHARON_PATHS, CHARON_START_TIMEOUT, Charon, EXCHANGE_TIMEOUT, SWANCTL_TIMEOUT, charon_path,
};
pub use check::StrongswanConfigError;
pub use config::{
    ChildConfig, ConnectionConfig, DpdAction, Identity, LAB_PSK, Retransmit, StartAction,
    StrongswanConfig, suite,
};
pub use render::CHARON_PLUGINS;
pub use sas::{ChildSaSummary, IkeSaSummary, parse_list_sas};

//! Firewall, NAT, port forwards, policy routing and sysctls: the `[firewall]`, `[[zone]]`,
//! `[[allow]]`, `[[port_forward]]`, `[[table]]`, `[[rule]]` and `[sysctl]` sections.
//!
//! [`validate`] turns the file's sections into the model below, [`ruleset`] turns a config into
//! the firewall's nftables table (`table inet v6gate`, in the nftables JSON model), and
//! [`routing`] into the routes and rules of the policy tables; [`kernel_mss`] renders the
//! kernel path's MSS clamping, a table of each instance's own. All of it is pure: the host
//! shell (`sys::nft`, rtnetlink) applies what comes out.

mod expr;
mod file;
pub mod kernel_mss;
mod model;
pub mod napt;
mod ports;
pub mod routing;
pub mod ruleset;
pub(crate) mod validate;

pub(crate) use file::{
    FileAllow, FileFirewall, FilePortForward, FileRule, FileTable, FileZone, Sections,
};
pub use model::{
    Allow, AllowTarget, Family, Firewall, GATEWAY_TARGET, POLICY_MARK_BASE, PolicyRule,
    PortForward, Protocol, RouteTable, Routing, Service, TableRoute, Verdict, Zone,
};
pub use ports::{PortRange, parse_ports};

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

mod capture;
mod command;
mod config;
pub mod demo;
mod error;
pub mod firewall;
mod gateway;
mod lab;
pub mod multipath;
mod netns;
mod process;
mod promtool;
pub mod strongswan;
mod topology;
mod traffic;

pub use capture::{Capture, TextCapture};
pub use command::is_root;
pub use config::{Dataplane, GatewayConfig, MssClamp, TunnelConfig};
pub use error::LabError;
pub use gateway::{GATEWAY_START_TIMEOUT, GATEWAY_STOP_TIMEOUT, Gateway, query_status};
pub use lab::Lab;
pub use netns::enter_netns;
pub use process::{Process, TERMINATE_GRACE};
pub use promtool::promtool_objections;
pub use topology::{LabOptions, Node, Site, addr, dev};
pub use traffic::Transfer;

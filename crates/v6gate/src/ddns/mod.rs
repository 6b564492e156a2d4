//! The DDNS shell: reads addresses from netlink, asks the sans-IO core in `control::ddns`
//! whether to publish, and talks to the providers.
//!
//! | module | does |
//! | --- | --- |
//! | [`runner`] | one tokio task for all entries: netlink address events in, updates out, status |
//! | [`provider`] | per provider, the request for an address and the meaning of the answer (pure) |
//! | [`http`] | HTTPS with rustls, one client per entry and family, bound to that family |
//! | [`rfc2136`] | DNS UPDATE signed with TSIG, over UDP |
//! | [`state`] | what each entry last published, persisted under `/var/lib/v6gate` |
//! | [`secret`] | credentials files, never logged |
//!
//! The daemon starts one [`runner::DdnsRunner`] with the config's entries, feeds it the
//! current local address of tunnel paths that entries follow, shows
//! [`runner::DdnsRunner::status`] in `status`, and stops it on reload and exit.

pub mod http;
pub mod provider;
pub mod rfc2136;
pub mod runner;
pub mod secret;
pub mod state;

pub use runner::{DdnsRunner, DdnsStatus};

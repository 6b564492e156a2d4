//! v6gate: the daemon and CLI around the sans-IO cores.
//!
//! `main.rs` only calls [`cli::main`]; everything that touches the host goes through the `sys`
//! crate, and every protocol decision is taken by the `dataplane` and `control` cores.

pub mod assets;
pub mod cli;
pub mod daemon;
pub mod ddns;
pub mod doctor;
pub mod export;
pub mod firewall_status;
pub mod ipsec_paths;
pub mod keylog;
pub mod kpath_status;
pub mod mape;
pub mod metrics;
pub mod names;
pub mod operate;
pub mod packet_status;
pub mod peer_name;
pub mod plan;
pub mod reload;
pub mod softwire_status;
pub mod status;
pub mod systemd;
pub mod words;

//! v6gate: the daemon, CLI and network-namespace lab around the sans-IO cores.

pub mod lab;

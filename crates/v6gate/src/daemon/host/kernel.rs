//! The kernel side of the host state: what [`HostState`](super::HostState) asks of the host.
//! The daemon's is rtnetlink and `/proc/sys`; the owner's tests use a recording one.

use std::future::Future;

use sys::netlink::Netlink;

use super::object::{Object, Observed};

/// Puts objects on the host, takes them off, and reads what is there.
pub trait Host {
    /// Installs `object`, replacing one of the same identity.
    fn apply(&self, object: &Object) -> impl Future<Output = anyhow::Result<()>>;
    /// Removes `object`; `original` is a sysctl's value to write back.
    fn remove(
        &self,
        object: &Object,
        original: Option<&str>,
    ) -> impl Future<Output = anyhow::Result<()>>;
    /// The current value of a sysctl, journalled before the first write.
    fn read_sysctl(&self, key: &str) -> anyhow::Result<String>;
    /// What the host has of `objects` now.
    fn observe(&self, objects: &[&Object]) -> impl Future<Output = anyhow::Result<Observed>>;
}

impl Host for Netlink {
    async fn apply(&self, object: &Object) -> anyhow::Result<()> {
        object.apply(self).await
    }

    async fn remove(&self, object: &Object, original: Option<&str>) -> anyhow::Result<()> {
        object.remove(self, original).await
    }

    fn read_sysctl(&self, key: &str) -> anyhow::Result<String> {
        Ok(sys::sysctl::read(key)?)
    }

    async fn observe(&self, objects: &[&Object]) -> anyhow::Result<Observed> {
        Observed::read(self, objects).await
    }
}

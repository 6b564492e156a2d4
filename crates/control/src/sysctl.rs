//! A sysctl the daemon sets: from `[sysctl]` or from what a tunnel needs.

/// One sysctl to set. The daemon records the old value and restores it at stop.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SysctlChange {
    /// Path below `/proc/sys` with `/` separators (`net/ipv4/conf/v6g-home/rp_filter`): device
    /// names may hold dots, which the dotted `sysctl` spelling would split.
    pub key: String,
    pub value: String,
}

impl SysctlChange {
    pub(crate) fn new(key: String, value: &str) -> Self {
        Self {
            key,
            value: value.to_owned(),
        }
    }
}

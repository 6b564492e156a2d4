//! The `dataplane` word of a tunnel, apart from the model so that the softwire lowering can
//! name it without the model that holds the softwires.

use std::fmt;

/// `dataplane`: who moves a tunnel's packets. The kernel path (tc-BPF programs on the
/// underlay device) lets TCP super-packets cross the underlay whole; the TUN dataplane works
/// wherever a TUN device can be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dataplane {
    /// The kernel path when BPF programs can be loaded and attached, else the TUN dataplane.
    #[default]
    Auto,
    /// The kernel path, or the tunnel does not start.
    Kernel,
    /// The TUN dataplane only.
    Userspace,
}

impl Dataplane {
    pub const WORDS: [&'static str; 3] = ["auto", "kernel", "userspace"];

    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "auto" => Some(Self::Auto),
            "kernel" => Some(Self::Kernel),
            "userspace" => Some(Self::Userspace),
            _ => None,
        }
    }
}

impl fmt::Display for Dataplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Kernel => "kernel",
            Self::Userspace => "userspace",
        })
    }
}

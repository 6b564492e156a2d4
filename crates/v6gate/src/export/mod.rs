//! `v6gate export`: the other end's config for one tunnel, in that peer's own words.
//!
//! Pure rendering: a validated [`Config`] in, text out. Everything is mirrored (our `local` is
//! the peer's remote, our `routes` are the subnets behind the peer); the secret is a
//! placeholder unless asked for, so an export can be pasted into a ticket or a chat.
//! One file per format: `rtx` (YAMAHA RTX), `ix` (NEC IX), `strongswan` (swanctl.conf),
//! `libreswan` (ipsec.conf + ipsec.secrets), `networkd` (systemd-networkd ip6tnl).

mod ix;
mod libreswan;
mod networkd;
mod rtx;
mod strongswan;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use control::{Config, IpsecConfig, Mode, Path, Tunnel};
use ike::Identity;
use ipnet::IpNet;

/// The peer configs `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// YAMAHA RTX (`tunnel select`, `tunnel encapsulation ipip`, `ipsec ike ...`).
    Rtx,
    /// NEC UNIVERGE IX (`ikev2 profile`, `interface TunnelN.0`).
    Ix,
    /// strongSwan's swanctl.conf.
    Strongswan,
    /// libreswan's ipsec.conf and ipsec.secrets.
    Libreswan,
    /// systemd-networkd .netdev and .network files (Linux ip6tnl).
    Networkd,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rtx => "rtx",
            Self::Ix => "ix",
            Self::Strongswan => "strongswan",
            Self::Libreswan => "libreswan",
            Self::Networkd => "networkd",
        }
    }
}

/// Written where the pre-shared key goes unless `--with-secret` is given. No spaces, so it
/// stays one token in every vendor's syntax, and it is never a key anyone would use.
pub const SECRET_PLACEHOLDER: &str = "<pre-shared-key>";

/// A rendered peer config and what the reader must know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub text: String,
    /// Settings that could not be translated exactly, in words, each naming the key.
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub enum ExportError {
    UnknownTunnel {
        name: String,
        known: Vec<String>,
    },
    /// The format cannot express this tunnel's mode.
    Unsupported {
        format: Format,
        mode: Mode,
    },
    /// `--with-secret` and the PSK file cannot be read.
    Secret(std::io::Error),
    /// The format's IKEv1 words are not written.
    Ikev1 {
        format: Format,
    },
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownTunnel { name, known } => write!(
                f,
                "no tunnel named {name:?} in the config (tunnels: {})",
                known.join(", ")
            ),
            Self::Unsupported { format, mode } => {
                let hint = match mode {
                    Mode::Ipsec => "for ipsec tunnels use rtx, ix, strongswan or libreswan",
                    _ => "for ipip6/ip6ip6/any tunnels use rtx or networkd",
                };
                write!(
                    f,
                    "--format {} cannot describe a mode = \"{mode}\" tunnel: {hint}",
                    format.as_str()
                )
            }
            Self::Secret(e) => write!(f, "tunnel.ike.psk: cannot read the pre-shared key: {e}"),
            Self::Ikev1 { format } => write!(
                f,
                "tunnel.ike.version: --format {} writes IKEv2 only; for an IKEv1 peer use rtx, \
                 strongswan or libreswan",
                format.as_str()
            ),
        }
    }
}

impl std::error::Error for ExportError {}

/// What the reader of `export` may choose beyond the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Write the real pre-shared key instead of [`SECRET_PLACEHOLDER`].
    pub with_secret: bool,
    /// Prefixes the peer routes into the tunnel; empty = our `local_subnets`, else the
    /// network of our tunnel address.
    pub peer_routes: Vec<IpNet>,
}

/// Renders the peer's config of tunnel `name` in `format`.
pub fn render(
    config: &Config,
    name: &str,
    format: Format,
    options: &Options,
) -> Result<Export, ExportError> {
    let tunnel = config
        .tunnel(name)
        .ok_or_else(|| ExportError::UnknownTunnel {
            name: name.to_owned(),
            known: config.tunnels.iter().map(|t| t.name.clone()).collect(),
        })?;
    let secret = match (&tunnel.ipsec, options.with_secret) {
        (Some(ipsec), true) => Some(ipsec.psk.read().map_err(ExportError::Secret)?),
        _ => None,
    };
    let mut peer = Peer::mirror(tunnel, secret);
    if !options.peer_routes.is_empty() {
        peer.our_subnets.clone_from(&options.peer_routes);
    }
    let mut out = Export {
        text: String::new(),
        warnings: Vec::new(),
    };
    if format != Format::Strongswan && format != Format::Libreswan {
        for path in tunnel
            .paths
            .iter()
            .filter(|p| p.probe == control::Probe::Keepalive)
        {
            out.warnings.push(format!(
                "tunnel {}: path {}: probe = \"keepalive\" needs v6gate at both ends; a {} \
                 peer does not answer it, use probe = \"icmp\"",
                tunnel.name,
                path.name,
                format.as_str()
            ));
        }
    }
    if format == Format::Ix
        && tunnel
            .ipsec
            .as_ref()
            .is_some_and(|i| i.version == control::IkeVersion::V1)
    {
        return Err(ExportError::Ikev1 { format });
    }
    match (format, tunnel.mode) {
        (Format::Rtx, _) => rtx::render(&peer, &mut out),
        (Format::Ix, Mode::Ipsec) => ix::render(&peer, &mut out),
        (Format::Strongswan, Mode::Ipsec) => strongswan::render(&peer, &mut out),
        (Format::Libreswan, Mode::Ipsec) => libreswan::render(&peer, &mut out),
        (Format::Networkd, Mode::Ipip6 | Mode::Ip6ip6 | Mode::Any) => {
            networkd::render(&peer, &mut out);
        }
        (format, mode) => return Err(ExportError::Unsupported { format, mode }),
    }
    Ok(out)
}

/// The tunnel as the peer sees it.
pub(crate) struct Peer<'a> {
    pub tunnel: &'a Tunnel,
    /// Subnets behind the peer (our `routes`): the peer's local traffic selectors.
    pub own_subnets: Vec<IpNet>,
    /// Subnets behind us that the peer routes into the tunnel.
    pub our_subnets: Vec<IpNet>,
    /// The peer's address on the tunnel link, mirrored from ours on a /30 or /31 (or /127,
    /// /126).
    pub link_address: Option<IpNet>,
    pub secret: Option<Vec<u8>>,
}

impl<'a> Peer<'a> {
    fn mirror(tunnel: &'a Tunnel, secret: Option<Vec<u8>>) -> Self {
        let link_address = tunnel.addresses.first().and_then(mirror_address);
        let our_subnets = if !tunnel.local_subnets.is_empty() {
            tunnel.local_subnets.clone()
        } else if link_address.is_some() {
            // The link's network is connected once the peer has its address on the link.
            Vec::new()
        } else {
            // The peer reaches at least our end of the tunnel link.
            tunnel.addresses.iter().map(IpNet::trunc).collect()
        };
        Self {
            tunnel,
            own_subnets: tunnel.routes.clone(),
            our_subnets,
            link_address,
            secret,
        }
    }

    pub fn ipsec(&self) -> Option<&'a IpsecConfig> {
        self.tunnel.ipsec.as_ref()
    }

    /// The pre-shared key as text for a vendor config, or the placeholder.
    pub fn secret_text(&self) -> String {
        match &self.secret {
            Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            None => SECRET_PLACEHOLDER.to_owned(),
        }
    }

    /// Whether the secret is text that fits in double quotes as is.
    pub fn secret_is_plain(&self) -> bool {
        self.secret.as_ref().is_none_or(|bytes| {
            bytes
                .iter()
                .all(|b| b.is_ascii_graphic() && *b != b'"' && *b != b'\\' && *b != b'#')
        })
    }

    /// The identity the peer must claim (our `remote_id`, else its outer address).
    pub fn own_id(&self, path: &Path) -> Identity {
        self.ipsec()
            .and_then(|i| i.remote_id.clone())
            .unwrap_or(Identity::Addr(path.remote))
    }

    /// The identity we claim (our `local_id`, else our outer address).
    pub fn our_id(&self, path: &Path) -> Identity {
        self.ipsec()
            .and_then(|i| i.local_id.clone())
            .unwrap_or(Identity::Addr(path.local))
    }

    /// The inner MTU both ends should use: ours, with 1500-byte underlays where the config
    /// does not say.
    pub fn mtu(&self) -> u16 {
        self.tunnel.effective_mtu(|_| 1500)
    }

    /// Suffix naming a path when the tunnel has more than one.
    pub fn path_suffix(&self, path: &Path) -> String {
        if self.tunnel.paths.len() > 1 {
            format!("-{}", path.name)
        } else {
            String::new()
        }
    }
}

/// The other host of a point-to-point link: .1/30 <-> .2/30, .0/31 <-> .1/31.
fn mirror_address(ours: &IpNet) -> Option<IpNet> {
    let max = ours.max_prefix_len();
    let host_bits = max - ours.prefix_len();
    let offset = |a: IpAddr, net: IpAddr| -> u128 { bits(a) - bits(net) };
    let net = ours.network();
    let at = offset(ours.addr(), net);
    let other = match (host_bits, at) {
        (1, 0) => 1,
        (1, 1) => 0,
        (2, 1) => 2,
        (2, 2) => 1,
        _ => return None,
    };
    let addr = match net {
        IpAddr::V4(_) => IpAddr::V4(u32::try_from(bits(net) + other).ok()?.into()),
        IpAddr::V6(_) => IpAddr::V6((bits(net) + other).into()),
    };
    IpNet::new(addr, ours.prefix_len()).ok()
}

fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Whole seconds, rounded down, at least 1.
pub(crate) fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// `v6gate export` as the CLI runs it: the text on stdout, warnings on stderr.
pub fn run(config_path: &std::path::Path, tunnel: &str, format: Format, options: &Options) -> u8 {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    match render(&config, tunnel, format, options) {
        Ok(export) => {
            for warning in &export.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", export.text);
            0
        }
        Err(e) => {
            eprintln!("v6gate export: {e}");
            1
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

//! What a charon instance loads: connections, children, identities, retransmission.

use std::net::IpAddr;
use std::time::Duration;

use super::check::{StrongswanConfigError, check_quotable};
use crate::topology::Site;

/// Proposals in strongSwan syntax for the suites the scenarios name.
pub mod suite {
    /// IKE: AES-128-GCM-16, PRF HMAC-SHA2-256, MODP-2048 (v6gate's modern default).
    pub const IKE_GCM_MODP2048: &str = "aes128gcm16-prfsha256-modp2048";
    /// IKE: AES-128-GCM-16, PRF HMAC-SHA2-256, ECP-256.
    pub const IKE_GCM_ECP256: &str = "aes128gcm16-prfsha256-ecp256";
    /// IKE: AES-128-CBC, HMAC-SHA1-96, PRF HMAC-SHA1, MODP-1024 (the legacy suite of S3).
    pub const IKE_LEGACY: &str = "aes128-sha1-modp1024";
    /// ESP: AES-128-GCM-16, no PFS on rekeying.
    pub const ESP_GCM: &str = "aes128gcm16";
    /// ESP: AES-128-CBC with HMAC-SHA1-96, no PFS on rekeying (the legacy suite of S3).
    pub const ESP_LEGACY: &str = "aes128-sha1";
}

/// The pre-shared key of [`StrongswanConfig::site_to_site`].
pub const LAB_PSK: &str = "v6gate-lab-psk-0123456789abcdef";

/// An IKE identity (IDi/IDr) and the PSK lookup key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The end's own IP address (ID_IPV4_ADDR / ID_IPV6_ADDR), strongSwan's default.
    Address,
    /// ID_FQDN, rendered `fqdn:NAME`.
    Fqdn(String),
    /// ID_RFC822_ADDR, rendered `email:USER@DOMAIN`.
    Email(String),
    /// ID_KEY_ID with the string's bytes, rendered `keyid:VALUE` (the YAMAHA/NEC "key-id").
    KeyId(String),
}

impl Identity {
    /// The identity string strongSwan parses; `address` is the end's own address.
    pub(super) fn render(
        &self,
        address: IpAddr,
        field: &str,
    ) -> Result<String, StrongswanConfigError> {
        let (prefix, value) = match self {
            Self::Address => return Ok(address.to_string()),
            Self::Fqdn(value) => ("fqdn:", value),
            Self::Email(value) => ("email:", value),
            Self::KeyId(value) => ("keyid:", value),
        };
        if value.is_empty() {
            return Err(StrongswanConfigError::new(field, "identity value is empty"));
        }
        // After a type prefix strongSwan reads `#...` as hex bytes, not as text.
        if value.starts_with('#') {
            return Err(StrongswanConfigError::new(
                field,
                format!("{value:?} starts with '#', which strongSwan decodes as hex"),
            ));
        }
        check_quotable(value, field)?;
        Ok(format!("{prefix}{value}"))
    }
}

/// `start_action` of a CHILD_SA: what loading the config does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAction {
    /// Nothing; the SA comes up by `swanctl --initiate` or when the peer initiates.
    None,
    /// Initiate right after loading.
    Start,
    /// Install a trap policy; the first matching packet initiates. Not with
    /// kernel-libipsec, which drops such packets without telling charon (module docs).
    Trap,
}

impl StartAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Start => "start",
            Self::Trap => "trap",
        }
    }
}

/// `dpd_action` of a CHILD_SA: what happens when DPD declares the peer dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpdAction {
    Clear,
    /// Inert under kernel-libipsec, like [`StartAction::Trap`].
    Trap,
    Restart,
}

impl DpdAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clear => "clear",
            Self::Trap => "trap",
            Self::Restart => "restart",
        }
    }
}

/// Daemon-wide retransmission of IKE requests (`charon.retransmit_*`), which also decides
/// how fast DPD gives up on a silent peer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retransmit {
    /// Retransmissions after the first send.
    pub tries: u32,
    /// Wait after the first send.
    pub timeout: Duration,
    /// Each further wait is the previous one times this.
    pub base: f64,
}

impl Retransmit {
    /// strongSwan's defaults: 5 tries, 4 s, base 1.8 (gives up after about 165 s).
    pub const STRONGSWAN_DEFAULT: Self = Self {
        tries: 5,
        timeout: Duration::from_secs(4),
        base: 1.8,
    };

    /// Time from the first send of a request until the daemon gives up on it: the sum of
    /// `timeout * base^n` for n in 0..=tries.
    pub fn give_up_after(&self) -> Duration {
        let mut total = 0.0;
        let mut wait = self.timeout.as_secs_f64();
        for _ in 0..=self.tries {
            total += wait;
            wait *= self.base;
        }
        Duration::from_secs_f64(total)
    }

    pub(super) fn validate(&self) -> Result<(), StrongswanConfigError> {
        if self.timeout.is_zero() {
            return Err(StrongswanConfigError::new(
                "charon.retransmit_timeout",
                "must be positive",
            ));
        }
        if !self.base.is_finite() || self.base < 1.0 {
            return Err(StrongswanConfigError::new(
                "charon.retransmit_base",
                format!("{} is not a finite number >= 1", self.base),
            ));
        }
        Ok(())
    }
}

impl Default for Retransmit {
    fn default() -> Self {
        Self::STRONGSWAN_DEFAULT
    }
}

/// One CHILD_SA of a connection (`connections.<conn>.children.<name>`).
#[derive(Clone, Debug)]
pub struct ChildConfig {
    pub name: String,
    /// Traffic selectors in strongSwan syntax (`198.51.100.0/24`, `dynamic`,
    /// `10.0.0.0/8[tcp/80]`).
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    /// ESP proposals, e.g. [`suite::ESP_GCM`]; add a DH group (`aes128gcm16-modp2048`) for
    /// PFS on rekeying.
    pub esp_proposals: Vec<String>,
    pub start_action: StartAction,
    pub dpd_action: Option<DpdAction>,
    /// CHILD_SA rekeying interval (whole seconds); `None` keeps strongSwan's 1 h.
    pub rekey_time: Option<Duration>,
    /// Hard CHILD_SA lifetime (whole seconds); `None` keeps rekey_time + 10 %.
    pub life_time: Option<Duration>,
    /// Raw `key = value` lines appended to the child section.
    pub extra: Vec<String>,
}

/// One IKE connection with its PSK (`connections.<name>` plus `secrets.ike-<name>`).
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    pub name: String,
    /// IKE major version: 2, or 1 for main mode PSK peers.
    pub version: u8,
    pub local_addr: IpAddr,
    pub remote_addr: IpAddr,
    pub local_id: Identity,
    pub remote_id: Identity,
    pub psk: String,
    /// IKE proposals, e.g. [`suite::IKE_GCM_MODP2048`].
    pub ike_proposals: Vec<String>,
    /// Liveness check after this much silence (whole seconds); `None` disables DPD.
    pub dpd_delay: Option<Duration>,
    /// IKE_SA rekeying interval (whole seconds); `None` keeps strongSwan's 4 h.
    pub rekey_time: Option<Duration>,
    /// Extra time an IKE_SA may live past `rekey_time` (whole seconds); `None` keeps 10 %.
    pub over_time: Option<Duration>,
    /// Off in the lab: a peer under test is not expected to do MOBIKE, and with it on
    /// strongSwan moves to port 4500 and probes addresses on its own schedule.
    pub mobike: bool,
    pub children: Vec<ChildConfig>,
    /// Raw `key = value` lines appended to the connection section.
    pub extra: Vec<String>,
}

/// What one charon instance loads: its connections and daemon-wide settings.
#[derive(Clone, Debug)]
pub struct StrongswanConfig {
    pub connections: Vec<ConnectionConfig>,
    /// `None` keeps strongSwan's defaults ([`Retransmit::STRONGSWAN_DEFAULT`]).
    pub retransmit: Option<Retransmit>,
    /// Raw lines appended inside the `charon { }` section of strongswan.conf.
    pub charon_extra: Vec<String>,
}

impl StrongswanConfig {
    /// The lab's standard peer config for `site`: connection "ab" over the IPv6 underlay,
    /// PSK [`LAB_PSK`] with address identities, AES-GCM with MODP-2048, one child "lan4"
    /// joining the two IPv4 LANs, started by [`Charon::initiate`](super::Charon::initiate).
    pub fn site_to_site(site: Site) -> Self {
        Self {
            connections: vec![ConnectionConfig {
                name: "ab".to_owned(),
                version: 2,
                local_addr: site.wan6().into(),
                remote_addr: site.peer().wan6().into(),
                local_id: Identity::Address,
                remote_id: Identity::Address,
                psk: LAB_PSK.to_owned(),
                ike_proposals: vec![suite::IKE_GCM_MODP2048.to_owned()],
                dpd_delay: None,
                rekey_time: None,
                over_time: None,
                mobike: false,
                children: vec![ChildConfig {
                    name: "lan4".to_owned(),
                    local_ts: vec![site.lan4().to_owned()],
                    remote_ts: vec![site.peer().lan4().to_owned()],
                    esp_proposals: vec![suite::ESP_GCM.to_owned()],
                    start_action: StartAction::None,
                    dpd_action: None,
                    rekey_time: None,
                    life_time: None,
                    extra: Vec::new(),
                }],
                extra: Vec::new(),
            }],
            retransmit: None,
            charon_extra: Vec::new(),
        }
    }

    /// The first connection, which the lab's standard configs have exactly one of.
    pub fn connection_mut(&mut self) -> &mut ConnectionConfig {
        &mut self.connections[0]
    }

    /// The first child of the first connection.
    pub fn child_mut(&mut self) -> &mut ChildConfig {
        &mut self.connections[0].children[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_carry_strongswan_type_prefixes() {
        let v4: IpAddr = "198.18.1.1".parse().unwrap();
        let v6: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let cases = [
            (Identity::Address, v4, "198.18.1.1"),
            (Identity::Address, v6, "2001:db8:0:1::1"),
            (
                Identity::Fqdn("gw.example.net".into()),
                v4,
                "fqdn:gw.example.net",
            ),
            (
                Identity::Email("ops@example.net".into()),
                v6,
                "email:ops@example.net",
            ),
            (Identity::KeyId("rtx830".into()), v6, "keyid:rtx830"),
        ];
        for (identity, address, expected) in cases {
            assert_eq!(identity.render(address, "id").unwrap(), expected);
        }
        for bad in [
            Identity::KeyId(String::new()),
            Identity::KeyId("#0102".into()),
            Identity::Fqdn("a\"b".into()),
            Identity::Email("a\nb".into()),
        ] {
            assert!(bad.render(v4, "id").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn retransmission_gives_up_after_the_geometric_sum() {
        // strongSwan documents about 165 s for its defaults: 4 s * (1 + 1.8 + ... + 1.8^5).
        let default = Retransmit::default().give_up_after().as_secs_f64();
        assert!((default - 165.061_12).abs() < 1e-3, "{default}");
        let once = Retransmit {
            tries: 0,
            timeout: Duration::from_millis(700),
            base: 3.0,
        };
        assert_eq!(once.give_up_after(), Duration::from_millis(700));
        let flat = Retransmit {
            tries: 2,
            timeout: Duration::from_millis(500),
            base: 1.0,
        };
        assert_eq!(flat.give_up_after(), Duration::from_millis(1500));
    }
}

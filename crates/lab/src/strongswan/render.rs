//! Renders swanctl.conf and the self-contained strongswan.conf of a charon instance.

use std::fmt::Write as _;
use std::path::Path;

use super::check::{StrongswanConfigError, check_name, check_quotable, seconds, token_list};
use super::config::{ChildConfig, ConnectionConfig, StrongswanConfig};

/// The explicit plugin list: `kernel-libipsec` before `kernel-netlink` so that it handles
/// SAs and policies while `kernel-netlink` still does addresses and routes; `kdf` is
/// required by 5.9.8's IKEv2 key derivation; `openssl` brings AES-GCM, AES-CBC, SHA-1/2,
/// MODP and ECP groups.
pub const CHARON_PLUGINS: &str =
    "random nonce openssl kdf kernel-libipsec kernel-netlink socket-default vici";

/// Plugins `swanctl` loads to parse credentials; PSKs need none, certificates these.
const SWANCTL_PLUGINS: &str = "pem pkcs1 pkcs8 x509 pubkey openssl random";

/// `sun_path` of a unix socket holds 108 bytes including the terminating NUL.
const UNIX_PATH_MAX: usize = 107;

impl StrongswanConfig {
    /// Renders swanctl.conf: every connection and one `ike` secret per connection, keyed by
    /// both identities. Rejects what strongSwan would misparse instead of escaping it.
    pub fn swanctl_conf(&self) -> Result<String, StrongswanConfigError> {
        if self.connections.is_empty() {
            return Err(StrongswanConfigError::new(
                "connections",
                "at least one connection is needed",
            ));
        }
        let mut out = String::from("connections {\n");
        let mut secrets = String::from("secrets {\n");
        let mut names: Vec<&str> = Vec::new();
        for connection in &self.connections {
            if names.contains(&connection.name.as_str()) {
                return Err(StrongswanConfigError::new(
                    format!("connections.{}", connection.name),
                    "duplicate connection name",
                ));
            }
            names.push(&connection.name);
            connection.render(&mut out, &mut secrets)?;
        }
        out.push_str("}\n\n");
        secrets.push_str("}\n");
        out.push_str(&secrets);
        Ok(out)
    }

    /// Renders the self-contained strongswan.conf for an instance whose vici socket is
    /// `vici_socket`; charon logs to stderr.
    pub fn strongswan_conf(&self, vici_socket: &Path) -> Result<String, StrongswanConfigError> {
        let socket = vici_socket.to_string_lossy();
        check_quotable(&socket, "charon.plugins.vici.socket")?;
        if socket.len() > UNIX_PATH_MAX {
            return Err(StrongswanConfigError::new(
                "charon.plugins.vici.socket",
                format!("{socket} is longer than a unix socket path may be ({UNIX_PATH_MAX})"),
            ));
        }
        let mut out = String::new();
        out.push_str("charon {\n");
        // Debian's strongswan.d snippets are never read: this file is the whole config.
        out.push_str("    load_modular = no\n");
        let _ = writeln!(out, "    load = {CHARON_PLUGINS}");
        if let Some(retransmit) = &self.retransmit {
            retransmit.validate()?;
            let _ = writeln!(out, "    retransmit_tries = {}", retransmit.tries);
            let _ = writeln!(
                out,
                "    retransmit_timeout = {:.3}",
                retransmit.timeout.as_secs_f64()
            );
            let _ = writeln!(out, "    retransmit_base = {:.3}", retransmit.base);
        }
        out.push_str("    plugins {\n        vici {\n");
        let _ = writeln!(out, "            socket = \"unix://{socket}\"");
        out.push_str("        }\n    }\n");
        out.push_str("    filelog {\n        stderr {\n");
        out.push_str("            time_format = %T\n");
        out.push_str("            default = 1\n            ike = 2\n            cfg = 2\n");
        out.push_str("        }\n    }\n");
        for line in &self.charon_extra {
            let _ = writeln!(out, "    {line}");
        }
        out.push_str("}\n\nswanctl {\n");
        let _ = writeln!(out, "    load = {SWANCTL_PLUGINS}");
        out.push_str("}\n");
        Ok(out)
    }
}

impl ConnectionConfig {
    fn render(&self, out: &mut String, secrets: &mut String) -> Result<(), StrongswanConfigError> {
        let at = format!("connections.{}", self.name);
        check_name(&self.name, &at)?;
        if self.local_addr.is_ipv4() != self.remote_addr.is_ipv4() {
            return Err(StrongswanConfigError::new(
                &at,
                format!(
                    "local_addrs {} and remote_addrs {} are of different families",
                    self.local_addr, self.remote_addr
                ),
            ));
        }
        if self.psk.is_empty() {
            return Err(StrongswanConfigError::new(
                format!("secrets.ike-{}", self.name),
                "the PSK is empty",
            ));
        }
        if self.children.is_empty() {
            return Err(StrongswanConfigError::new(
                format!("{at}.children"),
                "at least one child is needed",
            ));
        }
        let local_id = self
            .local_id
            .render(self.local_addr, &format!("{at}.local.id"))?;
        let remote_id = self
            .remote_id
            .render(self.remote_addr, &format!("{at}.remote.id"))?;
        let proposals = token_list(&self.ike_proposals, &format!("{at}.proposals"))?;

        let _ = writeln!(out, "    {} {{", self.name);
        let _ = writeln!(out, "        version = {}", self.version);
        let _ = writeln!(out, "        local_addrs = {}", self.local_addr);
        let _ = writeln!(out, "        remote_addrs = {}", self.remote_addr);
        let _ = writeln!(out, "        proposals = {proposals}");
        let _ = writeln!(
            out,
            "        mobike = {}",
            if self.mobike { "yes" } else { "no" }
        );
        if let Some(delay) = self.dpd_delay {
            let _ = writeln!(
                out,
                "        dpd_delay = {}",
                seconds(delay, &format!("{at}.dpd_delay"))?
            );
        }
        if let Some(time) = self.rekey_time {
            let _ = writeln!(
                out,
                "        rekey_time = {}",
                seconds(time, &format!("{at}.rekey_time"))?
            );
        }
        if let Some(time) = self.over_time {
            let _ = writeln!(
                out,
                "        over_time = {}",
                seconds(time, &format!("{at}.over_time"))?
            );
        }
        for line in &self.extra {
            let _ = writeln!(out, "        {line}");
        }
        let _ = writeln!(
            out,
            "        local {{\n            auth = psk\n            id = \"{local_id}\"\n        }}"
        );
        let _ = writeln!(
            out,
            "        remote {{\n            auth = psk\n            id = \"{remote_id}\"\n        }}"
        );
        out.push_str("        children {\n");
        let mut names: Vec<&str> = Vec::new();
        for child in &self.children {
            if names.contains(&child.name.as_str()) {
                return Err(StrongswanConfigError::new(
                    format!("{at}.children.{}", child.name),
                    "duplicate child name",
                ));
            }
            names.push(&child.name);
            child.render(out, &format!("{at}.children.{}", child.name))?;
        }
        out.push_str("        }\n    }\n");

        // Keyed by both identities, so that the secret is only used between these two ends.
        let _ = writeln!(secrets, "    ike-{} {{", self.name);
        let _ = writeln!(secrets, "        id-local = \"{local_id}\"");
        let _ = writeln!(secrets, "        id-remote = \"{remote_id}\"");
        // Hex sidesteps quoting: any byte of the PSK survives as is.
        let _ = writeln!(secrets, "        secret = 0x{}", hex(self.psk.as_bytes()));
        secrets.push_str("    }\n");
        Ok(())
    }
}

impl ChildConfig {
    fn render(&self, out: &mut String, at: &str) -> Result<(), StrongswanConfigError> {
        check_name(&self.name, at)?;
        let local_ts = token_list(&self.local_ts, &format!("{at}.local_ts"))?;
        let remote_ts = token_list(&self.remote_ts, &format!("{at}.remote_ts"))?;
        let esp = token_list(&self.esp_proposals, &format!("{at}.esp_proposals"))?;
        let _ = writeln!(out, "            {} {{", self.name);
        let _ = writeln!(out, "                local_ts = {local_ts}");
        let _ = writeln!(out, "                remote_ts = {remote_ts}");
        let _ = writeln!(out, "                esp_proposals = {esp}");
        let _ = writeln!(
            out,
            "                start_action = {}",
            self.start_action.as_str()
        );
        if let Some(action) = self.dpd_action {
            let _ = writeln!(out, "                dpd_action = {}", action.as_str());
        }
        if let Some(time) = self.rekey_time {
            let _ = writeln!(
                out,
                "                rekey_time = {}",
                seconds(time, &format!("{at}.rekey_time"))?
            );
        }
        if let Some(time) = self.life_time {
            let _ = writeln!(
                out,
                "                life_time = {}",
                seconds(time, &format!("{at}.life_time"))?
            );
        }
        for line in &self.extra {
            let _ = writeln!(out, "                {line}");
        }
        out.push_str("            }\n");
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use super::*;
    use crate::strongswan::config::{DpdAction, Identity, Retransmit, StartAction, suite};
    use crate::topology::Site;

    fn error_field(config: &StrongswanConfig) -> String {
        match config.swanctl_conf() {
            Ok(text) => panic!("accepted:\n{text}"),
            Err(e) => {
                assert!(e.to_string().contains(&e.field), "{e}");
                e.field
            }
        }
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn site_to_site_renders_the_lab_connection() {
        let text = StrongswanConfig::site_to_site(Site::A)
            .swanctl_conf()
            .unwrap();
        let expected = "connections {
    ab {
        version = 2
        local_addrs = 2001:db8:0:1::1
        remote_addrs = 2001:db8:0:2::1
        proposals = aes128gcm16-prfsha256-modp2048
        mobike = no
        local {
            auth = psk
            id = \"2001:db8:0:1::1\"
        }
        remote {
            auth = psk
            id = \"2001:db8:0:2::1\"
        }
        children {
            lan4 {
                local_ts = 198.51.100.0/24
                remote_ts = 203.0.113.0/24
                esp_proposals = aes128gcm16
                start_action = none
            }
        }
    }
}

secrets {
    ike-ab {
        id-local = \"2001:db8:0:1::1\"
        id-remote = \"2001:db8:0:2::1\"
        secret = 0x7636676174652d6c61622d70736b2d30313233343536373839616263646566
    }
}
";
        assert_eq!(text, expected);
        let b = StrongswanConfig::site_to_site(Site::B);
        let b = &b.connections[0];
        assert_eq!(b.local_addr, IpAddr::from(crate::addr::SITE_B_WAN6));
        assert_eq!(b.children[0].local_ts, [crate::addr::LAN_B4]);
        assert_eq!(b.children[0].remote_ts, [crate::addr::LAN_A4]);
    }

    #[test]
    fn every_knob_lands_in_its_section() {
        let mut config = StrongswanConfig::site_to_site(Site::B);
        let connection = config.connection_mut();
        connection.local_addr = "198.18.2.1".parse().unwrap();
        connection.remote_addr = "198.18.1.1".parse().unwrap();
        connection.local_id = Identity::Fqdn("b.example.net".to_owned());
        connection.remote_id = Identity::KeyId("site a".to_owned());
        connection.psk = "p\"s\\k".to_owned();
        connection.ike_proposals = vec![
            suite::IKE_GCM_ECP256.to_owned(),
            suite::IKE_LEGACY.to_owned(),
        ];
        connection.dpd_delay = Some(Duration::from_secs(5));
        connection.rekey_time = Some(Duration::from_secs(28800));
        connection.over_time = Some(Duration::from_secs(60));
        connection.mobike = true;
        connection.extra = vec!["encap = yes".to_owned()];
        let child = config.child_mut();
        child.local_ts = vec!["203.0.113.0/24".to_owned(), "198.18.2.1/32".to_owned()];
        child.esp_proposals = vec![suite::ESP_LEGACY.to_owned()];
        child.start_action = StartAction::Start;
        child.dpd_action = Some(DpdAction::Restart);
        child.rekey_time = Some(Duration::from_secs(3000));
        child.life_time = Some(Duration::from_secs(3600));
        child.extra = vec!["rand_time = 0s".to_owned()];
        let text = config.swanctl_conf().unwrap();
        let expected = "connections {
    ab {
        version = 2
        local_addrs = 198.18.2.1
        remote_addrs = 198.18.1.1
        proposals = aes128gcm16-prfsha256-ecp256,aes128-sha1-modp1024
        mobike = yes
        dpd_delay = 5s
        rekey_time = 28800s
        over_time = 60s
        encap = yes
        local {
            auth = psk
            id = \"fqdn:b.example.net\"
        }
        remote {
            auth = psk
            id = \"keyid:site a\"
        }
        children {
            lan4 {
                local_ts = 203.0.113.0/24,198.18.2.1/32
                remote_ts = 198.51.100.0/24
                esp_proposals = aes128-sha1
                start_action = start
                dpd_action = restart
                rekey_time = 3000s
                life_time = 3600s
                rand_time = 0s
            }
        }
    }
}

secrets {
    ike-ab {
        id-local = \"fqdn:b.example.net\"
        id-remote = \"keyid:site a\"
        secret = 0x7022735c6b
    }
}
";
        assert_eq!(text, expected);
    }

    #[test]
    fn psk_is_written_as_hex_of_every_byte() {
        for psk in ["x", "quote\" back\\slash # = { }", "日本語 🔑", "\u{1}\t\n"] {
            let mut config = StrongswanConfig::site_to_site(Site::A);
            config.connection_mut().psk = psk.to_owned();
            let text = config.swanctl_conf().unwrap();
            let line = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("secret = 0x"))
                .unwrap();
            assert_eq!(unhex(line), psk.as_bytes());
        }
    }

    #[test]
    fn values_strongswan_would_misread_are_rejected_with_their_field() {
        type Mutation = fn(&mut StrongswanConfig);
        let cases: [(Mutation, &str); 16] = [
            (|c| c.connections.clear(), "connections"),
            (
                |c| {
                    let copy = c.connections[0].clone();
                    c.connections.push(copy);
                },
                "connections.ab",
            ),
            (
                |c| c.connection_mut().name = "a b".into(),
                "connections.a b",
            ),
            (
                |c| c.connection_mut().remote_addr = "198.18.2.1".parse().unwrap(),
                "connections.ab",
            ),
            (|c| c.connection_mut().psk.clear(), "secrets.ike-ab"),
            (
                |c| c.connection_mut().children.clear(),
                "connections.ab.children",
            ),
            (
                |c| {
                    let copy = c.child_mut().clone();
                    c.connection_mut().children.push(copy);
                },
                "connections.ab.children.lan4",
            ),
            (
                |c| c.child_mut().name = String::new(),
                "connections.ab.children.",
            ),
            (
                |c| c.connection_mut().ike_proposals = vec!["aes128 sha1".into()],
                "connections.ab.proposals",
            ),
            (
                |c| c.connection_mut().ike_proposals.clear(),
                "connections.ab.proposals",
            ),
            (
                |c| c.child_mut().remote_ts = vec!["203.0.113.0/24,198.18.0.0/15".into()],
                "connections.ab.children.lan4.remote_ts",
            ),
            (
                |c| c.child_mut().esp_proposals = vec!["aes128gcm16#".into()],
                "connections.ab.children.lan4.esp_proposals",
            ),
            (
                |c| c.connection_mut().local_id = Identity::Fqdn("x\"y".into()),
                "connections.ab.local.id",
            ),
            (
                |c| c.connection_mut().dpd_delay = Some(Duration::from_millis(1500)),
                "connections.ab.dpd_delay",
            ),
            (
                |c| c.connection_mut().rekey_time = Some(Duration::ZERO),
                "connections.ab.rekey_time",
            ),
            (
                |c| c.child_mut().life_time = Some(Duration::from_nanos(1)),
                "connections.ab.children.lan4.life_time",
            ),
        ];
        for (mutate, field) in cases {
            let mut config = StrongswanConfig::site_to_site(Site::A);
            mutate(&mut config);
            assert_eq!(error_field(&config), field);
        }
    }

    #[test]
    fn strongswan_conf_is_self_contained_with_libipsec_before_netlink() {
        let mut config = StrongswanConfig::site_to_site(Site::A);
        config.retransmit = Some(Retransmit {
            tries: 2,
            timeout: Duration::from_millis(500),
            base: 1.5,
        });
        config.charon_extra = vec!["make_before_break = yes".to_owned()];
        let text = config
            .strongswan_conf(Path::new("/tmp/v6gl-1/strongswan-sa-0/charon.vici"))
            .unwrap();
        let expected = "charon {
    load_modular = no
    load = random nonce openssl kdf kernel-libipsec kernel-netlink socket-default vici
    retransmit_tries = 2
    retransmit_timeout = 0.500
    retransmit_base = 1.500
    plugins {
        vici {
            socket = \"unix:///tmp/v6gl-1/strongswan-sa-0/charon.vici\"
        }
    }
    filelog {
        stderr {
            time_format = %T
            default = 1
            ike = 2
            cfg = 2
        }
    }
    make_before_break = yes
}

swanctl {
    load = pem pkcs1 pkcs8 x509 pubkey openssl random
}
";
        assert_eq!(text, expected);
        let plugins: Vec<&str> = CHARON_PLUGINS.split_whitespace().collect();
        let position = |name| plugins.iter().position(|p| *p == name).unwrap();
        assert!(position("kernel-libipsec") < position("kernel-netlink"));
        assert!(plugins.contains(&"kdf"));

        let long = format!("/tmp/{}/charon.vici", "d".repeat(100));
        let e = config.strongswan_conf(Path::new(&long)).unwrap_err();
        assert_eq!(e.field, "charon.plugins.vici.socket");
        let e = config
            .strongswan_conf(Path::new("/tmp/a\"b/charon.vici"))
            .unwrap_err();
        assert_eq!(e.field, "charon.plugins.vici.socket");
        for bad in [
            Retransmit {
                base: 0.5,
                ..Retransmit::default()
            },
            Retransmit {
                base: f64::NAN,
                ..Retransmit::default()
            },
            Retransmit {
                timeout: Duration::ZERO,
                ..Retransmit::default()
            },
        ] {
            config.retransmit = Some(bad);
            assert!(
                config.strongswan_conf(Path::new("/tmp/s")).is_err(),
                "{bad:?}"
            );
        }
    }
}

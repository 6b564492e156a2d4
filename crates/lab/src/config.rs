//! v6gate config files for lab gateways, rendered to TOML.

use std::net::Ipv6Addr;
use std::path::PathBuf;

use crate::topology::Site;

/// Optional `mss_clamp` and `dataplane` settings of a tunnel: the config's own types.
pub use control::{Dataplane, MssClamp};

/// A `[[tunnel]]` table, rendered to TOML by [`GatewayConfig::to_toml`]. `None` leaves a
/// key out so the daemon's default applies.
#[derive(Clone, Debug)]
pub struct TunnelConfig {
    pub name: String,
    pub device: Option<String>,
    pub mode: String,
    pub local: Ipv6Addr,
    pub remote: Ipv6Addr,
    /// `Some(None)` writes `encap_limit = "none"`, `Some(Some(n))` writes the number.
    pub encap_limit: Option<Option<u8>>,
    pub mtu: Option<u16>,
    pub routes: Vec<String>,
    pub allowed_sources: Option<Vec<String>>,
    pub inner_families: Option<Vec<String>>,
    pub mss_clamp: Option<MssClamp>,
    pub dataplane: Option<Dataplane>,
    pub addresses: Vec<String>,
    /// Raw `key = value` lines appended to the table, for keys this struct does not know.
    pub extra: Vec<String>,
}

impl TunnelConfig {
    /// The lab's standard tunnel from `site` to its peer: ipip6 over the IPv6 underlay,
    /// routing the peer's IPv4 LAN.
    pub fn between(site: Site) -> Self {
        Self {
            name: "ab".to_owned(),
            device: None,
            mode: "ipip6".to_owned(),
            local: site.wan6(),
            remote: site.peer().wan6(),
            encap_limit: None,
            mtu: None,
            routes: vec![site.peer().lan4().to_owned()],
            allowed_sources: None,
            inner_families: None,
            mss_clamp: None,
            dataplane: None,
            addresses: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// TUN device name the daemon uses for this tunnel.
    pub fn device_name(&self) -> String {
        self.device
            .clone()
            .unwrap_or_else(|| format!("v6g-{}", self.name))
    }

    fn render(&self, out: &mut String) {
        out.push_str("\n[[tunnel]]\n");
        push_kv(out, "name", &quote(&self.name));
        if let Some(device) = &self.device {
            push_kv(out, "device", &quote(device));
        }
        push_kv(out, "mode", &quote(&self.mode));
        push_kv(out, "local", &quote(&self.local.to_string()));
        push_kv(out, "remote", &quote(&self.remote.to_string()));
        match self.encap_limit {
            None => {}
            Some(None) => push_kv(out, "encap_limit", "\"none\""),
            Some(Some(limit)) => push_kv(out, "encap_limit", &limit.to_string()),
        }
        if let Some(mtu) = self.mtu {
            push_kv(out, "mtu", &mtu.to_string());
        }
        push_kv(out, "routes", &quote_list(&self.routes));
        if let Some(sources) = &self.allowed_sources {
            push_kv(out, "allowed_sources", &quote_list(sources));
        }
        if let Some(families) = &self.inner_families {
            push_kv(out, "inner_families", &quote_list(families));
        }
        match self.mss_clamp {
            None => {}
            Some(MssClamp::Auto) => push_kv(out, "mss_clamp", "\"auto\""),
            Some(MssClamp::Off) => push_kv(out, "mss_clamp", "\"off\""),
            Some(MssClamp::Fixed(mss)) => push_kv(out, "mss_clamp", &mss.to_string()),
        }
        if let Some(dataplane) = self.dataplane {
            push_kv(out, "dataplane", &quote(&dataplane.to_string()));
        }
        if !self.addresses.is_empty() {
            push_kv(out, "address", &quote_list(&self.addresses));
        }
        for line in &self.extra {
            out.push_str(line);
            out.push('\n');
        }
    }
}

/// A whole v6gate config file for one lab gateway.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub control_socket: PathBuf,
    pub ipv4_forwarding: Option<bool>,
    pub ipv6_forwarding: Option<bool>,
    /// Raw `key = value` lines appended to `[gateway]`.
    pub extra: Vec<String>,
    pub tunnels: Vec<TunnelConfig>,
}

impl GatewayConfig {
    pub fn to_toml(&self) -> String {
        let mut out = String::from("[gateway]\n");
        push_kv(
            &mut out,
            "control_socket",
            &quote(&self.control_socket.to_string_lossy()),
        );
        if let Some(on) = self.ipv4_forwarding {
            push_kv(&mut out, "ipv4_forwarding", &on.to_string());
        }
        if let Some(on) = self.ipv6_forwarding {
            push_kv(&mut out, "ipv6_forwarding", &on.to_string());
        }
        for line in &self.extra {
            out.push_str(line);
            out.push('\n');
        }
        for tunnel in &self.tunnels {
            tunnel.render(&mut out);
        }
        out
    }

    /// The first tunnel, which the lab's standard configs have exactly one of.
    pub fn tunnel_mut(&mut self) -> &mut TunnelConfig {
        &mut self.tunnels[0]
    }
}

fn push_kv(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str(" = ");
    out.push_str(value);
    out.push('\n');
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::addr;

    #[test]
    fn config_renders_the_contract_keys() {
        let mut config = GatewayConfig {
            control_socket: PathBuf::from("/tmp/x \"y\".sock"),
            ipv4_forwarding: Some(true),
            ipv6_forwarding: None,
            extra: vec!["pin_table = 7000".to_owned()],
            tunnels: vec![TunnelConfig::between(Site::A)],
        };
        let tunnel = config.tunnel_mut();
        tunnel.encap_limit = Some(Some(4));
        tunnel.mss_clamp = Some(MssClamp::Fixed(1300));
        tunnel.dataplane = Some(Dataplane::Userspace);
        tunnel.addresses = vec!["198.51.100.1/32".to_owned()];
        let text = config.to_toml();
        let expected = "[gateway]\n\
            control_socket = \"/tmp/x \\\"y\\\".sock\"\n\
            ipv4_forwarding = true\n\
            pin_table = 7000\n\
            \n[[tunnel]]\n\
            name = \"ab\"\n\
            mode = \"ipip6\"\n\
            local = \"2001:db8:0:1::1\"\n\
            remote = \"2001:db8:0:2::1\"\n\
            encap_limit = 4\n\
            routes = [\"203.0.113.0/24\"]\n\
            mss_clamp = 1300\n\
            dataplane = \"userspace\"\n\
            address = [\"198.51.100.1/32\"]\n";
        assert_eq!(text, expected);
        assert_eq!(TunnelConfig::between(Site::B).device_name(), "v6g-ab");
        assert_eq!(
            TunnelConfig::between(Site::B).routes,
            vec![addr::LAN_A4.to_owned()]
        );
    }
}

//! The CE and BR of the MAP-E tests: siteA runs `v6gate run` on a softwire config, siteB is
//! the BR (a v6gate ipip6 end that decapsulates and routes to hostB, the IPv4 internet).

use std::net::Ipv6Addr;

use v6gate_lab::{Gateway, GatewayConfig, Lab, Node, Site, addr, dev};

use crate::common;

/// The far end (AFTR or BR) in siteB: decapsulates from `ce`, routes `inside` back to it.
pub fn far_end(base: &GatewayConfig, ce: Ipv6Addr, inside: &[&str]) -> GatewayConfig {
    let mut config = base.clone();
    let tunnel = config.tunnel_mut();
    tunnel.remote = ce;
    tunnel.routes = inside.iter().map(|s| (*s).to_owned()).collect();
    config
}

/// The name a B4 of these tests finds its AFTR by, served by knotd on the wan router.
pub const AFTR_NAME: &str = "aftr.example.jp";

/// The AFTR in siteB (at its wan address): decapsulates from siteA's wan address and routes
/// hostA's LAN and the B4's /29 back to it.
pub fn aftr_config(lab: &Lab) -> GatewayConfig {
    far_end(
        &lab.site_config(Site::B),
        addr::SITE_A_WAN6,
        &[addr::LAN_A4, "192.0.0.0/29"],
    )
}

/// Starts a CE in siteA whose one tunnel is a B4 finding its AFTR by [`AFTR_NAME`] through the
/// wan router's name server, with `extra` lines in its `[[tunnel]]`.
pub fn start_named_b4(lab: &Lab, extra: &str) -> Gateway {
    start_ce_with(
        lab,
        &[format!("resolvers = [\"[{}]:53\"]", addr::WAN_B6)],
        &format!(
            "[[tunnel]]\nname = \"b4\"\nmode = \"ds-lite\"\naftr = \"{AFTR_NAME}\"\n\
             default_route = true\n{extra}"
        ),
    )
}

/// The v6plus-shaped documentation rule of the MAP-E tests, CE in siteA, BR at siteB.
pub fn map_e_config() -> String {
    format!(
        "[[tunnel]]\nname = \"mape\"\nmode = \"map-e\"\ndevice_prefix = \"{}\"\n\
         rule = {{ ipv6_prefix = \"2001:db8::/56\", ipv4_prefix = \"198.18.8.1/32\", \
         ea_bits = 8, psid_offset = 4, br = \"{}\", layout = \"draft03\" }}\n\
         default_route = true\n",
        dev::WAN6,
        addr::SITE_B_WAN6
    )
}

/// Starts `v6gate run` in siteA on the lab's `[gateway]` with `softwire` (TOML `[[tunnel]]`
/// tables) as its only tunnels.
pub fn start_ce(lab: &Lab, softwire: &str) -> Gateway {
    start_ce_with(lab, &[], softwire)
}

/// [`start_ce`] with `gateway` lines added to `[gateway]`.
pub fn start_ce_with(lab: &Lab, gateway: &[String], softwire: &str) -> Gateway {
    let path = lab.dir().join("ce-softwire.toml");
    std::fs::write(&path, ce_toml(lab, gateway, softwire)).unwrap();
    lab.start_gateway_with(
        common::BIN.as_ref(),
        Node::SiteA,
        &path,
        &lab.site_config(Site::A).control_socket,
    )
    .unwrap_or_else(|e| panic!("starting the CE: {e}"))
}

/// The CE's whole config file: the lab's `[gateway]` with `gateway` lines, and `softwire`.
pub fn ce_toml(lab: &Lab, gateway: &[String], softwire: &str) -> String {
    let mut config = lab.site_config(Site::A);
    config.tunnels.clear();
    config.extra.extend_from_slice(gateway);
    config.to_toml() + softwire
}

/// The port set of `psid` under the v6plus-shaped rule of [`map_e_config`] (RFC 7597 5.1:
/// offset 4, so A = 1..15 in the top four bits, the PSID in the next eight).
pub fn psid_ranges(psid: u16) -> Vec<std::ops::RangeInclusive<u16>> {
    (1..16u16)
        .map(|a| (a << 12 | psid << 4)..=(a << 12 | psid << 4 | 15))
        .collect()
}

//! `mode = "ipsec"` and `[tunnel.ike]`: what validates, what is refused and what is warned about.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use control::{Config, Encap, IkeStart, InnerFamilies, Mode, Psk};
use support::*;

/// A key file of `mode` in a directory of its own; removed on drop.
struct KeyFile {
    dir: PathBuf,
    path: PathBuf,
}

impl KeyFile {
    fn new(tag: &str, mode: u32) -> Self {
        let dir = std::env::temp_dir().join(format!("v6gate-ipsec-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("peer.psk");
        std::fs::write(&path, "secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        Self { dir, path }
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An ipsec tunnel with `extra` tunnel keys and `ike` lines in its `[tunnel.ike]`.
fn ipsec(extra: &str, ike: &str) -> String {
    format!(
        "[[tunnel]]\nname = \"vps\"\nmode = \"ipsec\"\nlocal = \"2001:db8:a::2\"\n\
         remote = \"2001:db8:a::1\"\nlocal_subnets = [\"203.0.113.0/24\"]\n\
         routes = [\"198.51.100.0/24\"]\n{extra}[tunnel.ike]\n{ike}"
    )
}

fn with_key(key: &KeyFile, ike: &str) -> String {
    ipsec(
        "",
        &format!("psk_file = {:?}\n{ike}", key.path.display().to_string()),
    )
}

#[test]
fn full_table_validates_with_its_values() {
    let key = KeyFile::new("full", 0o600);
    let text = with_key(
        &key,
        "local_id = \"fqdn:siteb.example\"\nremote_id = \"keyid:#0a0b\"\n\
         proposals = [\"aes128gcm16-prfsha256-modp2048\"]\nesp_proposals = [\"aes128gcm16\"]\n\
         start = \"respond\"\nencap = \"udp\"\ndpd_delay = \"5s\"\ndpd_timeout = \"20s\"\n\
         dpd_action = \"clear\"\nike_lifetime = \"8h\"\nchild_lifetime = \"8h\"\n",
    );
    let c = valid(&text);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let t = &c.tunnels[0];
    assert_eq!(t.mode, Mode::Ipsec);
    assert_eq!(t.inner_families, InnerFamilies::IPV4);
    assert_eq!(t.local_subnets, ["203.0.113.0/24".parse().unwrap()]);
    assert_eq!(t.allowed_sources, t.routes);
    let i = t.ipsec.as_ref().unwrap();
    assert_eq!(i.psk, Psk::File(key.path.clone()));
    assert_eq!(i.psk.read().unwrap(), b"secret");
    assert_eq!(
        i.local_id.as_ref().unwrap().to_string(),
        "fqdn:siteb.example"
    );
    assert_eq!(i.remote_id, Some(ike::Identity::KeyId(vec![10, 11])));
    assert_eq!(i.proposals.len(), 1);
    assert!(!i.legacy);
    assert_eq!((i.start, i.encap), (IkeStart::Respond, Encap::Udp));
    assert_eq!(i.dpd_action, ike::DpdAction::Clear);
    assert_eq!(
        (i.dpd_delay, i.dpd_timeout, i.ike_lifetime, i.child_lifetime),
        (
            Duration::from_secs(5),
            Duration::from_secs(20),
            Duration::from_secs(8 * 3600),
            Duration::from_secs(8 * 3600)
        )
    );
}

#[test]
fn defaults_are_the_ike_cores() {
    let key = KeyFile::new("defaults", 0o400);
    let c = valid(&with_key(&key, ""));
    let i = c.tunnels[0].ipsec.clone().unwrap();
    let core = ike::Config::new(b"", vec![], vec![]);
    assert_eq!(i.proposals, core.ike);
    assert_eq!(i.esp_proposals, core.esp);
    assert_eq!((i.start, i.encap), (IkeStart::Auto, Encap::Auto));
    assert_eq!((i.local_id, i.remote_id), (None, None));
    let dpd = core.dpd.unwrap();
    assert_eq!((i.dpd_delay, i.dpd_timeout), (dpd.delay, dpd.timeout));
    assert_eq!(i.ike_lifetime, core.ike_lifetime);
}

#[test]
fn both_families_come_from_the_selectors() {
    let key = KeyFile::new("families", 0o600);
    let text = with_key(&key, "").replace(
        "routes = [\"198.51.100.0/24\"]",
        "routes = [\"198.51.100.0/24\", \"2001:db8:c::/48\"]",
    );
    let t = valid(&text).tunnels.remove(0);
    assert_eq!(t.inner_families, InnerFamilies::BOTH);
    // Carrying IPv6 keeps the device at 1280 even on a small underlay.
    assert_eq!(t.effective_mtu(|_| 1300), 1280);
}

#[test]
fn readable_key_file_and_inline_key_are_warnings() {
    let key = KeyFile::new("loose", 0o644);
    let text = with_key(&key, "");
    let c = valid(&text);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let w = &c.warnings[0];
    assert_eq!(w.key, "tunnel[0].ike.psk_file");
    assert!(w.message.contains("mode 0644"), "{}", w.message);
    assert_eq!(w.location.map(|l| l.0), Some(line_of(&text, "psk_file")));

    let text = ipsec("", "psk = \"hunter2\"\n");
    let c = valid(&text);
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(c.warnings[0].key, "tunnel[0].ike.psk");
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn legacy_suites_are_accepted_with_a_warning() {
    let key = KeyFile::new("legacy", 0o600);
    let text = with_key(
        &key,
        "proposals = [\"aes128gcm16-prfsha256-ecp256\", \"aes128-sha1-modp1024\"]\n\
         esp_proposals = [\"aes128-sha1\"]\n",
    );
    let c = valid(&text);
    assert!(c.tunnels[0].ipsec.as_ref().unwrap().legacy);
    let keys: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "tunnel[0].ike.proposals[1]",
            "tunnel[0].ike.esp_proposals[0]"
        ]
    );
    // CBC-SHA1 decides the MTU: 1500 - 40 - 8 - 8 - 16 - 12 = 1416 -> 1408 - 2.
    assert_eq!(c.tunnels[0].effective_mtu(|_| 1500), 1406);
}

#[test]
fn triple_des_only_when_asked_and_with_a_warning() {
    let key = KeyFile::new("3des", 0o600);
    for version in ["2", "1"] {
        let text = with_key(
            &key,
            &format!(
                "version = {version}\nproposals = [\"3des-sha256-modp2048\"]\n\
                 esp_proposals = [\"3des-sha256\"]\n"
            ),
        );
        let c = valid(&text);
        let keys: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "tunnel[0].ike.proposals[0]",
                "tunnel[0].ike.esp_proposals[0]"
            ]
        );
        assert!(
            c.warnings[0].to_string().contains("3DES"),
            "{}",
            c.warnings[0]
        );
        // 8-byte IV and block: 1500 - 40 - 8 - 8 - 8 - 16 = 1420 -> 1416 - 2.
        assert_eq!(c.tunnels[0].effective_mtu(|_| 1500), 1414);
    }
    // Never in the defaults.
    let c = valid(&with_key(&key, ""));
    assert!(c.warnings.is_empty());
}

#[test]
fn bad_proposal_token_is_named_with_key_and_line() {
    let key = KeyFile::new("token", 0o600);
    let text = with_key(
        &key,
        "proposals = [\"aes128gcm16-prfsha256-ecp256\",\n  \"aes128ctr-sha256-ecp256\"]\n",
    );
    only_problem(
        &text,
        "tunnel[0].ike.proposals[1]",
        "unknown algorithm `aes128ctr`",
        "aes128ctr",
    );
    let text = with_key(&key, "esp_proposals = [\"aes256-sha512\"]\n");
    only_problem(
        &text,
        "tunnel[0].ike.esp_proposals[0]",
        "not implemented for ESP",
        "esp_proposals",
    );
    let text = with_key(&key, "esp_proposals = []\n");
    only_problem(
        &text,
        "tunnel[0].ike.esp_proposals",
        "at least one",
        "esp_proposals",
    );
}

#[test]
fn words_identities_and_durations_are_checked() {
    let key = KeyFile::new("words", 0o600);
    for (line, field, needle) in [
        (
            "start = \"always\"\n",
            "start",
            "expected one of \"auto\", \"respond\"",
        ),
        (
            "encap = \"tcp\"\n",
            "encap",
            "expected one of \"auto\", \"udp\"",
        ),
        (
            "dpd_action = \"hold\"\n",
            "dpd_action",
            "\"restart\", \"clear\"",
        ),
        (
            "local_id = \"email:nobody\"\n",
            "local_id",
            "is not an identity",
        ),
        (
            "remote_id = \"keyid:#abc\"\n",
            "remote_id",
            "is not an identity",
        ),
        ("dpd_delay = 5\n", "dpd_delay", "expected a duration string"),
        ("ike_lifetime = \"5m\"\n", "ike_lifetime", "15m..=24h"),
        ("child_lifetime = \"2d\"\n", "child_lifetime", "unit"),
    ] {
        let text = with_key(&key, line);
        only_problem(
            &text,
            &format!("tunnel[0].ike.{field}"),
            needle,
            line.trim_end(),
        );
    }
}

#[test]
fn key_file_must_exist_and_one_key_source_be_given() {
    let text = ipsec("", "psk_file = \"/nonexistent/v6gate/peer.psk\"\n");
    only_problem(&text, "tunnel[0].ike.psk_file", "cannot read", "psk_file");
    let key = KeyFile::new("both", 0o600);
    let text = with_key(&key, "psk = \"x\"\n");
    only_problem(&text, "tunnel[0].ike.psk", "not both", "psk =");
    let text = ipsec("", "local_id = \"fqdn:a.example\"\n");
    let e = invalid(&text);
    assert_eq!(e.key(), "tunnel[0].ike.psk_file", "{e}");
}

#[test]
fn relative_key_file_is_taken_from_the_config_directory() {
    let key = KeyFile::new("relative", 0o600);
    let text = ipsec("", "psk_file = \"peer.psk\"\n");
    let origin = key.dir.join("v6gate.toml");
    let c = Config::from_toml_str(&text, &origin.display().to_string()).unwrap();
    assert_eq!(
        c.tunnels[0].ipsec.as_ref().unwrap().psk,
        Psk::File(key.path.clone())
    );
}

#[test]
fn ike_table_belongs_to_ipsec_only() {
    let text = tunnel("home", "2001:db8:a::2", "[tunnel.ike]\npsk = \"x\"\n");
    let e = invalid(&text);
    assert_eq!(e.key(), "tunnel[0].ike", "{e}");
    assert!(e.to_string().contains("belongs to mode = \"ipsec\""), "{e}");

    let text = tunnel(
        "home",
        "2001:db8:a::2",
        "local_subnets = [\"203.0.113.0/24\"]\n",
    );
    only_problem(
        &text,
        "tunnel[0].local_subnets",
        "traffic selectors of mode = \"ipsec\"",
        "local_subnets",
    );

    let text = tunnel(
        "vps",
        "2001:db8:a::2",
        "local_subnets = [\"203.0.113.0/24\"]\n",
    )
    .replace("\"ipip6\"", "\"ipsec\"");
    let e = invalid(&text);
    assert!(
        e.diagnostics()
            .iter()
            .any(|d| d.key == "tunnel[0].ike" && d.message.contains("needs a [tunnel.ike]")),
        "{e}"
    );
    assert!(
        e.diagnostics().iter().all(|d| d.key != "tunnel[0].routes"),
        "routes are only reported once [tunnel.ike] is there: {e}"
    );
}

#[test]
fn rfc2473_keys_and_paths_are_refused_for_ipsec() {
    let key = KeyFile::new("refused", 0o600);
    let psk = format!("psk_file = {:?}\n", key.path.display().to_string());
    for (extra, field, needle) in [
        ("encap_limit = 4\n", "encap_limit", "RFC 2473"),
        (
            "tclass = \"inherit\"\n",
            "tclass",
            "not configurable for ESP",
        ),
        (
            "inner_families = [\"ipv4\"]\n",
            "inner_families",
            "leave inner_families out",
        ),
    ] {
        let text = ipsec(extra, &psk);
        only_problem(
            &text,
            &format!("tunnel[0].{field}"),
            needle,
            extra.trim_end(),
        );
    }
}

/// An ipsec tunnel over an IPv6 path and an IPv4 path, with `extra` keys on the second path
/// and `tail` after it.
fn two_paths(psk: &str, extra: &str, tail: &str) -> String {
    format!(
        "[[tunnel]]\nname = \"vps\"\nmode = \"ipsec\"\nlocal_subnets = [\"203.0.113.0/24\"]\n\
         routes = [\"198.51.100.0/24\"]\n[tunnel.ike]\n{psk}\
         [[tunnel.path]]\nname = \"ipoe\"\nlocal = \"2001:db8:a::2\"\nremote = \"2001:db8:a::1\"\n\
         cost = 10\n[[tunnel.path]]\nname = \"pppoe\"\nlocal = \"198.18.1.1\"\n\
         remote = \"198.18.2.1\"\ncost = 100\n{extra}{tail}"
    )
}

#[test]
fn paths_of_both_families_with_health_validate() {
    let key = KeyFile::new("paths", 0o600);
    let psk = format!("psk_file = {:?}\n", key.path.display().to_string());
    let text = two_paths(
        &psk,
        "probe = \"none\"\n",
        "[tunnel.health]\ninterval = \"50ms\"\nup_after = 4\nhold_down = \"1s\"\n",
    );
    let config = Config::from_toml_str(&text, "paths.toml").expect("valid");
    let t = &config.tunnels[0];
    assert_eq!(t.mode, Mode::Ipsec);
    assert_eq!(t.paths.len(), 2);
    assert_eq!((t.paths[0].name.as_str(), t.paths[0].cost), ("ipoe", 10));
    assert!(t.paths[0].remote.is_ipv6() && t.paths[1].remote.is_ipv4());
    assert_eq!(t.paths[0].probe, control::Probe::Keepalive);
    assert_eq!(t.paths[1].probe, control::Probe::None);
    assert_eq!(t.health.interval, Duration::from_millis(50));
    assert_eq!(t.health.up_after, 4);
    assert_eq!(t.health.hold_down, Duration::from_secs(1));
    assert!(t.ipsec.is_some());
}

#[test]
fn ipsec_paths_refuse_icmp_probes_and_shared_remotes_and_may_have_a_device_each() {
    let key = KeyFile::new("paths-refused", 0o600);
    let psk = format!("psk_file = {:?}\n", key.path.display().to_string());
    let text = two_paths(
        &psk,
        "probe = \"icmp\"\nprobe_target = \"198.51.100.1\"\n",
        "",
    );
    only_problem(
        &text,
        "tunnel[0].path[1].probe",
        "keepalives inside",
        "icmp",
    );
    let text = two_paths(&psk, "", "").replace("\"198.18.2.1\"", "\"2001:db8:a::1\"");
    let text = text.replace("\"198.18.1.1\"", "\"2001:db8:b::2\"");
    let e = invalid(&text);
    let line = last_line_starting(&text, "remote = ");
    has_problem(
        &e,
        "tunnel[0].path[1].remote",
        line,
        "already has remote 2001:db8:a::1",
    );
    assert_eq!(e.diagnostics().len(), 1, "{e}");
    // Each path its own device (S4: OSPF over both), each with its own IKE SA.
    let text =
        two_paths(&psk, "", "").replace("[tunnel.ike]", "device_per_path = true\n[tunnel.ike]");
    let c = valid(&text);
    let t = &c.tunnels[0];
    assert!(t.device_per_path);
    let plan = control::tunnel_plan(&c.gateway, t, |_| 1500);
    let names: Vec<&str> = plan.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // Each device fits its own path (ESP over IPv4 leaves more room than over IPv6).
    for (d, p) in plan.devices.iter().zip(&t.paths) {
        assert_eq!(d.mtu, t.path_mtu(p, 1500), "{}", d.name);
    }
}

#[test]
fn selectors_are_required() {
    let key = KeyFile::new("selectors", 0o600);
    let text = with_key(&key, "").replace("routes = [\"198.51.100.0/24\"]\n", "");
    let e = invalid(&text);
    assert_eq!(e.diagnostics().len(), 1, "{e}");
    assert_eq!(e.diagnostics()[0].key, "tunnel[0].routes");
}

#[test]
fn host_name_remote_gets_a_clear_message() {
    let key = KeyFile::new("fqdn", 0o600);
    let text = with_key(&key, "").replace("\"2001:db8:a::1\"", "\"sitea.example\"");
    let config = valid(&text);
    let path = &config.tunnels[0].paths[0];
    assert_eq!(path.remote_name.as_deref(), Some("sitea.example"));
    assert!(!path.is_resolved());
}

#[test]
fn remote_psk_entries_give_ids_keys_of_their_own() {
    let key = KeyFile::new("remote-psk", 0o600);
    let path = format!("{:?}", key.path.display().to_string());
    let text = with_key(
        &key,
        &format!(
            "[[tunnel.ike.remote_psk]]\nremote_id = \"fqdn:ix-a.example\"\npsk_file = {path}\n\
             [[tunnel.ike.remote_psk]]\nremote_id = \"2001:db8:a::1\"\npsk_file = {path}\n"
        ),
    );
    let c = valid(&text);
    let i = c.tunnels[0].ipsec.as_ref().unwrap();
    let ids: Vec<String> = i.remote_psks.iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(ids, ["fqdn:ix-a.example", "2001:db8:a::1"]);
    assert_eq!(i.remote_psks[0].1.read().unwrap(), b"secret");

    // The same identity twice, and a key file that is not there.
    let text = with_key(
        &key,
        &format!(
            "[[tunnel.ike.remote_psk]]\nremote_id = \"fqdn:ix-a.example\"\npsk_file = {path}\n\
             [[tunnel.ike.remote_psk]]\nremote_id = \"fqdn:ix-a.example\"\npsk_file = {path}\n"
        ),
    );
    let e = invalid(&text);
    assert_eq!(e.key(), "tunnel[0].ike.remote_psk[1].remote_id", "{e}");
    assert!(e.to_string().contains("already holds the key"), "{e}");
    let text = with_key(
        &key,
        "[[tunnel.ike.remote_psk]]\nremote_id = \"fqdn:ix-a.example\"\n\
         psk_file = \"/nonexistent/v6gate/ix.psk\"\n",
    );
    let e = invalid(&text);
    assert_eq!(e.key(), "tunnel[0].ike.remote_psk[0].psk_file", "{e}");
}

#[test]
fn ikev1_picks_remote_keys_by_address_only() {
    let key = KeyFile::new("remote-psk-v1", 0o600);
    let path = format!("{:?}", key.path.display().to_string());
    let entry = |id: &str| {
        format!(
            "version = 1\nproposals = [\"aes128-sha256-modp2048\"]\n\
             esp_proposals = [\"aes128-sha256\"]\n\
             [[tunnel.ike.remote_psk]]\nremote_id = \"{id}\"\npsk_file = {path}\n"
        )
    };
    let c = valid(&with_key(&key, &entry("2001:db8:a::1")));
    assert_eq!(c.tunnels[0].ipsec.as_ref().unwrap().remote_psks.len(), 1);
    let e = invalid(&with_key(&key, &entry("fqdn:ix-a.example")));
    assert_eq!(e.key(), "tunnel[0].ike.remote_psk[0].remote_id", "{e}");
    assert!(e.to_string().contains("only the peer's address"), "{e}");
}

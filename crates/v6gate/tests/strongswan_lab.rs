//! The strongSwan peer harness in the lab: two real charons, one per site, tunnel the
//! IPv4 LANs over the underlay with userspace ESP (kernel-libipsec), and everything they
//! started goes away with the lab, also when a test panics.

use std::fs;
use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use v6gate_lab::strongswan::{
    Charon, DpdAction, Identity, IkeSaSummary, Retransmit, StartAction, StrongswanConfig, suite,
};
use v6gate_lab::{Lab, LabOptions, Node, Site, addr};

fn lab(options: LabOptions) -> Lab {
    assert!(
        v6gate_lab::is_root(),
        "the strongSwan lab tests build network namespaces and run charon; they must run \
         as root (CI does; locally: sudo -E cargo test -p v6gate --test strongswan_lab)"
    );
    Lab::two_sites(LabOptions {
        // libipsec's routes only carry the hosts' traffic if the sites forward it.
        site_ipv4_forwarding: true,
        ..options
    })
    .unwrap_or_else(|e| panic!("cannot build the lab: {e}"))
}

fn start(lab: &Lab, site: Site, config: &StrongswanConfig) -> Charon {
    Charon::start(lab, site.node(), config)
        .unwrap_or_else(|e| panic!("cannot start charon in {}: {e}", site.node()))
}

fn pair(lab: &Lab, adjust: impl Fn(Site, &mut StrongswanConfig)) -> (Charon, Charon) {
    let configs = [Site::A, Site::B].map(|site| {
        let mut config = StrongswanConfig::site_to_site(site);
        adjust(site, &mut config);
        config
    });
    // The responder first, so that an initiator with `start_action = start` finds it.
    let b = start(lab, Site::B, &configs[1]);
    let a = start(lab, Site::A, &configs[0]);
    (a, b)
}

fn only_sa(charon: &Charon) -> IkeSaSummary {
    let sas = charon
        .ike_sas()
        .unwrap_or_else(|e| panic!("list-sas in {}: {e}", charon.node()));
    assert_eq!(
        sas.len(),
        1,
        "expected one IKE_SA in {}: {sas:?}",
        charon.node()
    );
    sas.into_iter().next().unwrap_or_else(|| unreachable!())
}

/// Pings hostB from hostA through the tunnel and checks that the ESP counters of both
/// ends saw the packets, so the echoes cannot have taken another path.
fn assert_ping_through(lab: &Lab, a: &Charon, b: &Charon, count: u32) {
    let before_a = only_sa(a).children[0].packets_out;
    let before_b = only_sa(b).children[0].packets_in;
    let out = lab.ping_output(Node::HostA, IpAddr::V4(addr::HOST_B4), count, &[]);
    assert!(
        out.status.success(),
        "hostA -> hostB through strongSwan failed:\n{}{}\n--- siteA charon ---\n{}\n--- siteB charon ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        a.log(),
        b.log()
    );
    let child_a = only_sa(a).children[0].clone();
    let child_b = only_sa(b).children[0].clone();
    let sent = u64::from(count);
    assert!(
        child_a.packets_out >= before_a + sent,
        "siteA sent {} ESP packets for {count} echoes",
        child_a.packets_out - before_a
    );
    assert!(
        child_b.packets_in >= before_b + sent,
        "siteB received {} ESP packets for {count} echoes",
        child_b.packets_in - before_b
    );
    assert!(
        child_a.packets_in >= sent && child_b.packets_out >= sent,
        "replies: {child_a:?} {child_b:?}"
    );
}

fn netns_of(id: &str) -> Vec<String> {
    fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(id))
                .collect()
        })
        .unwrap_or_default()
}

fn is_charon(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| {
            cmdline
                .split(|&b| b == 0)
                .next()
                .is_some_and(|arg0| arg0.ends_with(b"charon"))
        })
        .unwrap_or(false)
}

fn assert_gone(id: &str, dir: &Path, pids: &[u32]) {
    assert!(netns_of(id).is_empty(), "left behind: {:?}", netns_of(id));
    assert!(!dir.exists(), "{} left behind", dir.display());
    for pid in pids {
        assert!(!is_charon(*pid), "charon {pid} still running");
    }
}

#[test]
fn gcm_modp2048_over_ipv6_carries_the_ipv4_lans() {
    let lab = lab(LabOptions::default());
    let (a, b) = pair(&lab, |_, _| {});
    let (id, dir) = (lab.id().to_owned(), lab.dir().to_owned());
    let pids = [a.pid(), b.pid()];
    assert!(is_charon(pids[0]) && is_charon(pids[1]), "{pids:?}");

    let log = a.initiate("lan4").unwrap();
    assert!(log.contains("CHILD_SA lan4{1} established"), "{log}");

    let sa = only_sa(&a);
    assert_eq!(sa.name, "ab");
    assert_eq!(sa.state, "ESTABLISHED");
    assert_eq!(
        sa.proposal.as_deref(),
        Some("AES_GCM_16-128/PRF_HMAC_SHA2_256/MODP_2048")
    );
    assert_eq!(
        sa.local_id.as_deref(),
        Some(addr::SITE_A_WAN6.to_string().as_str())
    );
    assert_eq!(
        sa.remote_id.as_deref(),
        Some(addr::SITE_B_WAN6.to_string().as_str())
    );
    let child = &sa.children[0];
    assert_eq!(
        (
            child.name.as_str(),
            child.state.as_str(),
            child.mode.as_str()
        ),
        ("lan4", "INSTALLED", "TUNNEL-in-UDP")
    );
    assert_eq!(child.proposal, "ESP:AES_GCM_16-128");
    assert_eq!(child.local_ts, [addr::LAN_A4]);
    assert_eq!(child.remote_ts, [addr::LAN_B4]);
    // The responder agrees.
    let peer = only_sa(&b);
    assert_eq!(
        (peer.name.as_str(), peer.state.as_str()),
        ("ab", "ESTABLISHED")
    );
    assert_eq!(peer.children[0].local_ts, [addr::LAN_B4]);

    // libipsec routes the remote LAN into its TUN from table 220.
    let rules = lab.ip(Node::SiteA, &["rule", "show"]).unwrap();
    assert!(rules.contains("lookup 220"), "{rules}");
    let routes = lab
        .ip(Node::SiteA, &["route", "show", "table", "220"])
        .unwrap();
    assert!(
        routes.contains(&format!("{} dev ipsec0", addr::LAN_B4)),
        "{routes}"
    );

    assert_ping_through(&lab, &a, &b, 5);
    // The raw listing a person would read carries the same SA.
    let listing = a.list_sas().unwrap();
    assert!(listing.contains("ab: #1, ESTABLISHED, IKEv2"), "{listing}");

    // Terminating deletes the SAs at both ends and the traffic stops.
    a.terminate("ab").unwrap();
    assert!(a.ike_sas().unwrap().is_empty());
    b.wait_ike_gone("ab", Duration::from_secs(5)).unwrap();
    assert!(!lab.ping(Node::HostA, IpAddr::V4(addr::HOST_B4), 1));

    a.stop().unwrap();
    b.stop().unwrap();
    drop(lab);
    assert_gone(&id, &dir, &pids);
}

#[test]
fn legacy_aes128_sha1_modp1024_is_supported() {
    let lab = lab(LabOptions::default());
    let (a, b) = pair(&lab, |_, config| {
        let connection = config.connection_mut();
        connection.ike_proposals = vec![suite::IKE_LEGACY.to_owned()];
        // S3's lifetimes.
        connection.rekey_time = Some(Duration::from_secs(28800));
        let child = config.child_mut();
        child.esp_proposals = vec![suite::ESP_LEGACY.to_owned()];
        child.rekey_time = Some(Duration::from_secs(28800));
    });
    a.initiate("lan4").unwrap();
    let sa = only_sa(&a);
    assert_eq!(
        sa.proposal.as_deref(),
        Some("AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024")
    );
    assert_eq!(sa.children[0].proposal, "ESP:AES_CBC-128/HMAC_SHA1_96");
    // Rekeying is scheduled within S3's 8 h, minus at most strongSwan's 10 % jitter
    // (the defaults would be 4 h for the IKE_SA and 1 h for the CHILD_SA).
    let listing = a.list_sas().unwrap();
    let rekeys: Vec<u64> = listing
        .lines()
        .filter_map(|line| line.split("rekeying in ").nth(1))
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    assert_eq!(rekeys.len(), 2, "{listing}");
    assert!(
        rekeys.iter().all(|&secs| (25_900..=28_800).contains(&secs)),
        "{listing}"
    );
    assert_ping_through(&lab, &a, &b, 3);
}

#[test]
fn key_ids_and_fqdns_over_the_ipv4_underlay_started_on_load() {
    let lab = lab(LabOptions {
        ipv4_underlay: true,
        ..LabOptions::default()
    });
    let (a, b) = pair(&lab, |site, config| {
        let connection = config.connection_mut();
        let (local, remote) = match site {
            Site::A => (addr::SITE_A_WAN4, addr::SITE_B_WAN4),
            Site::B => (addr::SITE_B_WAN4, addr::SITE_A_WAN4),
        };
        connection.local_addr = local.into();
        connection.remote_addr = remote.into();
        connection.ike_proposals = vec![suite::IKE_GCM_ECP256.to_owned()];
        connection.psk = "key id \"per site\" with spaces\\and more".to_owned();
        // S4: IKEv2 PSK with key ids per site; B names itself by FQDN.
        let a_id = Identity::KeyId("site-a".to_owned());
        let b_id = Identity::Fqdn("site-b.example.net".to_owned());
        (connection.local_id, connection.remote_id) = match site {
            Site::A => (a_id, b_id),
            Site::B => (b_id, a_id),
        };
        // siteB must have its config loaded before siteA initiates: B starts first.
        config.child_mut().start_action = match site {
            Site::A => StartAction::Start,
            Site::B => StartAction::None,
        };
    });
    a.wait_child_installed("lan4", Duration::from_secs(10))
        .unwrap();
    let sa = only_sa(&a);
    assert_eq!(sa.local_id.as_deref(), Some("site-a"));
    assert_eq!(sa.remote_id.as_deref(), Some("site-b.example.net"));
    assert_eq!(
        sa.proposal.as_deref(),
        Some("AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256")
    );
    let listing = a.list_sas().unwrap();
    assert!(
        listing.contains(&format!("@ {}[4500]", addr::SITE_B_WAN4)),
        "{listing}"
    );
    assert_ping_through(&lab, &a, &b, 3);
}

#[test]
fn dead_peer_is_declared_after_dpd_delay_and_retransmissions() {
    let lab = lab(LabOptions::default());
    let retransmit = Retransmit {
        tries: 2,
        timeout: Duration::from_millis(500),
        base: 1.0,
    };
    let (a, b) = pair(&lab, |_, config| {
        config.retransmit = Some(retransmit);
        config.connection_mut().dpd_delay = Some(Duration::from_secs(1));
        config.child_mut().dpd_action = Some(DpdAction::Clear);
    });
    a.initiate("lan4").unwrap();
    assert_ping_through(&lab, &a, &b, 2);
    // A crash, not a shutdown: siteB sends no DELETE.
    b.kill().unwrap();
    let started = Instant::now();
    let bound = Duration::from_secs(1) + retransmit.give_up_after() + Duration::from_secs(4);
    a.wait_ike_gone("ab", bound).unwrap();
    let took = started.elapsed();
    // Not at once (no DELETE came): the retransmissions ran out first. A liveness check
    // already in flight when siteB died may have had up to one timeout of head start, and
    // one that starts later waits for up to dpd_delay of silence.
    assert!(
        took >= retransmit.give_up_after() - retransmit.timeout,
        "{took:?}"
    );
    let log = a.log();
    assert!(log.contains("giving up after 2 retransmits"), "{log}");
}

#[test]
fn a_panicking_test_leaves_no_namespace_process_or_file() {
    let mut seen = None;
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let lab = lab(LabOptions::default());
        let (a, b) = pair(&lab, |_, _| {});
        a.initiate("lan4").unwrap();
        seen = Some((
            lab.id().to_owned(),
            lab.dir().to_owned(),
            [a.pid(), b.pid()],
        ));
        panic!("deliberate failure with two charons and an SA up");
    }));
    assert!(outcome.is_err());
    let (id, dir, pids) = seen.expect("the lab came up before the panic");
    assert_gone(&id, &dir, &pids);
}

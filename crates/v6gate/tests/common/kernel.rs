//! What the kernel path left on siteA: its programs on the wan device, its routes to it.

use kpath::KernelPath;
use v6gate_lab::{Lab, Node, dev, enter_netns};

/// Programs called v6gate_* attached to siteA's wan device (tcx, or tc before Linux 6.6).
pub fn attached_programs(lab: &Lab) -> usize {
    let namespace = lab.namespace(Node::SiteA).to_owned();
    let tcx = std::thread::spawn(move || {
        enter_netns(&namespace).expect("enter siteA");
        KernelPath::attached_tcx(dev::WAN6).expect("query tcx")
    })
    .join()
    .expect("query thread");
    let tc = ["ingress", "egress"].map(|hook| {
        let out = lab.exec(
            Node::SiteA,
            &["tc", "filter", "show", "dev", dev::WAN6, hook],
        );
        String::from_utf8_lossy(&out.stdout)
            .matches("v6gate_")
            .count()
    });
    tcx.iter().filter(|n| n.starts_with("v6gate_")).count() + tc.iter().sum::<usize>()
}

/// siteA's IPv4 routes through the underlay (`via inet6`) of `ip route show SELECTOR`.
pub fn underlay_routes(lab: &Lab, selector: &[&str]) -> Vec<String> {
    let mut args = vec!["-4", "route", "show"];
    args.extend(selector);
    lab.ip(Node::SiteA, &args)
        .unwrap()
        .lines()
        .filter(|l| l.contains("via inet6"))
        .map(str::to_owned)
        .collect()
}

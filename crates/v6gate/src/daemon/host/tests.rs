//! The owner against a recording host: diff, sharing, undo, journal and repair, without a
//! kernel.

use std::cell::RefCell;
use std::fs;
use std::future::Future;

use sys::netlink::{Family, Route, RouteKind, Rule};
use sys::runtime_dir::RuntimeDir;

use super::{Accept, Changes, Host, HostState, Journal, Object, Observed};

/// A host that keeps objects in a list and can be told to refuse one.
#[derive(Default)]
struct Recorder {
    /// What is on the host, by display text.
    present: RefCell<Vec<Object>>,
    /// Every call, in order.
    calls: RefCell<Vec<String>>,
    /// `apply` of an object with this display text fails.
    refuse: RefCell<Option<String>>,
    sysctl_value: String,
}

impl Host for Recorder {
    async fn apply(&self, object: &Object) -> anyhow::Result<()> {
        self.calls.borrow_mut().push(format!("apply {object}"));
        if self.refuse.borrow().as_deref() == Some(&object.to_string()) {
            anyhow::bail!("refused {object}");
        }
        let mut present = self.present.borrow_mut();
        present.retain(|o| o.identity() != object.identity());
        present.push(object.clone());
        Ok(())
    }

    async fn remove(&self, object: &Object, original: Option<&str>) -> anyhow::Result<()> {
        let restore = original.map(|o| format!(" to {o}")).unwrap_or_default();
        self.calls
            .borrow_mut()
            .push(format!("remove {object}{restore}"));
        self.present
            .borrow_mut()
            .retain(|o| o.identity() != object.identity());
        Ok(())
    }

    fn read_sysctl(&self, _key: &str) -> anyhow::Result<String> {
        Ok(self.sysctl_value.clone())
    }

    async fn observe(&self, _objects: &[&Object]) -> anyhow::Result<Observed> {
        let mut seen = Observed::default();
        for object in self.present.borrow().iter() {
            match object {
                Object::Route(r) => seen.routes.push(r.clone()),
                Object::Rule(r) => seen.rules.push(r.clone()),
                Object::Sysctl { key, value } => seen.sysctls.push((key.clone(), value.clone())),
                Object::Address { ifindex, net, .. } => seen.addresses.push((*ifindex, vec![*net])),
                Object::Link { ifindex, mtu, .. } => seen.links.push((*ifindex, true, *mtu)),
                // Read back through nft and the kernel's BPF listings only; the end-to-end
                // tests cover them.
                Object::Table(_) | Object::Program(_) => {}
            }
        }
        Ok(seen)
    }
}

fn route(dst: &str, oif: u32) -> Object {
    Object::Route(Route {
        dst: dst.parse().unwrap(),
        table: 6464,
        protocol: 118,
        metric: Some(1024),
        oif: Some(oif),
        gateway: None,
        kind: RouteKind::Unicast,
        mtu: None,
        prefsrc: None,
        realm: None,
    })
}

fn rule() -> Object {
    Object::Rule(Rule {
        family: Family::V6,
        priority: 100,
        table: 6464,
        fwmark: Some(0x7636),
        fwmask: None,
        invert: true,
        suppress_prefixlen: None,
        from: None,
        to: None,
        iif: None,
    })
}

fn forwarding(value: &str) -> Object {
    Object::Sysctl {
        key: "net/ipv4/ip_forward".into(),
        value: value.into(),
    }
}

fn accept() -> Accept {
    let Object::Rule(rule) = rule() else {
        unreachable!()
    };
    Accept {
        sysctl_keys: vec!["net/ipv4/ip_forward".into()],
        route_tables: vec![6464],
        route_protocol: 118,
        rules: vec![rule],
        keep_table: false,
        mss_table: "v6gate_mss_t".into(),
    }
}

struct Fixture {
    dir: std::path::PathBuf,
    state: HostState<Recorder>,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("v6g-host-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let rt = RuntimeDir::open(&dir).unwrap();
        let host = Recorder {
            sysctl_value: "0".into(),
            ..Recorder::default()
        };
        Self {
            dir,
            state: HostState::new(host, rt, "t.journal".into(), "test".into()),
        }
    }

    /// What the journal on disk says is installed.
    fn journalled(&self) -> Journal {
        let text = fs::read_to_string(self.dir.join("t.journal")).unwrap_or_default();
        let (journal, refused) = Journal::parse(&text, &accept());
        assert!(refused.is_empty(), "{refused:?}\n{text}");
        journal
    }

    fn present(&self) -> Vec<Object> {
        self.state.host.present.borrow().clone()
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.state.host.calls.borrow_mut())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn set_applies_the_difference_and_the_journal_follows() {
    let mut f = Fixture::new("diff");
    block_on(async {
        let changes = f
            .state
            .set("tunnel ab", vec![route("2001:db8::1/128", 2), rule()])
            .await
            .unwrap();
        assert_eq!(changes.added.len(), 2);
        assert_eq!(
            f.journalled().objects,
            [route("2001:db8::1/128", 2), rule()]
        );

        // The pin moves, a route joins, nothing else is touched.
        f.calls();
        let changes = f
            .state
            .set(
                "tunnel ab",
                vec![
                    route("2001:db8::1/128", 3),
                    rule(),
                    route("2001:db8::9/128", 3),
                ],
            )
            .await
            .unwrap();
        assert_eq!(changes.changed.len(), 1, "{changes:?}");
        assert_eq!(changes.added.len(), 1, "{changes:?}");
        assert!(changes.removed.is_empty());
        let calls = f.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(f.present().contains(&route("2001:db8::1/128", 3)));
        assert_eq!(
            f.journalled().objects,
            [
                route("2001:db8::1/128", 3),
                rule(),
                route("2001:db8::9/128", 3)
            ]
        );

        // Letting go removes, newest first.
        let changes = f.state.set("tunnel ab", Vec::new()).await.unwrap();
        assert_eq!(changes.removed.len(), 3);
        assert!(f.present().is_empty());
        assert!(f.journalled().objects.is_empty());
        let calls = f.calls();
        assert!(calls[0].contains("2001:db8::9"), "{calls:?}");
        assert!(calls[2].contains("2001:db8::1"), "{calls:?}");
    });
}

#[test]
fn a_shared_object_leaves_with_its_last_owner() {
    let mut f = Fixture::new("shared");
    block_on(async {
        f.state.set("tunnel ab", vec![rule()]).await.unwrap();
        f.state.set("tunnel cd", vec![rule()]).await.unwrap();
        assert_eq!(f.calls().len(), 1, "installed once");
        let changes = f.state.set("tunnel ab", Vec::new()).await.unwrap();
        assert_eq!(changes, Changes::default());
        assert_eq!(f.present(), [rule()]);
        f.state.set("tunnel cd", Vec::new()).await.unwrap();
        assert!(f.present().is_empty());
    });
}

#[test]
fn a_failing_step_undoes_that_call_only() {
    let mut f = Fixture::new("undo");
    block_on(async {
        f.state
            .set("tunnel ab", vec![route("2001:db8::1/128", 2)])
            .await
            .unwrap();
        *f.state.host.refuse.borrow_mut() = Some(route("2001:db8::3/128", 2).to_string());
        let error = f
            .state
            .set(
                "tunnel ab",
                vec![
                    route("2001:db8::1/128", 7),
                    route("2001:db8::2/128", 2),
                    route("2001:db8::3/128", 2),
                ],
            )
            .await
            .unwrap_err();
        assert!(error.to_string().contains("refused"), "{error}");
        // The replaced route is back as it was, the added one is gone again.
        assert_eq!(f.present(), [route("2001:db8::1/128", 2)]);
        assert_eq!(f.journalled().objects, [route("2001:db8::1/128", 2)]);
    });
}

#[test]
fn sysctl_originals_are_journalled_before_the_write_and_restored() {
    let mut f = Fixture::new("sysctl");
    block_on(async {
        f.state.set("gateway", vec![forwarding("1")]).await.unwrap();
        let journal = f.journalled();
        assert_eq!(
            journal.originals,
            [("net/ipv4/ip_forward".into(), "0".into())]
        );
        assert_eq!(journal.objects, [forwarding("1")]);
        f.calls();
        f.state.clear().await;
        assert_eq!(
            f.calls(),
            ["remove sysctl net/ipv4/ip_forward = 1 to 0"],
            "restored once"
        );
        assert!(!f.dir.join("t.journal").exists());
    });
}

#[test]
fn a_crashed_runs_originals_are_taken_over_and_its_routes_removed() {
    let mut f = Fixture::new("takeover");
    let left = Journal {
        originals: vec![("net/ipv4/ip_forward".into(), "0".into())],
        objects: vec![forwarding("1"), route("2001:db8::1/128", 2), rule()],
    };
    fs::write(f.dir.join("t.journal"), left.render("test")).unwrap();
    fs::set_permissions(
        f.dir.join("t.journal"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // The crashed run had set forwarding, so the host reads 1 now.
    f.state.host.sysctl_value = "1".into();
    block_on(async {
        f.state.take_over(&accept()).await.unwrap();
        let calls = f.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(calls.iter().all(|c| c.starts_with("remove")), "{calls:?}");
        f.state.set("gateway", vec![forwarding("1")]).await.unwrap();
        f.state.clear().await;
        // The value from before the crashed run, not the 1 it left.
        assert_eq!(
            f.calls().last().unwrap(),
            "remove sysctl net/ipv4/ip_forward = 1 to 0"
        );
    });
}

#[test]
fn repair_puts_back_what_was_removed_or_changed() {
    let mut f = Fixture::new("repair");
    block_on(async {
        f.state
            .set("tunnel ab", vec![route("2001:db8::1/128", 2), rule()])
            .await
            .unwrap();
        f.state.host.present.borrow_mut().retain(|o| *o != rule());
        let mut moved = f.present();
        moved[0] = route("2001:db8::1/128", 9);
        *f.state.host.present.borrow_mut() = moved;
        assert!(f.state.repair(true).await.is_empty(), "sysctls only");
        let repaired = f.state.repair(false).await;
        assert_eq!(repaired.len(), 2, "{repaired:?}");
        assert!(
            repaired.iter().any(|r| r.contains("was removed")),
            "{repaired:?}"
        );
        assert!(
            repaired.iter().any(|r| r.contains("host had")),
            "{repaired:?}"
        );
        let mut present = f.present();
        present.sort_by_key(|o| o.to_string());
        assert!(present.contains(&rule()) && present.contains(&route("2001:db8::1/128", 2)));
        assert!(f.state.repair(false).await.is_empty());
    });
}

#[test]
fn an_object_the_kernel_keeps_refusing_is_reported_once() {
    let mut f = Fixture::new("refusing");
    block_on(async {
        f.state
            .set("tunnel ab", vec![route("2001:db8::1/128", 2)])
            .await
            .unwrap();
        f.state.host.present.borrow_mut().clear();
        *f.state.host.refuse.borrow_mut() = Some(route("2001:db8::1/128", 2).to_string());
        let first = f.state.repair(false).await;
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(first[0].starts_with("could not restore"), "{first:?}");
        assert!(f.state.repair(false).await.is_empty());
        *f.state.host.refuse.borrow_mut() = None;
        let back = f.state.repair(false).await;
        assert_eq!(back.len(), 1, "{back:?}");
        assert!(back[0].starts_with("restored"), "{back:?}");
    });
}

#[test]
fn a_crashed_runs_table_is_replaced_when_the_config_has_one_and_deleted_when_not() {
    for keep_table in [false, true] {
        let mut f = Fixture::new(&format!("table-{keep_table}"));
        let left = Journal {
            originals: Vec::new(),
            objects: vec![
                Object::Table(super::table::Table::leftover("v6gate")),
                Object::Table(super::table::Table::leftover("v6gate_mss_t")),
                route("2001:db8::1/128", 2),
            ],
        };
        fs::write(f.dir.join("t.journal"), left.render("test")).unwrap();
        fs::set_permissions(
            f.dir.join("t.journal"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        block_on(async {
            let accept = Accept {
                keep_table,
                ..accept()
            };
            f.state.take_over(&accept).await.unwrap();
            let calls = f.calls();
            let removed_table = calls
                .iter()
                .any(|c| c == "remove nftables table inet v6gate");
            // Kept, the new run's replacement swaps it in one transaction.
            assert_eq!(removed_table, !keep_table, "{calls:?}");
            // The clamping table goes with the routes that led through the kernel path.
            assert!(
                calls
                    .iter()
                    .any(|c| c == "remove nftables table inet v6gate_mss_t"),
                "{calls:?}"
            );
            assert!(
                calls.iter().any(|c| c.starts_with("remove route")),
                "{calls:?}"
            );
        });
    }
}

//! `[gateway] metrics` (where Prometheus scrapes) and `key_log` (ESP keys for Wireshark).

mod support;

use support::*;

#[test]
fn metrics_is_off_unless_an_address_is_given() {
    assert_eq!(valid("").gateway.metrics, None);
    let c = valid("[gateway]\nmetrics = \"127.0.0.1:9586\"\n");
    assert_eq!(c.gateway.metrics, Some("127.0.0.1:9586".parse().unwrap()));
    let c = valid("[gateway]\nmetrics = \"[::1]:9586\"\n");
    assert_eq!(c.gateway.metrics, Some("[::1]:9586".parse().unwrap()));
}

#[test]
fn a_metrics_address_without_a_usable_port_is_refused() {
    for (value, needle) in [
        ("\"127.0.0.1\"", "expected ADDRESS:PORT"),
        ("\"localhost:9586\"", "expected ADDRESS:PORT"),
        ("\"127.0.0.1:0\"", "a port other than 0"),
    ] {
        let text = format!("[gateway]\nmetrics = {value}\n");
        only_problem(&text, "gateway.metrics", needle, "metrics =");
    }
    let text = "[gateway]\nmetric = \"127.0.0.1:9586\"\n";
    only_problem(
        text,
        "gateway.metric",
        "did you mean `metrics`?",
        "metric =",
    );
}

#[test]
fn key_log_is_off_unless_an_absolute_directory_is_given() {
    assert_eq!(valid("").gateway.key_log, None);
    let c = valid("[gateway]\nkey_log = \"/var/lib/v6gate/keys\"\n");
    assert_eq!(
        c.gateway.key_log.as_deref(),
        Some(std::path::Path::new("/var/lib/v6gate/keys"))
    );
    only_problem(
        "[gateway]\nkey_log = \"keys\"\n",
        "gateway.key_log",
        "expected an absolute path",
        "key_log",
    );
}

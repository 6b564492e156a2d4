//! `check` reports every problem of a file at once: unknown keys in any table (with the
//! nearest valid key), wrong values, and both together.

mod support;

use support::*;

#[test]
fn every_unknown_key_and_every_bad_value_in_one_report() {
    let text = "[gateway]\n\
                controll_socket = \"/run/v6gate/x.sock\"\n\
                [[tunnel]]\n\
                name = \"home\"\n\
                mode = \"ipip\"\n\
                local = \"2001:db8:a::1\"\n\
                remote = \"2001:db8:a::2\"\n\
                nme = \"typo\"\n\
                encap_limt = 4\n\
                mtu = 10\n\
                [[tunnel]]\n\
                name = \"vps\"\n\
                mode = \"ipip6\"\n\
                local = \"2001:db8:b::1\"\n\
                remote = \"2001:db8:b::2\"\n\
                [tunnel.health]\n\
                intervall = \"1s\"\n";
    let text = &format!("{text}{}", watch("wan", "colour = \"red\"\n"));
    let e = invalid(text);
    has_problem(
        &e,
        "gateway.controll_socket",
        line_of(text, "controll_socket"),
        "did you mean `control_socket`?",
    );
    has_problem(
        &e,
        "tunnel[0].nme",
        line_of(text, "nme ="),
        "did you mean `name`?",
    );
    has_problem(
        &e,
        "tunnel[0].encap_limt",
        line_of(text, "encap_limt"),
        "did you mean `encap_limit`?",
    );
    has_problem(
        &e,
        "tunnel[1].health.intervall",
        line_of(text, "intervall"),
        "did you mean `interval`?",
    );
    // Nothing near: the valid keys are listed instead.
    let colour = has_problem(
        &e,
        "watch[0].colour",
        line_of(text, "colour"),
        "unknown field `colour`, expected one of",
    );
    assert!(colour.message.contains("target"), "{colour:?}");
    // The values are still checked once the unknown keys are out of the way.
    has_problem(
        &e,
        "tunnel[0].mode",
        line_of(text, "\"ipip\""),
        "did you mean \"ipip6\"?",
    );
    has_problem(&e, "tunnel[0].mtu", line_of(text, "mtu = 10"), "");
    // In file order, one per line of output.
    let lines: Vec<usize> = e
        .diagnostics()
        .iter()
        .filter_map(|d| d.location.map(|(l, _)| l))
        .collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{e}");
    assert!(e.diagnostics().len() >= 7, "{e}");
    assert_eq!(e.to_string().lines().count(), e.diagnostics().len(), "{e}");
}

#[test]
fn a_shape_error_after_unknown_keys_keeps_them_in_the_report() {
    let text = "[gateway]\nroute_metric = \"high\"\nipv4_forwardin = true\n[[watch]]\nnme = 1\n";
    let e = invalid(text);
    has_problem(
        &e,
        "gateway.ipv4_forwardin",
        3,
        "did you mean `ipv4_forwarding`?",
    );
    assert!(
        e.diagnostics()
            .iter()
            .any(|d| d.key == "gateway.route_metric"),
        "{e}"
    );
}

#[test]
fn the_unknown_mode_ipip_points_at_ipip6() {
    let text = tunnel("home", "2001:db8:a::2", "").replace("\"ipip6\"", "\"ipip\"");
    only_problem(
        &text,
        "tunnel[0].mode",
        "found \"ipip\"; did you mean \"ipip6\"?",
        "mode =",
    );
}

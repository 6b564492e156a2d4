//! Input a config file cannot use to make validation print, read or hold without bound.

mod support;

use std::io::Write;

use control::{Config, DEFAULT_MAX_CONFIG_SIZE, MAX_CONFIG_SIZE};
use support::*;

#[test]
fn a_huge_name_is_quoted_back_cut_short() {
    let name = "n".repeat(1 << 20);
    let text = tunnel(&name, "2001:db8:a::2", "");
    let e = invalid(&text);
    let shown = e.to_string();
    assert!(
        shown.len() < 400,
        "{} bytes: {}",
        shown.len(),
        &shown[..400]
    );
    let quoted = format!("\"{}…\"", "n".repeat(64));
    assert!(shown.contains(&quoted), "{shown}");
    assert_eq!(e.key(), "tunnel[0].name");
}

#[test]
fn a_huge_unknown_key_is_named_cut_short() {
    let key = "k".repeat(100_000);
    let text = format!("[gateway]\n{key} = 1\n");
    let shown = invalid(&text).to_string();
    assert!(shown.len() < 600, "{} bytes", shown.len());
    assert!(shown.contains("unknown field"), "{shown}");
    assert!(shown.contains(&format!("`{}…`", "k".repeat(64))), "{shown}");
}

#[test]
fn a_file_over_its_own_limit_is_refused_at_the_key() {
    let body = tunnel("a", "2001:db8:a::2", "");
    let filler = format!("# {}\n", "x".repeat(8 << 10));
    let text = format!("[gateway]\nmax_config_size = 4096\n\n{body}{filler}");
    only_problem(
        &text,
        "gateway.max_config_size",
        "more than the limit of 4096",
        "max_config_size",
    );
    let raised = text.replace("= 4096", "= 65536");
    assert_eq!(valid(&raised).gateway.max_config_size, 65536);
    assert_eq!(
        valid(&body).gateway.max_config_size,
        DEFAULT_MAX_CONFIG_SIZE
    );
}

#[test]
fn the_limit_itself_is_bounded() {
    let text = format!("[gateway]\nmax_config_size = {}\n", MAX_CONFIG_SIZE + 1);
    only_problem(&text, "gateway.max_config_size", "", "max_config_size");
    only_problem(
        "[gateway]\nmax_config_size = 100\n",
        "gateway.max_config_size",
        "",
        "max_config_size",
    );
}

#[test]
fn the_default_limit_refuses_a_larger_file() {
    let mut text = tunnel("a", "2001:db8:a::2", "");
    let line = format!("# {}\n", "x".repeat(1 << 16));
    while (text.len() as u64) <= DEFAULT_MAX_CONFIG_SIZE {
        text.push_str(&line);
    }
    let e = invalid(&text);
    assert_eq!(e.key(), "gateway.max_config_size");
    assert!(
        e.to_string().contains("more than the limit of 16777216"),
        "{e}"
    );
}

#[test]
fn load_reads_no_more_than_the_most_v6gate_reads() {
    let dir = std::env::temp_dir().join(format!("v6gate-bounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.toml");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![b'#'; 1 << 20];
    for _ in 0..=(MAX_CONFIG_SIZE >> 20) {
        file.write_all(&chunk).unwrap();
    }
    drop(file);
    let e = Config::load(&path).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(e.to_string().contains("the most v6gate reads"), "{e}");
    // A device that never ends is read only that far too.
    let e = Config::load(std::path::Path::new("/dev/zero")).unwrap_err();
    assert!(e.to_string().contains("the most v6gate reads"), "{e}");
}

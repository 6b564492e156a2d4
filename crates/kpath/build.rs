//! Compiles the tc-BPF programs with the system's clang.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SOURCES: &[&str] = &["tunnel"];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86_64-linux-gnu",
        Ok("aarch64") => "aarch64-linux-gnu",
        Ok(other) => panic!("no multiarch include directory known for {other}"),
        Err(_) => "x86_64-linux-gnu",
    };
    for name in SOURCES {
        let source = format!("bpf/{name}.bpf.c");
        println!("cargo:rerun-if-changed={source}");
        let object = out.join(format!("{name}.bpf.o"));
        let status = Command::new(&clang)
            .args([
                "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror",
            ])
            .arg(format!("-I/usr/include/{arch}"))
            .args(["-c", &source, "-o"])
            .arg(&object)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("clang failed on {source} ({s})"),
            Err(e) => panic!(
                "cannot run {clang} ({e}): the kernel path's BPF programs need clang and \
                 the BPF headers; on Debian: apt-get install clang libbpf-dev linux-libc-dev"
            ),
        }
    }
    println!("cargo:rerun-if-env-changed=CLANG");
}

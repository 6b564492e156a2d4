//! Man pages and shell completions, generated from the CLI definition so they never drift
//! from it; `scripts/package-deb` writes them with the hidden `v6gate assets` command.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// Writes `v6gate.1`, one `v6gate-COMMAND.1` per visible subcommand, and the bash, zsh and
/// fish completions into `dir`; returns the files written.
pub fn write(mut command: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    command.build();
    let mut written = Vec::new();
    let page = |cmd: clap::Command, name: &str, written: &mut Vec<PathBuf>| -> io::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut file = fs::File::create(&path)?;
        clap_mangen::Man::new(cmd).render(&mut file)?;
        written.push(path);
        Ok(())
    };
    page(command.clone(), "v6gate", &mut written)?;
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("v6gate-{}", sub.get_name());
        let sub = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("v6gate {}", sub.get_name()));
        page(sub, &name, &mut written)?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        written.push(clap_complete::generate_to(
            shell,
            &mut command,
            "v6gate",
            dir,
        )?);
    }
    Ok(written)
}

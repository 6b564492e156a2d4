use std::process::ExitCode;

fn main() -> ExitCode {
    v6gate::cli::main()
}

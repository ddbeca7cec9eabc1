//! The `wasit` binary. Everything it does lives in [`api::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    api::cli::main()
}

//! The `bareroot` binary: parse arguments, run, print the error, exit.

use clap::Parser;

fn main() {
    let cli = bareroot::cli::Cli::parse();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    match bareroot::app::run(cli.command, &mut out, &mut err) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("bareroot: {}", bareroot::error::one_line(&e.to_string()));
            std::process::exit(2);
        }
    }
}

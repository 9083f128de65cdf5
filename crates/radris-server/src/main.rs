//! The `radris` binary: glue between the CLI, configuration and the services. No domain
//! logic lives here.

mod cli;
mod deid;
mod http;
mod import;
mod render;
mod serve;
mod tls;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::init_tracing(args.log_json);
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("radris: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

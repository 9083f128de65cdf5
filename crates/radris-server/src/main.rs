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
    // dicom-rs reports the end of every data set it reads (each DIMSE command set) as an error
    // value, and with RUST_BACKTRACE set snafu captures a stack trace in each one; nothing
    // prints them. Panics keep their backtraces (RUST_BACKTRACE); library error values take
    // none unless RUST_LIB_BACKTRACE asks for them.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: the first statement of `main`, before any thread exists.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    let args = cli::Cli::parse();
    cli::init_tracing(args.log_json.unwrap_or(false));
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("radris: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

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
            eprintln!("radris: {}", error_chain(&e));
            std::process::ExitCode::from(2)
        }
    }
}

/// The error and its causes, joined by ": ", leaving out a cause whose text the message
/// before it already ends with (errors that print their source and also return it from
/// `source()`: `I/O error on F: No such file…: No such file…`).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("I/O error on f.part: {0}")]
    struct Io(#[source] std::io::Error);

    #[test]
    fn a_cause_already_printed_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(Io(io)).context("opening the archive in d");
        assert_eq!(
            error_chain(&e),
            "opening the archive in d: I/O error on f.part: gone"
        );
    }
}

//! # xtask — the test command of action.do
//!
//! `cargo xtask test [--checks-only | --servers-only] [-- ARGS…]`, which `./tests/run.sh`
//! runs: installs the test tools under `.tools/`, runs fmt, clippy, the template and
//! workflow checks, the build and the TypeScript client's tests, then starts DynamoDB
//! Local and moto in a private network and PID namespace and runs `cargo test` against
//! them (docs/architecture.md §9.1; `--help` prints the whole description).
//!
//! The process management it shares with the end-to-end harness (process groups stopped
//! on drop, process trees, free ports, readiness, pid files) is `actiondo-harness`
//! (`tests/harness`).

mod checks;
mod cmd;
mod inside;
mod outer;
mod signals;
mod tools;

use std::process::ExitCode;

/// The description `--help` prints (the usage of `./tests/run.sh`).
const USAGE: &str = include_str!("usage.txt");

/// Ends the run with this exit status; what went wrong was printed already (a failing
/// command's own output, a failed check's `ERROR:` line).
#[derive(Debug)]
pub(crate) struct Exit(pub(crate) i32);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// Ends the run because a signal (`SIGINT`, `SIGTERM`, `SIGHUP`) came: exit 128 + signal.
#[derive(Debug)]
pub(crate) struct Interrupted(pub(crate) i32);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by signal {}", signals::name(self.0))
    }
}

impl std::error::Error for Interrupted {}

/// The exit status for an error: [`Exit`]'s, 128 + the signal for [`Interrupted`], else 1
/// after an `ERROR:` line.
pub(crate) fn exit_code(error: &anyhow::Error) -> i32 {
    if let Some(Exit(code)) = error.downcast_ref::<Exit>() {
        *code
    } else if let Some(Interrupted(signal)) = error.downcast_ref::<Interrupted>() {
        128 + signal
    } else {
        eprintln!("ERROR: {error:#}");
        1
    }
}

/// `==> what`, after an empty line.
pub(crate) fn section(what: &str) {
    println!("\n==> {what}");
}

/// An indented progress line.
pub(crate) fn info(what: &str) {
    println!("    {what}");
}

/// `WARNING: what` on stderr.
pub(crate) fn warn(what: &str) {
    eprintln!("WARNING: {what}");
}

/// Whether this is a CI run (`CI=true` or `CI=1`): nothing falls back, nothing is skipped.
pub(crate) fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The options of `test`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) servers_only: bool,
    pub(crate) checks_only: bool,
    /// Internal: this is the re-run inside the namespace.
    pub(crate) inside: bool,
    pub(crate) help: bool,
    /// What follows `--`: arguments for `cargo test`, or the command of `--servers-only`.
    pub(crate) rest: Vec<String>,
}

/// Parse the options of `test` as `./tests/run.sh` always did: options first, then
/// everything after `--`.
pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Options> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--servers-only" => options.servers_only = true,
            "--checks-only" => options.checks_only = true,
            "--inside" => options.inside = true,
            "-h" | "--help" => {
                options.help = true;
                return Ok(options);
            }
            "--" => {
                options.rest = args.collect();
                break;
            }
            other => anyhow::bail!(
                "unknown option '{other}' (arguments for cargo test go after --; see --help)"
            ),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let code = match args.next().as_deref() {
        Some("test") => test(args),
        Some("-h" | "--help" | "help") | None => {
            println!(
                "cargo xtask test [--checks-only | --servers-only] [-- ARGS...]\n\n\
                 The test command of action.do (./tests/run.sh runs it); `cargo xtask test --help`."
            );
            0
        }
        Some(other) => {
            eprintln!("ERROR: unknown xtask '{other}' (known: test)");
            2
        }
    };
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
}

fn test(args: impl Iterator<Item = String>) -> i32 {
    let options = match parse(args) {
        Ok(options) => options,
        Err(e) => return exit_code(&e),
    };
    if options.help {
        print!("{USAGE}");
        return 0;
    }
    if let Err(e) = signals::install() {
        return exit_code(&e);
    }
    if options.inside {
        match inside::main(&options) {
            Ok(code) => code,
            Err(e) => exit_code(&e),
        }
    } else {
        outer::main(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_then_everything_after_the_double_dash() {
        let options = parse(args(&[
            "--servers-only",
            "--",
            "cargo",
            "test",
            "--checks-only",
        ]))
        .expect("parse");
        assert!(options.servers_only && !options.checks_only && !options.inside);
        assert_eq!(options.rest, args(&["cargo", "test", "--checks-only"]));
        assert_eq!(parse(args(&[])).expect("parse"), Options::default());
    }

    #[test]
    fn an_argument_for_cargo_test_before_the_double_dash_is_refused() {
        let error = parse(args(&["store::"])).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "unknown option 'store::' (arguments for cargo test go after --; see --help)"
        );
    }

    #[test]
    fn help_stops_the_parse() {
        let options = parse(args(&["--help", "--bogus"])).expect("parse");
        assert!(options.help);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&anyhow::Error::new(Exit(101))), 101);
        assert_eq!(exit_code(&anyhow::Error::new(Interrupted(15))), 143);
        assert_eq!(exit_code(&anyhow::anyhow!("no disk")), 1);
    }
}

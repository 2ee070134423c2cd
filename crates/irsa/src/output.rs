//! Output formats shared by commands.

use clap::ValueEnum;
use irsa_core::checks::{Report, Status};

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// JSON on stdout.
    Json,
}

/// Whether log lines on stderr get ANSI colours: only on a terminal, and
/// not when `NO_COLOR` is set to anything but the empty string
/// (no-color.org). A log redirected to a file or a pipe stays plain text.
pub fn colour_logs(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Prints a check report as a ✓/✗ table with fixes.
pub fn print_report(report: &Report, format: Format) {
    if format == Format::Json {
        let value = serde_json::json!({ "ok": !report.failed(), "checks": report.checks });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return;
    }
    for c in &report.checks {
        let mark = match c.status {
            Status::Pass => "✓",
            Status::Warn => "!",
            Status::Fail => "✗",
        };
        println!("{mark} {:<52} {}", c.name, c.detail);
        if let Some(fix) = &c.fix {
            if c.status != Status::Pass {
                println!("    fix: {fix}");
            }
        }
    }
    let fails = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .count();
    let warns = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Warn)
        .count();
    println!();
    if fails == 0 {
        println!(
            "OK: {} checks passed, {warns} warning(s)",
            report.checks.len() - warns
        );
    } else {
        println!(
            "FAILED: {fails} of {} checks failed, {warns} warning(s)",
            report.checks.len()
        );
    }
}

/// Progress, notes and warnings for the person at the terminal: written to
/// stderr, so that stdout carries only a command's result (text or JSON).
/// Commands print through this one place, never with `eprintln!` directly.
macro_rules! status {
    ($($arg:tt)*) => {
        eprintln!($($arg)*)
    };
}
pub(crate) use status;

#[cfg(test)]
mod tests {
    use super::colour_logs;
    use std::ffi::OsStr;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour_logs(true, None));
        assert!(colour_logs(true, Some(OsStr::new(""))));
        assert!(!colour_logs(true, Some(OsStr::new("1"))));
        assert!(!colour_logs(false, None));
    }
}

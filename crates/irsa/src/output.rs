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

//! klog's logging flags, which the Go webhook registers on its command
//! line. irsa logs with `tracing` to stderr: `-v`/`--v` chooses the log
//! level (when `--log` is not given), every other klog flag is accepted
//! and reported once at start-up.

use clap::Args;

use crate::goflags::parse_bool;

/// The log level `-v N` stands for: klog's levels 0-3 are informational,
/// 4-5 debugging, 6 and above tracing (request-level detail).
pub fn level_for_verbosity(v: i32) -> &'static str {
    match v {
        ..=3 => "info",
        4 | 5 => "debug",
        _ => "trace",
    }
}

fn parse_level(s: &str) -> Result<i32, String> {
    irsa_core::mutate::parse_go_int(s)
        .and_then(|v| i32::try_from(v).ok())
        .ok_or_else(|| format!("{s:?} is not a verbosity level; write a number such as 2 or 4"))
}

fn parse_size(s: &str) -> Result<u64, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = s.parse() {
            return Ok(n);
        }
    }
    Err(format!(
        "{s:?} is not a size in megabytes; write a number such as 1800"
    ))
}

/// klog's severities, by name (any case) or number.
fn parse_severity(s: &str) -> Result<String, String> {
    let known = ["INFO", "WARNING", "ERROR", "FATAL", "0", "1", "2", "3"];
    if known.iter().any(|k| k.eq_ignore_ascii_case(s)) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a klog severity; write INFO, WARNING, ERROR or FATAL"
        ))
    }
}

/// `pattern=N` items separated by commas, as klog's `--vmodule` takes.
fn parse_vmodule(s: &str) -> Result<String, String> {
    for item in s.split(',').filter(|i| !i.is_empty()) {
        let ok = item
            .split_once('=')
            .is_some_and(|(pattern, n)| !pattern.is_empty() && parse_level(n).is_ok());
        if !ok {
            return Err(format!(
                "{item:?} is not a pattern=N setting; write e.g. cache=5,handler=4"
            ));
        }
    }
    Ok(s.to_string())
}

/// klog's command-line flags (hidden; see `docs/webhook.md`).
#[derive(Args, Debug, Clone, Default)]
pub struct KlogFlags {
    /// klog verbosity: `-v N`, `-v=N`, `--v=N`.
    #[arg(short = 'v', long = "v", hide = true, value_parser = parse_level, allow_negative_numbers = true)]
    pub verbosity: Option<i32>,
    #[arg(long = "vmodule", hide = true, value_parser = parse_vmodule)]
    vmodule: Option<String>,
    #[arg(long = "logtostderr", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool)]
    logtostderr: Option<bool>,
    #[arg(long = "alsologtostderr", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool)]
    alsologtostderr: Option<bool>,
    #[arg(long = "alsologtostderrthreshold", hide = true, value_parser = parse_severity)]
    alsologtostderrthreshold: Option<String>,
    #[arg(long = "stderrthreshold", hide = true, value_parser = parse_severity)]
    stderrthreshold: Option<String>,
    #[arg(long = "legacy_stderr_threshold_behavior", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool)]
    legacy_stderr_threshold_behavior: Option<bool>,
    #[arg(long = "log_dir", hide = true)]
    log_dir: Option<String>,
    #[arg(long = "log_file", hide = true)]
    log_file: Option<String>,
    #[arg(long = "log_file_max_size", hide = true, value_parser = parse_size)]
    log_file_max_size: Option<u64>,
    #[arg(long = "add_dir_header", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool)]
    add_dir_header: Option<bool>,
    #[arg(long = "one_output", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool)]
    one_output: Option<bool>,
    #[arg(long = "skip_headers", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool)]
    skip_headers: Option<bool>,
    #[arg(long = "skip_log_headers", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool)]
    skip_log_headers: Option<bool>,
    #[arg(long = "log_backtrace_at", hide = true)]
    log_backtrace_at: Option<String>,
}

impl KlogFlags {
    /// The log level `-v` asks for, if it was given.
    pub fn log_level(&self) -> Option<&'static str> {
        self.verbosity.map(level_for_verbosity)
    }

    /// One line per klog flag that was set and has no effect in irsa.
    pub fn ignored(&self) -> Vec<String> {
        let KlogFlags {
            verbosity: _,
            vmodule,
            logtostderr,
            alsologtostderr,
            alsologtostderrthreshold,
            stderrthreshold,
            legacy_stderr_threshold_behavior,
            log_dir,
            log_file,
            log_file_max_size,
            add_dir_header,
            one_output,
            skip_headers,
            skip_log_headers,
            log_backtrace_at,
        } = self;
        let stderr = "irsa always logs to stderr, every level it logs";
        let files = "irsa logs only to stderr (the container runtime keeps the log)";
        let format = "irsa's log lines have one format of their own";
        let set = [
            (
                "--vmodule",
                vmodule.is_some(),
                "set levels per module with --log (e.g. --log info,irsa_webhook=debug)",
            ),
            ("--logtostderr", logtostderr.is_some(), stderr),
            ("--alsologtostderr", alsologtostderr.is_some(), stderr),
            (
                "--alsologtostderrthreshold",
                alsologtostderrthreshold.is_some(),
                stderr,
            ),
            ("--stderrthreshold", stderrthreshold.is_some(), stderr),
            (
                "--legacy_stderr_threshold_behavior",
                legacy_stderr_threshold_behavior.is_some(),
                stderr,
            ),
            ("--log_dir", log_dir.is_some(), files),
            ("--log_file", log_file.is_some(), files),
            ("--log_file_max_size", log_file_max_size.is_some(), files),
            ("--add_dir_header", add_dir_header.is_some(), format),
            ("--one_output", one_output.is_some(), files),
            ("--skip_headers", skip_headers.is_some(), format),
            ("--skip_log_headers", skip_log_headers.is_some(), files),
            ("--log_backtrace_at", log_backtrace_at.is_some(), format),
        ];
        set.into_iter()
            .filter(|(_, given, _)| *given)
            .map(|(name, _, why)| format!("{name} is ignored: {why}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_tracing_levels() {
        assert_eq!(level_for_verbosity(0), "info");
        assert_eq!(level_for_verbosity(2), "info");
        assert_eq!(level_for_verbosity(3), "info");
        assert_eq!(level_for_verbosity(4), "debug");
        assert_eq!(level_for_verbosity(5), "debug");
        assert_eq!(level_for_verbosity(6), "trace");
        assert_eq!(level_for_verbosity(-1), "info");
    }

    #[test]
    fn values_klog_would_refuse_are_refused() {
        assert!(parse_level("four").is_err());
        assert!(parse_level("99999999999").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_severity("LOUD").is_err());
        assert_eq!(parse_severity("warning").as_deref(), Ok("warning"));
        assert!(parse_vmodule("cache").is_err());
        assert!(parse_vmodule("cache=x").is_err());
        assert!(parse_vmodule("cache=5,handler=4").is_ok());
        assert!(parse_vmodule("").is_ok());
    }
}

//! `irsa webhook serve` reads the Go webhook's command line: every flag of
//! `amazon-eks-pod-identity-webhook` and klog in every pflag syntax,
//! parsed by the real command tree.
#![allow(clippy::unwrap_used)]

use clap::Parser;
use irsa_webhook::goflags::{GoKind, GO_FLAGS};
use irsa_webhook::Settings;

use super::WebhookCommand;
use crate::{Cli, Command};

fn parse(args: &[String]) -> Result<Cli, clap::Error> {
    let argv = ["irsa", "webhook", "serve"]
        .into_iter()
        .map(String::from)
        .chain(args.iter().cloned());
    Cli::try_parse_from(argv)
}

fn settings(args: &[&str]) -> Settings {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    match parse(&args) {
        Ok(Cli {
            command: Command::Webhook(WebhookCommand::Serve(s)),
            ..
        }) => *s,
        Ok(_) => panic!("{args:?} parsed as another command"),
        Err(e) => panic!("{args:?} refused: {e}"),
    }
}

/// Each way pflag lets a flag be written.
fn syntaxes(name: &str, kind: GoKind) -> Vec<Vec<String>> {
    let long = format!("--{name}");
    match kind {
        GoKind::Bool => ["", "=true", "=false", "=1", "=0", "=T", "=False"]
            .iter()
            .map(|v| vec![format!("{long}{v}")])
            .collect(),
        GoKind::Value(v) => vec![vec![format!("{long}={v}")], vec![long, v.to_string()]],
    }
}

#[test]
fn every_go_flag_parses_in_every_pflag_syntax() {
    let mut cases = 0;
    for flag in GO_FLAGS {
        for args in syntaxes(flag.name, flag.kind) {
            cases += 1;
            parse(&args).unwrap_or_else(|e| panic!("{args:?} refused: {e}"));
        }
    }
    // klog registers -v as a shorthand too.
    for args in [
        &["-v=4"][..],
        &["-v4"],
        &["-v", "4"],
        &["--v=4"],
        &["--v", "4"],
    ] {
        cases += 1;
        assert_eq!(
            settings(args).go_compat.klog.log_level(),
            Some("debug"),
            "{args:?}"
        );
    }
    assert!(cases > 150, "{cases} command lines");
}

#[test]
fn the_whole_go_command_line_at_once_parses_and_reports_each_ignored_flag() {
    let args: Vec<String> = GO_FLAGS
        .iter()
        .filter(|f| f.name != "version")
        .map(|f| match f.kind {
            GoKind::Bool => format!("--{}=true", f.name),
            GoKind::Value(v) => format!("--{}={v}", f.name),
        })
        .collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = settings(&refs);
    assert!(s.sts_regional_endpoint);
    assert_eq!(s.port, 8443);
    assert!(s.enable_debugging_handlers && s.compose_role_arn && s.watch_config_map);
    assert_eq!(s.kube_api.as_deref(), Some("https://127.0.0.1:6443"));
    assert_eq!(s.tls_min_version.as_deref(), Some("1.2"));
    let pi = &s.pod_identity;
    assert_eq!(
        pi.watch_container_credentials_config.as_deref(),
        Some(std::path::Path::new(
            "/etc/webhook/config/pod-identity.json"
        ))
    );
    assert_eq!(
        pi.settings().unwrap(),
        irsa_core::mutate::ContainerCredentials::default(),
        "the Go example values are Go's defaults"
    );
    let watched = s.go_compat.ignored(true);
    assert!(
        !watched.iter().any(|w| w.starts_with("--namespace ")),
        "--namespace names the watched ConfigMap's namespace: {watched:?}"
    );
    let warnings = s.go_compat.ignored(false);
    for name in [
        "--in-cluster=true",
        "--namespace",
        "--tls-secret",
        "--resync-period",
        "--log_dir",
        "--vmodule",
        "--stderrthreshold",
        "--skip_headers",
        "--log_backtrace_at",
    ] {
        let hits = warnings
            .iter()
            .filter(|w| w.starts_with(&format!("{name} ")) || w.starts_with(&format!("{name}=")))
            .count();
        assert_eq!(hits, 1, "one warning for {name}: {warnings:#?}");
    }
    // Flags irsa acts on are not reported.
    for name in [
        "--port",
        "--token-audience",
        "--sts-regional-endpoint",
        "--v ",
        "--tls-min-version",
        "--watch-container-credentials-config",
        "--container-credentials-",
    ] {
        assert!(
            !warnings.iter().any(|w| w.starts_with(name)),
            "{name}: {warnings:#?}"
        );
    }
}

#[test]
fn sts_regional_endpoint_takes_go_boolean_values() {
    assert!(!settings(&[]).sts_regional_endpoint);
    assert!(settings(&["--sts-regional-endpoint"]).sts_regional_endpoint);
    assert!(settings(&["--sts-regional-endpoint=true"]).sts_regional_endpoint);
    assert!(settings(&["--sts-regional-endpoint=1"]).sts_regional_endpoint);
    assert!(!settings(&["--sts-regional-endpoint=false"]).sts_regional_endpoint);
    assert!(
        !settings(&["--sts-regional-endpoint", "--sts-regional-endpoint=f"]).sts_regional_endpoint
    );
}

#[test]
fn a_flag_given_twice_takes_the_last_value_as_in_go() {
    let s = settings(&[
        "--port=1",
        "--token-audience=a",
        "--port",
        "2",
        "--token-audience=b",
    ]);
    assert_eq!((s.port, s.token_audience.as_str()), (2, "b"));
    assert_eq!(
        settings(&["-v=2", "-v=6"]).go_compat.klog.log_level(),
        Some("trace")
    );
}

#[test]
fn version_is_a_go_boolean() {
    assert!(settings(&["--version"]).go_compat.version());
    assert!(settings(&["--version=true"]).go_compat.version());
    assert!(!settings(&["--version=false"]).go_compat.version());
}

#[test]
fn bad_values_are_refused_naming_the_flag_and_the_fix() {
    for (args, says) in [
        (&["--sts-regional-endpoint=yes"][..], "write true or false"),
        (&["--in-cluster=maybe"], "write true or false"),
        (&["-v=loud"], "write a number"),
        (&["--vmodule=cache"], "pattern=N"),
        (&["--stderrthreshold=LOUD"], "INFO, WARNING, ERROR or FATAL"),
        (&["--log_file_max_size=big"], "megabytes"),
        // pflag would set the flag and drop "false" as a stray argument;
        // irsa refuses the ambiguous form instead.
        (
            &["--sts-regional-endpoint", "false"],
            "unexpected argument 'false'",
        ),
    ] {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let Err(error) = parse(&args) else {
            panic!("{args:?} accepted");
        };
        let text = error.to_string();
        assert!(text.contains(says), "{args:?}: {text}");
    }
}

#[test]
fn the_migration_table_lists_every_go_flag() {
    let docs = include_str!("../../../../docs/webhook.md");
    let missing: Vec<&str> = GO_FLAGS
        .iter()
        .map(|f| f.name)
        .filter(|name| !docs.contains(&format!("| `--{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/webhook.md lacks rows for {missing:?}"
    );
}

#[test]
fn http2_is_offered_only_when_asked_for() {
    assert!(!settings(&[]).http2, "off by default");
    assert!(settings(&["--http2"]).http2);
    assert!(settings(&["--http2=true"]).http2);
    assert!(!settings(&["--http2=false"]).http2);
}

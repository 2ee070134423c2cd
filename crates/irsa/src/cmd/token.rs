//! `irsa token decode` and `irsa token verify`.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use irsa_core::jwt::{self, DecodedJwt, VerifyOptions, DEFAULT_LEEWAY};
use irsa_core::{IssuerUrl, Jwks};
use serde_json::{json, Value};

use crate::fetch::Fetcher;
use crate::fsutil;
use crate::output::Format;

/// Token commands.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Show a token's header and claims with readable times (no verification).
    Decode(DecodeArgs),
    /// Verify a token as kube-apiserver and AWS STS do.
    Verify(VerifyArgs),
}

/// Arguments of `irsa token decode`.
#[derive(Args)]
pub struct DecodeArgs {
    /// The token, or `-` to read it from stdin.
    #[arg(default_value = "-")]
    pub token: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Format,
}

/// Arguments of `irsa token verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// JWKS file, or an https:// URL to fetch it from.
    #[arg(long)]
    pub jwks: String,
    /// Expected issuer, byte for byte.
    #[arg(long)]
    pub issuer: String,
    /// Required audience.
    #[arg(long, default_value = "sts.amazonaws.com")]
    pub audience: String,
    /// Allowed clock skew in seconds.
    #[arg(long, default_value_t = DEFAULT_LEEWAY)]
    pub leeway: i64,
    /// Trust only this CA bundle when --jwks is a URL.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// The token, or `-` to read it from stdin.
    #[arg(default_value = "-")]
    pub token: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Format,
}

/// Runs a token subcommand.
pub fn run(cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Decode(a) => decode(a),
        TokenCommand::Verify(a) => verify(a),
    }
}

fn read_token(arg: &str) -> Result<String> {
    let text = if arg == "-" {
        String::from_utf8(fsutil::read_input("-")?).context("the token on stdin is not UTF-8")?
    } else if std::path::Path::new(arg).is_file() {
        std::fs::read_to_string(arg).with_context(|| format!("cannot read token file {arg}"))?
    } else {
        arg.to_string()
    };
    let token = text.trim().to_string();
    if token.is_empty() {
        bail!("no token given: pass it as an argument, a file path, or on stdin");
    }
    Ok(token)
}

fn annotated(jwt: &DecodedJwt) -> Value {
    let mut times = serde_json::Map::new();
    for claim in ["iat", "nbf", "exp"] {
        if let Some(t) = jwt.claim_time(claim) {
            times.insert(claim.into(), json!(crate::cmd::rfc3339(t)));
        }
    }
    json!({ "header": jwt.header, "claims": jwt.claims, "times": times })
}

fn print_decoded(jwt: &DecodedJwt, format: Format) {
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&annotated(jwt)).unwrap_or_default()
        );
        return;
    }
    println!(
        "header: {}",
        serde_json::to_string_pretty(&jwt.header).unwrap_or_default()
    );
    println!(
        "claims: {}",
        serde_json::to_string_pretty(&jwt.claims).unwrap_or_default()
    );
    let now = crate::cmd::now();
    for claim in ["iat", "nbf", "exp"] {
        if let Some(t) = jwt.claim_time(claim) {
            let rel = if t >= now {
                format!("in {}s", t - now)
            } else {
                format!("{}s ago", now - t)
            };
            println!("{claim}: {} ({rel})", crate::cmd::rfc3339(t));
        }
    }
}

fn decode(a: DecodeArgs) -> Result<()> {
    let jwt = jwt::decode(&read_token(&a.token)?)?;
    print_decoded(&jwt, a.output);
    Ok(())
}

fn verify(a: VerifyArgs) -> Result<()> {
    // Validate the expected issuer the same way the apiserver flag is validated.
    IssuerUrl::parse(&a.issuer).context("--issuer")?;
    let token = read_token(&a.token)?;
    let text = if a.jwks.starts_with("https://") {
        let fetcher = Fetcher::new(a.ca_cert.as_deref(), &[])?;
        let resp = fetcher
            .get(&a.jwks)
            .map_err(|e| anyhow::anyhow!("cannot fetch {}: {e}", a.jwks))?;
        if resp.status != 200 {
            bail!("{} returned HTTP {}", a.jwks, resp.status);
        }
        resp.body
    } else {
        std::fs::read_to_string(&a.jwks)
            .with_context(|| format!("cannot read --jwks {}", a.jwks))?
    };
    let jwks = Jwks::from_json(&text).with_context(|| format!("in {}", a.jwks))?;
    let opts = VerifyOptions {
        issuer: a.issuer,
        audience: a.audience,
        now: crate::cmd::now(),
        leeway: a.leeway,
    };
    match jwt::verify(&token, &jwks, &opts) {
        Ok(jwt) => {
            if a.output == Format::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"valid": true, "token": annotated(&jwt)}))
                        .unwrap_or_default()
                );
            } else {
                println!(
                    "valid: signature by kid {:?}, iss, aud and times check out",
                    jwt.kid().unwrap_or("")
                );
                println!("sub: {}", jwt.claim_str("sub").unwrap_or(""));
            }
            Ok(())
        }
        Err(e) => {
            if a.output == Format::Json {
                println!("{}", json!({"valid": false, "error": e.to_string()}));
            } else {
                println!("invalid: {e}");
            }
            Err(crate::exit::Exit::CHECKS_FAILED.into())
        }
    }
}

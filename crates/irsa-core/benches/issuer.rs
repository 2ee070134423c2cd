//! Key generation next to `openssl genpkey` in the same run, and JWKS build
//! time. Run with `cargo bench -p irsa-core --bench issuer`.
//!
//! Every loop is bounded by a count and a time budget. OpenSSL times are
//! wall-clock per process minus the cost of spawning `openssl version`, so
//! both columns measure key generation rather than process start-up.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;
use std::time::{Duration, Instant};

use irsa_core::{Algorithm, Jwks, PrivateKey, PublicKey};

/// Runs `f` up to `max` times or until `budget` is spent; returns the median.
fn median(max: usize, budget: Duration, mut f: impl FnMut()) -> (Duration, usize) {
    let start = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < max && (samples.len() < 3 || start.elapsed() < budget) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    (samples[samples.len() / 2], samples.len())
}

fn openssl(args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let budget = Duration::from_secs(20);
    let have_openssl = openssl(&["version"]);
    let (spawn, _) = if have_openssl {
        median(30, budget, || assert!(openssl(&["version"])))
    } else {
        (Duration::ZERO, 0)
    };
    println!(
        "openssl process spawn baseline: {:.2} ms (subtracted below)",
        ms(spawn)
    );
    println!(
        "{:<12} {:>12} {:>6} {:>16} {:>6} {:>8}",
        "key", "irsa (ms)", "n", "openssl (ms)", "n", "ratio"
    );
    let cases: [(&str, Algorithm, usize, &[&str], usize); 3] = [
        (
            "RSA-2048",
            Algorithm::RS256,
            2048,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            41,
        ),
        (
            "RSA-4096",
            Algorithm::RS256,
            4096,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
            11,
        ),
        (
            "P-256",
            Algorithm::ES256,
            0,
            &[
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ],
            201,
        ),
    ];
    for (name, alg, bits, args, n) in cases {
        let (ours, n_ours) = median(n, budget, || {
            let key = PrivateKey::generate(alg, bits).unwrap();
            std::hint::black_box(key.to_pem());
        });
        if have_openssl {
            let mut full = vec!["genpkey"];
            full.extend_from_slice(args);
            full.extend(["-out", "/dev/null"]);
            let (theirs, n_theirs) = median(n, budget, || assert!(openssl(&full)));
            let theirs = theirs.saturating_sub(spawn);
            let ratio = ms(ours) / ms(theirs).max(1e-6);
            println!(
                "{name:<12} {:>12.2} {n_ours:>6} {:>16.2} {n_theirs:>6} {ratio:>7.2}x",
                ms(ours),
                ms(theirs)
            );
        } else {
            println!(
                "{name:<12} {:>12.2} {n_ours:>6} {:>16} {:>6} {:>8}",
                ms(ours),
                "n/a",
                "-",
                "-"
            );
        }
    }
    println!("(RSA key generation time varies with the primes found; medians over n runs)");

    let keys: Vec<PublicKey> = (0..100)
        .map(|i| {
            let alg = if i % 2 == 0 {
                Algorithm::ES256
            } else {
                Algorithm::ES384
            };
            PrivateKey::generate(alg, 0).unwrap().public_key().clone()
        })
        .chain(std::iter::once(
            PrivateKey::generate(Algorithm::RS256, 2048)
                .unwrap()
                .public_key()
                .clone(),
        ))
        .collect();
    for count in [1usize, 100] {
        let set: Vec<(&PublicKey, Algorithm)> = keys
            .iter()
            .rev()
            .take(count)
            .map(|k| (k, k.default_algorithm()))
            .collect();
        let (t, n) = median(2001, Duration::from_secs(5), || {
            std::hint::black_box(Jwks::build(set.iter().copied(), false).to_json());
        });
        println!(
            "JWKS build + render, {count:>3} key(s): {:>9.1} µs (median of {n})",
            t.as_secs_f64() * 1e6
        );
    }
}

//! AWS partitions, one table (`irsa_core::Partition`): checked against
//! botocore's own `partitions.json` (installed with boto3, which
//! `scripts/test` installs with moto), then each partition end to end
//! through `irsa init`, `irsa bind` and `irsa export`.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;
use irsa_core::Partition;
use serde_json::Value;

/// botocore's partitions table, as it ships with boto3.
fn botocore_partitions() -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import botocore, os, sys; sys.stdout.write(open(os.path.join(os.path.dirname(botocore.__file__), 'data', 'partitions.json')).read())",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "botocore is needed to check the partition table (scripts/test installs it with moto): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out.stdout)
}

/// A region of `p` named in botocore's table (not a `-global` one).
fn sample_region(table: &Value, p: Partition) -> String {
    let row = table["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == p.id())
        .unwrap_or_else(|| panic!("botocore has no partition {p}"));
    row["regions"]
        .as_object()
        .unwrap()
        .keys()
        .find(|r| !r.ends_with("-global"))
        .unwrap_or_else(|| panic!("botocore lists no region of {p}"))
        .clone()
}

#[test]
fn the_partition_table_agrees_with_botocore() {
    let table = botocore_partitions();
    let rows = table["partitions"].as_array().unwrap();
    for p in Partition::ALL {
        assert!(
            rows.iter().any(|r| r["id"] == p.id()),
            "{p} is not in botocore's table"
        );
    }
    let mut checked = 0;
    for row in rows {
        let id = row["id"].as_str().unwrap();
        let Ok(p) = id.parse::<Partition>() else {
            panic!("botocore knows partition {id}, irsa's table does not: add it to irsa-core/src/partition.rs");
        };
        assert_eq!(p.dns_suffix(), row["outputs"]["dnsSuffix"], "{id}");
        for region in row["regions"].as_object().unwrap().keys() {
            if region.ends_with("-global") {
                continue;
            }
            assert_eq!(Partition::of_region(region), p, "region {region}");
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} regions checked");
}

#[test]
fn every_partition_end_to_end_through_init_bind_and_export() {
    let table = botocore_partitions();
    for p in Partition::ALL {
        let region = sample_region(&table, p);
        let t = tempdir();
        let d = t.path();
        let out = run_in(
            d,
            &[
                "init",
                "--cluster",
                "c",
                "--bucket",
                "b-oidc",
                "--region",
                &region,
                "--prefix",
                "c",
                "--dir",
                ".",
            ],
        );
        assert!(out.status.success(), "{region}: {}", stderr(&out));
        let host = format!("b-oidc.s3.{region}.{}", p.dns_suffix());
        let config = std::fs::read_to_string(d.join("irsa.yaml")).unwrap();
        assert!(
            config.contains(&format!("url: https://{host}/c\n")),
            "{p}: issuer URL\n{config}"
        );
        let discovery: Value =
            json(&std::fs::read(d.join("issuer/.well-known/openid-configuration")).unwrap());
        assert_eq!(discovery["issuer"], format!("https://{host}/c"), "{p}");

        let policy = irsa_core::arn::managed_policy(p, "ReadOnlyAccess");
        let out = run_in(
            d,
            &[
                "bind",
                "-n",
                "app",
                "-s",
                "web",
                "--policy-arn",
                &policy,
                "--account",
                "111122223333",
                "--no-plan",
            ],
        );
        assert!(out.status.success(), "{p}: {}", stderr(&out));
        let annotation = format!("arn:{p}:iam::111122223333:role/irsa/c/c-app-web");
        assert!(stdout(&out).contains(&annotation), "{p}: {}", stdout(&out));

        let out = run_in(d, &["export", "terraform"]);
        assert!(out.status.success(), "{p}: {}", stderr(&out));
        let tf = json(&out.stdout);
        let bucket_policy: Value = serde_json::from_str(
            tf["resource"]["aws_s3_bucket_policy"]
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(|v| v["policy"].as_str())
                .unwrap_or_else(|| panic!("{p}: no bucket policy in {tf}")),
        )
        .unwrap();
        for resource in bucket_policy["Statement"][0]["Resource"]
            .as_array()
            .unwrap()
        {
            let resource = resource.as_str().unwrap();
            assert!(
                resource.starts_with(&format!("arn:{p}:s3:::b-oidc/c/")),
                "{p}: {resource}"
            );
        }
        assert_eq!(
            tf["resource"]["aws_iam_openid_connect_provider"]["irsa"]["url"],
            format!("https://{host}/c"),
            "{p}"
        );
        let attached = tf.to_string();
        assert!(attached.contains(&policy), "{p}: the policy ARN kept");
        assert!(
            !attached.contains("arn:aws:") || p == Partition::Aws,
            "{p}: an ARN of another partition in the export: {tf}"
        );
    }
}

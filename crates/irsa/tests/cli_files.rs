//! File safety and layout: 0600 private keys, no overwrite without --force,
//! nothing written on bad input, deterministic documents, the bundle layout.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn keys_generate_writes_0600_and_never_overwrites_without_force() {
    let t = tempdir();
    let d = t.path();
    let out = run_in(
        d,
        &[
            "keys",
            "generate",
            "--private-key",
            "sa.key",
            "--public-key",
            "sa.pub",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&d.join("sa.key")), 0o600);
    assert_eq!(mode(&d.join("sa.pub")), 0o644);
    assert!(
        !stdout(&out).contains("PRIVATE KEY") && !stderr(&out).contains("PRIVATE KEY"),
        "key material printed"
    );
    let before = fs::read(d.join("sa.key")).unwrap();

    let out = run_in(
        d,
        &[
            "keys",
            "generate",
            "--private-key",
            "sa.key",
            "--public-key",
            "new.pub",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("refusing to overwrite") && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs::read(d.join("sa.key")).unwrap(),
        before,
        "private key untouched"
    );
    assert!(!d.join("new.pub").exists(), "nothing written on refusal");

    let out = run_in(
        d,
        &[
            "keys",
            "generate",
            "--private-key",
            "sa.key",
            "--public-key",
            "sa.pub",
            "--force",
        ],
    );
    assert!(out.status.success());
    assert_ne!(
        fs::read(d.join("sa.key")).unwrap(),
        before,
        "--force replaces"
    );
    assert_eq!(mode(&d.join("sa.key")), 0o600);
    assert_eq!(
        listing(d),
        ["sa.key", "sa.pub"],
        "no temporary files left behind"
    );
}

#[test]
fn keys_generate_rejects_bad_sizes_and_algorithms() {
    let t = tempdir();
    let d = t.path();
    let out = run_in(
        d,
        &[
            "keys",
            "generate",
            "--private-key",
            "a",
            "--public-key",
            "b",
            "--bits",
            "1024",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--bits 1024"), "{}", stderr(&out));
    let out = run_in(
        d,
        &[
            "keys",
            "generate",
            "--private-key",
            "a",
            "--public-key",
            "b",
            "--algorithm",
            "HS256",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("RS256"), "{}", stderr(&out));
    assert!(listing(d).is_empty());
}

#[test]
fn init_lays_out_bundle_as_served() {
    let t = tempdir();
    let d = t.path();
    let out = run_in(
        d,
        &[
            "init",
            "--cluster",
            "prod",
            "--bucket",
            "acme-oidc",
            "--region",
            "eu-west-1",
            "--prefix",
            "/prod/",
            "--dir",
            "b",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        listing(&d.join("b")),
        [
            "irsa.yaml",
            "issuer/.well-known/openid-configuration",
            "issuer/openid/v1/jwks",
            "keys/.gitignore",
            "keys/sa-signer.key",
            "keys/sa-signer.pub"
        ]
    );
    assert_eq!(mode(&d.join("b/keys/sa-signer.key")), 0o600);
    let disc = json(&fs::read(d.join("b/issuer/.well-known/openid-configuration")).unwrap());
    assert_eq!(
        disc["issuer"],
        "https://acme-oidc.s3.eu-west-1.amazonaws.com/prod"
    );
    assert_eq!(
        disc["jwks_uri"],
        "https://acme-oidc.s3.eu-west-1.amazonaws.com/prod/openid/v1/jwks"
    );
    let yaml = fs::read_to_string(d.join("b/irsa.yaml")).unwrap();
    assert!(
        yaml.contains("apiVersion: irsa.dev/v1alpha1") && yaml.contains("prefix: prod"),
        "{yaml}"
    );
    let jwks = json(&fs::read(d.join("b/issuer/openid/v1/jwks")).unwrap());
    assert_eq!(
        jwks["keys"][0]["kid"],
        openssl_kid(d, "b/keys/sa-signer.key").as_str()
    );

    let out = run_in(d, &["validate", "b"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn init_keys_json_path_style_and_es256() {
    let t = tempdir();
    let d = t.path();
    let out = run_in(
        d,
        &[
            "init",
            "--cluster",
            "c",
            "--bucket",
            "acme.oidc",
            "--region",
            "us-east-1",
            "--jwks-path",
            "keys.json",
            "--algorithm",
            "ES256",
            "--dir",
            "b",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let disc = json(&fs::read(d.join("b/issuer/.well-known/openid-configuration")).unwrap());
    assert_eq!(
        disc["issuer"],
        "https://s3.us-east-1.amazonaws.com/acme.oidc"
    );
    assert_eq!(
        disc["jwks_uri"],
        "https://s3.us-east-1.amazonaws.com/acme.oidc/keys.json"
    );
    assert_eq!(
        disc["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    assert!(d.join("b/issuer/keys.json").is_file());
    assert!(run_in(d, &["validate", "b"]).status.success());
}

#[test]
fn init_refuses_to_overwrite_and_bad_issuers_write_nothing() {
    let t = tempdir();
    let d = t.path();
    assert!(run_in(
        d,
        &[
            "init",
            "--cluster",
            "c",
            "--issuer",
            "https://oidc.example.com",
            "--dir",
            "b"
        ]
    )
    .status
    .success());
    let key = fs::read(d.join("b/keys/sa-signer.key")).unwrap();
    let yaml = fs::read(d.join("b/irsa.yaml")).unwrap();
    let out = run_in(
        d,
        &[
            "init",
            "--cluster",
            "other",
            "--issuer",
            "https://oidc.example.com",
            "--dir",
            "b",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("refusing to overwrite"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(d.join("b/keys/sa-signer.key")).unwrap(), key);
    assert_eq!(fs::read(d.join("b/irsa.yaml")).unwrap(), yaml);

    let cases = [
        ("https://oidc.example.com/", "ends with '/'"),
        ("http://oidc.example.com", "use https://oidc.example.com"),
        ("https://oidc.example.com/x?a=b", "query or fragment"),
        ("https://oidc.example.com:8443", "port"),
    ];
    for (issuer, message) in cases {
        let out = run_in(
            d,
            &[
                "init",
                "--cluster",
                "c",
                "--issuer",
                issuer,
                "--dir",
                "fresh",
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{issuer}");
        assert!(stderr(&out).contains(message), "{issuer}: {}", stderr(&out));
        assert!(!d.join("fresh").exists(), "{issuer}: nothing written");
    }
    let out = run_in(
        d,
        &[
            "init",
            "--cluster",
            "c",
            "--bucket",
            "Bad_Bucket",
            "--region",
            "us-east-1",
            "--dir",
            "fresh",
        ],
    );
    assert!(
        stderr(&out).contains("bucket name \"Bad_Bucket\""),
        "{}",
        stderr(&out)
    );
    let out = run_in(d, &["init", "--cluster", "c", "--dir", "fresh"]);
    assert!(
        stderr(&out).contains("--bucket B --region R"),
        "{}",
        stderr(&out)
    );
    assert!(!d.join("fresh").exists());
}

#[test]
fn documents_are_deterministic_and_render_detects_drift() {
    let t = tempdir();
    let d = t.path();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "a.pem",
        ],
    );
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-out",
            "b.pem",
        ],
    );
    let one = run_in(d, &["jwks", "a.pem", "b.pem"]);
    let two = run_in(d, &["jwks", "a.pem", "b.pem"]);
    assert!(one.status.success());
    assert_eq!(one.stdout, two.stdout, "same inputs, same bytes");
    let v = json(&one.stdout);
    assert_eq!(
        v["keys"][0]["kid"],
        openssl_kid(d, "a.pem").as_str(),
        "input order kept"
    );
    assert_eq!(v["keys"][1]["kid"], openssl_kid(d, "b.pem").as_str());
    let d1 = run_in(
        d,
        &[
            "discovery",
            "--issuer",
            "https://o.example.com",
            "--algorithm",
            "RS256",
            "--algorithm",
            "ES256",
        ],
    );
    let d2 = run_in(
        d,
        &[
            "discovery",
            "--issuer",
            "https://o.example.com",
            "--algorithm",
            "ES256",
            "--algorithm",
            "RS256",
        ],
    );
    assert_eq!(d1.stdout, d2.stdout);

    assert!(run_in(
        d,
        &[
            "init",
            "--cluster",
            "c",
            "--issuer",
            "https://oidc.example.com",
            "--dir",
            "b"
        ]
    )
    .status
    .success());
    let jwks_path = d.join("b/issuer/openid/v1/jwks");
    let before = fs::read(&jwks_path).unwrap();
    assert!(run_in(d, &["render", "b"]).status.success());
    assert_eq!(
        fs::read(&jwks_path).unwrap(),
        before,
        "re-render is byte-identical"
    );
    assert!(run_in(d, &["render", "b", "--check"]).status.success());

    fs::write(
        &jwks_path,
        String::from_utf8(before.clone())
            .unwrap()
            .replace("  ", "    "),
    )
    .unwrap();
    let out = run_in(d, &["render", "b", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    let out = run_in(d, &["validate", "b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("✗ documents: up to date with irsa.yaml"),
        "{}",
        stdout(&out)
    );
    assert!(run_in(d, &["render", "b"]).status.success());
    assert_eq!(fs::read(&jwks_path).unwrap(), before);
}

#[test]
fn demo_creates_a_new_directory_each_time() {
    let t = tempdir();
    let d = t.path();
    let out = run_in(d, &["demo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Next steps") && stdout(&out).contains("validated:"));
    assert!(
        stdout(&out).contains("+ iam role demo-default-s3-echoer"),
        "demo ends with the plan: {}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("+ s3://irsa-demo-oidc/demo/openid/v1/jwks"),
        "{}",
        stdout(&out)
    );
    // A bucket the plan creates has its settings created, not changed.
    let text = stdout(&out);
    assert!(
        text.contains("+ s3 bucket irsa-demo-oidc public access block")
            && text.contains("+ s3 bucket irsa-demo-oidc policy"),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("~ ")),
        "nothing to change in an empty account: {text}"
    );
    assert!(d.join("irsa-demo/irsa.yaml").is_file());
    let out = run_in(d, &["demo"]);
    assert!(out.status.success());
    assert!(d.join("irsa-demo-2/irsa.yaml").is_file());
    fs::create_dir(d.join("full")).unwrap();
    fs::write(d.join("full/x"), "x").unwrap();
    let out = run_in(d, &["demo", "--dir", "full"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(listing(&d.join("full")), ["x"]);
}

#[test]
fn export_terraform_and_cloudformation_match_the_plan() {
    let t = tempdir();
    let d = t.path();
    let out = init_prod(d, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = std::fs::read_to_string(d.join("irsa.yaml")).unwrap().replace(
        "bindings: []",
        "bindings:\n- namespace: app\n  serviceAccount: s3-echoer\n  policyArns: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]\n  inlinePolicies:\n    own-prefix: {Version: '2012-10-17', Statement: [{Effect: Allow, Action: 's3:GetObject', Resource: 'arn:aws:s3:::data/${aws:PrincipalTag/team}/*'}]}\n- namespace: batch\n  serviceAccount: 'job-*'\n  audience: batch.example.com\n",
    );
    std::fs::write(d.join("irsa.yaml"), &yaml).unwrap();
    let cfg = irsa_core::IrsaConfig::from_yaml(&yaml).unwrap();
    let host = "acme-oidc.s3.eu-west-1.amazonaws.com/prod";

    // CloudFormation: literal condition keys, the provider by GetAtt.
    let out = run_in(d, &["export", "cloudformation"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("aws s3 cp")
            && stderr(&out).contains("--content-type application/json"),
        "says how to upload the documents: {}",
        stderr(&out)
    );
    let cfn = json(&out.stdout);
    let res = &cfn["Resources"];
    assert_eq!(
        res["OidcProvider"]["Properties"]["Url"],
        format!("https://{host}")
    );
    let ids = res["OidcProvider"]["Properties"]["ClientIdList"]
        .as_array()
        .unwrap();
    assert_eq!(
        ids.len(),
        2,
        "sts.amazonaws.com and batch.example.com: {ids:?}"
    );
    for (binding, logical) in cfg
        .bindings
        .iter()
        .zip(["RoleProdAppS3Echoer", "RoleProdBatchJobAny"])
    {
        let role = &res[logical]["Properties"];
        assert_eq!(role["RoleName"], binding.role_name("prod"));
        assert_eq!(role["Path"], "/irsa/prod/");
        let mut expected = irsa_core::trust::trust_policy(
            "aws",
            "000000000000",
            cfg.issuer.url().unwrap(),
            binding,
        )
        .into_value();
        expected["Statement"][0]["Principal"]["Federated"] =
            serde_json::json!({"Fn::GetAtt": ["OidcProvider", "Arn"]});
        assert_eq!(role["AssumeRolePolicyDocument"], expected, "{logical}");
        let cond = role["AssumeRolePolicyDocument"]["Statement"][0]["Condition"].to_string();
        assert!(
            cond.contains(&format!("\"{host}:sub\"")) && !cond.contains("https://"),
            "{cond}"
        );
    }
    assert_eq!(
        res["RoleProdAppS3Echoer"]["Properties"]["ManagedPolicyArns"][0],
        "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
    );
    let statement = &res["IssuerBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(statement["Action"], "s3:GetObject");
    assert_eq!(
        statement["Resource"].as_array().unwrap().len(),
        2,
        "the two documents only"
    );
    assert_eq!(
        res["IssuerBucket"]["Properties"]["PublicAccessBlockConfiguration"]["BlockPublicAcls"],
        true
    );

    // Terraform JSON: the same trust policy once the reference is resolved;
    // IAM policy variables escaped from Terraform's templates.
    let out = run_in(d, &["export", "terraform", "-o", "irsa.tf.json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = run_in(d, &["export", "terraform", "-o", "irsa.tf.json"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "never overwrites without --force"
    );
    let tf = json(&std::fs::read(d.join("irsa.tf.json")).unwrap());
    let r = &tf["resource"];
    let role = &r["aws_iam_role"]["role_prod_app_s3_echoer"];
    let arn = format!("arn:aws:iam::000000000000:oidc-provider/{host}");
    let trust: serde_json::Value = serde_json::from_str(
        &role["assume_role_policy"]
            .as_str()
            .unwrap()
            .replace("${aws_iam_openid_connect_provider.irsa.arn}", &arn),
    )
    .unwrap();
    assert_eq!(
        trust,
        irsa_core::trust::trust_policy(
            "aws",
            "000000000000",
            cfg.issuer.url().unwrap(),
            &cfg.bindings[0]
        )
    );
    let inline = r["aws_iam_role_policy"]["role_prod_app_s3_echoer_own_prefix"]["policy"]
        .as_str()
        .unwrap();
    assert!(inline.contains("$${aws:PrincipalTag/team}"), "{inline}");
    assert_eq!(
        r["aws_s3_object"]["jwks"]["content"].as_str().unwrap(),
        std::fs::read_to_string(d.join("issuer/openid/v1/jwks")).unwrap(),
        "the JWKS uploaded is the one irsa renders"
    );
    assert_eq!(
        r["aws_s3_object"]["jwks"]["content_type"],
        "application/json"
    );
    assert_eq!(
        r["aws_iam_role_policy_attachment"]["role_prod_app_s3_echoer_0"]["role"],
        "${aws_iam_role.role_prod_app_s3_echoer.name}"
    );
}

#[test]
fn private_key_material_never_reaches_output_or_errors() {
    let t = tempdir();
    let d = t.path();
    let out = run_in(
        d,
        &[
            "keys",
            "generate",
            "--private-key",
            "sa.key",
            "--public-key",
            "sa.pub",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let pem = fs::read_to_string(d.join("sa.key")).unwrap();
    let body_line = pem.lines().nth(3).unwrap().to_string();
    // A damaged copy: every command that reads it fails without quoting it.
    let damaged = pem.replacen(&body_line, &format!("{body_line}!!"), 1);
    fs::write(d.join("bad.key"), &damaged).unwrap();
    for args in [
        vec!["jwks", "bad.key"],
        vec![
            "keys",
            "generate",
            "--private-key",
            "sa.key",
            "--public-key",
            "x.pub",
        ],
        vec![
            "token",
            "verify",
            "--jwks",
            "bad.key",
            "--issuer",
            "https://x.example.com",
            "x.y.z",
        ],
    ] {
        let out = run_in(d, &args);
        assert!(!out.status.success(), "{args:?} must fail");
        for text in [stdout(&out), stderr(&out)] {
            assert!(
                !text.contains(&body_line),
                "{args:?} printed key material: {text}"
            );
            assert!(!text.contains("PRIVATE KEY-----\nMII"), "{args:?}: {text}");
        }
    }
    // Debug output of the parsed key (as in logs) hides the material too.
    let key = irsa_core::parse::parse_private_key(pem.as_bytes()).unwrap();
    assert!(!format!("{key:?}").contains(&body_line[..20]));
}

/// Stderr of `irsa --log info jwks KEY` run under script(1), which gives it
/// a terminal; `no_color` is NO_COLOR's value, if set.
fn on_a_terminal(d: &Path, no_color: Option<&str>) -> String {
    let command = format!(
        "{} --log info jwks b/keys/sa-signer.pub >/dev/null",
        env!("CARGO_BIN_EXE_irsa")
    );
    let mut script = std::process::Command::new("script");
    script
        .current_dir(d)
        .args(["-qec", &command, "/dev/null"])
        .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        script.env("NO_COLOR", v);
    }
    let out = script
        .output()
        .expect("script(1) from util-linux gives the command a terminal");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn logs_are_coloured_only_on_a_terminal_and_without_no_color() {
    let t = tempdir();
    let d = t.path();
    assert!(run_in(d, &["demo", "--dir", "b"]).status.success());
    // Written to a pipe (as to a file): plain text.
    let out = irsa()
        .current_dir(d)
        .args(["--log", "info", "jwks", "b/keys/sa-signer.pub"])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(log.contains("INFO") && log.contains("key"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI codes in a piped log: {log:?}"
    );
    // On a terminal: coloured, unless NO_COLOR says otherwise.
    let tty = on_a_terminal(d, None);
    assert!(tty.contains("INFO") && tty.contains('\u{1b}'), "{tty:?}");
    let tty = on_a_terminal(d, Some("1"));
    assert!(tty.contains("INFO") && !tty.contains('\u{1b}'), "{tty:?}");
}

//! plan / apply / destroy against a real AWS API server (moto), reached by
//! the real aws-sdk-rust clients inside the irsa binary.
// These tests drive commands of the full build (`online` feature).
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::faults;
use common::moto::{Ctl, Moto};
use common::*;
use serde_json::Value;

fn irsa_aws(dir: &Path, moto: &Moto, args: &[&str]) -> Output {
    irsa_via(dir, moto, None, args)
}

/// Runs irsa against moto, or through a fault-injecting proxy in front of it.
fn irsa_via(dir: &Path, moto: &Moto, proxy: Option<&faults::Proxy>, args: &[&str]) -> Output {
    let mut cmd = irsa();
    cmd.current_dir(dir).args(args);
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    if let Some(p) = proxy {
        cmd.env("AWS_ENDPOINT_URL", &p.endpoint);
    }
    cmd.output().unwrap()
}

fn summary(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    json(stdout(out).lines().last().unwrap().as_bytes())
}

fn setup(dir: &Path) {
    let out = init_prod(dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = std::fs::read_to_string(dir.join("irsa.yaml")).unwrap();
    let yaml = yaml.replace(
        "bindings: []",
        "bindings:\n- namespace: app\n  serviceAccount: s3-echoer\n  policyArns: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]\n  inlinePolicies:\n    read-bucket: {Version: '2012-10-17', Statement: [{Effect: Allow, Action: 's3:GetObject', Resource: 'arn:aws:s3:::data/*'}]}\n- namespace: batch\n  serviceAccount: 'job-*'\n",
    );
    assert!(yaml.contains("s3-echoer"), "bindings inserted: {yaml}");
    std::fs::write(dir.join("irsa.yaml"), yaml).unwrap();
}

#[test]
fn apply_is_idempotent_repairs_drift_respects_ownership_and_destroys() {
    let moto = Moto::start();
    let t = tempdir();
    let d = t.path();
    setup(d);

    // Fresh plan: everything to create; --detailed-exitcode says 2.
    let out = irsa_aws(d, &moto, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("+ s3 bucket acme-oidc")
            && text.contains("+ iam oidc-provider acme-oidc.s3.eu-west-1.amazonaws.com/prod"),
        "{text}"
    );
    assert!(
        text.contains("+ iam role prod-app-s3-echoer")
            && text.contains("+ iam role prod-batch-job-any"),
        "{text}"
    );

    // Apply, then apply again: the second makes no write call.
    let first = summary(&irsa_aws(
        d,
        &moto,
        &["apply", "--auto-approve", "--output", "json"],
    ));
    assert!(first["writes"].as_u64().unwrap() >= 10, "{first}");
    let second = summary(&irsa_aws(
        d,
        &moto,
        &["apply", "--auto-approve", "--output", "json"],
    ));
    assert_eq!(second["writes"], 0, "no-op re-apply: {second}");
    assert_eq!(
        irsa_aws(d, &moto, &["plan", "--detailed-exitcode"])
            .status
            .code(),
        Some(0)
    );

    // Only the two documents are public: one statement, GetObject, two keys;
    // ACLs stay blocked.
    let ctl = Ctl::new(&moto);
    let policy: Value =
        serde_json::from_str(&ctl.py("print(s3.get_bucket_policy(Bucket='acme-oidc')['Policy'])"))
            .unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "{policy}");
    assert_eq!(statements[0]["Action"], "s3:GetObject");
    assert_eq!(statements[0]["Principal"], "*");
    let mut resources: Vec<&str> = statements[0]["Resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    resources.sort();
    assert_eq!(
        resources,
        [
            "arn:aws:s3:::acme-oidc/prod/.well-known/openid-configuration",
            "arn:aws:s3:::acme-oidc/prod/openid/v1/jwks"
        ]
    );
    let pab = ctl.py("c = s3.get_public_access_block(Bucket='acme-oidc')['PublicAccessBlockConfiguration']\nprint(c['BlockPublicAcls'], c['IgnorePublicAcls'])");
    assert_eq!(pab, "True True", "ACLs stay blocked");
    let content_type = ctl
        .py("print(s3.head_object(Bucket='acme-oidc', Key='prod/openid/v1/jwks')['ContentType'])");
    assert_eq!(content_type, "application/json");

    // STS accepts a token signed with the cluster's key for the bound service account.
    let key =
        irsa_core::parse::parse_private_key(&std::fs::read(d.join("keys/sa-signer.key")).unwrap())
            .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({"iss": "https://acme-oidc.s3.eu-west-1.amazonaws.com/prod", "sub": "system:serviceaccount:app:s3-echoer",
        "aud": ["sts.amazonaws.com"], "iat": now, "exp": now + 3600});
    let token = irsa_core::jwt::sign(&key, irsa_core::Algorithm::RS256, &claims).unwrap();
    let assumed = ctl.py(&format!(
        "sts = boto3.client('sts', **kw)\narn = iam.get_role(RoleName='prod-app-s3-echoer')['Role']['Arn']\nr = sts.assume_role_with_web_identity(RoleArn=arn, RoleSessionName='e2e', WebIdentityToken='{token}')\nprint(r['AssumedRoleUser']['Arn'])"
    ));
    assert!(assumed.contains("prod-app-s3-echoer/e2e"), "{assumed}");

    // Drift: a document edited and a managed policy detached, behind irsa's back.
    ctl.put_object("acme-oidc", "prod/openid/v1/jwks", "{\"keys\":[]}");
    ctl.iam(&[
        "detach-role-policy",
        "prod-app-s3-echoer",
        "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
    ]);
    let out = irsa_aws(d, &moto, &["plan"]);
    let text = stdout(&out);
    assert!(
        text.contains("~ s3://acme-oidc/prod/openid/v1/jwks") && text.contains("content differs"),
        "{text}"
    );
    assert!(
        text.contains("+ iam role prod-app-s3-echoer policy")
            && text.contains("AmazonS3ReadOnlyAccess"),
        "{text}"
    );
    let repair = summary(&irsa_aws(
        d,
        &moto,
        &["apply", "--auto-approve", "--output", "json"],
    ));
    assert_eq!(repair["changes"], 2, "{repair}");
    assert_eq!(
        summary(&irsa_aws(
            d,
            &moto,
            &["apply", "--auto-approve", "--output", "json"]
        ))["writes"],
        0
    );

    // A role of the same name that irsa does not own is never touched.
    ctl.iam(&["create-role", "prod-web-site"]);
    let yaml = std::fs::read_to_string(d.join("irsa.yaml")).unwrap();
    std::fs::write(
        d.join("irsa.yaml"),
        format!("{yaml}- namespace: web\n  serviceAccount: site\n"),
    )
    .unwrap();
    let out = irsa_aws(d, &moto, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "conflict reported as failure");
    assert!(
        stdout(&out)
            .contains("iam role prod-web-site exists and is not tagged irsa.dev/cluster=prod"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        ctl.role_trust("prod-web-site"),
        ctl.foreign_trust(),
        "unowned role unchanged"
    );

    // Destroy removes what irsa created and leaves the foreign role.
    let out = irsa_aws(d, &moto, &["destroy", "--auto-approve"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("- iam role prod-app-s3-echoer"));
    assert!(ctl.role_exists("prod-web-site"));
    assert!(!ctl.role_exists("prod-app-s3-echoer"));
    assert!(!ctl.bucket_exists("acme-oidc"));
}

#[test]
fn apply_interrupted_after_any_write_converges_on_rerun() {
    let moto = Moto::start();
    let ctl = Ctl::new(&moto);
    let t = tempdir();
    let d = t.path();
    setup(d);
    let full = summary(&irsa_aws(
        d,
        &moto,
        &[
            "apply",
            "--auto-approve",
            "--output",
            "json",
            "--parallelism",
            "1",
        ],
    ));
    let total = full["writes"].as_u64().unwrap() as usize;
    assert!(total >= 10, "{full}");
    let expected = ctl.inventory();
    for cut in 1..total {
        ctl.reset();
        let proxy = faults::start(&moto.endpoint, faults::Fault::CutAfterWrites(cut));
        let mut cmd_args = vec!["apply", "--auto-approve", "--parallelism", "1"];
        cmd_args.extend(["--output", "json"]);
        let out = {
            let mut cmd = irsa();
            cmd.current_dir(d).args(&cmd_args);
            for (k, v) in moto.env() {
                cmd.env(k, v);
            }
            cmd.env("AWS_ENDPOINT_URL", &proxy.endpoint)
                .env("AWS_MAX_ATTEMPTS", "1");
            cmd.output().unwrap()
        };
        assert!(
            !out.status.success(),
            "cut after {cut} of {total} writes must fail the run: {}",
            stdout(&out)
        );
        assert_eq!(
            proxy
                .counts
                .writes
                .load(std::sync::atomic::Ordering::SeqCst),
            cut
        );
        assert!(
            stderr(&out).contains("re-run"),
            "the failure says what to do: {}",
            stderr(&out)
        );
        // The re-run finishes the job without help, creating nothing twice.
        let rerun = irsa_aws(d, &moto, &["apply", "--auto-approve", "--output", "json"]);
        let done = summary(&rerun);
        assert!(
            done["writes"].as_u64().unwrap() as usize <= total - cut + 2,
            "cut {cut}: re-run repeats only what is left: {done}"
        );
        assert_eq!(
            irsa_aws(d, &moto, &["plan", "--detailed-exitcode"])
                .status
                .code(),
            Some(0),
            "cut {cut}: converged"
        );
        assert_eq!(
            ctl.inventory(),
            expected,
            "cut {cut}: nothing duplicated or orphaned"
        );
        assert!(!d.join(".irsa").exists(), "cut {cut}: journal cleared");
    }
}

#[test]
fn bind_and_unbind_edit_irsa_yaml_keep_comments_and_apply() {
    let moto = Moto::start();
    let ctl = Ctl::new(&moto);
    let t = tempdir();
    let d = t.path();
    setup(d);
    let before = std::fs::read_to_string(d.join("irsa.yaml")).unwrap();
    assert!(before.starts_with('#'), "init writes a header comment");
    std::fs::write(
        d.join("reader.json"),
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:ReceiveMessage", "Resource": "*"}]}"#,
    )
    .unwrap();
    let out = irsa_aws(
        d,
        &moto,
        &[
            "bind",
            "-n",
            "queue",
            "-s",
            "worker",
            "--policy-arn",
            "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess",
            "--policy-file",
            "reader.json",
            "--apply",
            "--auto-approve",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let after = std::fs::read_to_string(d.join("irsa.yaml")).unwrap();
    assert!(
        after.starts_with(before.trim_end()),
        "the existing text, comments included, is kept:\n{after}"
    );
    let cfg = irsa_core::IrsaConfig::from_yaml(&after).unwrap();
    let b = cfg.bindings.last().unwrap();
    assert_eq!(
        (b.namespace.as_str(), b.service_account.as_str()),
        ("queue", "worker")
    );
    assert!(b.inline_policies.contains_key("reader"));
    // The printed ServiceAccount is a real object with the role's ARN.
    let manifest = text
        .split("---\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap();
    let sa: k8s_openapi::api::core::v1::ServiceAccount = serde_yaml::from_str(manifest).unwrap();
    assert_eq!(sa.metadata.namespace.as_deref(), Some("queue"));
    assert_eq!(
        sa.metadata.annotations.unwrap()["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/irsa/prod/prod-queue-worker"
    );
    assert!(
        ctl.role_exists("prod-queue-worker"),
        "--apply created the role"
    );
    assert_eq!(
        irsa_aws(d, &moto, &["plan", "--detailed-exitcode"])
            .status
            .code(),
        Some(0)
    );

    // Binding again with nothing new changes nothing.
    let out = irsa_aws(
        d,
        &moto,
        &["bind", "-n", "queue", "-s", "worker", "--no-plan"],
    );
    assert!(stdout(&out).contains("already bound"), "{}", stdout(&out));
    assert_eq!(std::fs::read_to_string(d.join("irsa.yaml")).unwrap(), after);

    let out = irsa_aws(
        d,
        &moto,
        &[
            "unbind",
            "-n",
            "queue",
            "-s",
            "worker",
            "--apply",
            "--auto-approve",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        !ctl.role_exists("prod-queue-worker"),
        "the role went with the binding"
    );
    assert!(ctl.role_exists("prod-app-s3-echoer"), "other roles stay");
    assert_eq!(
        std::fs::read_to_string(d.join("irsa.yaml"))
            .unwrap()
            .trim_end(),
        before.trim_end()
    );
    let out = irsa_aws(
        d,
        &moto,
        &["unbind", "-n", "queue", "-s", "worker", "--no-plan"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no binding for queue/worker"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn throttled_calls_are_retried_with_backoff() {
    let moto = Moto::start();
    let t = tempdir();
    let d = t.path();
    setup(d);
    let proxy = faults::start(&moto.endpoint, faults::Fault::ThrottleEvery(4));
    let out = irsa_via(
        d,
        &moto,
        Some(&proxy),
        &["apply", "--auto-approve", "--output", "json"],
    );
    let done = summary(&out);
    assert!(
        proxy
            .counts
            .throttled
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 3,
        "the proxy throttled some calls"
    );
    assert!(done["writes"].as_u64().unwrap() >= 10, "{done}");
    assert_eq!(
        irsa_aws(d, &moto, &["plan", "--detailed-exitcode"])
            .status
            .code(),
        Some(0)
    );
}

fn init_cluster(dir: &Path, cluster: &str, bucket: &str) {
    let out = run_in(
        dir,
        &[
            "init",
            "--cluster",
            cluster,
            "--bucket",
            bucket,
            "--region",
            "eu-west-1",
            "--prefix",
            cluster,
            "--dir",
            ".",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

fn trust_of(ctl: &Ctl, role: &str) -> Value {
    let text = ctl.py(&format!(
        "doc = iam.get_role(RoleName='{role}')['Role']['AssumeRolePolicyDocument']\nprint(doc if isinstance(doc, str) else json.dumps(doc))"
    ));
    let v: Value = serde_json::from_str(&text).unwrap();
    match v {
        Value::String(s) => serde_json::from_str(&s).unwrap(),
        v => v,
    }
}

#[test]
fn many_clusters_share_a_bucket_an_account_and_a_role() {
    let moto = Moto::start();
    let ctl = Ctl::new(&moto);
    let (ta, tb) = (tempdir(), tempdir());
    let (a, b) = (ta.path(), tb.path());
    init_cluster(a, "alpha", "shared-oidc");
    init_cluster(b, "beta", "shared-oidc");
    let alpha_issuer = "https://shared-oidc.s3.eu-west-1.amazonaws.com/alpha";
    let yaml = std::fs::read_to_string(b.join("irsa.yaml")).unwrap().replace(
        "bindings: []",
        &format!("bindings:\n- namespace: app\n  serviceAccount: web\n  extraIssuers: [{alpha_issuer}]\n"),
    );
    std::fs::write(b.join("irsa.yaml"), yaml).unwrap();
    for d in [a, b] {
        let out = irsa_aws(d, &moto, &["apply", "--auto-approve"]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    }
    // One bucket, two issuers: each cluster's statement in one policy.
    let policy: Value = serde_json::from_str(
        &ctl.py("print(s3.get_bucket_policy(Bucket='shared-oidc')['Policy'])"),
    )
    .unwrap();
    let sids: Vec<&str> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Sid"].as_str().unwrap())
        .collect();
    assert_eq!(
        sids,
        ["IrsaIssueralphaZalpha", "IrsaIssuerbetaZbeta"],
        "{policy}"
    );
    // One account, two providers; one role trusted by both clusters.
    let providers =
        ctl.py("print(len(iam.list_open_id_connect_providers()['OpenIDConnectProviderList']))");
    assert_eq!(providers, "2");
    let trust = irsa_core::trust::TrustPolicy::from(trust_of(&ctl, "beta-app-web"));
    let aud = vec!["sts.amazonaws.com".to_string()];
    for cluster in ["alpha", "beta"] {
        let host = format!("shared-oidc.s3.eu-west-1.amazonaws.com/{cluster}");
        let arn = format!("arn:aws:iam::123456789012:oidc-provider/{host}");
        let req = irsa_core::trust::Request {
            provider_arn: &arn,
            host_path: &host,
            sub: "system:serviceaccount:app:web",
            aud: &aud,
        };
        assert!(
            irsa_core::trust::evaluate(&trust, &req).is_ok(),
            "{cluster}: {trust}"
        );
    }
    for d in [a, b] {
        assert_eq!(
            irsa_aws(d, &moto, &["plan", "--detailed-exitcode"])
                .status
                .code(),
            Some(0)
        );
    }

    // Too many issuers for one role: the plan says which limit and the way out.
    let many: Vec<String> = (0..8)
        .map(|i| format!("https://oidc-{i}.example.com/cluster-{i}"))
        .collect();
    let yaml = std::fs::read_to_string(b.join("irsa.yaml"))
        .unwrap()
        .replace(
            &format!("extraIssuers: [{alpha_issuer}]"),
            &format!("extraIssuers: [{alpha_issuer}, {}]", many.join(", ")),
        );
    std::fs::write(b.join("irsa.yaml"), yaml).unwrap();
    let out = irsa_aws(b, &moto, &["apply", "--auto-approve"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("trust policy is") && stdout(&out).contains("IAM allows 2048"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        trust_of(&ctl, "beta-app-web"),
        trust,
        "the role is left as it was"
    );

    // Destroying one cluster keeps the other's documents, statement and bucket.
    let out = irsa_aws(a, &moto, &["destroy", "--auto-approve"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(ctl.bucket_exists("shared-oidc"));
    let policy: Value = serde_json::from_str(
        &ctl.py("print(s3.get_bucket_policy(Bucket='shared-oidc')['Policy'])"),
    )
    .unwrap();
    assert_eq!(policy["Statement"].as_array().unwrap().len(), 1);
    assert_eq!(policy["Statement"][0]["Sid"], "IrsaIssuerbetaZbeta");
    assert_eq!(
        ctl.py("print(len(iam.list_open_id_connect_providers()['OpenIDConnectProviderList']))"),
        "1"
    );
}

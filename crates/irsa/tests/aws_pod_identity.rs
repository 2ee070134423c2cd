//! Pod Identity in AWS: `irsa bind --pod-identity`, then plan / apply /
//! destroy of the broker role and the roles that trust it, against a real
//! AWS API server (moto) through the real aws-sdk-rust clients; the
//! exports of the same bundle.
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::moto::{Ctl, Moto};
use common::*;
use serde_json::{json, Value};

const ACCOUNT: &str = "123456789012";
const BROKER: &str = "prod-irsa-agent-broker";
const READER: &str = "prod-app-reader";

fn irsa_aws(dir: &Path, moto: &Moto, args: &[&str]) -> Output {
    let mut cmd = irsa();
    cmd.current_dir(dir).args(args);
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok(out: Output) -> Output {
    succeeded(out)
}

fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/irsa/prod/{name}")
}

fn parsed(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap();
    match v {
        Value::String(s) => serde_json::from_str(&s).unwrap(),
        v => v,
    }
}

fn trust_of(ctl: &Ctl, role: &str) -> Value {
    parsed(&ctl.py(&format!(
        "print(json.dumps(iam.get_role(RoleName='{role}')['Role']['AssumeRolePolicyDocument']))"
    )))
}

fn inline_of(ctl: &Ctl, role: &str, policy: &str) -> Value {
    parsed(&ctl.py(&format!(
        "print(json.dumps(iam.get_role_policy(RoleName='{role}', PolicyName='{policy}')['PolicyDocument']))"
    )))
}

/// The order in which apply/destroy started their steps (stderr's
/// `[i/n] <change>` lines).
fn started(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter_map(|l| l.split_once("] ").filter(|_| l.starts_with('[')))
        .map(|(_, c)| c.to_string())
        .collect()
}

fn index_of(steps: &[String], needle: &str) -> usize {
    steps
        .iter()
        .position(|s| s.contains(needle))
        .unwrap_or_else(|| panic!("no step {needle:?} in {steps:#?}"))
}

#[test]
fn bind_pod_identity_apply_converges_and_destroy_removes_the_broker_last() {
    let moto = Moto::start();
    let ctl = Ctl::new(&moto);
    let t = tempdir();
    let d = t.path();
    ok(init_prod(d, &[]));
    // A contradiction is refused with the fix, and nothing is written.
    let before = std::fs::read_to_string(d.join("irsa.yaml")).unwrap();
    let out = run_in(
        d,
        &[
            "bind",
            "-f",
            "irsa.yaml",
            "--namespace",
            "app",
            "--service-account",
            "reader",
            "--audience",
            "other",
            "--pod-identity",
            "--no-plan",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("remove audience"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(d.join("irsa.yaml")).unwrap(),
        before
    );

    let out = ok(run_in(
        d,
        &[
            "bind",
            "-f",
            "irsa.yaml",
            "--namespace",
            "app",
            "--service-account",
            "reader",
            "--policy-arn",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "--pod-identity",
            "--no-plan",
        ],
    ));
    let text = stdout(&out);
    assert!(
        text.contains("Pod Identity") && text.contains("needs no annotation"),
        "{text}"
    );
    let yaml = std::fs::read_to_string(d.join("irsa.yaml")).unwrap();
    assert!(yaml.contains("mode: pod-identity"), "{yaml}");

    // apply: the broker role, then the role that trusts it.
    let out = ok(irsa_aws(d, &moto, &["apply", "--auto-approve"]));
    let steps = started(&out);
    assert!(
        index_of(&steps, &format!("+ iam role {BROKER}"))
            < index_of(&steps, &format!("+ iam role {READER}")),
        "{steps:#?}"
    );
    // The documents IAM holds, compared as parsed JSON.
    assert_eq!(
        trust_of(&ctl, READER),
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": role_arn(BROKER)},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {
                "aws:RequestTag/kubernetes-namespace": "app",
                "aws:RequestTag/kubernetes-service-account": "reader",
                "aws:RequestTag/eks-cluster-name": "${aws:PrincipalTag/irsa.dev/cluster}",
            }},
        }]})
    );
    let broker_trust = trust_of(&ctl, BROKER);
    assert_eq!(
        broker_trust["Statement"][0]["Principal"]["Federated"],
        format!("arn:aws:iam::{ACCOUNT}:oidc-provider/acme-oidc.s3.eu-west-1.amazonaws.com/prod")
    );
    assert_eq!(
        broker_trust["Statement"][0]["Condition"]["StringEquals"]
            ["acme-oidc.s3.eu-west-1.amazonaws.com/prod:sub"],
        "system:serviceaccount:irsa-system:irsa-agent-broker"
    );
    assert_eq!(
        inline_of(&ctl, BROKER, "irsa-pod-identity-broker"),
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": role_arn(READER)}]})
    );
    let tags = ctl.py(&format!(
        "print(json.dumps(sorted((t['Key'], t['Value']) for t in iam.list_role_tags(RoleName='{BROKER}')['Tags'])))"
    ));
    assert!(
        tags.contains(r#"["irsa.dev/cluster", "prod"]"#),
        "the tag the trust's policy variable reads: {tags}"
    );

    // Converged: a re-apply writes nothing.
    let again = ok(irsa_aws(
        d,
        &moto,
        &["apply", "--auto-approve", "--output", "json"],
    ));
    let summary: Value = serde_json::from_str(stdout(&again).lines().last().unwrap()).unwrap();
    assert_eq!(summary["writes"], 0, "{summary}");

    // A second pod-identity binding: the broker may assume both, exactly.
    bind_pod_identity(d, "app", "writer");
    ok(irsa_aws(d, &moto, &["apply", "--auto-approve"]));
    assert_eq!(
        inline_of(&ctl, BROKER, "irsa-pod-identity-broker")["Statement"][0]["Resource"],
        json!([role_arn(READER), role_arn("prod-app-writer")])
    );

    // destroy: the roles that trust the broker first, the broker after.
    let out = ok(irsa_aws(d, &moto, &["destroy", "--auto-approve"]));
    let steps = started(&out);
    let broker = index_of(&steps, &format!("- iam role {BROKER}"));
    assert!(
        index_of(&steps, &format!("- iam role {READER}")) < broker,
        "{steps:#?}"
    );
    assert!(
        index_of(&steps, "- iam role prod-app-writer") < broker,
        "{steps:#?}"
    );
    for role in [BROKER, READER, "prod-app-writer"] {
        assert!(!ctl.role_exists(role), "{role} is gone");
    }
}

#[test]
fn an_external_broker_principal_creates_no_oidc_provider() {
    let moto = Moto::start();
    let ctl = Ctl::new(&moto);
    let t = tempdir();
    let d = t.path();
    ok(init_prod(d, &[]));
    bind_pod_identity(d, "app", "reader");
    let mut yaml = std::fs::read_to_string(d.join("irsa.yaml")).unwrap();
    let node = format!("arn:aws:iam::{ACCOUNT}:role/node-instance");
    yaml.push_str(&format!("podIdentity:\n  brokerPrincipal: {node}\n"));
    std::fs::write(d.join("irsa.yaml"), yaml).unwrap();
    let out = ok(irsa_aws(d, &moto, &["plan"]));
    assert!(stdout(&out).contains("is not created"), "{}", stdout(&out));
    ok(irsa_aws(d, &moto, &["apply", "--auto-approve"]));
    let providers =
        ctl.py("print(len(iam.list_open_id_connect_providers()['OpenIDConnectProviderList']))");
    assert_eq!(providers, "0");
    assert_eq!(
        trust_of(&ctl, BROKER),
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"AWS": node}, "Action": "sts:AssumeRole"}]})
    );
    let again = ok(irsa_aws(
        d,
        &moto,
        &["apply", "--auto-approve", "--output", "json"],
    ));
    let summary: Value = serde_json::from_str(stdout(&again).lines().last().unwrap()).unwrap();
    assert_eq!(summary["writes"], 0, "{summary}");
    ok(irsa_aws(d, &moto, &["destroy", "--auto-approve"]));
    assert!(!ctl.role_exists(BROKER) && !ctl.role_exists(READER));
}

/// The exports refer to the broker role by reference (creation order,
/// any account) and keep the broker's permission out of the role resource
/// in CloudFormation (no cycle).
#[test]
fn exports_order_the_broker_before_the_roles_that_trust_it() {
    let t = tempdir();
    let d = t.path();
    ok(init_prod(d, &[]));
    bind_pod_identity(d, "app", "reader");
    let tf = json(&ok(run_in(d, &["export", "terraform"])).stdout);
    let roles = &tf["resource"]["aws_iam_role"];
    let trust = roles["role_prod_app_reader"]["assume_role_policy"]
        .as_str()
        .unwrap();
    assert!(
        trust.contains("${aws_iam_role.role_prod_irsa_agent_broker.arn}"),
        "{trust}"
    );
    assert!(
        trust.contains("$${aws:PrincipalTag/irsa.dev/cluster}"),
        "escaped policy variable: {trust}"
    );
    let policy = tf["resource"]["aws_iam_role_policy"]
        ["role_prod_irsa_agent_broker_irsa_pod_identity_broker"]["policy"]
        .as_str()
        .unwrap();
    assert!(
        policy.contains("${aws_iam_role.role_prod_app_reader.arn}"),
        "{policy}"
    );
    let cfn = json(&ok(run_in(d, &["export", "cloudformation"])).stdout);
    let reader = &cfn["Resources"]["RoleProdAppReader"]["Properties"];
    assert_eq!(
        reader["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["AWS"],
        json!({"Fn::GetAtt": ["RoleProdIrsaAgentBroker", "Arn"]})
    );
    let broker = &cfn["Resources"]["RoleProdIrsaAgentBroker"]["Properties"];
    assert!(broker.get("Policies").is_none(), "{broker}");
    let policy = &cfn["Resources"]["RoleProdIrsaAgentBrokerPolicyIrsaPodIdentityBroker"];
    assert_eq!(policy["Type"], "AWS::IAM::RolePolicy");
    assert_eq!(
        policy["Properties"]["PolicyDocument"]["Statement"][0]["Resource"],
        json!({"Fn::GetAtt": ["RoleProdAppReader", "Arn"]})
    );
}

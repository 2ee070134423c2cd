//! `irsa agent` end to end: the test bed's API server reviews real
//! pod-bound tokens, moto on 127.0.0.1 plays STS (its recorder shows the
//! AssumeRole requests), and real SDKs fetch credentials: boto3 with only
//! the container-credentials variables, and aws-sdk-rust's default chain
//! (a second agent whose own credentials come from the first).
// These tests drive commands of the full build (`online` feature).
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::agent::{boto3_caller, get, Env, AUD, ISSUER, ROLE};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use serde_json::{json, Value};

#[test]
#[ignore = "needs kube-apiserver and etcd (the test bed) and moto_server; scripts/test runs it"]
fn serve_gives_sdks_tagged_sessions_once_per_pod_and_refuses_what_it_must() {
    let env = Env::start();
    let uid = env.pod("web-0", "s3", "node-a");
    let token = env.token("s3", "web-0", &uid, AUD);
    let agent = env.serve(&env.aws_env());
    let (port, listen) = (agent.port, agent.listen.clone());
    let url = format!("http://{listen}/v1/credentials");

    // boto3, unchanged, through the container provider.
    let who = boto3_caller(
        &url,
        &env.token_file("web-0.token", &token),
        &env.moto.endpoint,
        env.dir.path(),
    );
    assert_eq!(who["method"], "container-role", "{who}");
    assert_eq!(
        who["arn"], "arn:aws:sts::123456789012:assumed-role/app-s3/app.web-0",
        "{who}"
    );

    // What STS was asked: EKS Pod Identity's tags, all transitive, the pod's session name.
    let calls = env.assume_roles();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call["RoleArn"], ROLE);
    assert_eq!(call["RoleSessionName"], "app.web-0");
    assert_eq!(call["DurationSeconds"], "3600");
    let tags: BTreeMap<&str, &str> = (1..=5)
        .map(|i| {
            (
                call[&format!("Tags.member.{i}.Key")].as_str(),
                call[&format!("Tags.member.{i}.Value")].as_str(),
            )
        })
        .collect();
    let expected: BTreeMap<&str, &str> = [
        ("eks-cluster-name", "prod"),
        ("kubernetes-namespace", "app"),
        ("kubernetes-service-account", "s3"),
        ("kubernetes-pod-name", "web-0"),
        ("kubernetes-pod-uid", uid.as_str()),
    ]
    .into();
    assert_eq!(tags, expected);
    assert!(!call.contains_key("Tags.member.6.Key"));
    let transitive: Vec<&str> = (1..=5)
        .map(|i| call[&format!("TransitiveTagKeys.member.{i}")].as_str())
        .collect();
    assert_eq!(
        transitive,
        [
            "eks-cluster-name",
            "kubernetes-namespace",
            "kubernetes-service-account",
            "kubernetes-pod-name",
            "kubernetes-pod-uid"
        ]
    );

    // 16 concurrent fetches for a new pod: one AssumeRole; all get the same session.
    let uid1 = env.pod("web-1", "s3", "node-a");
    let token1 = env.token("s3", "web-1", &uid1, AUD);
    let barrier = std::sync::Barrier::new(16);
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    get(port, &listen, "/v1/credentials", Some(&token1))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let keys: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(code, body)| {
            assert_eq!(*code, 200, "{body}");
            let v: Value = serde_json::from_str(body).unwrap();
            for field in [
                "AccessKeyId",
                "SecretAccessKey",
                "Token",
                "Expiration",
                "AccountId",
            ] {
                assert!(v[field].is_string(), "{field} in {v}");
            }
            v["AccessKeyId"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(keys.len(), 1, "one session for the pod");
    let web1 = env
        .assume_roles()
        .into_iter()
        .filter(|c| c["RoleSessionName"] == "app.web-1")
        .count();
    assert_eq!(web1, 1, "16 concurrent fetches, one AssumeRole");

    // Refusals: status and a one-line reason without the token.
    let refused = |host: &str, auth: Option<&str>| {
        let (code, body) = get(port, host, "/v1/credentials", auth);
        assert_eq!(body.trim_end().lines().count(), 1, "{body}");
        if let Some(a) = auth {
            assert!(a.len() < 8 || !body.contains(a), "the token is not echoed");
        }
        (code, body)
    };
    let (code, why) = refused(&listen, None);
    assert_eq!(code, 400);
    assert!(why.contains("no Authorization header"), "{why}");
    let (code, why) = refused(&listen, Some("Bearer not-a-token"));
    assert_eq!(code, 400);
    assert!(why.contains("not a ServiceAccount token"), "{why}");
    let (code, why) = refused("evil.example", Some(&token));
    assert_eq!(code, 400);
    assert!(why.contains("Host header"), "{why}");
    let (code, why) = refused(&format!("evil.example:{port}"), Some(&token));
    assert_eq!(code, 400, "{why}");
    let sts_audience = env.token("s3", "web-0", &uid, "sts.amazonaws.com");
    let (code, why) = refused(&listen, Some(&sts_audience));
    assert_eq!(code, 401);
    assert!(why.contains("did not accept the token"), "{why}");
    let uid2 = env.pod("other-0", "other", "node-a");
    let (code, why) = refused(&listen, Some(&env.token("other", "other-0", &uid2, AUD)));
    assert_eq!(code, 403);
    assert!(
        why.contains("ServiceAccount app/other has no role in the associations file"),
        "{why}"
    );

    // A deleted pod's token is refused within the stated bound (the API
    // server's token cache, then the broker's 10 s review cache).
    let before = env.assume_roles().len();
    let uid3 = env.pod("gone-0", "s3", "node-a");
    let token3 = env.token("s3", "gone-0", &uid3, AUD);
    assert_eq!(get(port, &listen, "/v1/credentials", Some(&token3)).0, 200);
    env.delete_pod("gone-0");
    let deleted = Instant::now();
    let (code, why) = loop {
        let (code, why) = get(port, &listen, "/v1/credentials", Some(&token3));
        if code != 200 || deleted.elapsed() > Duration::from_secs(60) {
            break (code, why);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "deleted pod's token refused after {:.1} s",
        deleted.elapsed().as_secs_f64()
    );
    assert_eq!(code, 401, "{why}");
    assert!(why.contains("did not accept the token"), "{why}");
    assert!(deleted.elapsed() < Duration::from_secs(30), "bound: 30 s");
    assert_eq!(
        env.assume_roles().len(),
        before + 1,
        "one session for gone-0, reused while it lived"
    );

    let log = env.log(port);
    assert!(
        !log.contains(&token) && !log.contains(&token1),
        "no token in the log"
    );
    for k in &keys {
        let secret_free = !log.contains(k.as_str());
        assert!(secret_free, "no access key in the log");
    }
    let (_, metrics) = get(port, &listen, "/metrics", None);
    assert!(
        metrics.contains("irsa_agent_sts_assume_role_total{kind=\"ok\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("irsa_agent_cache_lookups_total{cache=\"credentials\",result=\"hit\"}"),
        "{metrics}"
    );
}

#[test]
#[ignore = "needs kube-apiserver and etcd (the test bed) and moto_server; scripts/test runs it"]
fn node_agent_forwards_to_the_broker_over_tls_for_boto3_and_aws_sdk_rust() {
    let env = Env::start();
    let uid = env.pod("web-0", "s3", "node-a");
    let token = env.token("s3", "web-0", &uid, AUD);
    let broker = env.broker(&[]);
    let node = env.node(&broker, &[]);
    let (node_port, node_listen) = (node.port, node.listen.clone());
    let url = format!("http://{node_listen}/v1/credentials");
    let token_file = env.token_file("web-0.token", &token);
    let who = boto3_caller(&url, &token_file, &env.moto.endpoint, env.dir.path());
    assert_eq!(
        who["arn"], "arn:aws:sts::123456789012:assumed-role/app-s3/app.web-0",
        "{who}"
    );
    let (code, body) = get(node_port, &node_listen, "/v1/credentials", Some(&token));
    assert_eq!(code, 200);
    let session: Value = serde_json::from_str(&body).unwrap();

    // The broker's refusals come back through the node unchanged; the node
    // checks Host itself.
    let (code, why) = get(node_port, &node_listen, "/v1/credentials", None);
    assert_eq!(
        (code, why.contains("no Authorization header")),
        (400, true),
        "{why}"
    );
    let (code, why) = get(
        node_port,
        "attacker.example",
        "/v1/credentials",
        Some(&token),
    );
    assert_eq!((code, why.contains("Host header")), (400, true), "{why}");

    // aws-sdk-rust's default chain: a second agent gets its own AWS
    // credentials only from the container variables pointing at the node
    // agent, and signs its AssumeRole with the session the first one gave.
    let uid1 = env.pod("web-1", "s3", "node-a");
    let token1 = env.token("s3", "web-1", &uid1, AUD);
    let chained = env.serve(&[
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", url.clone()),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("AWS_ENDPOINT_URL_STS", env.moto.endpoint.clone()),
        ("AWS_REGION", "eu-west-1".into()),
        ("HOME", env.dir.path().display().to_string()),
    ]);
    let (second, second_listen) = (chained.port, chained.listen.clone());
    let (code, body) = get(second, &second_listen, "/v1/credentials", Some(&token1));
    assert_eq!(code, 200, "{body}\n{}", env.log(second));
    let signed_with = env
        .assume_roles()
        .into_iter()
        .find(|c| c["RoleSessionName"] == "app.web-1")
        .map(|c| c["_authorization"].clone())
        .unwrap_or_default();
    let key_id = session["AccessKeyId"].as_str().unwrap();
    assert!(
        signed_with.contains(&format!("Credential={key_id}/")),
        "{signed_with}"
    );
}

#[test]
#[ignore = "needs kube-apiserver and etcd (the test bed) and moto_server; scripts/test runs it"]
fn node_binding_refuses_a_token_relayed_through_another_nodes_agent() {
    let env = Env::start();
    let uid = env.pod("web-0", "s3", "node-a");
    let token = env.token("s3", "web-0", &uid, AUD);
    // The node agents' own pods and their tokens (the node audience).
    let node_aud = irsa_core::podidentity::NODE_AUDIENCE;
    let agent_a = env.pod("agent-a", "other", "node-a");
    let agent_b = env.pod("agent-b", "other", "node-b");
    let token_a = env.token_file(
        "agent-a.token",
        &env.token("other", "agent-a", &agent_a, node_aud),
    );
    let token_b = env.token_file(
        "agent-b.token",
        &env.token("other", "agent-b", &agent_b, node_aud),
    );
    // A pod's own token presented as a node token has the wrong audience.
    let web_as_node = env.token_file("web-as-node.token", &token);

    let broker = env.broker(&["--require-node-binding"]);
    let broker_port = broker.port;
    let node = |token_file: Option<&Path>| {
        let file = token_file.map(|f| f.display().to_string());
        let extra: Vec<&str> = file
            .as_deref()
            .map(|f| vec!["--node-token-file", f])
            .unwrap_or_default();
        let part = env.node(&broker, &extra);
        let (port, listen) = (part.port, part.listen.clone());
        (part, port, listen)
    };
    let (_a, port_a, listen_a) = node(Some(&token_a));
    let (_b, port_b, listen_b) = node(Some(&token_b));
    let (_none, port_none, listen_none) = node(None);
    let (_wrong, port_wrong, listen_wrong) = node(Some(&web_as_node));

    // Through its own node's agent: credentials.
    let (code, body) = get(port_a, &listen_a, "/v1/credentials", Some(&token));
    assert_eq!(code, 200, "{body}\n{}", env.log(broker_port));
    assert!(body.contains("AccessKeyId"), "{body}");

    // Relayed through another node's agent: refused, naming both nodes.
    let (code, why) = get(port_b, &listen_b, "/v1/credentials", Some(&token));
    assert_eq!(code, 403, "{why}");
    assert!(
        why.contains("runs on node \"node-a\"") && why.contains("node \"node-b\""),
        "{why}"
    );
    assert!(!why.contains(&token), "the token is not echoed");

    // Without a node token (a node agent without --node-token-file, or the
    // broker asked directly): refused, as this broker requires binding.
    let (code, why) = get(port_none, &listen_none, "/v1/credentials", Some(&token));
    assert_eq!(code, 403, "{why}");
    assert!(why.contains("requires node binding"), "{why}");

    // A pod's token is no node token (another audience).
    let (code, why) = get(port_wrong, &listen_wrong, "/v1/credentials", Some(&token));
    assert_eq!(code, 401, "{why}");
    assert!(why.contains("the node agent's token"), "{why}");

    // The node agent's pod deleted: its token no longer vouches for a node.
    env.delete_pod("agent-a");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (code, why) = get(port_a, &listen_a, "/v1/credentials", Some(&token));
        if code == 401 {
            assert!(why.contains("the node agent's token"), "{why}");
            break;
        }
        assert_eq!(code, 200, "{why}");
        assert!(
            Instant::now() < deadline,
            "a deleted node agent pod's token was still honoured after 40 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[ignore = "needs kube-apiserver and etcd (the test bed) and moto_server; scripts/test runs it"]
fn an_expired_token_is_refused_and_the_same_token_unexpired_is_served() {
    let env = Env::start();
    let uid = env.pod("web-0", "s3", "node-a");
    let sa_uid = env.rt.block_on(async {
        Api::<ServiceAccount>::namespaced(env.bed.client().await, "app")
            .get("s3")
            .await
            .unwrap()
            .metadata
            .uid
            .unwrap()
    });
    // Tokens as kube-apiserver issues them, signed with the bed's own key:
    // TokenRequest cannot issue one that lives under 10 minutes.
    let key = irsa_core::parse::parse_private_key(
        &std::fs::read(env.path("b/keys/sa-signer.key")).unwrap(),
    )
    .unwrap();
    let now = common::now();
    let mint = |exp: i64| {
        let claims = json!({
            "iss": ISSUER, "aud": [AUD], "sub": "system:serviceaccount:app:s3",
            "iat": exp - 3600, "nbf": exp - 3600, "exp": exp,
            "kubernetes.io": {
                "namespace": "app",
                "pod": {"name": "web-0", "uid": uid},
                "serviceaccount": {"name": "s3", "uid": sa_uid},
            },
        });
        irsa_core::jwt::sign(&key, irsa_core::Algorithm::RS256, &claims).unwrap()
    };
    let agent = env.serve(&env.aws_env());
    let (port, listen) = (agent.port, agent.listen.clone());
    // The positive control: the same claims, not expired, are served.
    let (code, body) = get(port, &listen, "/v1/credentials", Some(&mint(now + 3000)));
    assert_eq!(code, 200, "{body}\n{}", env.log(port));
    let expired = mint(now - 120);
    let (code, why) = get(port, &listen, "/v1/credentials", Some(&expired));
    assert_eq!(code, 401, "{why}");
    assert!(
        why.contains("did not accept the token") && why.contains("expired"),
        "{why}"
    );
    assert!(!why.contains(&expired), "the token is not echoed");
}

#[test]
#[ignore = "needs kube-apiserver and etcd (the test bed) and moto_server; scripts/test runs it"]
fn an_sts_outage_keeps_cached_sessions_and_answers_new_pods_with_an_error_not_a_hang() {
    let mut env = Env::start();
    let uid = env.pod("web-0", "s3", "node-a");
    let token = env.token("s3", "web-0", &uid, AUD);
    let uid1 = env.pod("web-1", "s3", "node-a");
    let token1 = env.token("s3", "web-1", &uid1, AUD);
    let agent = env.serve(&env.aws_env());
    let (port, listen) = (agent.port, agent.listen.clone());
    let (code, body) = get(port, &listen, "/v1/credentials", Some(&token));
    assert_eq!(code, 200, "{body}");
    let session: Value = serde_json::from_str(&body).unwrap();

    env.moto.kill();
    // The pod with a session keeps getting it.
    let (code, body) = get(port, &listen, "/v1/credentials", Some(&token));
    assert_eq!(code, 200, "{body}");
    let again: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(again["AccessKeyId"], session["AccessKeyId"]);
    // A new pod gets a 5xx the SDK retries, after the broker's own
    // bounded retries, not a hang.
    let start = Instant::now();
    let (code, why) = get(port, &listen, "/v1/credentials", Some(&token1));
    let took = start.elapsed();
    assert!((500..600).contains(&code), "{code} {why}");
    assert_eq!(why.trim_end().lines().count(), 1, "{why}");
    assert!(!why.contains(&token1), "the token is not echoed");
    assert!(took < Duration::from_secs(30), "answered after {took:?}");
    println!("STS down: a new pod's fetch answered {code} after {took:?}: {why}");
}

/// From irsa.yaml to a pod's credentials: `irsa init`, `irsa bind
/// --pod-identity`, `irsa apply` (moto), `irsa agent manifests`; the agent
/// reads the associations that rendered, boto3 in the "pod" (its
/// container-credentials variables and a pod-bound token) gets the role's
/// session, and the trust policy apply stored in IAM admits exactly the
/// request the agent made, judged as STS does (moto does not evaluate trust).
#[test]
#[ignore = "needs kube-apiserver and etcd (the test bed) and moto_server; scripts/test runs it"]
fn irsa_yaml_to_pod_credentials_through_the_roles_and_associations_it_rendered() {
    let env = Env::start();
    let bundle = env.path("bundle");
    std::fs::create_dir(&bundle).unwrap();
    let ok = common::succeeded;
    ok(common::init_prod(&bundle, &[]));
    ok(common::run_in(
        &bundle,
        &[
            "bind",
            "-f",
            "irsa.yaml",
            "--namespace",
            "app",
            "--service-account",
            "s3",
            "--policy-arn",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "--pod-identity",
            "--no-plan",
        ],
    ));
    ok(env.moto.run_in(&bundle, &["apply", "--auto-approve"]));
    ok(env.moto.run_in(
        &bundle,
        &["agent", "manifests", "-f", "irsa.yaml", "-o", "k8s"],
    ));
    let cm: Value = serde_yaml::from_str(
        &std::fs::read_to_string(bundle.join("k8s/base/associations.yaml")).unwrap(),
    )
    .unwrap();
    let associations = cm["data"]["associations.json"].as_str().unwrap();
    assert!(
        associations.contains("arn:aws:iam::123456789012:role/irsa/prod/prod-app-s3"),
        "{associations}"
    );
    std::fs::write(env.path("associations.json"), associations).unwrap();

    // The webhook reads the same associations and mutates the pod the
    // API server stores.
    let config = format!(
        "--watch-container-credentials-config={}",
        env.path("associations.json").display()
    );
    let webhook = common::webhook::Webhook::start(
        env.dir.path(),
        &env.bed.kubeconfig,
        common::webhook::Options {
            flags: &[&config],
            ..Default::default()
        },
    );
    env.rt.block_on(webhook.ready());
    let port = webhook.port;
    env.rt.block_on(async {
        common::testbed::register_webhook(
            &env.bed.client().await,
            common::testbed::WebhookRegistration {
                name: "irsa-e2e",
                port,
                ca_pem: std::fs::read(env.path("certs/ca.crt")).unwrap(),
                timeout_seconds: 5,
                reinvocation: None,
            },
        )
        .await;
    });
    // The apiserver picks up webhook configurations asynchronously: the
    // first pod stored with the variables is the one the test uses.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (pod_name, uid, stored) = (0..)
        .find_map(|i| {
            assert!(Instant::now() < deadline, "the webhook never mutated a pod");
            let name = format!("api-{i}");
            let uid = env.pod(&name, "s3", "node-a");
            let stored: Value = env.rt.block_on(async {
                let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(
                    env.bed.client().await,
                    "app",
                );
                serde_json::to_value(pods.get(&name).await.unwrap()).unwrap()
            });
            let env_vars = stored["spec"]["containers"][0]["env"].clone();
            if env_vars
                .to_string()
                .contains("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            {
                Some((name, uid, stored))
            } else {
                std::thread::sleep(Duration::from_millis(300));
                None
            }
        })
        .unwrap();
    let var = |n: &str| -> String {
        stored["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("{n} in {stored}"))
            .to_string()
    };
    let full_uri = var("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    assert_eq!(full_uri, "http://169.254.170.23/v1/credentials");
    assert!(var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").ends_with("eks-pod-identity-token"));
    let audience = stored["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v["projected"]["sources"][0]["serviceAccountToken"]["audience"].as_str())
        .unwrap()
        .to_string();
    assert_eq!(audience, AUD);
    // The kubelet's part: a token for the pod with the volume's audience.
    let token = env.token("s3", &pod_name, &uid, &audience);
    let agent = env.serve(&env.aws_env());
    // The pod's URI, on the agent's test address instead of the node's
    // link-local one.
    let who = boto3_caller(
        &full_uri.replace("169.254.170.23", &agent.listen),
        &env.token_file("api.token", &token),
        &env.moto.endpoint,
        env.dir.path(),
    );
    assert_eq!(who["method"], "container-role", "{who}");
    assert_eq!(
        who["arn"], "arn:aws:sts::123456789012:assumed-role/prod-app-s3/app.api-0",
        "{who}"
    );

    // The request the agent made, against the trust irsa apply stored.
    let calls = env.assume_roles();
    let call = calls.last().unwrap();
    let request_tags: BTreeMap<String, String> = (1..=5)
        .map(|i| {
            (
                call[&format!("Tags.member.{i}.Key")].clone(),
                call[&format!("Tags.member.{i}.Value")].clone(),
            )
        })
        .collect();
    let ctl = common::moto::Ctl::new(&env.moto);
    let stored = ctl.py("print(json.dumps(iam.get_role(RoleName='prod-app-s3')['Role']['AssumeRolePolicyDocument']))");
    let stored: Value = serde_json::from_str(&stored).unwrap();
    let stored = match stored {
        Value::String(s) => serde_json::from_str(&s).unwrap(),
        v => v,
    };
    let trust = irsa_core::trust::TrustPolicy::from(stored);
    let broker = "arn:aws:iam::123456789012:role/irsa/prod/prod-irsa-agent-broker";
    let broker_tags: BTreeMap<String, String> = serde_json::from_str::<Vec<(String, String)>>(&ctl.py(
        "print(json.dumps([(t['Key'], t['Value']) for t in iam.list_role_tags(RoleName='prod-irsa-agent-broker')['Tags']]))",
    ))
    .unwrap()
    .into_iter()
    .collect();
    let judge = |tags: &BTreeMap<String, String>| {
        irsa_core::podidentity::evaluate_assume(
            &trust,
            &irsa_core::podidentity::AssumeRequest {
                principal: broker,
                principal_tags: &broker_tags,
                request_tags: tags,
            },
        )
    };
    assert_eq!(judge(&request_tags), Ok(()));
    // The same request for another ServiceAccount would be refused by STS.
    let mut other = request_tags.clone();
    other.insert("kubernetes-service-account".into(), "other".into());
    assert!(judge(&other).is_err());
}

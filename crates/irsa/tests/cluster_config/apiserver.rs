//! The rendered `flags` on a real kube-apiserver (the test bed): it
//! gets exactly the service-account flags irsa printed, and its tokens
//! verify with the JWKS irsa rendered.

use irsa_core::jwt;
use irsa_core::key::Algorithm;
use irsa_core::parse::parse_private_key;
use irsa_core::PrivateKey;
use k8s_openapi::api::authentication::v1::{
    TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::json;

use super::*;
use common::testbed::Testbed;

const NS: &str = "irsa-cc";
const SA: &str = "app";
/// kubeadm's default issuer, kept second as a running cluster would.
const OLD_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

async fn token_request(client: &kube::Client, audiences: &[&str]) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    sas.create_token_request(SA, &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("status")
        .token
}

/// Whether the apiserver authenticates `token` (TokenReview with its own audiences).
async fn authenticated(client: &kube::Client, token: &str) -> Option<String> {
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: None,
        },
        ..Default::default()
    };
    let status = reviews
        .create(&PostParams::default(), &review)
        .await
        .expect("TokenReview")
        .status
        .expect("status");
    if status.authenticated == Some(true) {
        status.user.and_then(|u| u.username)
    } else {
        None
    }
}

/// A bound service-account token as kube-apiserver would make it, signed by `key`.
fn forge(key: &PrivateKey, issuer: &str, uid: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({
        "iss": issuer, "aud": [issuer], "sub": format!("system:serviceaccount:{NS}:{SA}"),
        "iat": now, "nbf": now, "exp": now + 600,
        "kubernetes.io": {"namespace": NS, "serviceaccount": {"name": SA, "uid": uid}}
    });
    jwt::sign(key, Algorithm::RS256, &claims).expect("signs")
}

/// One bed at a time in this binary (each costs ~250 MB and a CPU for seconds).
static BED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Creates namespace NS and ServiceAccount SA, returning the SA's uid.
async fn service_account(client: &kube::Client) -> String {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(NS.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(SA.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    sas.create(&PostParams::default(), &sa)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap()
}

/// The service-account flags kube-apiserver really runs with.
fn running_flags(bed: &Testbed) -> Vec<String> {
    let pid = bed.apiserver_pid();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    String::from_utf8(cmdline)
        .unwrap()
        .split('\0')
        .filter(|a| a.starts_with("--service-account-") || a.starts_with("--api-audiences"))
        .filter(|a| !a.starts_with("--service-account-lookup"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver and etcd (KUBEBUILDER_ASSETS or PATH): scripts/test runs it"]
async fn flags_run_a_real_apiserver_whose_tokens_verify_with_the_rendered_jwks() {
    let _one_bed = BED.lock().await;
    let t = tempdir();
    let d = t.path();
    let b = bundle(d, true);
    let next_kid = b.next_kid.clone().unwrap();
    // Key files where the bundle keeps them, so the rendered paths are real files.
    let key_dir = b.path("keys");
    let text = ok(
        &b,
        &[
            "--flavour",
            "flags",
            "--key-dir",
            key_dir.to_str().unwrap(),
            "--previous-issuer",
            OLD_ISSUER,
        ],
    );
    let flags = parse_flags(&text);
    let api = "kube-apiserver.flags";
    let issuers = flag_values(&flags, api, "service-account-issuer");
    let key_files = flag_values(&flags, api, "service-account-key-file");
    let signing = flag_values(&flags, api, "service-account-signing-key-file");
    let audiences = flag_values(&flags, api, "api-audiences");
    assert_eq!(issuers, [ISSUER, OLD_ISSUER]);
    assert_eq!(key_files.len(), 2, "active and next: {key_files:?}");
    assert_eq!(signing.len(), 1);
    assert_eq!(audiences.len(), 1);
    assert_eq!(
        flag_values(
            &flags,
            "kube-controller-manager.flags",
            "service-account-private-key-file"
        ),
        signing
    );
    assert_eq!(flags.len(), 7, "nothing else rendered: {flags:?}");

    // Map the rendered flags onto the bed: the first issuer through SA_ISSUER,
    // the others appended after it (the bed passes EXTRA_APISERVER_ARGS last).
    let extra: Vec<String> = issuers[1..]
        .iter()
        .map(|i| format!("--service-account-issuer={i}"))
        .collect();
    let env = [
        ("SA_ISSUER", issuers[0].to_string()),
        ("EXTRA_APISERVER_ARGS", extra.join(" ")),
        ("SA_KEY_FILES", key_files.join(",")),
        ("SA_SIGNING_KEY", signing[0].to_string()),
        ("API_AUDIENCES", audiences[0].to_string()),
    ];
    let bed = Testbed::start_with(d, &env);
    // The apiserver runs with exactly the rendered service-account flags, in order.
    let mut want: Vec<String> = flags
        .iter()
        .filter(|(f, _, _)| f == api)
        .map(|(_, n, v)| format!("--{n}={v}"))
        .collect();
    let mut running = running_flags(&bed);
    want.sort();
    running.sort();
    assert_eq!(running, want);
    let order: Vec<String> = running_flags(&bed)
        .into_iter()
        .filter(|a| a.starts_with("--service-account-issuer="))
        .collect();
    assert_eq!(
        order,
        [
            format!("--service-account-issuer={ISSUER}"),
            format!("--service-account-issuer={OLD_ISSUER}")
        ]
    );

    let client = bed.client().await;
    let uid = service_account(&client).await;

    // 1. A token for STS verifies with the JWKS irsa rendered, as `irsa token verify` checks it.
    let token = token_request(&client, &["sts.amazonaws.com"]).await;
    std::fs::write(d.join("token"), &token).unwrap();
    let jwks_file = b.path("issuer/openid/v1/jwks");
    let out = run_in(
        d,
        &[
            "token",
            "verify",
            "--jwks",
            jwks_file.to_str().unwrap(),
            "--issuer",
            ISSUER,
            "--audience",
            "sts.amazonaws.com",
            "--output",
            "json",
            "token",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let verified = json(&out.stdout);
    assert_eq!(verified["valid"], true);
    assert_eq!(verified["token"]["claims"]["iss"], ISSUER);
    assert_eq!(
        verified["token"]["claims"]["sub"],
        format!("system:serviceaccount:{NS}:{SA}")
    );
    let kid = verified["token"]["header"]["kid"].as_str().unwrap();
    let jwks = json(&std::fs::read(&jwks_file).unwrap());
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&kid), "kid {kid} not in the JWKS {kids:?}");

    // 2. Only the active key signs; the next key is published but unused.
    assert_eq!(kid, b.active_kid);
    assert_ne!(kid, next_kid);
    assert!(kids.contains(&next_kid.as_str()));

    // 3. The next key is listed for verification: a token it signs authenticates.
    let next = parse_private_key(&std::fs::read(b.path("keys/next.key")).unwrap()).unwrap();
    let user = format!("system:serviceaccount:{NS}:{SA}");
    assert_eq!(
        authenticated(&client, &forge(&next, ISSUER, &uid)).await,
        Some(user.clone()),
        "the apiserver does not verify with the next key"
    );
    // ... while a key irsa does not list does not (so the check above means something).
    let stranger = PrivateKey::generate(Algorithm::RS256, 2048).unwrap();
    assert_eq!(
        authenticated(&client, &forge(&stranger, ISSUER, &uid)).await,
        None
    );
    // The previous issuer is still accepted.
    let active = parse_private_key(&std::fs::read(b.path("keys/sa-signer.key")).unwrap()).unwrap();
    assert_eq!(
        authenticated(&client, &forge(&active, OLD_ISSUER, &uid)).await,
        Some(user.clone())
    );

    // 4. --api-audiences stayed the apiserver's own: the STS token is no API credential,
    //    and a default token (no audience asked) is for the issuers, not for STS.
    assert_eq!(authenticated(&client, &token).await, None);
    let default_token = token_request(&client, &[]).await;
    let claims = jwt::decode(&default_token).unwrap().claims;
    assert_eq!(claims["aud"], json!([ISSUER, OLD_ISSUER]));
    assert_eq!(authenticated(&client, &default_token).await, Some(user));
    drop(bed);
}

/// The kubeadm choice, on a real apiserver: one `--service-account-key-file`
/// naming the PEM bundle makes kube-apiserver verify with every key in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver and etcd (KUBEBUILDER_ASSETS or PATH): scripts/test runs it"]
async fn kubeadm_key_bundle_is_read_whole_by_kube_apiserver() {
    let _one_bed = BED.lock().await;
    let t = tempdir();
    let d = t.path();
    let b = bundle(d, true);
    let out = d.join("kubeadm");
    let pki = out.join("pki");
    ok(
        &b,
        &[
            "--flavour",
            "kubeadm",
            "-o",
            out.to_str().unwrap(),
            "--key-dir",
            pki.to_str().unwrap(),
        ],
    );
    let config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(out.join("kubeadm-config.yaml")).unwrap())
            .unwrap();
    let arg = |name: &str| {
        config["apiServer"]["extraArgs"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name}"))
            .to_string()
    };
    let env = [
        ("SA_ISSUER", arg("service-account-issuer")),
        ("SA_KEY_FILES", arg("service-account-key-file")),
        ("SA_SIGNING_KEY", arg("service-account-signing-key-file")),
        ("API_AUDIENCES", arg("api-audiences")),
    ];
    assert!(
        !env[1].1.contains(','),
        "one file, not a list: {}",
        env[1].1
    );
    let bed = Testbed::start_with(d, &env);
    let client = bed.client().await;
    let uid = service_account(&client).await;
    let user = Some(format!("system:serviceaccount:{NS}:{SA}"));
    for key in ["keys/sa-signer.key", "keys/next.key"] {
        let key = parse_private_key(&std::fs::read(b.path(key)).unwrap()).unwrap();
        assert_eq!(
            authenticated(&client, &forge(&key, ISSUER, &uid)).await,
            user,
            "a key in the bundle is not used for verification"
        );
    }
    let token = token_request(&client, &["sts.amazonaws.com"]).await;
    let header = jwt::decode(&token).unwrap().header;
    assert_eq!(header["kid"], b.active_kid.as_str());
    drop(bed);
}

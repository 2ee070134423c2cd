//! Rendering checked by parsing the output back, one test per behaviour.
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use serde_yaml::Value;

use super::*;
use crate::key::Algorithm;
use crate::parse::{parse_keys, parse_private_key};

const ISSUER: &str = "https://irsa-demo-oidc.s3.us-east-1.amazonaws.com/demo";

fn keys() -> &'static (PrivateKey, PrivateKey) {
    static KEYS: OnceLock<(PrivateKey, PrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            PrivateKey::generate(Algorithm::RS256, 2048).unwrap(),
            PrivateKey::generate(Algorithm::RS256, 2048).unwrap(),
        )
    })
}

fn copy(key: &PrivateKey) -> PrivateKey {
    parse_private_key(key.to_pem().as_bytes()).unwrap()
}

/// Inputs with the active key (and the next key when `next`).
fn inputs(flavour: Flavour, next: bool) -> Inputs {
    let (active, upcoming) = keys();
    let mut verify = vec![VerifyKey {
        source: "keys/sa-signer.pub".into(),
        key: active.public_key().clone(),
        state: KeyState::Active,
        algorithm: Algorithm::RS256,
    }];
    if next {
        verify.push(VerifyKey {
            source: "keys/next.pub".into(),
            key: upcoming.public_key().clone(),
            state: KeyState::Next,
            algorithm: Algorithm::RS256,
        });
    }
    Inputs {
        flavour,
        cluster: "demo".into(),
        namespace: None,
        issuers: Issuers::new(IssuerUrl::parse(ISSUER).unwrap(), &[]).unwrap(),
        verify,
        signing: Some(SigningKey {
            source: "keys/sa-signer.key".into(),
            key: copy(active),
        }),
        retired: 0,
        key_dir: None,
        kubeadm_api: KubeadmApi::V1beta3,
        host_key_dir: None,
    }
}

fn with_previous(mut i: Inputs, previous: &str) -> Inputs {
    i.issuers = Issuers::new(IssuerUrl::parse(ISSUER).unwrap(), &[previous.into()]).unwrap();
    i
}

fn doc<'a>(r: &'a Rendered, name: &str) -> &'a Document {
    r.documents
        .iter()
        .find(|d| d.file_name == name)
        .unwrap_or_else(|| panic!("no document {name}"))
}

fn yaml(d: &Document) -> Value {
    serde_yaml::from_str(&d.content).unwrap()
}

/// `--name=value` lines as pairs.
fn flag_pairs(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| {
            let (n, v) = l.strip_prefix("--").unwrap().split_once('=').unwrap();
            (n.to_string(), v.to_string())
        })
        .collect()
}

fn values<'a>(flags: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    flags
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn flags_list_every_non_retired_key_and_sign_with_the_active_one() {
    let mut i = inputs(Flavour::Flags, true);
    i.retired = 1;
    let r = render(&i).unwrap();
    let api = flag_pairs(&doc(&r, "kube-apiserver.flags").content);
    assert_eq!(values(&api, "service-account-issuer"), [ISSUER]);
    assert_eq!(
        values(&api, "service-account-key-file"),
        [
            "/etc/kubernetes/pki/irsa/sa-signer.pub",
            "/etc/kubernetes/pki/irsa/next.pub"
        ]
    );
    assert_eq!(
        values(&api, "service-account-signing-key-file"),
        ["/etc/kubernetes/pki/irsa/sa-signer.key"]
    );
    // The apiserver's own audience, never STS's.
    assert_eq!(values(&api, "api-audiences"), [ISSUER]);
    let cm = flag_pairs(&doc(&r, "kube-controller-manager.flags").content);
    assert_eq!(
        cm,
        [(
            "service-account-private-key-file".to_string(),
            "/etc/kubernetes/pki/irsa/sa-signer.key".to_string()
        )]
    );
    // Node files: the private key (0600) and each public key, same content as the keys.
    let names: Vec<(&str, bool)> = r
        .node_files
        .iter()
        .map(|f| (f.name.as_str(), f.private))
        .collect();
    assert_eq!(
        names,
        [
            ("sa-signer.key", true),
            ("sa-signer.pub", false),
            ("next.pub", false)
        ]
    );
    let signer = parse_private_key(r.node_files[0].content.as_bytes()).unwrap();
    assert_eq!(signer.public_key(), keys().0.public_key());
    assert!(r.notes.iter().any(|n| n.contains("1 retired key(s)")));
    assert!(!r.documents.iter().any(|d| d.private));
}

#[test]
fn previous_issuers_come_after_the_new_one_and_stay_audiences() {
    let old = "https://kubernetes.default.svc.cluster.local";
    let mut i = with_previous(inputs(Flavour::Flags, false), old);
    i.key_dir = Some("/srv/keys/".into());
    let r = render(&i).unwrap();
    let api = flag_pairs(&doc(&r, "kube-apiserver.flags").content);
    assert_eq!(values(&api, "service-account-issuer"), [ISSUER, old]);
    assert_eq!(
        values(&api, "api-audiences"),
        [format!("{ISSUER},{old}").as_str()]
    );
    assert_eq!(
        values(&api, "service-account-key-file"),
        ["/srv/keys/sa-signer.pub"]
    );
}

#[test]
fn bad_previous_issuers_are_refused() {
    let url = IssuerUrl::parse(ISSUER).unwrap();
    for bad in ["a,b", ISSUER, "", "has space", "foo:bar"] {
        let err = Issuers::new(url.clone(), &[bad.into()]).unwrap_err();
        assert!(
            matches!(err, ClusterError::PreviousIssuer { .. }),
            "{bad}: {err}"
        );
    }
}

#[test]
fn kubeadm_v1beta3_bundles_the_keys_in_one_file() {
    let r = render(&inputs(Flavour::Kubeadm, true)).unwrap();
    let v = yaml(doc(&r, "kubeadm-config.yaml"));
    assert_eq!(v["apiVersion"], "kubeadm.k8s.io/v1beta3");
    assert_eq!(v["kind"], "ClusterConfiguration");
    let args = &v["apiServer"]["extraArgs"];
    assert_eq!(
        args["service-account-key-file"],
        "/etc/kubernetes/pki/irsa/service-account-keys.pem"
    );
    assert_eq!(args["service-account-issuer"], ISSUER);
    assert_eq!(args["api-audiences"], ISSUER);
    assert_eq!(
        v["controllerManager"]["extraArgs"]["service-account-private-key-file"],
        "/etc/kubernetes/pki/irsa/sa-signer.key"
    );
    for component in ["apiServer", "controllerManager"] {
        let vol = &v[component]["extraVolumes"][0];
        assert_eq!(vol["hostPath"], "/etc/kubernetes/pki/irsa");
        assert_eq!(vol["mountPath"], "/etc/kubernetes/pki/irsa");
        assert_eq!(vol["readOnly"], true);
    }
    let bundle = r
        .node_files
        .iter()
        .find(|f| f.name == KEY_BUNDLE_FILE)
        .unwrap();
    let found: Vec<PublicKey> = parse_keys(bundle.content.as_bytes())
        .unwrap()
        .into_iter()
        .map(|k| k.public)
        .collect();
    assert_eq!(
        found,
        [keys().0.public_key().clone(), keys().1.public_key().clone()]
    );
}

#[test]
fn kubeadm_issuer_lists_need_v1beta4_and_the_right_sort_order() {
    let old = "https://kubernetes.default.svc.cluster.local";
    let err = render(&with_previous(inputs(Flavour::Kubeadm, false), old)).unwrap_err();
    assert!(matches!(err, ClusterError::SingleIssuer { .. }), "{err}");
    assert!(err.to_string().contains("--kubeadm-api v1beta4"), "{err}");

    let mut i = with_previous(inputs(Flavour::Kubeadm, false), old);
    i.kubeadm_api = KubeadmApi::V1beta4;
    let r = render(&i).unwrap();
    let v = yaml(doc(&r, "kubeadm-config.yaml"));
    assert_eq!(v["apiVersion"], "kubeadm.k8s.io/v1beta4");
    let issuers: Vec<&str> = v["apiServer"]["extraArgs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == "service-account-issuer")
        .map(|a| a["value"].as_str().unwrap())
        .collect();
    assert_eq!(issuers, [ISSUER, old]);

    // kubeadm sorts by value: an old issuer sorting first would sign.
    let mut i = with_previous(inputs(Flavour::Kubeadm, false), "https://aaa.example");
    i.kubeadm_api = KubeadmApi::V1beta4;
    let err = render(&i).unwrap_err();
    assert!(matches!(err, ClusterError::IssuerOrder { .. }), "{err}");
}

#[test]
fn kind_mounts_the_host_directory_and_patches_kubeadm() {
    let err = render(&inputs(Flavour::Kind, false)).unwrap_err();
    assert!(err.to_string().contains("--host-key-dir"), "{err}");
    let mut i = inputs(Flavour::Kind, false);
    i.host_key_dir = Some("/home/me/out/pki".into());
    let r = render(&i).unwrap();
    let v = yaml(doc(&r, "kind-config.yaml"));
    assert_eq!(v["apiVersion"], "kind.x-k8s.io/v1alpha4");
    let node = &v["nodes"][0];
    assert_eq!(node["role"], "control-plane");
    assert_eq!(node["extraMounts"][0]["hostPath"], "/home/me/out/pki");
    assert_eq!(
        node["extraMounts"][0]["containerPath"],
        "/etc/kubernetes/pki/irsa"
    );
    let patch: Value =
        serde_yaml::from_str(node["kubeadmConfigPatches"][0].as_str().unwrap()).unwrap();
    assert_eq!(patch["kind"], "ClusterConfiguration");
    assert_eq!(
        patch["apiServer"]["extraArgs"]["service-account-issuer"],
        ISSUER
    );
}

#[test]
fn vks_secret_is_named_after_the_cluster_and_holds_the_pair() {
    let err = render(&inputs(Flavour::Vks, false)).unwrap_err();
    assert!(err.to_string().contains("--namespace"), "{err}");
    let mut i = inputs(Flavour::Vks, false);
    i.namespace = Some("aws-irsa-ns".into());
    i.cluster = "Prod_1".into();
    assert!(matches!(render(&i).unwrap_err(), ClusterError::Name { .. }));
    i.cluster = "demo".into();
    let r = render(&i).unwrap();
    let d = doc(&r, "demo-sa-secret.yaml");
    assert!(d.private);
    let secret: k8s_openapi::api::core::v1::Secret = serde_yaml::from_str(&d.content).unwrap();
    assert_eq!(secret.metadata.name.as_deref(), Some("demo-sa"));
    assert_eq!(secret.metadata.namespace.as_deref(), Some("aws-irsa-ns"));
    assert_eq!(secret.type_.as_deref(), Some("cluster.x-k8s.io/secret"));
    let data = secret.data.unwrap();
    let private = parse_private_key(&data["tls.key"].0).unwrap();
    assert_eq!(private.public_key(), keys().0.public_key());
    let public = parse_keys(&data["tls.crt"].0).unwrap();
    assert!(public[0].private.is_none());
    assert_eq!(&public[0].public, keys().0.public_key());
    let patch: serde_json::Value =
        serde_json::from_str(&doc(&r, "clusterclass-patch.json").content).unwrap();
    assert_eq!(
        patch[1]["value"]["definitions"][0]["jsonPatches"][0]["valueFrom"]["variable"],
        "serviceAccountIssuer"
    );
    let vars = yaml(doc(&r, "cluster-variables.yaml"));
    assert_eq!(vars["spec"]["topology"]["variables"][0]["value"], ISSUER);
}

#[test]
fn talos_carries_the_base64_pem_and_one_issuer() {
    let r = render(&inputs(Flavour::Talos, true)).unwrap();
    let d = doc(&r, "talos-controlplane-patch.yaml");
    assert!(d.private);
    let v = yaml(d);
    let pem =
        crate::b64::decode_std(v["cluster"]["serviceAccount"]["key"].as_str().unwrap()).unwrap();
    assert_eq!(
        parse_private_key(&pem).unwrap().public_key(),
        keys().0.public_key()
    );
    assert_eq!(
        v["cluster"]["apiServer"]["extraArgs"]["service-account-issuer"],
        ISSUER
    );
    assert!(r.notes.iter().any(|n| n.contains("keys/next.pub")));
    let err = render(&with_previous(inputs(Flavour::Talos, false), "https://old")).unwrap_err();
    assert!(matches!(err, ClusterError::SingleIssuer { .. }), "{err}");
}

#[test]
fn eks_anywhere_needs_no_private_key() {
    let mut i = inputs(Flavour::EksAnywhere, false);
    i.signing = None;
    let r = render(&i).unwrap();
    let v = yaml(doc(&r, "eks-anywhere-cluster.yaml"));
    assert_eq!(v["apiVersion"], "anywhere.eks.amazonaws.com/v1alpha1");
    assert_eq!(v["spec"]["podIamConfig"]["serviceAccountIssuer"], ISSUER);
    assert!(r.node_files.is_empty());
}

#[test]
fn k3s_leaves_api_audiences_alone_and_rke2_mounts_the_keys() {
    let r = render(&inputs(Flavour::K3s, false)).unwrap();
    let v = yaml(doc(&r, "k3s-config.yaml"));
    let args: Vec<&str> = v["kube-apiserver-arg"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"service-account-key-file=/etc/rancher/k3s/irsa/sa-signer.pub"));
    assert!(!args.iter().any(|a| a.starts_with("api-audiences")));
    assert!(v.get("kube-apiserver-extra-mount").is_none());
    let r = render(&inputs(Flavour::Rke2, false)).unwrap();
    let v = yaml(doc(&r, "rke2-config.yaml"));
    assert_eq!(
        v["kube-apiserver-extra-mount"][0],
        "/etc/rancher/rke2/irsa:/etc/rancher/rke2/irsa:ro"
    );
}

#[test]
fn missing_or_wrong_signing_keys_are_explained() {
    let mut i = inputs(Flavour::Flags, false);
    i.signing = None;
    let err = render(&i).unwrap_err();
    assert!(err.to_string().contains("keys/sa-signer.pub"), "{err}");
    assert!(err.to_string().contains("privateKey"), "{err}");

    let mut i = inputs(Flavour::Kubeadm, false);
    i.signing = Some(SigningKey {
        source: "keys/other.key".into(),
        key: copy(&keys().1),
    });
    assert!(matches!(
        render(&i).unwrap_err(),
        ClusterError::KeyMismatch { .. }
    ));

    let mut i = inputs(Flavour::Flags, false);
    i.verify[0].algorithm = Algorithm::RS384;
    assert!(matches!(
        render(&i).unwrap_err(),
        ClusterError::SigningAlgorithm { .. }
    ));
}

#[test]
fn key_directories_are_checked() {
    let mut i = inputs(Flavour::Flags, false);
    i.key_dir = Some("etc/keys".into());
    assert!(matches!(
        render(&i).unwrap_err(),
        ClusterError::KeyDir { .. }
    ));
    let mut i = inputs(Flavour::Talos, false);
    i.key_dir = Some("/etc/keys".into());
    assert!(matches!(
        render(&i).unwrap_err(),
        ClusterError::NotApplicable { .. }
    ));
    let mut i = inputs(Flavour::Flags, true);
    i.verify[1].source = "other/sa-signer.pub".into();
    assert!(matches!(
        render(&i).unwrap_err(),
        ClusterError::DuplicateFileName { .. }
    ));
}

//! Platforms that deliver the signing key themselves: VMware VKS (Cluster
//! API), EKS Anywhere and Talos. They take the issuer as a single value and
//! the key as one pair, so none of them can list a `next` key for the
//! apiserver to verify with.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use serde_json::json;
use zeroize::{Zeroize, Zeroizing};

use super::{
    check_dns_label, keys_note, signing, to_yaml, ClusterError, DocFormat, Document, Flavour,
    Inputs, Rendered,
};
use crate::config::KeyState;

/// The Cluster API secret type of the `{cluster}-sa` Secret.
pub const CAPI_SECRET_TYPE: &str = "cluster.x-k8s.io/secret";
/// The label tying a Cluster API secret to its cluster.
pub const CAPI_CLUSTER_LABEL: &str = "cluster.x-k8s.io/cluster-name";
/// The ClusterClass variable carrying the issuer.
pub const VKS_VARIABLE: &str = "serviceAccountIssuer";

fn single_issuer(
    inputs: &Inputs,
    how: &'static str,
    fix: &'static str,
) -> Result<(), ClusterError> {
    if inputs.issuers.previous().is_empty() {
        return Ok(());
    }
    Err(ClusterError::SingleIssuer {
        flavour: inputs.flavour,
        how,
        previous: inputs.issuers.previous().to_vec(),
        fix,
    })
}

fn next_keys(inputs: &Inputs) -> Vec<String> {
    inputs
        .verify
        .iter()
        .filter(|k| matches!(k.state, KeyState::Next | KeyState::Previous))
        .map(|k| k.source.clone())
        .collect()
}

/// `--flavour vks`.
pub(super) fn vks(inputs: &Inputs) -> Result<Rendered, ClusterError> {
    check_dns_label("VKS cluster name", &inputs.cluster)?;
    let Some(namespace) = inputs.namespace.as_deref() else {
        return Err(ClusterError::Missing {
            flavour: Flavour::Vks,
            what: "the cluster's namespace",
            fix: "pass --namespace <vSphere Namespace the Cluster is created in>; the {cluster}-sa Secret must be in the same namespace",
        });
    };
    check_dns_label("namespace", namespace)?;
    single_issuer(
        inputs,
        "the ClusterClass variable serviceAccountIssuer is one string",
        "a VKS cluster gets its issuer when it is created; drop --previous-issuer",
    )?;
    let sign = signing(inputs)?;
    let issuer = inputs.issuers.current().as_str();
    let cluster = &inputs.cluster;

    let class_patch = json!([
        {"op": "add", "path": "/spec/variables/-", "value": {
            "name": VKS_VARIABLE,
            "required": true,
            "schema": {"openAPIV3Schema": {
                "type": "string",
                "pattern": "^https://",
                "description": "kube-apiserver --service-account-issuer (irsa)"
            }}
        }},
        {"op": "add", "path": "/spec/patches/-", "value": {
            "name": "irsa-service-account-issuer",
            "definitions": [{
                "selector": {
                    "apiVersion": "controlplane.cluster.x-k8s.io/v1beta1",
                    "kind": "KubeadmControlPlaneTemplate",
                    "matchResources": {"controlPlane": true}
                },
                "jsonPatches": [{
                    "op": "add",
                    "path": "/spec/template/spec/kubeadmConfigSpec/clusterConfiguration/apiServer/extraArgs/service-account-issuer",
                    "valueFrom": {"variable": VKS_VARIABLE}
                }]
            }]
        }}
    ]);
    let variables = json!({
        "apiVersion": "cluster.x-k8s.io/v1beta1",
        "kind": "Cluster",
        "metadata": {"name": cluster, "namespace": namespace},
        "spec": {"topology": {"variables": [{"name": VKS_VARIABLE, "value": issuer}]}}
    });

    let mut data = BTreeMap::new();
    data.insert(
        "tls.crt".to_string(),
        ByteString(sign.key.public_key().to_pem().into_bytes()),
    );
    data.insert(
        "tls.key".to_string(),
        ByteString(sign.key.to_pem().as_bytes().to_vec()),
    );
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: Some(format!("{cluster}-sa")),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                CAPI_CLUSTER_LABEL.to_string(),
                cluster.clone(),
            )])),
            ..Default::default()
        },
        type_: Some(CAPI_SECRET_TYPE.into()),
        data: Some(data),
        ..Default::default()
    };
    let secret_yaml = to_yaml("the {cluster}-sa Secret", &secret);
    for v in secret.data.iter_mut().flat_map(|d| d.values_mut()) {
        v.0.zeroize();
    }
    let secret_yaml = Zeroizing::new(secret_yaml?);

    let documents = vec![
        Document {
            file_name: "clusterclass-patch.json".into(),
            title: "JSON patch for your copy of the VKS ClusterClass: `kubectl patch clusterclass NAME -n NS --type json --patch-file clusterclass-patch.json`".into(),
            format: DocFormat::Json,
            content: Zeroizing::new(
                serde_json::to_string_pretty(&class_patch).unwrap_or_default() + "\n",
            ),
            private: false,
        },
        Document {
            file_name: "cluster-variables.yaml".into(),
            title: format!("merge spec.topology.variables into Cluster {namespace}/{cluster}"),
            format: DocFormat::Yaml,
            content: Zeroizing::new(to_yaml("the Cluster variables", &variables)?),
            private: false,
        },
        Document {
            file_name: format!("{cluster}-sa-secret.yaml"),
            title: format!("Secret {namespace}/{cluster}-sa with the signing key pair: `kubectl apply -f` in the Supervisor before the Cluster"),
            format: DocFormat::Yaml,
            content: secret_yaml,
            private: true,
        },
    ];
    let mut notes = vec![
        format!("In the Supervisor cluster: copy the VKS builtin ClusterClass you use (builtin classes cannot be changed), apply the JSON patch to the copy, and point spec.topology.class of Cluster {namespace}/{cluster} at it. The patch adds the required variable {VKS_VARIABLE} and sets --service-account-issuer on the KubeadmControlPlaneTemplate (controlplane.cluster.x-k8s.io/v1beta1, whose apiServer.extraArgs is a map; with Cluster API v1beta2 templates extraArgs is a list of name/value pairs: adapt the path)."),
        format!("Create Secret {cluster}-sa in namespace {namespace} before the Cluster: Cluster API uses an existing {cluster}-sa as the service-account key pair (tls.crt public, tls.key private) and writes it to every control-plane node; it never replaces it on machines already running. The name must be exactly {cluster}-sa."),
        keys_note(inputs),
    ];
    let next = next_keys(inputs);
    if !next.is_empty() {
        notes.push(format!("The {cluster}-sa Secret holds one key pair, so the next key(s) {} are published in the JWKS but the apiserver cannot verify tokens they sign; rotating means a new Secret and new control-plane machines.", next.join(", ")));
    }
    if !sign.key.public_key().default_algorithm().is_rsa() {
        notes.push("Cluster API generates RSA service-account keys; an EC key in {cluster}-sa may be refused by older kubeadm versions: prefer an RSA key for VKS.".replace("{cluster}", cluster));
    }
    Ok(Rendered {
        documents,
        node_files: Vec::new(),
        key_dir: None,
        notes,
    })
}

/// `--flavour eks-anywhere`.
pub(super) fn eks_anywhere(inputs: &Inputs) -> Result<Rendered, ClusterError> {
    check_dns_label("EKS Anywhere cluster name", &inputs.cluster)?;
    single_issuer(
        inputs,
        "spec.podIamConfig.serviceAccountIssuer is one string",
        "EKS Anywhere sets the issuer when the cluster is created; drop --previous-issuer",
    )?;
    let cluster = &inputs.cluster;
    let doc = json!({
        "apiVersion": "anywhere.eks.amazonaws.com/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": cluster},
        "spec": {"podIamConfig": {"serviceAccountIssuer": inputs.issuers.current().as_str()}}
    });
    let documents = vec![Document {
        file_name: "eks-anywhere-cluster.yaml".into(),
        title: format!("merge spec.podIamConfig into the EKS Anywhere Cluster {cluster} before `eksctl anywhere create cluster`"),
        format: DocFormat::Yaml,
        content: Zeroizing::new(to_yaml("the EKS Anywhere Cluster", &doc)?),
        private: false,
    }];
    let notes = vec![
        "Merge spec.podIamConfig into your cluster spec and create the cluster with `eksctl anywhere create cluster -f <spec>`.".to_string(),
        format!("EKS Anywhere generates the signing key itself, so irsa's key is not used by this cluster. After creation publish the cluster's key: `kubectl get secret {cluster}-sa -n eksa-system -o jsonpath='{{.data.tls\\.crt}}' | base64 -d > keys/{cluster}-eksa.pub`, make it the active key in irsa.yaml (publicKey only, no privateKey), then `irsa render` and `irsa apply`."),
    ];
    Ok(Rendered {
        documents,
        node_files: Vec::new(),
        key_dir: None,
        notes,
    })
}

/// `--flavour talos`.
pub(super) fn talos(inputs: &Inputs) -> Result<Rendered, ClusterError> {
    single_issuer(
        inputs,
        "cluster.apiServer.extraArgs holds one value per flag",
        "Talos accepts only its own issuer besides the one set here; drop --previous-issuer and expect pods to get fresh tokens within the hour",
    )?;
    let sign = signing(inputs)?;
    let pem = sign.key.to_pem();
    let key_b64 = Zeroizing::new(crate::b64::encode_std(pem.as_bytes()));
    let patch = json!({
        "cluster": {
            "serviceAccount": {"key": key_b64.as_str()},
            "apiServer": {"extraArgs": {
                "service-account-issuer": inputs.issuers.current().as_str(),
                "api-audiences": inputs.issuers.api_audiences().join(","),
            }}
        }
    });
    let content = Zeroizing::new(to_yaml("the Talos machine config patch", &patch)?);
    drop(patch);
    let documents = vec![Document {
        file_name: "talos-controlplane-patch.yaml".into(),
        title: "Talos machine config patch for every control-plane node".into(),
        format: DocFormat::Yaml,
        content,
        private: true,
    }];
    let mut notes = vec![
        "Apply to every control-plane node: `talosctl patch machineconfig -n <node> --patch @talos-controlplane-patch.yaml`, or at creation `talosctl gen config ... --config-patch-control-plane @talos-controlplane-patch.yaml`. cluster.serviceAccount.key is the base64 of the PEM signing key; Talos derives the public key from it.".to_string(),
        "Talos verifies tokens with that one key only: it sets --service-account-key-file and --service-account-signing-key-file itself and refuses them in extraArgs. A key rotation therefore switches signing and verification at once; the apiserver rejects tokens signed by the old key until the kubelet refreshes them (projected tokens within about an hour; legacy Secret-based tokens never). Keep the old key in irsa.yaml as `retired` so STS still accepts its tokens until they expire.".to_string(),
        keys_note(inputs),
    ];
    let next = next_keys(inputs);
    if !next.is_empty() {
        notes.push(format!(
            "The next key(s) {} are published in the JWKS, but the Talos apiserver cannot verify tokens they sign.",
            next.join(", ")
        ));
    }
    Ok(Rendered {
        documents,
        node_files: Vec::new(),
        key_dir: None,
        notes,
    })
}

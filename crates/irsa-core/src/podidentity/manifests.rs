//! `irsa agent manifests`: the Kubernetes objects that run Pod Identity on
//! a cluster, rendered from `irsa.yaml` as a kustomize base, and the
//! associations file the broker and the webhook read.
//!
//! - The broker: a Deployment of 2 replicas (spread over nodes, a
//!   PodDisruptionBudget), its Service, its ServiceAccount (annotated with
//!   the broker role when it gets credentials by IRSA), TokenReview through
//!   `system:auth-delegator` and `get` on pods (node binding).
//! - The node agent: a DaemonSet on the host network. An init container
//!   with `NET_ADMIN` only adds the link-local address to the loopback
//!   device (`irsa agent link`). The agent binds port 80 on it, which needs
//!   `CAP_NET_BIND_SERVICE` in its effective set: Kubernetes gives a
//!   non-root process no effective capabilities (no ambient set), and
//!   `allowPrivilegeEscalation: false` ignores file capabilities, so it runs
//!   as uid 0 with every capability dropped but that one; the alternative,
//!   `net.ipv4.ip_unprivileged_port_start`, would change the host's network
//!   namespace for every process on the node. Read-only root, no privilege
//!   escalation, no service-account token but its own audience-bound one.
//! - The associations ConfigMap: the webhook's identities format with a
//!   `roleArn` per pod-identity binding, mounted into the broker (and into
//!   the webhook with the patch file, `--watch-container-credentials-config`).
//! - The broker's serving certificate: the Secret `irsa-agent-broker-tls`
//!   (`tls.crt`, `tls.key`, and `ca.crt`, which the node agents mount
//!   alone), created from `irsa webhook certs` files, or issued by
//!   cert-manager with the `cert-manager/` overlay.

use serde_json::{json, Value};

use super::NODE_AUDIENCE;
use crate::config::IrsaConfig;

/// Name of the broker's Deployment, Service and serving Secret prefix.
pub const BROKER_NAME: &str = "irsa-agent-broker";
/// Name of the node agents' DaemonSet and ServiceAccount.
pub const NODE_NAME: &str = "irsa-agent-node";
/// The ConfigMap with the associations file.
pub const ASSOCIATIONS_CONFIGMAP: &str = "irsa-agent-associations";
/// The key (file name) of the associations in it.
pub const ASSOCIATIONS_KEY: &str = "associations.json";
/// The Secret with the broker's serving certificate (and the CA).
pub const BROKER_TLS_SECRET: &str = "irsa-agent-broker-tls";
/// The link-local address pods reach the node agent on.
pub const NODE_ADDRESS: &str = "169.254.170.23";

/// What the rendering needs besides `irsa.yaml`.
#[derive(Debug, Clone)]
pub struct AgentManifestOptions<'a> {
    /// The AWS account (`None`: `placeholder` stands in for it).
    pub account: Option<&'a str>,
    /// Shown for the account when it is not known.
    pub placeholder: &'a str,
    /// The container image.
    pub image: &'a str,
}

/// A file of the rendered directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// Path relative to the output directory.
    pub path: String,
    /// Content.
    pub text: String,
}

fn arn_of(cfg: &IrsaConfig, name: &str, o: &AgentManifestOptions<'_>) -> Result<String, String> {
    cfg.role_arn(name, o.account, o.placeholder)
        .map_err(|p| format!("cannot name role {name}: {p}"))
}

/// The associations file: every pod-identity binding's ServiceAccount
/// with its role, sorted, in the webhook's identities format.
pub fn associations(cfg: &IrsaConfig, o: &AgentManifestOptions<'_>) -> Result<String, String> {
    let mut entries: Vec<(String, String, String)> = Vec::new();
    for b in cfg.bindings.iter().filter(|b| b.is_pod_identity()) {
        entries.push((
            b.namespace.clone(),
            b.service_account.clone(),
            arn_of(cfg, &b.role_name(&cfg.cluster), o)?,
        ));
    }
    entries.sort();
    let list: Vec<Value> = entries
        .into_iter()
        .map(|(ns, sa, arn)| json!({"namespace": ns, "serviceAccount": sa, "roleArn": arn}))
        .collect();
    serde_json::to_string_pretty(&json!({ "identities": list })).map_err(|e| e.to_string())
}

fn yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_yaml::to_string(d).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n")
}

fn restricted() -> Value {
    json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]}})
}

/// The rendered directory: the kustomize base under `base/` (the top
/// kustomization installs it as is), a cert-manager overlay under
/// `cert-manager/`, and the webhook's patch.
pub fn agent_manifests(
    cfg: &IrsaConfig,
    o: &AgentManifestOptions<'_>,
) -> Result<Vec<ManifestFile>, String> {
    let pi = cfg.pod_identity();
    let (ns, sa) = pi.service_account();
    let broker_role = arn_of(cfg, &pi.role_name(&cfg.cluster), o)?;
    let region = cfg.issuer.region();
    let labels =
        |name: &str| json!({"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "irsa"});
    let selector = |name: &str| json!({"app.kubernetes.io/name": name});
    let file = |path: &str, text: String| ManifestFile {
        path: path.into(),
        text,
    };
    let mut files = Vec::new();

    files.push(file(
        "base/namespace.yaml",
        yaml(&[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels("irsa")}})]),
    ));
    let assoc = associations(cfg, o)?;
    files.push(file(
        "base/associations.yaml",
        yaml(&[json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": ASSOCIATIONS_CONFIGMAP, "namespace": ns, "labels": labels(BROKER_NAME)},
            "data": {ASSOCIATIONS_KEY: assoc}})]),
    ));

    // The broker's credentials: IRSA through this bundle's provider, or an
    // AWS config profile that assumes the broker role from the node's
    // instance profile.
    let by_irsa = pi.broker_principal.is_none();
    let mut sa_meta = json!({"name": sa, "namespace": ns, "labels": labels(BROKER_NAME)});
    if by_irsa {
        sa_meta["annotations"] = json!({"eks.amazonaws.com/role-arn": broker_role});
    }
    let mut env = vec![
        json!({"name": "AWS_REGION", "value": region}),
        json!({"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}),
    ];
    let mut mounts = vec![
        json!({"name": "tls", "mountPath": "/etc/irsa-agent/tls", "readOnly": true}),
        json!({"name": "associations", "mountPath": "/etc/irsa-agent/associations", "readOnly": true}),
    ];
    let mut volumes = vec![
        json!({"name": "tls", "secret": {"secretName": BROKER_TLS_SECRET,
            "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]}}),
        json!({"name": "associations", "configMap": {"name": ASSOCIATIONS_CONFIGMAP}}),
    ];
    let mut broker_docs = Vec::new();
    if by_irsa {
        env.push(json!({"name": "AWS_ROLE_ARN", "value": broker_role}));
        env.push(json!({"name": "AWS_WEB_IDENTITY_TOKEN_FILE",
            "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}));
        mounts.push(json!({"name": "aws-iam-token",
            "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount", "readOnly": true}));
        volumes.push(json!({"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": crate::config::DEFAULT_AUDIENCE, "expirationSeconds": 86400, "path": "token"}}]}}));
    } else {
        let principal = pi.broker_principal.clone().unwrap_or_default();
        broker_docs.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("{BROKER_NAME}-aws-config"), "namespace": ns, "labels": labels(BROKER_NAME)},
            "data": {"config": format!(
                "# The broker runs as the node's instance profile role ({principal}) and assumes its own role.\n# For IAM Roles Anywhere, replace credential_source with a source_profile whose credential_process runs aws_signing_helper.\n[default]\nrole_arn = {broker_role}\ncredential_source = Ec2InstanceMetadata\nrole_session_name = {BROKER_NAME}\n")}}));
        env.push(json!({"name": "AWS_CONFIG_FILE", "value": "/etc/irsa-agent/aws/config"}));
        mounts.push(
            json!({"name": "aws-config", "mountPath": "/etc/irsa-agent/aws", "readOnly": true}),
        );
        volumes.push(json!({"name": "aws-config", "configMap": {"name": format!("{BROKER_NAME}-aws-config")}}));
    }
    broker_docs.extend([
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": sa_meta}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("{BROKER_NAME}-tokenreview"), "labels": labels(BROKER_NAME)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": format!("{BROKER_NAME}-pods"), "labels": labels(BROKER_NAME)},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("{BROKER_NAME}-pods"), "labels": labels(BROKER_NAME)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("{BROKER_NAME}-pods")},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": BROKER_NAME, "namespace": ns, "labels": labels(BROKER_NAME)},
            "spec": {"replicas": 2, "selector": {"matchLabels": selector(BROKER_NAME)},
                "template": {"metadata": {"labels": labels(BROKER_NAME)}, "spec": {
                    "serviceAccountName": sa,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": selector(BROKER_NAME)}}}]}},
                    "containers": [{
                        "name": "broker", "image": o.image,
                        "args": ["agent", "broker", "--listen=0.0.0.0:8443",
                            "--tls-cert-file=/etc/irsa-agent/tls/tls.crt",
                            "--tls-key-file=/etc/irsa-agent/tls/tls.key",
                            format!("--associations=/etc/irsa-agent/associations/{ASSOCIATIONS_KEY}"),
                            format!("--cluster-name={}", cfg.cluster),
                            "--require-node-binding"],
                        "env": env,
                        "ports": [{"name": "https", "containerPort": 8443}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "https", "scheme": "HTTPS"}, "periodSeconds": 5},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "https", "scheme": "HTTPS"}, "periodSeconds": 10},
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                        "securityContext": restricted(),
                        "volumeMounts": mounts}],
                    "volumes": volumes}}}}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": BROKER_NAME, "namespace": ns, "labels": labels(BROKER_NAME)},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": selector(BROKER_NAME)}}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": BROKER_NAME, "namespace": ns, "labels": labels(BROKER_NAME)},
            "spec": {"selector": selector(BROKER_NAME),
                "ports": [{"name": "https", "port": 443, "targetPort": "https"}]}}),
    ]);
    files.push(file("base/broker.yaml", yaml(&broker_docs)));

    let mut node_security = restricted();
    node_security["runAsUser"] = json!(0);
    node_security["runAsNonRoot"] = json!(false);
    let mut link_security = node_security.clone();
    node_security["capabilities"]["add"] = json!(["NET_BIND_SERVICE"]);
    link_security["capabilities"]["add"] = json!(["NET_ADMIN"]);
    files.push(file(
        "base/node.yaml",
        yaml(&[
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": NODE_NAME, "namespace": ns, "labels": labels(NODE_NAME)},
                "automountServiceAccountToken": false}),
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": {"name": NODE_NAME, "namespace": ns, "labels": labels(NODE_NAME)},
                "spec": {"selector": {"matchLabels": selector(NODE_NAME)},
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
                    "template": {"metadata": {"labels": labels(NODE_NAME)}, "spec": {
                        "serviceAccountName": NODE_NAME,
                        "automountServiceAccountToken": false,
                        "hostNetwork": true,
                        "dnsPolicy": "ClusterFirstWithHostNet",
                        "tolerations": [{"operator": "Exists"}],
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        "initContainers": [{
                            "name": "link", "image": o.image,
                            "args": ["agent", "link", format!("--address={NODE_ADDRESS}")],
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
                            "securityContext": link_security}],
                        "containers": [{
                            "name": "node", "image": o.image,
                            "args": ["agent", "node", format!("--listen={NODE_ADDRESS}:80"),
                                format!("--broker=https://{BROKER_NAME}.{ns}.svc:443"),
                                "--broker-ca-file=/etc/irsa-agent/broker-ca/ca.crt",
                                "--node-token-file=/var/run/secrets/irsa-agent/node/token"],
                            "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                            "securityContext": node_security,
                            "volumeMounts": [
                                {"name": "broker-ca", "mountPath": "/etc/irsa-agent/broker-ca", "readOnly": true},
                                {"name": "node-token", "mountPath": "/var/run/secrets/irsa-agent/node", "readOnly": true}]}],
                        "volumes": [
                            {"name": "broker-ca", "secret": {"secretName": BROKER_TLS_SECRET,
                                "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                            {"name": "node-token", "projected": {"sources": [{"serviceAccountToken": {
                                "audience": NODE_AUDIENCE, "expirationSeconds": 3600, "path": "token"}}]}}]}}}}),
        ]),
    ));

    files.push(file(
        "base/kustomization.yaml",
        format!(
            "# Pod Identity for cluster {cluster}, rendered by `irsa agent manifests` from irsa.yaml: regenerate rather than edit.\n# The broker's serving certificate is the Secret {BROKER_TLS_SECRET} (tls.crt, tls.key, ca.crt): create it\n# from `irsa webhook certs --service {BROKER_NAME} --namespace {ns}` files, or use ./cert-manager.\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - namespace.yaml\n  - associations.yaml\n  - broker.yaml\n  - node.yaml\n",
            cluster = cfg.cluster
        ),
    ));

    files.push(file(
        "kustomization.yaml",
        "# The base, with the Secret irsa-agent-broker-tls made by hand (see base/kustomization.yaml); ./cert-manager instead has cert-manager issue it.\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - base\n".into(),
    ));

    // cert-manager: a private CA and the broker's serving certificate; the
    // CA issuer writes ca.crt into the Secret, which the node agents mount.
    let issuer_ref = |name: String| json!({"kind": "Issuer", "name": name});
    files.push(file(
        "cert-manager/certificate.yaml",
        yaml(&[
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
                "metadata": {"name": format!("{BROKER_NAME}-selfsigned"), "namespace": ns},
                "spec": {"selfSigned": {}}}),
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                "metadata": {"name": format!("{BROKER_NAME}-ca"), "namespace": ns},
                "spec": {"isCA": true, "commonName": format!("{BROKER_NAME}-ca"), "secretName": format!("{BROKER_NAME}-ca"),
                    "duration": "87600h", "renewBefore": "720h",
                    "issuerRef": issuer_ref(format!("{BROKER_NAME}-selfsigned")),
                    "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Never"}}}),
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
                "metadata": {"name": format!("{BROKER_NAME}-ca"), "namespace": ns},
                "spec": {"ca": {"secretName": format!("{BROKER_NAME}-ca")}}}),
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                "metadata": {"name": BROKER_NAME, "namespace": ns},
                "spec": {"secretName": BROKER_TLS_SECRET, "duration": "2160h", "renewBefore": "360h",
                    "dnsNames": [format!("{BROKER_NAME}.{ns}.svc"), format!("{BROKER_NAME}.{ns}.svc.cluster.local")],
                    "usages": ["server auth", "digital signature"],
                    "issuerRef": issuer_ref(format!("{BROKER_NAME}-ca")),
                    "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}}}),
        ]),
    ));
    files.push(file(
        "cert-manager/kustomization.yaml",
        "# The base with the broker's serving certificate issued and rotated by cert-manager (which must be installed).\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../base\n  - certificate.yaml\n".into(),
    ));

    // The webhook reads the same associations: a patch for its Deployment
    // (deploy/base names it irsa-webhook in irsa-system).
    files.push(file(
        "webhook-associations-patch.yaml",
        format!(
            "# A strategic-merge patch for the irsa webhook's Deployment (deploy/base): it mounts the associations\n# ConfigMap and injects container credentials for the ServiceAccounts it lists. The ConfigMap must be in the\n# webhook's namespace: install this base into the same namespace, or copy the ConfigMap.\n{}",
            yaml(&[json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "irsa-webhook", "namespace": "irsa-system"},
                "spec": {"template": {"spec": {
                    "containers": [{"name": "webhook",
                        "args": ["webhook", "serve", "--port=8443", "--metrics-port=9999",
                            "--tls-cert=/etc/webhook/certs/tls.crt", "--tls-key=/etc/webhook/certs/tls.key",
                            "--annotation-prefix=eks.amazonaws.com", "--token-audience=sts.amazonaws.com",
                            format!("--watch-container-credentials-config=/etc/irsa-agent/associations/{ASSOCIATIONS_KEY}")],
                        "volumeMounts": [{"name": "associations", "mountPath": "/etc/irsa-agent/associations", "readOnly": true}]}],
                    "volumes": [{"name": "associations", "configMap": {"name": ASSOCIATIONS_CONFIGMAP}}]}}}})])
        ),
    ));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutate::Identities;

    fn cfg(extra: &str) -> IrsaConfig {
        IrsaConfig::from_yaml(&format!(
            "apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: demo\nissuer:\n  url: https://b-oidc.s3.eu-west-1.amazonaws.com/demo\n  s3: {{bucket: b-oidc, region: eu-west-1, prefix: demo}}\nkeys:\n- {{publicKey: k.pub, algorithm: RS256, state: active}}\nbindings:\n- {{namespace: default, serviceAccount: app}}\n- {{namespace: shop, serviceAccount: orders, mode: pod-identity}}\n- {{namespace: app, serviceAccount: reader, mode: pod-identity}}\n{extra}"
        ))
        .expect("valid")
    }

    const OPTS: AgentManifestOptions<'static> = AgentManifestOptions {
        account: Some("111122223333"),
        placeholder: "<AWS_ACCOUNT_ID>",
        image: "ghcr.io/irsa-dev/irsa:test",
    };

    #[test]
    fn associations_list_the_pod_identity_bindings_as_the_broker_reads_them() {
        let text = associations(&cfg(""), &OPTS).expect("render");
        let ids = Identities::parse(text.as_bytes()).expect("the broker's parser accepts it");
        assert_eq!(ids.len(), 2, "{text}");
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["identities"][0]["namespace"], "app");
        assert_eq!(
            v["identities"][0]["roleArn"],
            "arn:aws:iam::111122223333:role/irsa/demo/demo-app-reader"
        );
        assert!(
            !text.contains("default"),
            "IRSA bindings are not listed: {text}"
        );
    }

    #[test]
    fn the_broker_gets_credentials_as_irsa_yaml_says() {
        let files = agent_manifests(&cfg(""), &OPTS).expect("render");
        let broker = &files
            .iter()
            .find(|f| f.path == "base/broker.yaml")
            .expect("broker")
            .text;
        assert!(broker.contains("eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/irsa/demo/demo-irsa-agent-broker"), "{broker}");
        assert!(broker.contains("AWS_WEB_IDENTITY_TOKEN_FILE"), "{broker}");
        assert!(broker.contains("--cluster-name=demo"), "{broker}");
        let external =
            cfg("podIdentity: {brokerPrincipal: 'arn:aws:iam::111122223333:role/node'}\n");
        let files = agent_manifests(&external, &OPTS).expect("render");
        let broker = &files
            .iter()
            .find(|f| f.path == "base/broker.yaml")
            .expect("broker")
            .text;
        assert!(!broker.contains("eks.amazonaws.com/role-arn"), "{broker}");
        assert!(
            broker.contains("credential_source = Ec2InstanceMetadata"),
            "{broker}"
        );
        assert!(broker.contains("AWS_CONFIG_FILE"), "{broker}");
    }
}

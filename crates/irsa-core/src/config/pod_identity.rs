//! Pod Identity in `irsa.yaml`: which bindings the broker (`irsa agent`)
//! serves, who the broker is, and how it gets its own credentials.
//!
//! A binding with `mode: pod-identity` names a role that the broker assumes
//! for the ServiceAccount's pods with EKS Pod Identity's session tags;
//! the role trusts the broker's role (conditioned on those tags), not the
//! cluster's OIDC provider. The broker's role trusts either this bundle's
//! OIDC provider for the broker's ServiceAccount (IRSA, the default) or an
//! external principal (`podIdentity.brokerPrincipal`: an instance profile's
//! role, a Roles Anywhere role), in which case pod-identity bindings need
//! no OIDC provider at all.

use serde::{Deserialize, Serialize};

use super::{Binding, IrsaConfig};
use crate::arn::RoleArn;
use crate::names::{is_dns_label, is_dns_subdomain, is_role_name};

/// The broker's default ServiceAccount namespace.
pub const DEFAULT_BROKER_NAMESPACE: &str = "irsa-system";
/// The broker's default ServiceAccount name.
pub const DEFAULT_BROKER_SERVICE_ACCOUNT: &str = "irsa-agent-broker";
/// Suffix of the broker role's default name, `{cluster}-irsa-agent-broker`.
pub const BROKER_ROLE_SUFFIX: &str = "irsa-agent-broker";

/// How a binding's role is assumed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindingMode {
    /// The pod's SDK assumes the role with its projected token through the
    /// cluster's IAM OIDC provider (`AssumeRoleWithWebIdentity`).
    #[default]
    Irsa,
    /// The broker assumes the role for the pod (`sts:AssumeRole` with
    /// session tags) and hands the pod container credentials.
    PodIdentity,
}

impl BindingMode {
    /// Whether this is the default mode (not written to irsa.yaml).
    pub fn is_irsa(&self) -> bool {
        matches!(self, Self::Irsa)
    }

    /// The spelling in irsa.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Irsa => "irsa",
            Self::PodIdentity => "pod-identity",
        }
    }
}

/// The optional top-level `podIdentity:` block: the broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodIdentityConfig {
    /// The broker's ServiceAccount as `NAMESPACE/NAME`; default
    /// `irsa-system/irsa-agent-broker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The broker role's name; default `{cluster}-irsa-agent-broker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_name: Option<String>,
    /// An IAM role the broker runs as before it assumes its own role (an
    /// instance profile's role, a Roles Anywhere role). When set, the broker
    /// role trusts this principal instead of the cluster's OIDC provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_principal: Option<String>,
}

impl PodIdentityConfig {
    /// The broker's namespace and ServiceAccount name (defaults applied;
    /// a value without `/` reads as a name in the default namespace).
    pub fn service_account(&self) -> (&str, &str) {
        match self.service_account.as_deref() {
            None => (DEFAULT_BROKER_NAMESPACE, DEFAULT_BROKER_SERVICE_ACCOUNT),
            Some(s) => s.split_once('/').unwrap_or((DEFAULT_BROKER_NAMESPACE, s)),
        }
    }

    /// The broker role's name.
    pub fn role_name(&self, cluster: &str) -> String {
        self.role_name
            .clone()
            .unwrap_or_else(|| format!("{cluster}-{BROKER_ROLE_SUFFIX}"))
    }

    /// The external principal, parsed (None when absent or invalid: only a
    /// config that fails validation has an invalid one).
    pub fn broker_principal(&self) -> Option<RoleArn> {
        self.broker_principal
            .as_deref()
            .and_then(|a| RoleArn::parse(a).ok())
    }
}

impl Binding {
    /// Whether the broker serves this binding.
    pub fn is_pod_identity(&self) -> bool {
        self.mode == BindingMode::PodIdentity
    }
}

impl IrsaConfig {
    /// The `podIdentity:` block, or its defaults when absent.
    pub fn pod_identity(&self) -> PodIdentityConfig {
        self.pod_identity.clone().unwrap_or_default()
    }

    /// Whether any binding is served by the broker (then the broker role
    /// exists).
    pub fn has_pod_identity_bindings(&self) -> bool {
        self.bindings.iter().any(Binding::is_pod_identity)
    }

    /// Whether anything this bundle declares is assumed through its IAM
    /// OIDC provider: an IRSA binding, or the broker role when it gets its
    /// credentials by IRSA. False only when there are bindings, every one
    /// is pod-identity, and the broker runs as an external principal (a
    /// bundle with no binding yet keeps its provider for the first one).
    pub fn needs_oidc_provider(&self) -> bool {
        let all_pod_identity =
            !self.bindings.is_empty() && self.bindings.iter().all(Binding::is_pod_identity);
        let external = self
            .pod_identity
            .as_ref()
            .is_some_and(|p| p.broker_principal.is_some());
        !(all_pod_identity && external)
    }

    /// The problems of the pod-identity parts of this config, one per line.
    pub(super) fn pod_identity_problems(&self, p: &mut Vec<String>) {
        let pi = self.pod_identity();
        let (ns, sa) = pi.service_account();
        if let Some(raw) = &pi.service_account {
            if !raw.contains('/') || !is_dns_label(ns) || !is_dns_subdomain(sa) {
                p.push(format!(
                    "podIdentity.serviceAccount {raw:?} must be NAMESPACE/NAME (a DNS label and a DNS subdomain name), like {DEFAULT_BROKER_NAMESPACE}/{DEFAULT_BROKER_SERVICE_ACCOUNT}"
                ));
            }
        }
        let broker_role = pi.role_name(&self.cluster);
        if !is_role_name(&broker_role) {
            p.push(format!(
                "podIdentity: broker role name {broker_role:?} must be 1-64 characters of letters, digits and +=,.@_- (set podIdentity.roleName)"
            ));
        }
        if let Some(principal) = &pi.broker_principal {
            if let Err(e) = RoleArn::parse(principal) {
                p.push(format!("podIdentity.brokerPrincipal: {e}"));
            }
        }
        for b in &self.bindings {
            let at = format!("binding {}/{}", b.namespace, b.service_account);
            if b.role_name(&self.cluster) == broker_role {
                p.push(format!(
                    "{at}: role name {broker_role:?} is the pod-identity broker's role; set roleName here or podIdentity.roleName"
                ));
            }
            if (b.namespace.as_str(), b.service_account.as_str()) == (ns, sa) {
                p.push(format!(
                    "{at}: this is the pod-identity broker's ServiceAccount, which irsa gives the broker role; bind another ServiceAccount or set podIdentity.serviceAccount"
                ));
            }
            if b.is_pod_identity() {
                pod_identity_binding_problems(b, &at, p);
            } else if !b.extra_brokers.is_empty() {
                p.push(format!(
                    "{at}: extraBrokers applies to `mode: pod-identity` bindings only; remove it or set the mode"
                ));
            }
        }
    }
}

fn pod_identity_binding_problems(b: &Binding, at: &str, p: &mut Vec<String>) {
    if b.service_account.contains('*') {
        p.push(format!(
            "{at}: a pattern cannot be `mode: pod-identity`: the associations file the broker and the webhook read (the webhook's identities format) names each ServiceAccount; bind each one, or use mode irsa for the pattern"
        ));
    }
    if b.audience.is_some() {
        p.push(format!(
            "{at}: audience applies to IRSA tokens; a pod-identity pod's token has the broker's audience (pods.eks.amazonaws.com): remove audience"
        ));
    }
    if !b.extra_issuers.is_empty() {
        p.push(format!(
            "{at}: extraIssuers applies to IRSA bindings; other clusters' brokers are listed in extraBrokers (their broker roles' ARNs)"
        ));
    }
    for (i, arn) in b.extra_brokers.iter().enumerate() {
        if let Err(e) = RoleArn::parse(arn) {
            p.push(format!("{at}: extraBrokers: {e}"));
        } else if b.extra_brokers[..i].contains(arn) {
            p.push(format!("{at}: extraBrokers lists {arn} twice"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::GOOD;
    use super::*;

    fn with(extra: &str) -> Result<IrsaConfig, String> {
        IrsaConfig::from_yaml(&format!("{GOOD}{extra}")).map_err(|e| e.to_string())
    }

    const PI: &str = "  - {namespace: app, serviceAccount: reader, mode: pod-identity, policyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]}\n";

    #[test]
    fn a_pod_identity_binding_reads_writes_and_has_defaults() {
        let cfg = with(PI).expect("valid");
        let b = &cfg.bindings[1];
        assert!(b.is_pod_identity() && !cfg.bindings[0].is_pod_identity());
        assert_eq!(b.role_name("demo"), "demo-app-reader");
        let pi = cfg.pod_identity();
        assert_eq!(pi.service_account(), ("irsa-system", "irsa-agent-broker"));
        assert_eq!(pi.role_name("demo"), "demo-irsa-agent-broker");
        assert!(cfg.needs_oidc_provider());
        let text = cfg.to_yaml();
        assert!(text.contains("mode: pod-identity"), "{text}");
        assert!(
            !text.contains("mode: irsa"),
            "the default mode is not written: {text}"
        );
        assert_eq!(IrsaConfig::from_yaml(&text).expect("valid"), cfg);
    }

    #[test]
    fn an_external_broker_principal_needs_no_provider_for_pod_identity_bindings() {
        let only_pi = GOOD.replace(
            "  - {namespace: default, serviceAccount: s3-echoer, policyArns: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]}\n",
            PI,
        );
        let external = format!(
            "{only_pi}podIdentity:\n  brokerPrincipal: arn:aws:iam::111122223333:role/node-instance\n"
        );
        let cfg = IrsaConfig::from_yaml(&external).expect("valid");
        assert!(!cfg.needs_oidc_provider());
        assert_eq!(
            cfg.pod_identity().broker_principal().map(|a| a.to_string()),
            Some("arn:aws:iam::111122223333:role/node-instance".into())
        );
        // Without the external principal the broker itself uses IRSA.
        assert!(IrsaConfig::from_yaml(&only_pi)
            .expect("valid")
            .needs_oidc_provider());
        // An IRSA binding beside it still needs the provider.
        let mixed = format!("{GOOD}{PI}podIdentity:\n  brokerPrincipal: arn:aws:iam::111122223333:role/node-instance\n");
        assert!(IrsaConfig::from_yaml(&mixed)
            .expect("valid")
            .needs_oidc_provider());
    }

    #[test]
    fn contradictions_are_refused_naming_the_fix() {
        let cases = [
            (
                "  - {namespace: app, serviceAccount: 'batch-*', mode: pod-identity}\n",
                "a pattern cannot be `mode: pod-identity`",
            ),
            (
                "  - {namespace: app, serviceAccount: r, mode: pod-identity, audience: x}\n",
                "remove audience",
            ),
            (
                "  - {namespace: app, serviceAccount: r, mode: pod-identity, extraIssuers: ['https://other.example.com']}\n",
                "listed in extraBrokers",
            ),
            (
                "  - {namespace: app, serviceAccount: r, extraBrokers: ['arn:aws:iam::111122223333:role/b']}\n",
                "applies to `mode: pod-identity` bindings only",
            ),
            (
                "  - {namespace: app, serviceAccount: r, mode: pod-identity, extraBrokers: ['arn:aws:s3:::b']}\n",
                "extraBrokers: \"arn:aws:s3:::b\" is not an IAM role ARN",
            ),
            (
                "  - {namespace: app, serviceAccount: r, mode: pod-identity, roleName: demo-irsa-agent-broker}\n",
                "is the pod-identity broker's role",
            ),
            (
                "  - {namespace: irsa-system, serviceAccount: irsa-agent-broker}\n",
                "this is the pod-identity broker's ServiceAccount",
            ),
            (
                "  - {namespace: app, serviceAccount: r, mode: podidentity}\n",
                "unknown variant `podidentity`",
            ),
            (
                "podIdentity: {serviceAccount: Broker}\n",
                "podIdentity.serviceAccount \"Broker\" must be NAMESPACE/NAME",
            ),
            (
                "podIdentity: {brokerPrincipal: 'arn:aws:iam::1234:role/x'}\n",
                "podIdentity.brokerPrincipal: \"arn:aws:iam::1234:role/x\" is not an IAM role ARN",
            ),
            (
                "podIdentity: {roleName: 'has space'}\n",
                "set podIdentity.roleName",
            ),
        ];
        for (extra, want) in cases {
            let err = with(extra).expect_err(extra);
            assert!(err.contains(want), "{extra}: {err}");
        }
    }
}

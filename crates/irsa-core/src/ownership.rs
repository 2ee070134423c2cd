//! Which AWS resources belong to this bundle (this `irsa.yaml`), and which
//! IAM OIDC providers still trust what it hosts.
//!
//! A cluster name is not unique: two `irsa.yaml` files may both say
//! `cluster: prod` in one account. Tags and the role path are shared by
//! such bundles; what tells them apart is the issuer. So a role is this
//! bundle's only if it is tagged with the cluster, lives under the
//! cluster's path, and its trust policy names one of this bundle's own
//! providers (its issuer or a previous issuer; `extraIssuers` are other
//! clusters' issuers and prove nothing), or this bundle's Pod Identity
//! broker role (a pod-identity role), or, for the broker role tagged as
//! such, the external principal `podIdentity.brokerPrincipal` names.
//!
//! A deleted bucket's name can be registered by anyone: a provider that
//! still trusts an issuer served from it would then accept tokens signed
//! by whoever owns the name. [`hosting_blockers`] names the providers that
//! must be gone before a hosting step may run.

use std::collections::BTreeSet;

use crate::plan::{Action, ActualRole, Desired, OWNER_TAG};
use crate::trust::TrustPolicy;

/// Whether a role is this bundle's, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleOwner {
    /// Tagged, under the path, trusting one of this bundle's providers.
    Ours,
    /// No owner tag.
    Untagged,
    /// Tagged for another cluster.
    OtherCluster(String),
    /// Tagged for this cluster but not under its path.
    OutsidePath(String),
    /// Tagged and under the path, but trusting none of this bundle's
    /// providers nor its broker role: another bundle with the same cluster
    /// name owns it.
    OtherIssuer(BTreeSet<String>),
}

/// The provider ARNs the Allow statements of a trust policy federate to.
pub fn trusted_providers(trust: &TrustPolicy) -> BTreeSet<String> {
    trust.federated_providers()
}

impl Desired {
    /// Whether `role` is this bundle's.
    pub fn role_owner(&self, role: &ActualRole) -> RoleOwner {
        match role.tags.get(OWNER_TAG) {
            None => return RoleOwner::Untagged,
            Some(c) if c != &self.cluster => return RoleOwner::OtherCluster(c.clone()),
            Some(_) => {}
        }
        if role.path != crate::plan::role_path(&self.cluster) {
            return RoleOwner::OutsidePath(role.path.clone());
        }
        let mut trusted = trusted_providers(&role.trust);
        if !trusted.is_disjoint(&self.own_provider_arns) {
            return RoleOwner::Ours;
        }
        // Pod Identity: a role that trusts this bundle's broker role, or the
        // broker role itself trusting the configured external principal.
        let principals = role.trust.aws_principals();
        if principals.contains(&self.broker.1)
            || self.broker_principal.as_ref().is_some_and(|p| {
                principals.contains(p)
                    && role.tags.get(crate::plan::MODE_TAG).map(String::as_str)
                        == Some(crate::plan::BROKER_MODE)
            })
        {
            return RoleOwner::Ours;
        }
        trusted.extend(principals);
        RoleOwner::OtherIssuer(trusted)
    }

    /// Why `name` is left alone, for the plan's output; `None` when it is ours.
    pub fn foreign_role_reason(&self, name: &str, role: &ActualRole) -> Option<String> {
        let cluster = &self.cluster;
        let why = match self.role_owner(role) {
            RoleOwner::Ours => return None,
            RoleOwner::Untagged => format!("exists and is not tagged {OWNER_TAG}={cluster}"),
            RoleOwner::OtherCluster(other) => format!("is tagged for cluster {other}"),
            RoleOwner::OutsidePath(path) => format!(
                "is tagged {OWNER_TAG}={cluster} but has path {path}, not {}",
                crate::plan::role_path(cluster)
            ),
            RoleOwner::OtherIssuer(trusted) if trusted.iter().any(|t| t.starts_with("AROA")) => format!(
                "is tagged {OWNER_TAG}={cluster} but its trust names a deleted role (IAM shows a deleted principal as its unique ID, here {trusted:?}), so nothing can assume it: delete it (aws iam delete-role after detaching its policies) or take it over with --adopt {name}"
            ),
            RoleOwner::OtherIssuer(trusted) => format!(
                "is tagged {OWNER_TAG}={cluster} but trusts none of this irsa.yaml's providers nor its pod-identity broker role (it trusts {trusted:?}): another irsa.yaml with cluster name {cluster} owns it; give one of them another cluster name, or if this cluster's issuer changed, list the old one in issuer.previousUrls"
            ),
        };
        Some(format!("iam role {name} {why}"))
    }

    /// Whether the provider for `host_path` trusts this bundle's issuer
    /// documents: it is the issuer's, or another URL of the same S3 objects.
    pub fn provider_trusts_issuer(&self, host_path: &str) -> bool {
        if host_path == self.provider_host_path {
            return true;
        }
        match (&self.s3, s3_location_of(host_path)) {
            (Some(s3), Some((bucket, prefix))) => bucket == s3.bucket && prefix == s3.prefix,
            _ => false,
        }
    }

    /// Whether the provider for `host_path` trusts documents in the issuer
    /// bucket (any prefix, any URL form), or the issuer itself.
    pub fn provider_trusts_bucket(&self, host_path: &str) -> bool {
        if self.provider_trusts_issuer(host_path) {
            return true;
        }
        match (&self.s3, s3_location_of(host_path)) {
            (Some(s3), Some((bucket, _))) => bucket == s3.bucket,
            _ => false,
        }
    }
}

/// The bucket and key prefix an S3 URL (host/path, no scheme) reads from:
/// virtual-hosted (`BUCKET.s3.REGION.amazonaws.com/PREFIX`, also `s3-REGION`,
/// dual-stack, global and China endpoints) or path-style
/// (`s3.REGION.amazonaws.com/BUCKET/PREFIX`). `None` for any other host.
/// Errs on the side of "yes": a false match only keeps a bucket.
pub fn s3_location_of(host_path: &str) -> Option<(String, String)> {
    let (host, path) = host_path.split_once('/').unwrap_or((host_path, ""));
    let labels = crate::Partition::strip_dns_suffix(host)?;
    let labels: Vec<&str> = labels.split('.').collect();
    let s3 = labels
        .iter()
        .rposition(|l| *l == "s3" || l.starts_with("s3-"))?;
    if s3 == 0 {
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        (!bucket.is_empty()).then(|| (bucket.to_string(), prefix.to_string()))
    } else {
        Some((labels[..s3].join("."), path.to_string()))
    }
}

/// The providers among `existing` (host/paths read from IAM) that must be
/// gone before `action`, a step of the hosting phase, may run: for the
/// bucket's deletion, any provider trusting documents in the bucket; for
/// the documents and the bucket-policy statement, the issuer's providers.
pub fn hosting_blockers<'a>(
    desired: &Desired,
    action: &Action,
    existing: &'a [String],
) -> Vec<&'a str> {
    let bucket = matches!(action, Action::DeleteBucket);
    existing
        .iter()
        .map(String::as_str)
        .filter(|hp| {
            if bucket {
                desired.provider_trusts_bucket(hp)
            } else {
                desired.provider_trusts_issuer(hp)
            }
        })
        .collect()
}

/// The host/path of a provider ARN (`arn:…:oidc-provider/HOST/PATH`).
pub fn provider_host_path(arn: &str) -> Option<&str> {
    arn.split_once(":oidc-provider/").map(|(_, hp)| hp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_name_their_bucket() {
        let cases = [
            ("b.s3.eu-west-1.amazonaws.com/prod", Some(("b", "prod"))),
            ("b.s3-eu-west-1.amazonaws.com/prod/x", Some(("b", "prod/x"))),
            ("b.s3.amazonaws.com", Some(("b", ""))),
            (
                "a.s3.b.s3.dualstack.eu-west-1.amazonaws.com/p",
                Some(("a.s3.b", "p")),
            ),
            ("s3.eu-west-1.amazonaws.com/a.b/prod", Some(("a.b", "prod"))),
            ("s3.cn-north-1.amazonaws.com.cn/b", Some(("b", ""))),
            ("s3.eu-west-1.amazonaws.com", None),
            ("oidc.example.com/b", None),
            ("d111.cloudfront.net", None),
        ];
        for (hp, want) in cases {
            let got = s3_location_of(hp);
            let want = want.map(|(b, p)| (b.to_string(), p.to_string()));
            assert_eq!(got, want, "{hp}");
        }
        assert_eq!(
            provider_host_path("arn:aws:iam::1:oidc-provider/h/p"),
            Some("h/p")
        );
    }
}

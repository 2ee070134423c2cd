//! CloudFront mode: the Origin Access Control and the distribution that
//! serve the private bucket, and the invalidation after a document changes.

use super::{change, Action, Actual, Desired, DesiredCloudFront, DistributionShape, Plan};
use super::{ActualOac, OWNER_TAG};

/// The allowed methods irsa gives the distribution: reads only.
pub const ALLOWED_METHODS: [&str; 2] = ["GET", "HEAD"];

/// The viewer protocol policy: the documents are served over HTTPS only.
pub const VIEWER_PROTOCOL_POLICY: &str = "https-only";

/// The OAC settings: SigV4, sign every request, an S3 origin.
pub const OAC_SETTINGS: (&str, &str, &str) = ("sigv4", "always", "s3");

impl DesiredCloudFront {
    /// The distribution's settings, with its origin signing through `oac_id`.
    pub fn shape(&self, oac_id: &str) -> DistributionShape {
        DistributionShape {
            enabled: true,
            comment: self.names.comment.clone(),
            origin_domain: self.names.origin_domain.clone(),
            origin_path: self.names.origin_path.clone(),
            oac_id: oac_id.to_string(),
            aliases: self.aliases.clone(),
            certificate_arn: self.certificate_arn.clone(),
            viewer_protocol_policy: VIEWER_PROTOCOL_POLICY.to_string(),
            allowed_methods: ALLOWED_METHODS.iter().map(|m| m.to_string()).collect(),
            default_root_object: String::new(),
        }
    }

    /// What irsa writes as the OAC's description: OACs carry no tags, so
    /// this marks the one irsa owns.
    pub fn oac_description(&self, cluster: &str) -> String {
        format!("{OWNER_TAG}={cluster}")
    }

    /// Whether `oac` is this issuer's (its description carries the marker).
    pub fn owns_oac(&self, cluster: &str, oac: &ActualOac) -> bool {
        oac.description == self.oac_description(cluster)
    }
}

fn oac_settings_match(oac: &ActualOac) -> bool {
    (
        oac.signing_protocol.as_str(),
        oac.signing_behavior.as_str(),
        oac.origin_type.as_str(),
    ) == OAC_SETTINGS
}

/// Adds the OAC's and the distribution's changes and conflicts to `plan`
/// (after the bucket's: an invalidation follows the documents it covers).
pub(super) fn diff(plan: &mut Plan, desired: &Desired, actual: &Actual, cf: &DesiredCloudFront) {
    let oac_res = format!("cloudfront origin-access-control {}", cf.names.oac_name);
    let mut oac_id = None;
    match &actual.oac {
        None => plan.changes.push(change(
            &oac_res,
            "sigv4, always sign, s3 origin",
            Action::CreateOac,
        )),
        Some(oac) if cf.owns_oac(&desired.cluster, oac) => {
            oac_id = Some(oac.id.clone());
            if !oac_settings_match(oac) {
                plan.changes.push(change(
                    &oac_res,
                    format!(
                        "{}/{}/{} -> sigv4/always/s3",
                        oac.signing_protocol, oac.signing_behavior, oac.origin_type
                    ),
                    Action::UpdateOac { id: oac.id.clone() },
                ));
            }
        }
        Some(oac) => {
            plan.conflicts.push(format!(
                "{oac_res} ({}) exists and its description is not {:?}, so it is not irsa's: rename or delete it (aws cloudfront delete-origin-access-control), then run irsa apply again",
                oac.id,
                cf.oac_description(&desired.cluster)
            ));
            return;
        }
    }
    for id in &actual.foreign_distributions {
        plan.notes.push(format!(
            "cloudfront distribution {id} also serves s3://{}{} but is not tagged {OWNER_TAG}={}: left alone",
            cf.names.origin_domain, cf.names.origin_path, desired.cluster
        ));
    }
    let Some(dist) = &actual.distribution else {
        plan.changes.push(change(
            "cloudfront distribution",
            format!(
                "origin {}{} through the OAC, GET/HEAD only, HTTPS only, tagged {OWNER_TAG}={}",
                cf.names.origin_domain, cf.names.origin_path, desired.cluster
            ),
            Action::CreateDistribution,
        ));
        return;
    };
    let res = format!("cloudfront distribution {} ({})", dist.id, dist.domain_name);
    let want = cf.shape(oac_id.as_deref().unwrap_or(&dist.shape.oac_id));
    if dist.shape != want {
        plan.changes.push(change(
            &res,
            differences(&dist.shape, &want).join(", "),
            Action::UpdateDistribution {
                id: dist.id.clone(),
            },
        ));
    }
    let replaced = plan
        .changes
        .iter()
        .any(|c| matches!(c.action, Action::PutObject { creates: false, .. }));
    if replaced {
        plan.changes.push(change(
            &res,
            format!("invalidate {}", cf.paths.join(" ")),
            Action::Invalidate {
                id: dist.id.clone(),
                paths: cf.paths.clone(),
            },
        ));
    }
}

/// Why nothing may be done when the issuer URL recorded in `irsa.yaml` is
/// a distribution's own name but this issuer's distribution has another
/// one, or is gone (a new distribution would get a new name): documents,
/// providers and roles would then be for a URL nobody serves.
pub fn recorded_url_problem(desired: &Desired, actual: &Actual) -> Option<String> {
    let host = desired.cloudfront.as_ref()?.recorded_host.as_ref()?;
    match &actual.distribution {
        Some(d) if &d.domain_name == host => None,
        Some(d) => Some(format!(
            "issuer.url is https://{host} but this issuer's distribution {} is {}: irsa publishes no document whose issuer is not the distribution's name. If {} is the right distribution, set issuer.url to https://{} and run `irsa cluster config` again; otherwise delete it and restore the one for {host}",
            d.id, d.domain_name, d.id, d.domain_name
        )),
        None => Some(format!(
            "issuer.url is https://{host}, but no distribution tagged {OWNER_TAG}={} serves this bucket: a new distribution gets a new name, which every token and provider for {host} would not match. Remove issuer.url from irsa.yaml to let irsa apply create a distribution and record its URL (then run `irsa cluster config` again and restart the apiserver), or restore the distribution",
            desired.cluster
        )),
    }
}

/// The settings that differ, for the plan's output.
fn differences(have: &DistributionShape, want: &DistributionShape) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name} {a:?} -> {b:?}"));
        }
    };
    check(
        "enabled",
        have.enabled.to_string(),
        want.enabled.to_string(),
    );
    check("comment", have.comment.clone(), want.comment.clone());
    check(
        "origin",
        have.origin_domain.clone(),
        want.origin_domain.clone(),
    );
    check(
        "origin path",
        have.origin_path.clone(),
        want.origin_path.clone(),
    );
    check(
        "origin access control",
        have.oac_id.clone(),
        want.oac_id.clone(),
    );
    check("aliases", have.aliases.join(","), want.aliases.join(","));
    check(
        "certificate",
        have.certificate_arn.clone().unwrap_or_default(),
        want.certificate_arn.clone().unwrap_or_default(),
    );
    check(
        "viewer protocol",
        have.viewer_protocol_policy.clone(),
        want.viewer_protocol_policy.clone(),
    );
    check(
        "methods",
        have.allowed_methods.join(","),
        want.allowed_methods.join(","),
    );
    check(
        "default root object",
        have.default_root_object.clone(),
        want.default_root_object.clone(),
    );
    out
}

#[cfg(test)]
#[path = "cloudfront_tests.rs"]
mod tests;

//! Hosting the issuer documents in a private S3 bucket behind a CloudFront
//! distribution with an Origin Access Control (`issuer.cloudfront`).
//!
//! The bucket keeps all four Block Public Access settings on; its policy
//! lets only the service principal `cloudfront.amazonaws.com` read the two
//! documents, and only on behalf of this issuer's distribution
//! (`AWS:SourceArn`). Without a custom domain the issuer URL is the
//! distribution's `*.cloudfront.net` name, known once it exists: until
//! `irsa apply` has recorded it, `issuer.url` is absent ([`PendingUrl`]).

use serde::{Deserialize, Serialize};

use crate::issuer::{IssuerUrl, S3Location};
use crate::partition::Partition;

/// The region CloudFront takes ACM certificates from.
pub const CERTIFICATE_REGION: &str = "us-east-1";

/// The service principal CloudFront reads a bucket as.
pub const CLOUDFRONT_PRINCIPAL: &str = "cloudfront.amazonaws.com";

/// Host names CloudFront gives distributions without a custom domain.
pub const CLOUDFRONT_DOMAIN: &str = ".cloudfront.net";

/// The `issuer.cloudfront` section: serve `issuer.s3` privately through
/// CloudFront.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudFrontConfig {
    /// Custom domain names (the user owns their DNS); the issuer URL is
    /// `https://` and the first of them. Empty: the distribution's own
    /// `*.cloudfront.net` name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The ACM certificate (in us-east-1) covering the aliases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<String>,
}

/// The issuer URL is not known yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the issuer URL is not known yet: it is the CloudFront distribution's *.cloudfront.net name, which exists only once `irsa apply` has created it (apply records it as issuer.url in irsa.yaml); run `irsa apply` first, or set issuer.cloudfront.aliases and certificateArn for a custom domain known in advance")]
pub struct PendingUrl;

impl CloudFrontConfig {
    /// The issuer URL a custom domain gives, when there is one.
    pub fn alias_url(&self) -> Option<IssuerUrl> {
        self.aliases
            .first()
            .and_then(|a| IssuerUrl::parse(&format!("https://{a}")).ok())
    }

    /// Every problem of this section, given the rest of the issuer section.
    pub fn problems(&self, url: Option<&IssuerUrl>, s3: Option<&S3Location>) -> Vec<String> {
        let mut p = Vec::new();
        match s3 {
            None => p.push("issuer.cloudfront needs issuer.s3: the private bucket (bucket, region, prefix) that holds the documents CloudFront serves".to_string()),
            Some(s3) if Partition::of_region(&s3.region) != Partition::Aws => p.push(format!(
                "issuer.cloudfront: region {} is in partition {}, where irsa's CloudFront mode is not available (it needs CloudFront and ACM in the aws partition); use the public S3 mode (drop issuer.cloudfront)",
                s3.region,
                Partition::of_region(&s3.region)
            )),
            Some(_) => {}
        }
        for alias in &self.aliases {
            let ok = alias.len() <= 253
                && alias.split('.').count() >= 2
                && alias.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                });
            if !ok {
                p.push(format!(
                    "issuer.cloudfront.aliases: {alias:?} is not a lower-case DNS name like oidc.example.com (no scheme, path or wildcard)"
                ));
            }
        }
        match (&self.certificate_arn, self.aliases.is_empty()) {
            (None, false) => p.push(format!(
                "issuer.cloudfront.aliases {:?} need issuer.cloudfront.certificateArn: an ACM certificate in {CERTIFICATE_REGION} covering them (CloudFront serves a custom domain only with one)",
                self.aliases
            )),
            (Some(arn), true) => p.push(format!(
                "issuer.cloudfront.certificateArn {arn:?} is set without aliases: add the domain it covers to issuer.cloudfront.aliases, or drop certificateArn to use the distribution's *.cloudfront.net name"
            )),
            (Some(arn), false) => {
                if let Err(e) = check_certificate_arn(arn) {
                    p.push(e);
                }
            }
            (None, true) => {}
        }
        match (url, self.aliases.first()) {
            (Some(url), Some(alias)) if url.as_str() != format!("https://{alias}") => p.push(format!(
                "issuer.url {url} differs from https://{alias}, the first of issuer.cloudfront.aliases: CloudFront serves the documents at the domain root; set issuer.url to https://{alias}"
            )),
            (None, Some(alias)) => p.push(format!(
                "issuer.url is missing: with issuer.cloudfront.aliases it is https://{alias}; add it"
            )),
            (Some(url), None) if !url.host().ends_with(CLOUDFRONT_DOMAIN) || url.host_path() != url.host() => p.push(format!(
                "issuer.url {url} is not a distribution's https://NAME.cloudfront.net (which irsa apply records): remove issuer.url and let irsa apply record it, or set issuer.cloudfront.aliases and certificateArn for a custom domain"
            )),
            _ => {}
        }
        p
    }
}

/// Checks an ACM certificate ARN CloudFront can use:
/// `arn:aws:acm:us-east-1:ACCOUNT:certificate/ID`.
pub fn check_certificate_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let shape = parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "acm"
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5].strip_prefix("certificate/").is_some_and(|id| {
            !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !shape {
        return Err(format!(
            "issuer.cloudfront.certificateArn {arn:?} is not an ACM certificate ARN: expected arn:aws:acm:{CERTIFICATE_REGION}:ACCOUNT:certificate/ID (aws acm list-certificates --region {CERTIFICATE_REGION})"
        ));
    }
    if parts[1] != "aws" {
        return Err(format!(
            "issuer.cloudfront.certificateArn {arn:?} is in partition {}; CloudFront custom domains need a certificate in the aws partition",
            parts[1]
        ));
    }
    if parts[3] != CERTIFICATE_REGION {
        return Err(format!(
            "issuer.cloudfront.certificateArn {arn:?} is in {}; CloudFront uses ACM certificates only from {CERTIFICATE_REGION}: request or import the certificate there",
            parts[3]
        ));
    }
    Ok(())
}

/// Names and identities of this issuer's CloudFront resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudFrontNames {
    /// The Origin Access Control's name (unique in the account, at most 64).
    pub oac_name: String,
    /// The distribution's comment: how irsa recognises it among others.
    pub comment: String,
    /// The distribution's caller reference (idempotent creation).
    pub caller_reference: String,
    /// The origin: the bucket's regional REST endpoint.
    pub origin_domain: String,
    /// The origin path: `/PREFIX`, or empty for the bucket root.
    pub origin_path: String,
}

impl CloudFrontNames {
    /// The names for `cluster`'s issuer in `s3`.
    pub fn new(cluster: &str, s3: &S3Location) -> Self {
        let full = format!(
            "irsa-{cluster}-{}-{}",
            s3.bucket,
            s3.prefix.replace('/', "-")
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, full.as_bytes());
        let hex: String = digest.as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let head: String = format!("irsa-{cluster}").chars().take(45).collect();
        Self {
            oac_name: format!("{head}-{hex}"),
            comment: format!(
                "irsa issuer of cluster {cluster}: s3://{}/{}",
                s3.bucket, s3.prefix
            ),
            caller_reference: format!("{head}-{hex}"),
            origin_domain: origin_domain(s3),
            origin_path: if s3.prefix.is_empty() {
                String::new()
            } else {
                format!("/{}", s3.prefix)
            },
        }
    }
}

/// The bucket's regional REST endpoint, the origin CloudFront signs for.
pub fn origin_domain(s3: &S3Location) -> String {
    Partition::of_region(&s3.region).s3_bucket_host(&s3.bucket, &s3.region)
}

/// The ARN of a distribution.
pub fn distribution_arn(account: &str, id: &str) -> String {
    crate::arn::cloudfront_distribution(account, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3() -> S3Location {
        S3Location::new("acme-oidc", "eu-west-1", "prod").expect("valid")
    }

    #[test]
    fn certificate_arns_must_be_acm_in_us_east_1() {
        let good = "arn:aws:acm:us-east-1:111122223333:certificate/0a1b-2c3d";
        assert_eq!(check_certificate_arn(good), Ok(()));
        let wrong_region =
            check_certificate_arn(&good.replace("us-east-1", "eu-west-1")).expect_err("region");
        assert!(
            wrong_region.contains("only from us-east-1"),
            "{wrong_region}"
        );
        for bad in [
            "arn:aws:iam::111122223333:server-certificate/x",
            "arn:aws:acm:us-east-1:1111:certificate/x",
            "certificate/x",
            "arn:aws:acm:us-east-1:111122223333:certificate/",
        ] {
            let e = check_certificate_arn(bad).expect_err(bad);
            assert!(e.contains("is not an ACM certificate ARN"), "{e}");
        }
    }

    #[test]
    fn bad_combinations_are_named_with_their_fix() {
        let alias_only = CloudFrontConfig {
            aliases: vec!["oidc.example.com".into()],
            certificate_arn: None,
        };
        let url = IssuerUrl::parse("https://oidc.example.com").expect("url");
        let p = alias_only.problems(Some(&url), Some(&s3()));
        assert!(
            p.len() == 1 && p[0].contains("need issuer.cloudfront.certificateArn"),
            "{p:?}"
        );
        let cert_only = CloudFrontConfig {
            aliases: vec![],
            certificate_arn: Some("arn:aws:acm:us-east-1:111122223333:certificate/x".into()),
        };
        let p = cert_only.problems(None, Some(&s3()));
        assert!(p.len() == 1 && p[0].contains("without aliases"), "{p:?}");
        let plain = CloudFrontConfig::default();
        assert!(plain.problems(None, Some(&s3())).is_empty());
        let p = plain.problems(None, None);
        assert!(p[0].contains("needs issuer.s3"), "{p:?}");
        let wrong =
            IssuerUrl::parse("https://acme-oidc.s3.eu-west-1.amazonaws.com/prod").expect("url");
        let p = plain.problems(Some(&wrong), Some(&s3()));
        assert!(p[0].contains("remove issuer.url"), "{p:?}");
        let recorded = IssuerUrl::parse("https://d111abcdef8.cloudfront.net").expect("url");
        assert!(plain.problems(Some(&recorded), Some(&s3())).is_empty());
    }

    #[test]
    fn cloudfront_mode_is_refused_outside_the_aws_partition() {
        let plain = CloudFrontConfig::default();
        for region in [
            "cn-north-1",
            "us-gov-west-1",
            "us-iso-east-1",
            "eusc-de-east-1",
        ] {
            let s3 = S3Location::new("acme-oidc", region, "prod").expect("valid");
            let p = plain.problems(None, Some(&s3));
            assert!(
                p.len() == 1 && p[0].contains("drop issuer.cloudfront") && p[0].contains(region),
                "{region}: {p:?}"
            );
        }
        assert!(plain.problems(None, Some(&s3())).is_empty());
    }

    #[test]
    fn names_are_deterministic_and_bounded() {
        let n = CloudFrontNames::new("prod", &s3());
        assert_eq!(n, CloudFrontNames::new("prod", &s3()));
        assert_eq!(n.origin_domain, "acme-oidc.s3.eu-west-1.amazonaws.com");
        assert_eq!(n.origin_path, "/prod");
        let long = CloudFrontNames::new(
            &"c".repeat(32),
            &S3Location::new(&"b".repeat(63), "eu-west-1", "").expect("valid"),
        );
        assert!(long.oac_name.len() <= 64, "{}", long.oac_name);
        assert_ne!(long.oac_name, n.oac_name);
        assert_eq!(long.origin_path, "");
    }
}

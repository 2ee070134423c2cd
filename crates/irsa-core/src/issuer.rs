//! Issuer URLs and where their documents live.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest issuer URL IAM accepts for an OIDC provider.
pub const MAX_ISSUER_LEN: usize = 255;

/// Why an issuer URL or S3 location is rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IssuerError {
    /// Not https.
    #[error("issuer {url:?} does not start with https://; AWS STS only fetches keys over HTTPS: use https://{rest}")]
    NotHttps {
        /// The URL.
        url: String,
        /// The URL without its scheme.
        rest: String,
    },
    /// Ends with a slash.
    #[error("issuer {url:?} ends with '/'; tokens carry the issuer byte for byte and AWS rejects an iss that differs by a slash: use {fixed:?}")]
    TrailingSlash {
        /// The URL.
        url: String,
        /// The URL without the slash.
        fixed: String,
    },
    /// Has a query or fragment.
    #[error(
        "issuer {url:?} has a query or fragment; OIDC issuers cannot: drop everything from '{sep}'"
    )]
    QueryOrFragment {
        /// The URL.
        url: String,
        /// `?` or `#`.
        sep: char,
    },
    /// Anything else structurally wrong.
    #[error("issuer {url:?} is invalid: {problem}")]
    Invalid {
        /// The URL.
        url: String,
        /// What is wrong and the fix.
        problem: String,
    },
    /// Bad S3 bucket name.
    #[error("S3 bucket name {bucket:?} is invalid: {problem}")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// What is wrong.
        problem: String,
    },
    /// Bad region.
    #[error("AWS region {region:?} is invalid: expected a name like us-east-1 or eu-west-1")]
    Region {
        /// The region.
        region: String,
    },
    /// Bad prefix.
    #[error("S3 prefix {prefix:?} is invalid: {problem}")]
    Prefix {
        /// The prefix.
        prefix: String,
        /// What is wrong.
        problem: String,
    },
}

/// An OIDC issuer URL: `https://`, no trailing slash, no query, fragment,
/// userinfo or port; at most 255 characters. Once you hold one, it is valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IssuerUrl(String);

impl IssuerUrl {
    /// Parses and checks an issuer URL.
    pub fn parse(url: &str) -> Result<Self, IssuerError> {
        let invalid = |problem: &str| IssuerError::Invalid {
            url: url.to_string(),
            problem: problem.to_string(),
        };
        if url.trim() != url || url.chars().any(char::is_whitespace) {
            return Err(invalid("it contains whitespace: remove it"));
        }
        let Some(rest) = url.strip_prefix("https://") else {
            let rest = url.split_once("://").map_or(url, |(_, r)| r).to_string();
            return Err(IssuerError::NotHttps {
                url: url.to_string(),
                rest,
            });
        };
        for sep in ['?', '#'] {
            if url.contains(sep) {
                return Err(IssuerError::QueryOrFragment {
                    url: url.to_string(),
                    sep,
                });
            }
        }
        if url.ends_with('/') {
            return Err(IssuerError::TrailingSlash {
                url: url.to_string(),
                fixed: url.trim_end_matches('/').to_string(),
            });
        }
        if url.len() > MAX_ISSUER_LEN {
            return Err(invalid(&format!(
                "it is {} characters; IAM allows at most {MAX_ISSUER_LEN}",
                url.len()
            )));
        }
        let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
        if host.is_empty() {
            return Err(invalid("it has no host name"));
        }
        if host.contains('@') {
            return Err(invalid("it contains user information ('@'): remove it"));
        }
        if host.contains(':') {
            return Err(invalid(
                "it names a port; STS fetches the issuer on 443 only: drop the port",
            ));
        }
        if host.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("its host has upper-case letters; IAM compares issuers case-sensitively: write the host in lower case"));
        }
        let host_ok = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            && !host.starts_with(['.', '-'])
            && !host.ends_with(['.', '-']);
        if !host_ok {
            return Err(invalid("its host is not a DNS name"));
        }
        if !path.is_empty() {
            for segment in path.split('/') {
                if segment.is_empty() || segment == "." || segment == ".." {
                    return Err(invalid("its path has an empty, '.' or '..' segment"));
                }
                if !segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~%!$&'()*+,;=:@".contains(c))
                {
                    return Err(invalid(&format!(
                        "path segment {segment:?} has characters that must be escaped"
                    )));
                }
            }
        }
        Ok(Self(url.to_string()))
    }

    /// The issuer for documents in an S3 bucket.
    pub fn for_s3(location: &S3Location) -> Self {
        let partition = crate::Partition::of_region(&location.region);
        let base = if location.bucket.contains('.') {
            // Virtual-hosted names with dots do not match S3's wildcard certificate.
            format!(
                "https://{}/{}",
                partition.s3_host(&location.region),
                location.bucket
            )
        } else {
            format!(
                "https://{}",
                partition.s3_bucket_host(&location.bucket, &location.region)
            )
        };
        let url = if location.prefix.is_empty() {
            base
        } else {
            format!("{base}/{}", location.prefix)
        };
        Self(url)
    }

    /// The URL as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Host and path without `https://`: the IAM provider URL and condition-key prefix.
    pub fn host_path(&self) -> &str {
        self.0.strip_prefix("https://").unwrap_or(&self.0)
    }

    /// The host name alone.
    pub fn host(&self) -> &str {
        self.host_path().split('/').next().unwrap_or_default()
    }

    /// URL of the discovery document.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.0)
    }

    /// URL of the JWKS at `path`.
    pub fn jwks_url(&self, path: JwksPath) -> String {
        format!("{}/{}", self.0, path.as_str())
    }
}

impl fmt::Display for IssuerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for IssuerUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for IssuerUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where the JWKS is served, relative to the issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum JwksPath {
    /// `openid/v1/jwks`, what kube-apiserver itself serves.
    #[default]
    #[serde(rename = "openid/v1/jwks")]
    OpenidV1Jwks,
    /// `keys.json`, used by many guides.
    #[serde(rename = "keys.json")]
    KeysJson,
}

impl JwksPath {
    /// Path relative to the issuer.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenidV1Jwks => "openid/v1/jwks",
            Self::KeysJson => "keys.json",
        }
    }
}

/// Path of the discovery document relative to the issuer.
pub const DISCOVERY_PATH: &str = ".well-known/openid-configuration";

/// An S3 bucket, region and key prefix that host the issuer documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// Bucket region.
    pub region: String,
    /// Key prefix without leading/trailing slashes; empty for the bucket root.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

impl S3Location {
    /// Checks bucket, region and prefix, normalising the prefix's slashes.
    pub fn new(bucket: &str, region: &str, prefix: &str) -> Result<Self, IssuerError> {
        check_bucket(bucket)?;
        check_region(region)?;
        let prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            let bad = |problem: &str| IssuerError::Prefix {
                prefix: prefix.clone(),
                problem: problem.into(),
            };
            if prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
            {
                return Err(bad("it has an empty, '.' or '..' segment"));
            }
            if !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~/".contains(c))
            {
                return Err(bad("use only letters, digits, '-', '.', '_', '~' and '/'"));
            }
        }
        Ok(Self {
            bucket: bucket.into(),
            region: region.into(),
            prefix,
        })
    }

    /// Object key for a path relative to the issuer.
    pub fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }
}

fn check_bucket(bucket: &str) -> Result<(), IssuerError> {
    let bad = |problem: &str| IssuerError::Bucket {
        bucket: bucket.into(),
        problem: problem.into(),
    };
    if !(3..=63).contains(&bucket.len()) {
        return Err(bad("it must be 3 to 63 characters long"));
    }
    if !bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err(bad("use only lower-case letters, digits, '-' and '.'"));
    }
    if !bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(bad("it must start and end with a letter or digit"));
    }
    if bucket.contains("..") || bucket.contains(".-") || bucket.contains("-.") {
        return Err(bad("it cannot contain '..', '.-' or '-.'"));
    }
    if bucket.split('.').count() == 4 && bucket.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return Err(bad("it cannot look like an IP address"));
    }
    Ok(())
}

fn check_region(region: &str) -> Result<(), IssuerError> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(IssuerError::Region {
            region: region.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_https() {
        let u = IssuerUrl::parse("https://oidc.example.com/clusters/prod").expect("valid");
        assert_eq!(u.host_path(), "oidc.example.com/clusters/prod");
        assert_eq!(
            u.discovery_url(),
            "https://oidc.example.com/clusters/prod/.well-known/openid-configuration"
        );
        assert_eq!(
            u.jwks_url(JwksPath::KeysJson),
            "https://oidc.example.com/clusters/prod/keys.json"
        );
    }

    #[test]
    fn rejects_with_named_fix() {
        let e = IssuerUrl::parse("https://oidc.example.com/").expect_err("slash");
        assert!(
            e.to_string().contains("\"https://oidc.example.com\""),
            "{e}"
        );
        let e = IssuerUrl::parse("http://oidc.example.com").expect_err("http");
        assert!(
            e.to_string().contains("use https://oidc.example.com"),
            "{e}"
        );
        assert!(matches!(
            IssuerUrl::parse("https://a.com/x?y=1"),
            Err(IssuerError::QueryOrFragment { sep: '?', .. })
        ));
        assert!(IssuerUrl::parse("https://a.com:8443").is_err());
        assert!(IssuerUrl::parse("https://u@a.com").is_err());
        assert!(IssuerUrl::parse("https://A.com").is_err());
        assert!(IssuerUrl::parse("https://a.com//x").is_err());
        assert!(IssuerUrl::parse(&format!("https://a.com/{}", "x".repeat(250))).is_err());
    }

    #[test]
    fn s3_urls_virtual_hosted_path_style_and_china() {
        let l = S3Location::new("acme-oidc", "eu-west-1", "/prod/").expect("valid");
        assert_eq!(l.prefix, "prod");
        assert_eq!(
            IssuerUrl::for_s3(&l).as_str(),
            "https://acme-oidc.s3.eu-west-1.amazonaws.com/prod"
        );
        let l = S3Location::new("acme.oidc", "us-east-1", "").expect("valid");
        assert_eq!(
            IssuerUrl::for_s3(&l).as_str(),
            "https://s3.us-east-1.amazonaws.com/acme.oidc"
        );
        let l = S3Location::new("acme", "cn-north-1", "").expect("valid");
        assert_eq!(
            IssuerUrl::for_s3(&l).as_str(),
            "https://acme.s3.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(l.key(DISCOVERY_PATH), ".well-known/openid-configuration");
        let nested = S3Location::new("acme-oidc", "eu-west-1", "a/b").expect("valid");
        assert!(IssuerUrl::parse(IssuerUrl::for_s3(&nested).as_str()).is_ok());
    }

    #[test]
    fn rejects_bad_buckets_and_regions() {
        assert!(S3Location::new("Acme", "us-east-1", "").is_err());
        assert!(S3Location::new("ab", "us-east-1", "").is_err());
        assert!(S3Location::new("192.168.1.1", "us-east-1", "").is_err());
        assert!(S3Location::new("acme", "useast1", "").is_err());
        assert!(S3Location::new("acme", "us-east-1", "a b").is_err());
    }
}

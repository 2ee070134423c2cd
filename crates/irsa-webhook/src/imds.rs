//! `--compose-role-arn`: a `role-arn` annotation holding a role name (and
//! path) instead of an ARN becomes `arn:<partition>:iam::<account>:role/<name>`.
//! As in the Go webhook the account and region come from the EC2 instance
//! identity document (IMDSv2: `PUT /latest/api/token`, then
//! `GET /latest/dynamic/instance-identity/document` with the token), the
//! partition from the region; off EC2, `--aws-account-id` (and
//! `--aws-partition`) replace the lookup.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request};
use serde::Deserialize;

/// Where IMDS answers unless `AWS_EC2_METADATA_SERVICE_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// How long the whole lookup may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The partition and account role names are composed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArnContext {
    /// `aws`, `aws-cn`, `aws-us-gov`, ...
    pub partition: String,
    /// The 12-digit account id.
    pub account: String,
}

impl RoleArnContext {
    /// The full ARN for an annotation value holding a role name (with an
    /// optional path); `None` when the value already is an ARN (contains
    /// `arn:`, the Go webhook's test).
    pub fn compose(&self, value: &str) -> Option<String> {
        (!value.contains("arn:"))
            .then(|| format!("arn:{}:iam::{}:role/{value}", self.partition, self.account))
    }
}

/// The partition of a region, by its prefix.
pub fn partition_for_region(region: &str) -> &'static str {
    const PREFIXES: [(&str, &str); 5] = [
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-iso-", "aws-iso"),
        ("us-isob-", "aws-iso-b"),
        ("eusc-", "aws-eusc"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map_or("aws", |(_, partition)| partition)
}

/// Why the account could not be learnt.
#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    /// The endpoint is not an `http://host[:port]` URL.
    #[error("instance metadata endpoint {0:?} is not an http://host[:port] URL; fix AWS_EC2_METADATA_SERVICE_ENDPOINT")]
    Endpoint(String),
    /// No answer, or an error status, from the endpoint.
    #[error("--compose-role-arn: cannot read the instance identity document from {endpoint} ({step}: {detail}); off EC2, pass --aws-account-id (and --aws-partition)")]
    Unreachable {
        /// The endpoint asked.
        endpoint: String,
        /// Which request failed.
        step: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The document has no usable account id.
    #[error("--compose-role-arn: the instance identity document from {0} has no 12-digit accountId; pass --aws-account-id")]
    Document(String),
    /// `--aws-account-id` is not 12 digits.
    #[error("--aws-account-id {0:?} is not a 12-digit AWS account id")]
    Account(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityDocument {
    account_id: String,
    region: String,
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The context from flags when `account` is given, else from IMDS at `endpoint`.
pub async fn context(
    endpoint: &str,
    account: Option<&str>,
    partition: Option<&str>,
) -> Result<RoleArnContext, ImdsError> {
    if let Some(account) = account {
        if !is_account(account) {
            return Err(ImdsError::Account(account.to_string()));
        }
        return Ok(RoleArnContext {
            partition: partition.unwrap_or("aws").to_string(),
            account: account.to_string(),
        });
    }
    let doc = tokio::time::timeout(TIMEOUT, identity_document(endpoint))
        .await
        .unwrap_or_else(|_| {
            Err(ImdsError::Unreachable {
                endpoint: endpoint.to_string(),
                step: "lookup",
                detail: format!("no answer within {} s", TIMEOUT.as_secs()),
            })
        })?;
    let doc: IdentityDocument =
        serde_json::from_slice(&doc).map_err(|_| ImdsError::Document(endpoint.to_string()))?;
    if !is_account(&doc.account_id) {
        return Err(ImdsError::Document(endpoint.to_string()));
    }
    Ok(RoleArnContext {
        partition: partition
            .unwrap_or(partition_for_region(&doc.region))
            .to_string(),
        account: doc.account_id,
    })
}

async fn identity_document(endpoint: &str) -> Result<Bytes, ImdsError> {
    let base = endpoint.trim_end_matches('/');
    let token = call(
        base,
        Method::PUT,
        "/latest/api/token",
        ("x-aws-ec2-metadata-token-ttl-seconds", "21600"),
        "PUT /latest/api/token",
    )
    .await?;
    let token = String::from_utf8_lossy(&token).trim().to_string();
    call(
        base,
        Method::GET,
        "/latest/dynamic/instance-identity/document",
        ("x-aws-ec2-metadata-token", &token),
        "GET /latest/dynamic/instance-identity/document",
    )
    .await
}

/// One request on its own connection; the body is capped at 64 KiB.
async fn call(
    base: &str,
    method: Method,
    path: &str,
    header: (&str, &str),
    step: &'static str,
) -> Result<Bytes, ImdsError> {
    let uri: hyper::Uri = format!("{base}{path}")
        .parse()
        .map_err(|_| ImdsError::Endpoint(base.to_string()))?;
    let (Some("http"), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Err(ImdsError::Endpoint(base.to_string()));
    };
    let failed = |detail: String| ImdsError::Unreachable {
        endpoint: base.to_string(),
        step,
        detail,
    };
    let port = uri.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| failed(e.to_string()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| failed(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let authority = uri.authority().map(|a| a.as_str().to_string());
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority.unwrap_or_default())
        .header(header.0, header.1)
        .body(Empty::<Bytes>::new())
        .map_err(|e| failed(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|e| failed(e.to_string()))?
        .to_bytes();
    driver.abort();
    if !status.is_success() {
        return Err(failed(format!("HTTP {status}")));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_the_region_prefix() {
        for (region, partition) in [
            ("eu-west-1", "aws"),
            ("cn-north-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("eusc-de-east-1", "aws-eusc"),
        ] {
            assert_eq!(partition_for_region(region), partition, "{region}");
        }
    }

    #[test]
    fn names_and_paths_are_composed_and_arns_left_alone() {
        let c = RoleArnContext {
            partition: "aws-cn".into(),
            account: "111122223333".into(),
        };
        assert_eq!(
            c.compose("s3-reader").as_deref(),
            Some("arn:aws-cn:iam::111122223333:role/s3-reader")
        );
        assert_eq!(
            c.compose("team/app/s3-reader").as_deref(),
            Some("arn:aws-cn:iam::111122223333:role/team/app/s3-reader")
        );
        assert_eq!(c.compose("arn:aws:iam::444455556666:role/x"), None);
    }
}

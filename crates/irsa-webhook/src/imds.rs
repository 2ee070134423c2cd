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
use irsa_core::Partition;
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
            .then(|| irsa_core::arn::role_of_name(&self.partition, &self.account, value))
    }
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
    /// `--aws-partition` names no partition irsa knows.
    #[error("--aws-partition: {0}")]
    Partition(#[from] irsa_core::partition::UnknownPartition),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityDocument {
    account_id: String,
    region: String,
}

fn is_account(s: &str) -> bool {
    irsa_core::arn::check_account(s).is_ok()
}

/// The context from flags when `account` is given, else from IMDS at
/// `endpoint`. The partition: `partition` (checked against irsa-core's
/// table), else that of the instance's region, or of `region`
/// (`--aws-default-region`) with `account`, else `aws`.
pub async fn context(
    endpoint: &str,
    account: Option<&str>,
    partition: Option<&str>,
    region: Option<&str>,
) -> Result<RoleArnContext, ImdsError> {
    let partition = partition.map(str::parse::<Partition>).transpose()?;
    if let Some(account) = account {
        if !is_account(account) {
            return Err(ImdsError::Account(account.to_string()));
        }
        let partition = partition
            .or_else(|| region.map(Partition::of_region))
            .unwrap_or(Partition::Aws);
        return Ok(RoleArnContext {
            partition: partition.id().to_string(),
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
            .unwrap_or_else(|| Partition::of_region(&doc.region))
            .id()
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

    fn from_flags(partition: Option<&str>, region: Option<&str>) -> Result<String, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(context(
            "http://127.0.0.1:1",
            Some("111122223333"),
            partition,
            region,
        ))
        .map(|c| c.partition)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn with_an_account_the_partition_comes_from_the_flag_or_the_default_region() {
        assert_eq!(from_flags(None, None).as_deref(), Ok("aws"));
        assert_eq!(
            from_flags(None, Some("us-iso-east-1")).as_deref(),
            Ok("aws-iso")
        );
        assert_eq!(
            from_flags(None, Some("eusc-de-east-1")).as_deref(),
            Ok("aws-eusc")
        );
        assert_eq!(
            from_flags(Some("aws-us-gov"), Some("cn-north-1")).as_deref(),
            Ok("aws-us-gov"),
            "the flag wins"
        );
        let err = from_flags(Some("aws-mars"), None).expect_err("unknown partition");
        assert!(
            err.contains("--aws-partition") && err.contains("aws-iso-f"),
            "{err}"
        );
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

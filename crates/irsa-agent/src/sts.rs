//! STS AssumeRole for a pod, with the broker's own credentials from the
//! SDK's default chain and the endpoint from the standard variables
//! (`AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`).
//!
//! Throttling and transient errors are retried by the SDK's standard
//! retry mode (exponential backoff with jitter) up to [`MAX_ATTEMPTS`]
//! times within [`OPERATION_TIMEOUT`]; then the caller gets a 5xx, which
//! the SDKs retry, rather than a hang.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_sdk_sts::types::Tag;
use irsa_core::podidentity::{
    account_of, session_name, session_tags, ContainerCredentials, PodIdentity, Refusal,
    SESSION_SECONDS,
};
use irsa_core::Timestamp;

use crate::metrics::{Kind, Metrics};

/// Attempts per AssumeRole (the first and the retries).
pub const MAX_ATTEMPTS: u32 = 4;
/// Longest AssumeRole, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(12);
/// Longest single attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);

/// Assumes roles for pods of one cluster.
pub struct Sts {
    client: aws_sdk_sts::Client,
    cluster: String,
    metrics: Arc<Metrics>,
}

impl Sts {
    /// A client from the default chain; the region defaults to us-east-1
    /// when none is configured (STS's global endpoint's).
    pub async fn connect(cluster: &str, metrics: Arc<Metrics>) -> Self {
        let region =
            aws_config::meta::region::RegionProviderChain::default_provider().or_else("us-east-1");
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(region)
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(100)),
            )
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(OPERATION_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .connect_timeout(Duration::from_secs(3))
                    .build(),
            )
            .load()
            .await;
        Self {
            client: aws_sdk_sts::Client::new(&config),
            cluster: cluster.to_string(),
            metrics,
        }
    }

    /// Assumes `role` for `pod` with its session tags, all transitive.
    pub async fn assume(
        &self,
        role: &str,
        pod: &PodIdentity,
    ) -> Result<ContainerCredentials, Refusal> {
        let tags =
            session_tags(&self.cluster, pod).map_err(|e| Refusal::new(403, e.to_string()))?;
        let mut call = self
            .client
            .assume_role()
            .role_arn(role)
            .role_session_name(session_name(pod))
            .duration_seconds(SESSION_SECONDS);
        for (key, value) in tags {
            let tag = Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| Refusal::new(500, e.to_string()))?;
            call = call.tags(tag).transitive_tag_keys(key);
        }
        let start = Instant::now();
        let answer = call.send().await;
        self.metrics
            .sts_latency
            .observe(start.elapsed().as_secs_f64());
        let out = match answer {
            Ok(out) => out,
            Err(error) => {
                self.metrics
                    .sts_calls
                    .get_or_create(&Kind { kind: "error" })
                    .inc();
                let code = error.code().unwrap_or("").to_string();
                let message = error.message().unwrap_or("").to_string();
                tracing::warn!(role, %code, %message, error = %aws_sdk_sts::error::DisplayErrorContext(&error), "AssumeRole failed");
                return Err(match code.as_str() {
                    "AccessDenied" | "AccessDeniedException" => Refusal::new(
                        403,
                        format!("STS refused AssumeRole of {role}: {message}; the role's trust must allow the broker sts:AssumeRole and sts:TagSession"),
                    ),
                    "" => Refusal::new(503, format!("STS did not answer AssumeRole of {role}; retry")),
                    _ => Refusal::new(502, format!("STS refused AssumeRole of {role}: {code}: {message}")),
                });
            }
        };
        self.metrics
            .sts_calls
            .get_or_create(&Kind { kind: "ok" })
            .inc();
        let Some(c) = out.credentials() else {
            return Err(Refusal::new(
                502,
                "STS answered AssumeRole without credentials; retry",
            ));
        };
        let account = out
            .assumed_role_user()
            .and_then(|u| account_of(u.arn()))
            .or_else(|| account_of(role))
            .unwrap_or_default()
            .to_string();
        Ok(ContainerCredentials {
            access_key_id: c.access_key_id().to_string(),
            secret_access_key: c.secret_access_key().to_string(),
            token: c.session_token().to_string(),
            expiration: Timestamp::saturating_from_unix(c.expiration().secs()),
            account_id: account,
        })
    }
}

//! Connecting to AWS: the shared config (profile, region, retries,
//! `AWS_ENDPOINT_URL`), the S3, S3 Control, IAM and STS clients, the bound on
//! concurrent calls and the counters of calls made.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Clients plus counters of the calls made.
pub struct Aws {
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) iam: aws_sdk_iam::Client,
    pub(crate) sts: aws_sdk_sts::Client,
    pub(crate) cf: aws_sdk_cloudfront::Client,
    pub(crate) s3control: aws_sdk_s3control::Client,
    reads: AtomicUsize,
    writes: AtomicUsize,
    pub(crate) parallelism: usize,
}

/// Where to connect.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// Named profile.
    pub profile: Option<String>,
    /// Region override.
    pub region: Option<String>,
    /// How many independent calls may run at once (at least 1).
    pub parallelism: usize,
}

/// Default bound on concurrent AWS calls: IAM's mutating APIs are
/// rate-limited per account, so a handful at a time is as fast as it gets
/// without being throttled.
pub const DEFAULT_PARALLELISM: usize = 8;

/// Throttling and transient errors (the SDK's standard classification)
/// are retried with exponential backoff and jitter, up to 8 attempts;
/// `AWS_MAX_ATTEMPTS`, when set, wins over this.
fn retry_config() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(8)
        .with_initial_backoff(std::time::Duration::from_millis(200))
}

/// S3 Control puts the account ID in front of the endpoint's host
/// (`ACCOUNT.s3-control...`); an endpoint given with `AWS_ENDPOINT_URL`
/// (an emulator on 127.0.0.1, a proxy) is used as it is.
fn s3control_client(shared: &aws_config::SdkConfig) -> aws_sdk_s3control::Client {
    let mut builder = aws_sdk_s3control::config::Builder::from(shared);
    if let Some(url) = shared.endpoint_url() {
        builder = builder.endpoint_resolver(PlainEndpoint(url.to_string()));
    }
    aws_sdk_s3control::Client::from_conf(builder.build())
}

/// An S3 Control endpoint resolver that returns one URL unchanged.
#[derive(Debug)]
struct PlainEndpoint(String);

impl aws_sdk_s3control::config::endpoint::ResolveEndpoint for PlainEndpoint {
    fn resolve_endpoint<'a>(
        &'a self,
        _params: &'a aws_sdk_s3control::config::endpoint::Params,
    ) -> aws_sdk_s3control::config::endpoint::EndpointFuture<'a> {
        aws_sdk_s3control::config::endpoint::EndpointFuture::ready(Ok(
            aws_sdk_s3control::config::endpoint::Endpoint::builder()
                .url(self.0.clone())
                .build(),
        ))
    }
}

impl Aws {
    /// Clients from the default chain (env, profile, SSO, IMDS, web identity),
    /// honouring `AWS_ENDPOINT_URL` (S3 then uses path-style addressing).
    pub async fn connect(c: &Connect) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(p) = &c.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &c.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if std::env::var_os("AWS_MAX_ATTEMPTS").is_none() {
            loader = loader.retry_config(retry_config());
        }
        let shared = loader.load().await;
        let custom_endpoint = std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(custom_endpoint)
            .build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            iam: aws_sdk_iam::Client::new(&shared),
            sts: aws_sdk_sts::Client::new(&shared),
            cf: aws_sdk_cloudfront::Client::new(&shared),
            s3control: s3control_client(&shared),
            reads: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            parallelism: c.parallelism.max(1),
        }
    }

    /// Counts one read call.
    pub(crate) fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts one write call.
    pub(crate) fn write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Makes one write call: counts it, sends it, and names `operation`
    /// in the error if AWS refuses it. Every write irsa makes goes
    /// through here.
    pub(crate) async fn call<T, E>(
        &self,
        operation: &'static str,
        send: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, crate::AwsError>
    where
        E: aws_sdk_iam::error::ProvideErrorMetadata + std::fmt::Debug,
    {
        self.write();
        send.await.map_err(|e| crate::error::call_err(operation, e))
    }

    /// Makes one read call: as [`Aws::call`], counted as a read.
    pub(crate) async fn get<T, E>(
        &self,
        operation: &'static str,
        send: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, crate::AwsError>
    where
        E: aws_sdk_iam::error::ProvideErrorMetadata + std::fmt::Debug,
    {
        self.read();
        send.await.map_err(|e| crate::error::call_err(operation, e))
    }

    /// Reads something that may not exist: as [`Aws::get`], with an error
    /// whose code is one of `absent` (`NoSuchEntity`, `NoSuchKey`...)
    /// read as `None`.
    pub(crate) async fn get_opt<T, E>(
        &self,
        operation: &'static str,
        absent: &[&str],
        send: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<Option<T>, crate::AwsError>
    where
        E: aws_sdk_iam::error::ProvideErrorMetadata + std::fmt::Debug,
    {
        self.read();
        match send.await {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.code().is_some_and(|c| absent.contains(&c)) => Ok(None),
            Err(e) => Err(crate::error::call_err(operation, e)),
        }
    }

    /// (reads, writes) made so far.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.reads.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use aws_config::retry::RetryMode;

    use super::*;

    #[test]
    fn calls_are_retried_up_to_eight_times_with_backoff() {
        let r = retry_config();
        assert_eq!(r.mode(), RetryMode::Standard);
        assert_eq!(r.max_attempts(), 8);
        assert_eq!(r.initial_backoff(), std::time::Duration::from_millis(200));
    }
}

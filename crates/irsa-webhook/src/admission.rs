//! Admission transport: decode an `admission.k8s.io/v1` AdmissionReview,
//! look up the ServiceAccount, call the pure mutation, encode the response.
//! Every failure becomes a well-formed response; nothing here panics.
//!
//! This path runs for every pod created in the cluster, so the review and
//! the pod are read in one pass into borrowed views
//! ([`irsa_core::mutate::PodView`]: only the fields the mutation uses), and
//! the answer is written straight into one buffer, with no intermediate
//! `serde_json::Value` or k8s-openapi trees.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use irsa_core::mutate::{mutate_with, Decision, Injection, MutationConfig, PodView, Text};
use kube::Client;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::cache::{Lookup, SaStore};
use crate::containercreds::PodIdentities;
use crate::metrics::Metrics;

/// The parts of an AdmissionReview the webhook reads, borrowed from the
/// body; `O` is the object's view (the pod, or nothing at all).
#[derive(Deserialize)]
struct Envelope<'a, O> {
    #[serde(rename = "apiVersion", borrow)]
    api_version: Option<Text<'a>>,
    #[serde(borrow)]
    request: Option<RequestView<'a, O>>,
}

#[derive(Deserialize)]
struct RequestView<'a, O> {
    #[serde(borrow)]
    uid: Text<'a>,
    #[serde(borrow)]
    kind: Option<KindView<'a>>,
    #[serde(borrow)]
    namespace: Option<Text<'a>>,
    #[serde(borrow)]
    operation: Option<Text<'a>>,
    object: Option<O>,
}

/// `request.kind`: only the kind is checked (pods are in the core group).
#[derive(Deserialize)]
struct KindView<'a> {
    #[serde(borrow)]
    kind: Option<Text<'a>>,
}

impl<O> RequestView<'_, O> {
    /// Whether this is a pod creation, the only request that is mutated.
    fn is_pod_create(&self) -> bool {
        let is_pod = self
            .kind
            .as_ref()
            .is_none_or(|k| k.kind.as_deref() == Some("Pod"));
        is_pod && self.operation.as_deref().unwrap_or("CREATE") == "CREATE"
    }
}

/// Just the request's uid, for answering requests that do not decode.
#[derive(Deserialize)]
struct UidOnly {
    request: Option<UidRequest>,
}

#[derive(Deserialize)]
struct UidRequest {
    uid: String,
}

/// An `AdmissionResponse`.
#[derive(Default)]
struct Answer<'a> {
    uid: Cow<'a, str>,
    allowed: bool,
    status: Option<StatusOut>,
    /// The JSON Patch (sent base64-encoded, with `patchType: JSONPatch`).
    patch: Option<Vec<u8>>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct StatusOut {
    message: String,
    code: u16,
    reason: &'static str,
}

impl<'a> Answer<'a> {
    fn allow(uid: Cow<'a, str>) -> Self {
        Self {
            uid,
            allowed: true,
            ..Default::default()
        }
    }
    fn deny(uid: Cow<'a, str>, message: String) -> Self {
        Self {
            uid,
            allowed: false,
            status: Some(StatusOut {
                message,
                code: 400,
                reason: "BadRequest",
            }),
            ..Default::default()
        }
    }
}

/// The answer is always an `AdmissionReview`; its apiVersion is the
/// request's when that is one the apiserver speaks, else v1 (a request
/// with another kind or version is not from an apiserver; echoing it
/// would produce an answer no apiserver accepts).
///
/// Written field by field, in the order the Go webhook writes them: the
/// fixed names and the base64 patch need no escaping, so only the uid,
/// the status and the warnings go through serde. The property test in
/// `tests/fuzz.rs` reads 5,000 answers back (uid, status, patch applied to
/// the pod) and the end-to-end test has the real apiserver read them.
fn encode(api_version: Option<&str>, answer: Answer<'_>) -> Vec<u8> {
    let version = api_version
        .filter(|v| matches!(*v, "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"))
        .unwrap_or("admission.k8s.io/v1");
    let patch_len = answer.patch.as_ref().map_or(0, |p| p.len().div_ceil(3) * 4);
    let mut out = Vec::with_capacity(192 + answer.uid.len() + patch_len);
    out.extend_from_slice(b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"");
    out.extend_from_slice(version.as_bytes());
    out.extend_from_slice(b"\",\"response\":{\"uid\":");
    // Serialising a string or a plain struct into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &*answer.uid);
    out.extend_from_slice(if answer.allowed {
        b",\"allowed\":true"
    } else {
        b",\"allowed\":false"
    });
    if let Some(status) = &answer.status {
        out.extend_from_slice(b",\"status\":");
        let _ = serde_json::to_writer(&mut out, status);
    }
    if let Some(patch) = &answer.patch {
        out.extend_from_slice(b",\"patch\":\"");
        irsa_core::b64::encode_std_into(patch, &mut out);
        out.extend_from_slice(b"\",\"patchType\":\"JSONPatch\"");
    }
    if !answer.warnings.is_empty() {
        out.extend_from_slice(b",\"warnings\":");
        let _ = serde_json::to_writer(&mut out, &answer.warnings);
    }
    out.extend_from_slice(b"}}");
    out
}

/// Everything an admission needs.
#[derive(Clone)]
pub struct Handler {
    /// ServiceAccount cache.
    pub store: SaStore,
    /// API client for cache misses (None in unit tests).
    pub client: Option<Client>,
    /// Mutation settings.
    pub config: Arc<MutationConfig>,
    /// The ServiceAccounts given EKS Pod Identity credentials
    /// (`--watch-container-credentials-config`), if watched.
    pub pod_identities: Option<PodIdentities>,
    /// Bound on the API fallback.
    pub lookup_timeout: Duration,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

impl Handler {
    fn outcome(&self, kind: &'static str) {
        self.metrics.admission(kind);
    }

    /// Answers one AdmissionReview body with the response review's JSON bytes.
    pub async fn review(&self, body: &[u8]) -> Vec<u8> {
        // JSON is UTF-8 (RFC 8259); checking it once up front lets the
        // parser skip the check string by string.
        let text = match std::str::from_utf8(body) {
            Ok(text) => text,
            Err(e) => return self.undecodable(body, format!("the body is not UTF-8 text: {e}")),
        };
        // One pass over the body reads the review and the pod together.
        let error = match serde_json::from_str::<Envelope<'_, PodView<'_>>>(text) {
            Ok(envelope) => {
                let version = envelope.api_version.as_deref();
                let Some(req) = envelope.request else {
                    return self.no_request(version);
                };
                let answer = self.respond(req).await;
                return encode(version, answer);
            }
            Err(e) => e,
        };
        // The slow path, for bodies that did not decode with a pod in them:
        // a request for something else is let through untouched; a pod that
        // is not a pod, or a review that is not a review, is refused.
        match serde_json::from_str::<Envelope<'_, IgnoredAny>>(text) {
            Ok(Envelope {
                api_version,
                request: Some(req),
            }) => {
                let version = api_version.as_deref();
                if req.is_pod_create() && req.object.is_some() {
                    self.outcome("invalid");
                    let message = format!("request object is not a Pod: {error}");
                    encode(version, Answer::deny(req.uid.0, message))
                } else {
                    self.outcome("ignored");
                    encode(version, Answer::allow(req.uid.0))
                }
            }
            Ok(Envelope { api_version, .. }) => self.no_request(api_version.as_deref()),
            Err(e) => self.undecodable(body, format!("cannot decode AdmissionReview: {e}")),
        }
    }

    /// Refuses a review without a request (there is no uid to echo).
    fn no_request(&self, api_version: Option<&str>) -> Vec<u8> {
        self.outcome("invalid");
        let answer = Answer::deny(Cow::Borrowed(""), "AdmissionReview has no request".into());
        encode(api_version, answer)
    }

    /// Refuses a body that is not an AdmissionReview, still echoing the uid
    /// when one can be read, so the caller can match the refusal to its request.
    fn undecodable(&self, body: &[u8], message: String) -> Vec<u8> {
        self.outcome("invalid");
        let uid = serde_json::from_slice::<UidOnly>(body)
            .ok()
            .and_then(|u| u.request)
            .map(|r| r.uid)
            .unwrap_or_default();
        encode(None, Answer::deny(Cow::Owned(uid), message))
    }

    async fn respond<'a>(&self, req: RequestView<'a, PodView<'_>>) -> Answer<'a> {
        if !req.is_pod_create() {
            self.outcome("ignored");
            return Answer::allow(req.uid.0);
        }
        let uid = req.uid.0;
        let Some(pod) = req.object else {
            self.outcome("ignored");
            return Answer::allow(uid);
        };
        let namespace = req
            .namespace
            .as_deref()
            .or_else(|| pod.namespace())
            .unwrap_or("default");
        let sa_name = pod.service_account_name().unwrap_or("default");
        let span = tracing::debug_span!("admission", uid = %uid, namespace = %namespace, service_account = %sa_name);
        let _enter = span.enter();

        let lookup = self
            .store
            .lookup(
                self.client.as_ref(),
                namespace,
                sa_name,
                self.lookup_timeout,
            )
            .await;
        // Why the pod gets no credentials when the account could not be
        // read: told to whoever created it (kubectl prints warnings).
        let unread: Option<String> = match &lookup {
            Lookup::Cached(_) => None,
            Lookup::Fetched(_) => {
                self.metrics.api_lookup("found");
                None
            }
            Lookup::NotFound | Lookup::NotFoundCached => {
                let kind = if matches!(lookup, Lookup::NotFound) {
                    "not_found"
                } else {
                    "not_found_cached"
                };
                self.metrics.api_lookup(kind);
                self.metrics.missing_sa.inc();
                Some(format!(
                    "irsa: ServiceAccount {namespace}/{sa_name} not found; pod admitted without AWS credentials"
                ))
            }
            Lookup::Invalid(error) => {
                self.metrics.api_lookup("invalid");
                tracing::warn!(%error, "service account name not valid; pod admitted without credentials");
                Some("irsa: ServiceAccount name or namespace is not a valid Kubernetes name; pod admitted without AWS credentials".to_string())
            }
            Lookup::Failed(error) => {
                self.metrics.api_lookup("failed");
                self.metrics.missing_sa.inc();
                tracing::warn!(%error, "service account not cached and the API lookup failed; pod admitted without credentials");
                Some(format!(
                    "irsa: ServiceAccount {namespace}/{sa_name} could not be read (API lookup failed); pod admitted without AWS credentials"
                ))
            }
        };
        // An account's own role-arn annotation wins over the ConfigMap.
        let identity = match lookup.identity() {
            Some(id) if id.role_arn.is_some() => Some(id),
            own => self.store.config_map_entry(namespace, sa_name).or(own),
        };
        let mut answer = Answer::allow(uid);
        // A listed account gets Pod Identity whatever its role-arn says, as in Go.
        let injection = self
            .pod_identities
            .as_ref()
            .map_or(Injection::WebIdentity, |p| p.injection(namespace, sa_name));
        let role_arn = identity
            .as_ref()
            .and_then(|i| i.role_arn.as_deref())
            .filter(|_| injection == Injection::WebIdentity);
        if let Some(arn) = role_arn {
            if irsa_core::arn::RoleArn::parse(arn).is_err() {
                tracing::warn!(
                    role_arn = arn,
                    "role-arn annotation does not look like an IAM role ARN"
                );
                answer.warnings.push(format!(
                    "{}/role-arn {arn:?} does not look like an IAM role ARN",
                    self.config.annotation_prefix
                ));
            }
        }
        let outcome = mutate_with(&pod, identity.as_deref(), injection, &self.config);
        match outcome.decision {
            Decision::NoRole => {
                self.outcome("no_role");
                answer.warnings.extend(unread);
            }
            Decision::AlreadyMutated => self.outcome("already_mutated"),
            Decision::Mutated { containers } => {
                self.outcome("mutated");
                let pod_identity = injection != Injection::WebIdentity;
                self.metrics.pod_mutated(pod_identity);
                tracing::debug!(containers, pod_identity, "pod mutated");
                answer.patch = Some(outcome.patch_json());
            }
        }
        answer
    }
}

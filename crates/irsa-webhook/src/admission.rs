//! Admission transport: decode an `admission.k8s.io/v1` AdmissionReview,
//! look up the ServiceAccount, call the pure mutation, encode the response.
//! Every failure becomes a well-formed response; nothing here panics.
//!
//! The request is decoded into a borrowed view (the pod stays raw until it
//! is parsed once into a k8s-openapi `Pod`) and the response is written
//! straight from a small struct: this path runs for every pod created in
//! the cluster, so it avoids intermediate `serde_json::Value` trees.

use std::sync::Arc;
use std::time::Duration;

use irsa_core::mutate::{mutate, parse_pod, Decision, MutationConfig, SaIdentity};
use kube::core::GroupVersionKind;
use kube::Client;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::cache::{Lookup, SaStore};
use crate::metrics::Metrics;

/// The parts of an AdmissionReview the webhook reads.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "apiVersion", borrow)]
    api_version: Option<&'a str>,
    #[serde(borrow)]
    kind: Option<&'a str>,
    #[serde(borrow)]
    request: Option<RequestView<'a>>,
}

#[derive(Deserialize)]
struct RequestView<'a> {
    uid: String,
    kind: Option<GroupVersionKind>,
    namespace: Option<String>,
    operation: Option<String>,
    #[serde(borrow)]
    object: Option<&'a RawValue>,
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

/// The response review, in the field order the Go webhook writes.
#[derive(Serialize)]
struct ReviewOut<'a> {
    kind: &'a str,
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    response: Answer,
}

/// An `AdmissionResponse`.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Answer {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut>,
    /// Base64 of the JSON Patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct StatusOut {
    message: String,
    code: u16,
    reason: &'static str,
}

impl Answer {
    fn allow(uid: String) -> Self {
        Self {
            uid,
            allowed: true,
            ..Default::default()
        }
    }
    fn deny(uid: String, message: String) -> Self {
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
fn encode(api_version: Option<&str>, _kind: Option<&str>, answer: Answer) -> Vec<u8> {
    let out = ReviewOut {
        kind: "AdmissionReview",
        api_version: match api_version {
            Some(v @ ("admission.k8s.io/v1" | "admission.k8s.io/v1beta1")) => v,
            _ => "admission.k8s.io/v1",
        },
        response: answer,
    };
    serde_json::to_vec(&out).unwrap_or_default()
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
        let envelope: Envelope<'_> = match serde_json::from_slice(body) {
            Ok(e) => e,
            Err(e) => {
                self.outcome("invalid");
                // Still echo the uid when the JSON has one, so the caller can
                // match the refusal to its request.
                let uid = serde_json::from_slice::<UidOnly>(body)
                    .ok()
                    .and_then(|u| u.request)
                    .map(|r| r.uid)
                    .unwrap_or_default();
                return encode(
                    None,
                    None,
                    Answer::deny(uid, format!("cannot decode AdmissionReview: {e}")),
                );
            }
        };
        let Some(req) = envelope.request else {
            self.outcome("invalid");
            let answer = Answer::deny(String::new(), "AdmissionReview has no request".into());
            return encode(envelope.api_version, envelope.kind, answer);
        };
        let answer = self.respond(req).await;
        encode(envelope.api_version, envelope.kind, answer)
    }

    async fn respond(&self, req: RequestView<'_>) -> Answer {
        let uid = req.uid;
        let is_pod = req.kind.as_ref().is_none_or(|k| k.kind == "Pod");
        if !is_pod || req.operation.as_deref().unwrap_or("CREATE") != "CREATE" {
            self.outcome("ignored");
            return Answer::allow(uid);
        }
        let Some(object) = req.object else {
            self.outcome("ignored");
            return Answer::allow(uid);
        };
        let pod = match parse_pod(object.get()) {
            Ok(p) => p,
            Err(e) => {
                self.outcome("invalid");
                return Answer::deny(uid, e.to_string());
            }
        };
        let namespace = req
            .namespace
            .or_else(|| pod.metadata.namespace.clone())
            .unwrap_or_else(|| "default".into());
        let sa_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let span = tracing::debug_span!("admission", uid = %uid, namespace = %namespace, service_account = %sa_name);
        let _enter = span.enter();

        let lookup = self
            .store
            .lookup(
                self.client.as_ref(),
                &namespace,
                &sa_name,
                self.lookup_timeout,
            )
            .await;
        match &lookup {
            Lookup::Cached(_) => {}
            Lookup::Fetched(_) => self.metrics.api_lookup("found"),
            Lookup::NotFound => {
                self.metrics.api_lookup("not_found");
                self.metrics.missing_sa.inc();
            }
            Lookup::Failed(error) => {
                self.metrics.api_lookup("failed");
                self.metrics.missing_sa.inc();
                tracing::warn!(%error, "service account not cached and the API lookup failed; pod admitted without credentials");
            }
        }
        let identity = lookup.identity();
        let mut answer = Answer::allow(uid);
        if let Some(arn) = identity.as_ref().and_then(|i| i.role_arn.as_deref()) {
            if !SaIdentity::role_arn_looks_valid(arn) {
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
        let outcome = mutate(pod, identity.as_deref(), &self.config);
        match outcome.decision {
            Decision::NoRole => self.outcome("no_role"),
            Decision::AlreadyMutated => self.outcome("already_mutated"),
            Decision::Mutated { containers } => match serde_json::to_vec(&outcome.patch) {
                Ok(bytes) => {
                    self.outcome("mutated");
                    self.metrics.pod_mutated();
                    tracing::debug!(containers, "pod mutated");
                    answer.patch = Some(irsa_core::b64::encode_std(&bytes));
                    answer.patch_type = Some("JSONPatch");
                }
                Err(e) => {
                    self.outcome("invalid");
                    return Answer::deny(answer.uid, format!("cannot encode the patch: {e}"));
                }
            },
        }
        answer
    }
}

//! Admission transport: decode an `AdmissionReview`, look up the
//! ServiceAccount, call the pure mutation, encode the response. Every
//! failure becomes a well-formed response; nothing here panics.

use std::sync::Arc;
use std::time::Duration;

use irsa_core::mutate::{mutate_pod, Decision, MutationConfig, SaIdentity};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, TypeMeta};
use kube::Client;
use serde_json::Value;

use crate::cache::{Lookup, SaStore};
use crate::metrics::Metrics;

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

fn with_types(mut review: AdmissionReview<DynamicObject>) -> Value {
    if review.types.api_version.is_empty() || review.types.kind.is_empty() {
        review.types = TypeMeta {
            api_version: "admission.k8s.io/v1".into(),
            kind: "AdmissionReview".into(),
        };
    }
    let mut value = serde_json::to_value(&review).unwrap_or(Value::Null);
    // kube-core serialises the patch bytes as a number array; the wire format
    // (and the Go webhook) uses a base64 string.
    if let Some(patch) = value.pointer_mut("/response/patch") {
        if let Some(bytes) = patch.as_array().map(|a| {
            a.iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Vec<u8>>()
        }) {
            *patch = Value::String(irsa_core::b64::encode_std(&bytes));
        }
    }
    value
}

impl Handler {
    fn outcome(&self, kind: &str) {
        Metrics::inc(&self.metrics.mutations, kind);
    }

    /// Answers one AdmissionReview body with an AdmissionReview JSON value.
    pub async fn review(&self, body: &[u8]) -> Value {
        // Some callers omit the review's TypeMeta; kube-core's type requires it.
        let parsed = serde_json::from_slice::<Value>(body).map(|mut v| {
            if let Some(obj) = v.as_object_mut() {
                obj.entry("apiVersion")
                    .or_insert_with(|| Value::from("admission.k8s.io/v1"));
                obj.entry("kind")
                    .or_insert_with(|| Value::from("AdmissionReview"));
            }
            v
        });
        let review: AdmissionReview<DynamicObject> = match parsed.and_then(serde_json::from_value) {
            Ok(r) => r,
            Err(e) => {
                self.outcome("invalid");
                return with_types(
                    AdmissionResponse::invalid(format!("cannot decode AdmissionReview: {e}"))
                        .into_review(),
                );
            }
        };
        let types = review.types.clone();
        let request: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(r) => r,
            Err(_) => {
                self.outcome("invalid");
                return with_types(
                    AdmissionResponse::invalid("AdmissionReview has no request").into_review(),
                );
            }
        };
        let mut response = AdmissionResponse::from(&request);
        response.types = types;
        let response = self.respond(&request, response).await;
        with_types(response.into_review())
    }

    async fn respond(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        response: AdmissionResponse,
    ) -> AdmissionResponse {
        if req.kind.kind != "Pod" || req.operation != Operation::Create {
            self.outcome("ignored");
            return response;
        }
        let Some(object) = &req.object else {
            self.outcome("ignored");
            return response;
        };
        let pod = match serde_json::to_value(object) {
            Ok(v) => v,
            Err(e) => {
                self.outcome("invalid");
                return response.deny(format!("cannot read the pod: {e}"));
            }
        };
        let namespace = req
            .namespace
            .clone()
            .or_else(|| {
                pod.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .unwrap_or_else(|| "default".into());
        let sa_name = pod
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let span = tracing::info_span!("admission", uid = %req.uid, namespace = %namespace, service_account = %sa_name);
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
            Lookup::Fetched(_) => Metrics::inc(&self.metrics.sa_api_lookups, "found"),
            Lookup::NotFound => {
                Metrics::inc(&self.metrics.sa_api_lookups, "not_found");
                self.metrics.missing_sa.inc();
            }
            Lookup::Failed(error) => {
                Metrics::inc(&self.metrics.sa_api_lookups, "failed");
                self.metrics.missing_sa.inc();
                tracing::warn!(%error, "service account not cached and the API lookup failed; pod admitted without credentials");
            }
        }
        let identity = lookup.identity();
        let mut warnings = Vec::new();
        if let Some(arn) = identity.as_ref().and_then(|i| i.role_arn.as_deref()) {
            if !SaIdentity::role_arn_looks_valid(arn) {
                tracing::warn!(
                    role_arn = arn,
                    "role-arn annotation does not look like an IAM role ARN"
                );
                warnings.push(format!(
                    "{}/role-arn {arn:?} does not look like an IAM role ARN",
                    self.config.annotation_prefix
                ));
            }
        }
        let outcome = match mutate_pod(&pod, identity.as_deref(), &self.config) {
            Ok(o) => o,
            Err(e) => {
                self.outcome("invalid");
                return response.deny(e.to_string());
            }
        };
        let mut response = response;
        if !warnings.is_empty() {
            response.warnings = Some(warnings);
        }
        match outcome.decision {
            Decision::NoRole => {
                self.outcome("no_role");
                response
            }
            Decision::AlreadyMutated => {
                self.outcome("already_mutated");
                response
            }
            Decision::Mutated { containers } => {
                let patch: Result<json_patch::Patch, _> =
                    serde_json::to_value(&outcome.patch).and_then(serde_json::from_value);
                match patch.map(|p| response.clone().with_patch(p)) {
                    Ok(Ok(r)) => {
                        self.outcome("mutated");
                        Metrics::inc(&self.metrics.pod_count, "sts_web_identity");
                        tracing::info!(containers, "pod mutated");
                        r
                    }
                    _ => {
                        self.outcome("invalid");
                        response.deny("cannot encode the patch")
                    }
                }
            }
        }
    }
}

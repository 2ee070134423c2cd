//! Pod Identity for self-hosted clusters (`irsa agent`): the pure rules.
//!
//! A pod's SDK sends its projected ServiceAccount token to the credentials
//! endpoint; the broker has the API server review it (TokenReview), looks
//! the ServiceAccount up in the associations file (the webhook's
//! identities file with a `roleArn` per entry, [`crate::mutate::Identities`]),
//! assumes the role with EKS Pod Identity's session tags and answers the
//! container-credentials JSON. This module holds every decision of that
//! path that needs no network: reading the request, judging the review,
//! the session name and tags, the answer and when a cached one is stale.

mod binding;
mod creds;
mod manifests;
mod request;
mod review;
mod session;
mod trust;

pub use binding::{judge_node_binding, node_token, NODE_AUDIENCE, NODE_TOKEN_HEADER};
pub use creds::{account_of, fresh, ContainerCredentials, REFRESH_MARGIN_SECONDS};
pub use manifests::{
    agent_manifests, associations, AgentManifestOptions, ManifestFile, ASSOCIATIONS_CONFIGMAP,
    ASSOCIATIONS_KEY, BROKER_NAME, BROKER_TLS_SECRET, NODE_ADDRESS, NODE_NAME,
};
pub use request::{host_allowed, token_from_authorization, Refusal, MAX_TOKEN_BYTES};
pub use review::{judge, PodIdentity, EXTRA_POD_NAME, EXTRA_POD_UID};
pub use session::{
    check_cluster_name, session_name, session_tags, TagError, SESSION_SECONDS, TAG_CLUSTER,
    TAG_NAMESPACE, TAG_POD_NAME, TAG_POD_UID, TAG_SERVICE_ACCOUNT,
};
pub use trust::{
    broker_policy, cluster_variable, evaluate_assume, external_broker_trust, role_trust,
    AssumeRequest, BROKER_ACTIONS, BROKER_POLICY_NAME,
};

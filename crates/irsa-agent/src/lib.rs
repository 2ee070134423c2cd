//! `irsa agent`: EKS Pod Identity's credentials endpoint for self-hosted
//! clusters.
//!
//! - The **broker** ([`broker::Broker`]) holds the AWS credentials: it has
//!   the API server review a pod's token (TokenReview), finds the pod's
//!   role in the associations file and assumes it with EKS Pod Identity's
//!   session tags, caching sessions per (role, pod).
//! - The **node agent** ([`node`]) listens where the SDKs accept plain
//!   HTTP and forwards each request to the broker over TLS.
//! - `serve` runs the broker behind a plain-HTTP listener, both in one
//!   process.
//!
//! The listeners are the webhook's ([`irsa_webhook::conn`]): the same
//! deadlines, connection cap and eviction of idle connections. The rules
//! themselves are pure, in [`irsa_core::podidentity`].

pub mod broker;
pub mod cache;
pub mod link;
pub mod listen;
pub mod metrics;
pub mod node;
pub mod placement;
pub mod review;
pub mod sts;

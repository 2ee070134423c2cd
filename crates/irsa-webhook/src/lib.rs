//! The irsa pod identity webhook: a drop-in replacement for
//! `amazon-eks-pod-identity-webhook`.
//!
//! Transport (TLS with hot reload, HTTP routing, connection and memory
//! limits, metrics) lives here; the mutation itself is the pure [`irsa_core::mutate::mutate`].

pub mod admission;
pub mod cache;
pub mod ciphers;
pub mod configmap;
pub mod conn;
pub mod containercreds;
pub mod debug;
pub mod goflags;
pub mod imds;
pub mod klog;
mod kubeclient;
pub mod limits;
pub mod metrics;
/// Kubernetes names (irsa-core's one rule).
pub use irsa_core::names;
pub mod registry;
pub mod server;
pub mod settings;
pub mod tls;

pub use server::{run, Running};
pub use settings::Settings;

//! AWS adapter of irsa: reads the actual S3 and IAM state a
//! [`Desired`](irsa_core::plan::Desired) state cares about and executes
//! plan [`Change`](irsa_core::plan::Change)s with the real aws-sdk-rust
//! clients. Decisions (what to change, what is owned) are made by the pure
//! [`irsa_core::plan`]; this crate only talks to AWS.
//!
//! - `client`: connecting ([`Aws::connect`]), retries, call counters;
//! - `reads`: the actual state ([`Aws::read_actual`]);
//! - `execute` and `phases`: applying changes, one and a whole plan;
//! - `sts`: the caller's account and web identity exchange;
//! - `error`: [`AwsError`]; `convert`: pure SDK-shape conversions.

mod client;
mod cloudfront;
mod cloudfront_shape;
mod convert;
mod error;
mod execute;
mod phases;
mod reads;
mod sts;

pub use client::{Aws, Connect, DEFAULT_PARALLELISM};
pub use error::AwsError;
pub use irsa_core::plan::role_path;
pub use sts::StsRefusal;

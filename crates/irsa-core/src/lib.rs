//! Pure logic of irsa: keys and their `kid`, JWKS and discovery documents,
//! issuer URLs, JWT decoding and verification, the `irsa.yaml` model and
//! the issuer-bundle checks, signing-key rotation (`rotation`), and the
//! cluster configuration each kind of cluster needs (`cluster`). No
//! network, no async, no file system.

pub mod arn;
pub mod b64;
pub mod bundle;
pub mod checks;
pub mod cluster;
pub mod config;
pub mod diagnosis;
pub mod discovery;
pub mod documents;
pub mod export;
pub mod hosting;
pub mod issuer;
pub mod jwks;
pub mod jwt;
pub mod key;
pub mod mutate;
pub mod names;
pub mod ownership;
pub mod parse;
pub mod partition;
pub mod plan;
pub mod podidentity;
pub mod private;
pub mod publication;
pub mod rotation;
pub mod served;
pub mod sid;
pub mod stale;
mod teardown;
pub mod timestamp;
pub mod trust;
pub mod verify;

pub use config::IrsaConfig;
pub use discovery::Discovery;
pub use issuer::{IssuerUrl, JwksPath, S3Location};
pub use jwks::{Jwk, Jwks};
pub use key::{Algorithm, Curve, Kid, PublicKey};
pub use partition::Partition;
pub use private::PrivateKey;
pub use timestamp::Timestamp;

//! Errors of cluster rendering: each says what is wrong and what to do.

use super::Flavour;

/// Problems with what the cluster configuration is rendered from.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A name that breaks the naming rule of the object it names.
    #[error("{what} {value:?} {rule}")]
    Name {
        /// What the name is for.
        what: &'static str,
        /// The offending value.
        value: String,
        /// The rule and the fix.
        rule: String,
    },
    /// A flag needed by this flavour is missing.
    #[error("{flavour} needs {what}: {fix}")]
    Missing {
        /// The flavour.
        flavour: Flavour,
        /// What is missing.
        what: &'static str,
        /// How to provide it.
        fix: &'static str,
    },
    /// A flag given that means nothing for this flavour.
    #[error("{option} does not apply to {flavour}: {why}")]
    NotApplicable {
        /// The option.
        option: &'static str,
        /// The flavour.
        flavour: Flavour,
        /// Why.
        why: &'static str,
    },
    /// A previous issuer that kube-apiserver would not take.
    #[error("previous issuer {value:?}: {problem}")]
    PreviousIssuer {
        /// The value.
        value: String,
        /// What is wrong and the fix.
        problem: String,
    },
    /// The flavour can carry only one issuer.
    #[error("{flavour} carries a single service-account issuer ({how}), so the previous issuer(s) {previous:?} cannot be kept: {fix}")]
    SingleIssuer {
        /// The flavour.
        flavour: Flavour,
        /// Why only one.
        how: &'static str,
        /// The previous issuers given.
        previous: Vec<String>,
        /// What to do instead.
        fix: &'static str,
    },
    /// kubeadm v1beta4 would reorder the issuers.
    #[error("kubeadm v1beta4 sorts repeated extraArgs by value, so kube-apiserver would get --service-account-issuer={first} first and sign new tokens for it instead of {wanted}: render --flavour flags and set the flags in /etc/kubernetes/manifests/kube-apiserver.yaml, or drop --previous-issuer")]
    IssuerOrder {
        /// The issuer that must sign.
        wanted: String,
        /// The issuer kubeadm would put first.
        first: String,
    },
    /// The key directory is not a usable absolute path.
    #[error("key directory {dir:?} {problem}")]
    KeyDir {
        /// The value.
        dir: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// No private key to sign with.
    #[error("the active key {public_key} has no private key in irsa.yaml, and {flavour} makes the apiserver sign with it: add `privateKey: <file>` to that key's entry (or use --flavour eks-anywhere, where the cluster makes its own key)")]
    NoSigningKey {
        /// The flavour.
        flavour: Flavour,
        /// The active key's public file.
        public_key: String,
    },
    /// The active key's algorithm is one kube-apiserver does not sign with.
    #[error("the active key is published as {alg}, but kube-apiserver signs RSA keys with RS256 (EC keys with ES256/ES384): set `algorithm: RS256` for it in irsa.yaml and run `irsa render`")]
    SigningAlgorithm {
        /// The algorithm in irsa.yaml.
        alg: crate::key::Algorithm,
    },
    /// The active key's private file holds another key.
    #[error("{private_key} is not the private half of the active key {public_key}: the apiserver would sign tokens no published key verifies; point privateKey at the matching file")]
    KeyMismatch {
        /// The private key file.
        private_key: String,
        /// The active public key file.
        public_key: String,
    },
    /// Two key files would land on the node under the same name.
    #[error("two key files are both named {name:?} on the node ({key_dir}): rename one of them in irsa.yaml")]
    DuplicateFileName {
        /// The clashing name.
        name: String,
        /// The node directory.
        key_dir: String,
    },
    /// Rendering a document failed (a bug).
    #[error("cannot render {what}: {detail}")]
    Render {
        /// What.
        what: &'static str,
        /// The serializer's message.
        detail: String,
    },
}

//! The borrowed view of the pod: only the fields the mutation reads.

use std::borrow::Cow;

use serde::Deserialize;

use super::MutateError;

/// A JSON string, borrowed from the request unless it had escapes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl std::borrow::Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A JSON object of strings (`annotations`, `nodeSelector`), its entries
/// kept in document order; a key given twice reads as its last value, as
/// in a map.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pairs<'a>(pub Vec<(Text<'a>, Text<'a>)>);

impl<'a> Pairs<'a> {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| **k == *key)
            .map(|(_, v)| &**v)
    }

    /// The value of `<prefix>/<name>`, found without building the key.
    pub fn get_prefixed(&self, prefix: &str, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| {
                k.strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix('/'))
                    == Some(name)
            })
            .map(|(_, v)| &**v)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<Pairs<'a>>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Pairs<'a>, M::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry::<Text<'a>, Text<'a>>()? {
                    entries.push(entry);
                }
                Ok(Pairs(entries))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// The pod fields the mutation reads, borrowed from the request bytes.
///
/// Field names and shapes are those of k8s-openapi's `Pod` (and a test
/// holds them to it); like k8s-openapi, a missing or `null` field reads as
/// empty. Every other field is skipped unread, so a pod from a newer
/// Kubernetes, with fields no crate knows yet, is read just as well, and the
/// admission path allocates only for what it uses.
#[derive(Debug, Default, Deserialize)]
pub struct PodView<'a> {
    /// `metadata`.
    #[serde(default, borrow)]
    pub metadata: Option<MetaView<'a>>,
    /// `spec`.
    #[serde(default, borrow)]
    pub spec: Option<SpecView<'a>>,
}

/// `metadata`: namespace, annotations and labels.
#[derive(Debug, Default, Deserialize)]
pub struct MetaView<'a> {
    /// `metadata.namespace`.
    #[serde(default, borrow)]
    pub namespace: Option<Text<'a>>,
    /// `metadata.annotations`.
    #[serde(default, borrow)]
    pub annotations: Option<Pairs<'a>>,
    /// `metadata.labels` (for the Pod Identity label).
    #[serde(default, borrow)]
    pub labels: Option<Pairs<'a>>,
}

/// `spec`: what decides the patch.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecView<'a> {
    /// `spec.serviceAccountName`.
    #[serde(default, borrow)]
    pub service_account_name: Option<Text<'a>>,
    /// `spec.nodeSelector` (for the Windows token path).
    #[serde(default, borrow)]
    pub node_selector: Option<Pairs<'a>>,
    /// `spec.volumes[].name`.
    #[serde(default, borrow)]
    pub volumes: Option<Vec<Named<'a>>>,
    /// `spec.containers`.
    #[serde(default, borrow)]
    pub containers: Option<Vec<ContainerView<'a>>>,
    /// `spec.initContainers`.
    #[serde(default, borrow)]
    pub init_containers: Option<Vec<ContainerView<'a>>>,
    /// `spec.securityContext.fsGroup`.
    #[serde(default)]
    pub security_context: Option<SecurityView>,
}

/// A container: its name, env var names and volume mount names.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView<'a> {
    /// `name`.
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
    /// `env[].name`.
    #[serde(default, borrow)]
    pub env: Option<Vec<Named<'a>>>,
    /// `volumeMounts[].name`.
    #[serde(default, borrow)]
    pub volume_mounts: Option<Vec<Named<'a>>>,
}

/// Any list item identified by `name` (volume, env var, mount).
#[derive(Debug, Default, Deserialize)]
pub struct Named<'a> {
    /// `name`.
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
}

/// `spec.securityContext`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityView {
    /// `fsGroup`.
    #[serde(default)]
    pub fs_group: Option<i64>,
}

impl<'a> PodView<'a> {
    /// Reads the pod from the JSON the apiserver sent.
    pub fn from_json(json: &'a str) -> Result<Self, MutateError> {
        serde_json::from_str(json).map_err(|e| MutateError(e.to_string()))
    }

    /// `metadata.namespace`, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata.as_ref()?.namespace.as_deref()
    }

    /// `spec.serviceAccountName`, if set.
    pub fn service_account_name(&self) -> Option<&str> {
        self.spec.as_ref()?.service_account_name.as_deref()
    }

    /// The annotation `<prefix>/<name>`, if set.
    pub fn annotation(&self, prefix: &str, name: &str) -> Option<&str> {
        let annotations = self.metadata.as_ref()?.annotations.as_ref()?;
        annotations.get_prefixed(prefix, name)
    }
}

pub(super) fn name_of<'n>(n: &'n Named<'_>) -> &'n str {
    n.name.as_deref().unwrap_or("")
}

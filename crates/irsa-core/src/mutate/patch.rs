//! The patch model (add operations tagged with what they add) and its
//! JSON writer.

use std::borrow::Cow;

use super::{Outcome, POD_IDENTITY_LABEL};

/// One RFC 6902 operation; irsa only ever adds. The value is a tag: the
/// [`Outcome`] holding the operation knows the strings it stands for, and
/// serialises the whole patch in one pass (see [`Outcome::patch_json`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchOp {
    /// Always `add`.
    pub op: &'static str,
    /// JSON pointer.
    pub path: PatchPath,
    /// What is added.
    pub value: PatchValue,
}

/// A JSON pointer into the pod: `/<root>/<field>[/<index>]<tail>`, the
/// root being `spec` or `metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchPath {
    root: &'static str,
    field: &'static str,
    index: Option<usize>,
    tail: &'static str,
}

impl PatchPath {
    /// Appends the pointer; every part is fixed ASCII or digits, so it
    /// needs no JSON escaping.
    fn write_to(&self, out: &mut Vec<u8>) {
        out.push(b'/');
        out.extend_from_slice(self.root.as_bytes());
        if !self.field.is_empty() {
            out.push(b'/');
            out.extend_from_slice(self.field.as_bytes());
        }
        if let Some(i) = self.index {
            out.push(b'/');
            json_int(out, i64::try_from(i).unwrap_or(i64::MAX));
        }
        out.extend_from_slice(self.tail.as_bytes());
    }
}

impl std::fmt::Display for PatchPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::new();
        self.write_to(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

/// The env vars irsa adds, in the order it adds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    /// `AWS_STS_REGIONAL_ENDPOINTS=regional`.
    StsRegional,
    /// `AWS_DEFAULT_REGION`.
    DefaultRegion,
    /// `AWS_REGION`.
    Region,
    /// `AWS_ROLE_ARN`.
    RoleArn,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`.
    TokenFile,
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI` (Pod Identity).
    FullUri,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (Pod Identity).
    AuthorizationTokenFile,
}

impl EnvKind {
    const ALL: [Self; 7] = [
        Self::StsRegional,
        Self::DefaultRegion,
        Self::Region,
        Self::RoleArn,
        Self::TokenFile,
        Self::FullUri,
        Self::AuthorizationTokenFile,
    ];

    /// The variable's name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::StsRegional => "AWS_STS_REGIONAL_ENDPOINTS",
            Self::DefaultRegion => "AWS_DEFAULT_REGION",
            Self::Region => "AWS_REGION",
            Self::RoleArn => "AWS_ROLE_ARN",
            Self::TokenFile => "AWS_WEB_IDENTITY_TOKEN_FILE",
            Self::FullUri => "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            Self::AuthorizationTokenFile => "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`EnvKind`]s, listed in [`EnvKind`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnvSet(u8);

impl EnvSet {
    pub(super) fn insert(&mut self, kind: EnvKind) {
        self.0 |= kind.bit();
    }

    pub(super) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The members, in the order they are added to a container.
    pub fn iter(self) -> impl Iterator<Item = EnvKind> {
        EnvKind::ALL
            .into_iter()
            .filter(move |k| self.0 & k.bit() != 0)
    }
}

/// What an operation adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchValue {
    /// A new `volumes` array holding the token volume.
    Volumes,
    /// The token volume.
    Volume,
    /// A new `env` array with these variables.
    Envs(EnvSet),
    /// One env var.
    Env(EnvKind),
    /// A new `volumeMounts` array holding the token mount.
    Mounts,
    /// The token mount.
    Mount,
    /// A new `securityContext` with this `fsGroup`.
    SecurityContext(i64),
    /// `fsGroup`.
    FsGroup(i64),
    /// A new `metadata.labels` holding the Pod Identity label.
    Labels,
    /// The Pod Identity label's value.
    Label,
    /// A new `metadata` holding only the Pod Identity label.
    Metadata,
}

pub(super) fn add(
    field: &'static str,
    index: Option<usize>,
    tail: &'static str,
    value: PatchValue,
) -> PatchOp {
    PatchOp {
        op: "add",
        path: PatchPath {
            root: "spec",
            field,
            index,
            tail,
        },
        value,
    }
}

/// An `add` under `/metadata` (of `/metadata` itself when `field` is empty).
pub(super) fn add_meta(field: &'static str, tail: &'static str, value: PatchValue) -> PatchOp {
    PatchOp {
        op: "add",
        path: PatchPath {
            root: "metadata",
            field,
            index: None,
            tail,
        },
        value,
    }
}

/// The strings the operations of one [`Outcome`] stand for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatchValues<'a> {
    /// The role ARN.
    pub role_arn: &'a str,
    /// The region, when one is set.
    pub region: Option<&'a str>,
    /// The token audience (`None`: the API server's default).
    pub audience: Option<&'a str>,
    /// The token lifetime in seconds.
    pub expiration: i64,
    /// Where the token volume is mounted.
    pub mount_path: Cow<'a, str>,
    /// The token file, as the container sees it.
    pub token_file: Cow<'a, str>,
    /// The token volume's name (and its mount's).
    pub volume_name: &'a str,
    /// The token's file name inside the volume.
    pub token_path: &'a str,
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI` (Pod Identity only).
    pub full_uri: &'a str,
}

/// Appends `s` as a JSON string. Strings without a character JSON must
/// escape (control characters, `"` and `\`) are copied as they are; any
/// other goes through serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    let plain = s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20 && b != b'"' && b != b'\\')
    });
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Serialising a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn json_int(out: &mut Vec<u8>, n: i64) {
    let _ = serde_json::to_writer(&mut *out, &n);
}

/// The values irsa adds are Kubernetes' `Volume`, `EnvVar`, `VolumeMount`
/// and `PodSecurityContext`, written directly from borrowed strings (a
/// unit test reads each back into k8s-openapi's type, losslessly).
impl PatchValues<'_> {
    fn volume(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"name\":");
        json_str(out, self.volume_name);
        out.extend_from_slice(b",\"projected\":{\"sources\":[{\"serviceAccountToken\":{");
        if let Some(audience) = self.audience {
            out.extend_from_slice(b"\"audience\":");
            json_str(out, audience);
            out.push(b',');
        }
        out.extend_from_slice(b"\"expirationSeconds\":");
        json_int(out, self.expiration);
        out.extend_from_slice(b",\"path\":");
        json_str(out, self.token_path);
        out.extend_from_slice(b"}}]}}");
    }

    fn env(&self, kind: EnvKind, out: &mut Vec<u8>) {
        let value = match kind {
            EnvKind::StsRegional => "regional",
            EnvKind::DefaultRegion | EnvKind::Region => self.region.unwrap_or_default(),
            EnvKind::RoleArn => self.role_arn,
            EnvKind::TokenFile | EnvKind::AuthorizationTokenFile => &self.token_file,
            EnvKind::FullUri => self.full_uri,
        };
        out.extend_from_slice(b"{\"name\":\"");
        out.extend_from_slice(kind.name().as_bytes());
        out.extend_from_slice(b"\",\"value\":");
        json_str(out, value);
        out.push(b'}');
    }

    fn mount(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"name\":");
        json_str(out, self.volume_name);
        out.extend_from_slice(b",\"mountPath\":");
        json_str(out, &self.mount_path);
        out.extend_from_slice(b",\"readOnly\":true}");
    }

    fn write_value(&self, value: PatchValue, out: &mut Vec<u8>) {
        match value {
            PatchValue::Volumes => {
                out.push(b'[');
                self.volume(out);
                out.push(b']');
            }
            PatchValue::Volume => self.volume(out),
            PatchValue::Envs(set) => {
                out.push(b'[');
                for (n, kind) in set.iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    self.env(kind, out);
                }
                out.push(b']');
            }
            PatchValue::Env(kind) => self.env(kind, out),
            PatchValue::Mounts => {
                out.push(b'[');
                self.mount(out);
                out.push(b']');
            }
            PatchValue::Mount => self.mount(out),
            PatchValue::SecurityContext(gid) => {
                out.extend_from_slice(b"{\"fsGroup\":");
                json_int(out, gid);
                out.push(b'}');
            }
            PatchValue::FsGroup(gid) => json_int(out, gid),
            PatchValue::Label => out.extend_from_slice(b"\"enabled\""),
            PatchValue::Labels => {
                out.extend_from_slice(b"{\"");
                out.extend_from_slice(POD_IDENTITY_LABEL.as_bytes());
                out.extend_from_slice(b"\":\"enabled\"}");
            }
            PatchValue::Metadata => {
                out.extend_from_slice(b"{\"labels\":{\"");
                out.extend_from_slice(POD_IDENTITY_LABEL.as_bytes());
                out.extend_from_slice(b"\":\"enabled\"}}");
            }
        }
    }
}

impl Outcome<'_> {
    /// The JSON Patch document, as the AdmissionResponse carries it (before
    /// base64). Names and paths are fixed ASCII, written as they are.
    pub fn patch_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 160 * self.patch.len());
        out.push(b'[');
        for (n, op) in self.patch.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"op\":\"");
            out.extend_from_slice(op.op.as_bytes());
            out.extend_from_slice(b"\",\"path\":\"");
            op.path.write_to(&mut out);
            out.extend_from_slice(b"\",\"value\":");
            self.values.write_value(op.value, &mut out);
            out.push(b'}');
        }
        out.push(b']');
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::mutate::{mutate, MutationConfig, PodView, SaIdentity, TOKEN_PATH, VOLUME_NAME};
    use serde_json::Value;

    /// Every value a patch adds is the JSON of the real Kubernetes type:
    /// it reads into k8s-openapi's type without loss and holds what
    /// irsa means to add.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn patch_values_are_kubernetes_types() {
        use k8s_openapi::api::core::v1::{
            EnvVar, PodSecurityContext, ProjectedVolumeSource, ServiceAccountTokenProjection,
            Volume, VolumeMount, VolumeProjection,
        };
        use serde::de::DeserializeOwned;
        use serde::Serialize;

        fn typed<T: DeserializeOwned + Serialize>(raw: &Value) -> T {
            let t: T = serde_json::from_value(raw.clone()).unwrap();
            assert_eq!(&serde_json::to_value(&t).unwrap(), raw, "lossless");
            t
        }
        let volume = |audience: Option<&str>| Volume {
            name: VOLUME_NAME.into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: audience.map(Into::into),
                        expiration_seconds: Some(3600),
                        path: TOKEN_PATH.into(),
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mount = VolumeMount {
            name: VOLUME_NAME.into(),
            mount_path: "/var/run/x".into(),
            read_only: Some(true),
            ..Default::default()
        };
        let env = |name: &str, value: &str| EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        };
        let arn = "arn:aws:iam::111122223333:role/a\"b";
        let all = [
            env("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
            env("AWS_DEFAULT_REGION", "eu-west-1"),
            env("AWS_REGION", "eu-west-1"),
            env("AWS_ROLE_ARN", arn),
            env("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/x/token"),
        ];
        let cfg = MutationConfig {
            region: Some("eu-west-1".into()),
            regional_sts: true,
            mount_path: "/var/run//x/".into(),
            token_expiration: 3600,
            fs_group: Some(65534),
            ..Default::default()
        };
        for (audience, shown) in [(Some("aud"), Some("aud")), (Some(""), None)] {
            let sa = SaIdentity {
                role_arn: Some(arn.into()),
                audience: audience.map(Into::into),
                ..Default::default()
            };
            // First: no volumes, env, mounts or securityContext; second: all present.
            let bare = r#"{"spec":{"containers":[{"name":"a"}]}}"#;
            let full = r#"{"spec":{"securityContext":{},"volumes":[],"containers":[{"name":"a","env":[],"volumeMounts":[]}]}}"#;
            for (pod, arrays) in [(bare, true), (full, false)] {
                let view = PodView::from_json(pod).unwrap();
                let outcome = mutate(&view, Some(&sa), &cfg);
                let ops: Vec<Value> = serde_json::from_slice(&outcome.patch_json()).unwrap();
                assert_eq!(ops.len(), if arrays { 4 } else { 8 }, "{ops:?}");
                let mut envs = Vec::new();
                for op in &ops {
                    assert_eq!(op["op"], "add");
                    let (path, value) = (op["path"].as_str().unwrap(), &op["value"]);
                    match path {
                        "/spec/volumes" => assert_eq!(typed::<Vec<Volume>>(value), [volume(shown)]),
                        "/spec/volumes/0" => assert_eq!(typed::<Volume>(value), volume(shown)),
                        "/spec/containers/0/env" => envs.extend(typed::<Vec<EnvVar>>(value)),
                        "/spec/containers/0/env/-" => envs.push(typed::<EnvVar>(value)),
                        "/spec/containers/0/volumeMounts" => {
                            assert_eq!(
                                typed::<Vec<VolumeMount>>(value),
                                std::slice::from_ref(&mount)
                            );
                        }
                        "/spec/containers/0/volumeMounts/-" => {
                            assert_eq!(typed::<VolumeMount>(value), mount);
                        }
                        "/spec/securityContext" => {
                            assert_eq!(typed::<PodSecurityContext>(value).fs_group, Some(65534))
                        }
                        "/spec/securityContext/fsGroup" => assert_eq!(value, 65534),
                        other => panic!("unexpected path {other}"),
                    }
                }
                assert_eq!(envs, all, "env vars in the Go webhook's order");
            }
        }
    }

    /// The patch's exact bytes, escapes included, for every kind of value:
    /// the AdmissionResponse carries them base64-encoded, so a change of
    /// writer must not change a byte.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn patch_bytes_are_pinned() {
        let cfg = MutationConfig {
            region: Some("eu-west-1".into()),
            regional_sts: true,
            mount_path: "/var/run//x/".into(),
            token_expiration: 3600,
            fs_group: Some(65534),
            ..Default::default()
        };
        let sa = SaIdentity {
            role_arn: Some("arn:aws:iam::111122223333:role/a\"b\\c\u{1}é".into()),
            audience: Some("aud\t".into()),
            ..Default::default()
        };
        let bare = r#"{"spec":{"containers":[{"name":"a"}],"initContainers":[{"name":"i"}]}}"#;
        let full = r#"{"spec":{"securityContext":{},"volumes":[],"containers":[{"name":"a","env":[],"volumeMounts":[]}]}}"#;
        let mut got = Vec::new();
        for pod in [bare, full] {
            let view = PodView::from_json(pod).unwrap();
            got.push(String::from_utf8(mutate(&view, Some(&sa), &cfg).patch_json()).unwrap());
        }
        let windows = r#"{"spec":{"nodeSelector":{"kubernetes.io/os":"windows"},"containers":[{"name":"w","env":[{"name":"AWS_REGION","value":"x"}]}]}}"#;
        let plain = SaIdentity {
            role_arn: Some("arn:aws:iam::111122223333:role/r".into()),
            audience: Some(String::new()),
            ..Default::default()
        };
        let view = PodView::from_json(windows).unwrap();
        got.push(
            String::from_utf8(mutate(&view, Some(&plain), &MutationConfig::default()).patch_json())
                .unwrap(),
        );
        assert_eq!(got, EXPECTED);
    }

    const EXPECTED: [&str; 3] = [
        r#"[{"op":"add","path":"/spec/volumes","value":[{"name":"aws-iam-token","projected":{"sources":[{"serviceAccountToken":{"audience":"aud\t","expirationSeconds":3600,"path":"token"}}]}}]},{"op":"add","path":"/spec/containers/0/env","value":[{"name":"AWS_STS_REGIONAL_ENDPOINTS","value":"regional"},{"name":"AWS_DEFAULT_REGION","value":"eu-west-1"},{"name":"AWS_REGION","value":"eu-west-1"},{"name":"AWS_ROLE_ARN","value":"arn:aws:iam::111122223333:role/a\"b\\c\u0001é"},{"name":"AWS_WEB_IDENTITY_TOKEN_FILE","value":"/var/run/x/token"}]},{"op":"add","path":"/spec/containers/0/volumeMounts","value":[{"name":"aws-iam-token","mountPath":"/var/run/x","readOnly":true}]},{"op":"add","path":"/spec/initContainers/0/env","value":[{"name":"AWS_STS_REGIONAL_ENDPOINTS","value":"regional"},{"name":"AWS_DEFAULT_REGION","value":"eu-west-1"},{"name":"AWS_REGION","value":"eu-west-1"},{"name":"AWS_ROLE_ARN","value":"arn:aws:iam::111122223333:role/a\"b\\c\u0001é"},{"name":"AWS_WEB_IDENTITY_TOKEN_FILE","value":"/var/run/x/token"}]},{"op":"add","path":"/spec/initContainers/0/volumeMounts","value":[{"name":"aws-iam-token","mountPath":"/var/run/x","readOnly":true}]},{"op":"add","path":"/spec/securityContext","value":{"fsGroup":65534}}]"#,
        r#"[{"op":"add","path":"/spec/volumes/0","value":{"name":"aws-iam-token","projected":{"sources":[{"serviceAccountToken":{"audience":"aud\t","expirationSeconds":3600,"path":"token"}}]}}},{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"AWS_STS_REGIONAL_ENDPOINTS","value":"regional"}},{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"AWS_DEFAULT_REGION","value":"eu-west-1"}},{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"AWS_REGION","value":"eu-west-1"}},{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"AWS_ROLE_ARN","value":"arn:aws:iam::111122223333:role/a\"b\\c\u0001é"}},{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"AWS_WEB_IDENTITY_TOKEN_FILE","value":"/var/run/x/token"}},{"op":"add","path":"/spec/containers/0/volumeMounts/-","value":{"name":"aws-iam-token","mountPath":"/var/run/x","readOnly":true}},{"op":"add","path":"/spec/securityContext/fsGroup","value":65534}]"#,
        r#"[{"op":"add","path":"/spec/volumes","value":[{"name":"aws-iam-token","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":86400,"path":"token"}}]}}]},{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"AWS_ROLE_ARN","value":"arn:aws:iam::111122223333:role/r"}},{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"AWS_WEB_IDENTITY_TOKEN_FILE","value":"C:\\var\\run\\secrets\\eks.amazonaws.com\\serviceaccount\\token"}},{"op":"add","path":"/spec/containers/0/volumeMounts","value":[{"name":"aws-iam-token","mountPath":"/var/run/secrets/eks.amazonaws.com/serviceaccount","readOnly":true}]}]"#,
    ];
}

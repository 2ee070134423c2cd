//! What the mutation reads from a pod, taken once through k8s-openapi's
//! `Pod` and once through irsa's borrowed `PodView`: the two must agree on
//! every pod k8s-openapi accepts, or the view has drifted from the real type.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use irsa_core::mutate::{ContainerView, Named, Pairs, PodView};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde::Deserialize;
use serde_json::Value;

/// One container as the mutation sees it: name, env names, mount names
/// (`None` and `Some(empty)` differ: one gets a new array, one an append).
type ContainerReading = (String, Option<Vec<String>>, Option<Vec<String>>);

/// Everything `mutate` reads.
#[derive(Debug, PartialEq)]
pub struct Reading {
    namespace: Option<String>,
    annotations: BTreeMap<String, String>,
    /// `None` and `Some(empty)` differ: one gets a new map, one an entry.
    labels: Option<BTreeMap<String, String>>,
    service_account_name: Option<String>,
    node_selector: BTreeMap<String, String>,
    volumes: Option<Vec<String>>,
    containers: Vec<ContainerReading>,
    init_containers: Option<Vec<ContainerReading>>,
    /// `Some(fsGroup)` when `securityContext` is present.
    security_context: Option<Option<i64>>,
}

fn k8s_container(c: &Container) -> ContainerReading {
    (
        c.name.clone(),
        c.env
            .as_ref()
            .map(|e| e.iter().map(|e| e.name.clone()).collect()),
        c.volume_mounts
            .as_ref()
            .map(|m| m.iter().map(|m| m.name.clone()).collect()),
    )
}

fn names(list: &Option<Vec<Named<'_>>>) -> Option<Vec<String>> {
    list.as_ref().map(|l| {
        l.iter()
            .map(|n| n.name.as_deref().unwrap_or_default().to_string())
            .collect()
    })
}

fn view_container(c: &ContainerView<'_>) -> ContainerReading {
    (
        c.name.as_deref().unwrap_or_default().to_string(),
        names(&c.env),
        names(&c.volume_mounts),
    )
}

fn map(pairs: Option<&Pairs<'_>>) -> BTreeMap<String, String> {
    // Later keys win, as in a map.
    pairs
        .map(|p| {
            p.0.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Read through k8s-openapi.
pub fn through_k8s(pod: &Pod) -> Reading {
    let spec = pod.spec.clone().unwrap_or_default();
    Reading {
        namespace: pod.metadata.namespace.clone(),
        annotations: pod.metadata.annotations.clone().unwrap_or_default(),
        labels: pod.metadata.labels.clone(),
        service_account_name: spec.service_account_name.clone(),
        node_selector: spec.node_selector.clone().unwrap_or_default(),
        volumes: spec
            .volumes
            .as_ref()
            .map(|v| v.iter().map(|v| v.name.clone()).collect()),
        containers: spec.containers.iter().map(k8s_container).collect(),
        init_containers: spec
            .init_containers
            .as_ref()
            .map(|c| c.iter().map(k8s_container).collect()),
        security_context: spec.security_context.as_ref().map(|s| s.fs_group),
    }
}

/// Read through the view.
pub fn through_view(view: &PodView<'_>) -> Reading {
    let meta = view.metadata.as_ref();
    let spec = view.spec.as_ref();
    Reading {
        namespace: view.namespace().map(str::to_string),
        annotations: map(meta.and_then(|m| m.annotations.as_ref())),
        labels: meta.and_then(|m| m.labels.as_ref()).map(|l| map(Some(l))),
        service_account_name: view.service_account_name().map(str::to_string),
        node_selector: map(spec.and_then(|s| s.node_selector.as_ref())),
        volumes: spec.and_then(|s| names(&s.volumes)),
        containers: spec
            .and_then(|s| s.containers.as_ref())
            .map(|c| c.iter().map(view_container).collect())
            .unwrap_or_default(),
        init_containers: spec
            .and_then(|s| s.init_containers.as_ref())
            .map(|c| c.iter().map(view_container).collect()),
        security_context: spec
            .and_then(|s| s.security_context.as_ref())
            .map(|s| s.fs_group),
    }
}

/// For a pod JSON k8s-openapi accepts: the view accepts it too and reads
/// the same values. `Ok(false)` when k8s-openapi refuses the input.
pub fn view_agrees_with_k8s(value: &Value) -> Result<bool, String> {
    let Ok(pod) = Pod::deserialize(value) else {
        return Ok(false);
    };
    let view = PodView::deserialize(value)
        .map_err(|e| format!("k8s-openapi reads this pod, the view does not: {e}"))?;
    let (k8s, view) = (through_k8s(&pod), through_view(&view));
    if k8s != view {
        return Err(format!("k8s-openapi read {k8s:?}\nthe view read {view:?}"));
    }
    // And from the raw bytes, as the webhook reads it.
    let text = serde_json::to_string(value).unwrap();
    let raw = PodView::from_json(&text).map_err(|e| e.to_string())?;
    if through_view(&raw) != k8s {
        return Err("the view reads the bytes differently from the value".into());
    }
    Ok(true)
}

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::*;
use crate::mutate::DEFAULT_PREFIX;

const OLD: &str = "arn:aws:iam::111122223333:role/old";
const NEW: &str = "arn:aws:iam::111122223333:role/new";

fn account(annotations: &[(&str, &str)]) -> Option<SaIdentity> {
    let map: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (format!("{DEFAULT_PREFIX}/{k}"), v.to_string()))
        .collect();
    SaIdentity::from_annotations(&map, DEFAULT_PREFIX)
}

/// A container as the webhook leaves it with `role` (or untouched).
fn container(name: &str, role: Option<&str>) -> Value {
    match role {
        Some(role) => json!({"name": name, "image": "busybox", "env": [
            {"name": ROLE_ARN_ENV, "value": role},
            {"name": TOKEN_FILE_ENV, "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"},
        ]}),
        None => json!({"name": name, "image": "busybox"}),
    }
}

fn pod(containers: Vec<Value>, init: Vec<Value>, volume: bool, annotations: Value) -> Pod {
    let volumes = if volume {
        json!([{"name": VOLUME_NAME, "projected": {"sources": []}}])
    } else {
        json!([])
    };
    serde_json::from_value(json!({
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {"containers": containers, "initContainers": init, "volumes": volumes},
    }))
    .unwrap()
}

fn judge_default(p: &Pod, sa: Option<&SaIdentity>) -> Verdict {
    judge(p, sa, DEFAULT_PREFIX)
}

#[test]
fn a_pod_mutated_with_the_current_role_is_current() {
    let sa = account(&[("role-arn", NEW)]);
    let p = pod(
        vec![container("app", Some(NEW))],
        vec![container("init", Some(NEW))],
        true,
        json!({}),
    );
    assert_eq!(judge_default(&p, sa.as_ref()), Verdict::Current);
}

#[test]
fn a_role_changed_since_creation_is_stale_also_in_an_init_container() {
    let sa = account(&[("role-arn", NEW)]);
    let p = pod(
        vec![container("app", Some(NEW))],
        vec![container("init", Some(OLD))],
        true,
        json!({}),
    );
    let verdict = judge_default(&p, sa.as_ref());
    assert_eq!(
        verdict,
        Verdict::RoleChanged {
            injected: vec![Injected {
                container: "init".into(),
                role_arn: OLD.into()
            }],
            current: NEW.into(),
        }
    );
    assert!(verdict.is_stale());
    let (line, detail) = explain(&verdict, "app", "web-1").unwrap();
    assert_eq!(line, Link::PodRoleCurrent);
    assert!(
        detail.starts_with("app/web-1: ") && detail.contains(OLD) && detail.contains(NEW),
        "{detail}"
    );
}

#[test]
fn a_pod_created_before_the_webhook_is_not_mutated() {
    let sa = account(&[("role-arn", NEW)]);
    let p = pod(
        vec![container("app", None), container("sidecar", None)],
        vec![],
        false,
        json!({}),
    );
    let verdict = judge_default(&p, sa.as_ref());
    assert_eq!(
        verdict,
        Verdict::NotMutated {
            containers: vec!["app".into(), "sidecar".into()],
            volume_missing: true
        }
    );
    let (line, detail) = explain(&verdict, "app", "old").unwrap();
    assert_eq!(line, Link::PodMutated);
    assert!(
        detail.contains("volume aws-iam-token") && detail.contains("app, sidecar"),
        "{detail}"
    );
    // A container added without the variables (the volume is there) is
    // not mutated either.
    let half = pod(
        vec![container("app", Some(NEW)), container("late", None)],
        vec![],
        true,
        json!({}),
    );
    assert_eq!(
        judge_default(&half, sa.as_ref()),
        Verdict::NotMutated {
            containers: vec!["late".into()],
            volume_missing: false
        }
    );
}

#[test]
fn skipped_containers_are_not_findings() {
    // Skipped by the pod's annotation: no variables expected there, and a
    // role of its own there is not a stale role.
    let sa = account(&[("role-arn", NEW)]);
    let p = pod(
        vec![container("app", Some(NEW)), container("proxy", Some(OLD))],
        vec![container("setup", None)],
        true,
        json!({"eks.amazonaws.com/skip-containers": "proxy,setup"}),
    );
    assert_eq!(judge_default(&p, sa.as_ref()), Verdict::Current);
    // Skipped by the ServiceAccount's annotation.
    let sa = account(&[("role-arn", NEW), ("skip-containers", "setup")]);
    let p = pod(
        vec![container("app", Some(NEW))],
        vec![container("setup", None)],
        true,
        json!({}),
    );
    assert_eq!(judge_default(&p, sa.as_ref()), Verdict::Current);
    // Every container skipped: nothing to mutate, even without the volume.
    let p = pod(vec![container("setup", None)], vec![], false, json!({}));
    assert_eq!(judge_default(&p, sa.as_ref()), Verdict::Current);
    // The annotation is read under the prefix given.
    let p = pod(
        vec![container("app", None)],
        vec![],
        false,
        json!({"eks.amazonaws.com/skip-containers": "app"}),
    );
    assert_eq!(judge(&p, sa.as_ref(), DEFAULT_PREFIX), Verdict::Current);
    assert!(judge(&p, sa.as_ref(), "irsa.example").is_stale());
}

#[test]
fn a_role_removed_from_the_account_is_stale_only_when_the_webhook_set_it() {
    let p = pod(vec![container("app", Some(OLD))], vec![], true, json!({}));
    let verdict = judge_default(&p, None);
    assert_eq!(
        verdict,
        Verdict::RoleRemoved {
            injected: vec![Injected {
                container: "app".into(),
                role_arn: OLD.into()
            }]
        }
    );
    let (line, detail) = explain(&verdict, "app", "p").unwrap();
    assert_eq!(line, Link::PodRoleCurrent);
    assert!(detail.contains("no longer names a role"), "{detail}");
    // Annotations without a role count as none.
    let audience_only = account(&[("audience", "sts.amazonaws.com")]);
    assert!(judge_default(&p, audience_only.as_ref()).is_stale());
    // The user's own variable, without the webhook's volume: not a finding.
    let own = pod(vec![container("app", Some(OLD))], vec![], false, json!({}));
    assert_eq!(judge_default(&own, None), Verdict::OutOfScope);
    // Neither side names a role.
    let plain = pod(vec![container("app", None)], vec![], false, json!({}));
    assert_eq!(judge_default(&plain, None), Verdict::OutOfScope);
    assert!(explain(&Verdict::OutOfScope, "a", "b").is_none());
    assert!(explain(&Verdict::Current, "a", "b").is_none());
}

#[test]
fn a_role_from_value_from_is_not_compared() {
    let sa = account(&[("role-arn", NEW)]);
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "env": [
            {"name": ROLE_ARN_ENV, "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
        ]}], "volumes": [{"name": VOLUME_NAME}]},
    }))
    .unwrap();
    assert_eq!(judge_default(&p, sa.as_ref()), Verdict::Current);
}

#[test]
fn a_pod_without_a_spec_is_judged_without_panicking() {
    let p = Pod::default();
    let sa = account(&[("role-arn", NEW)]);
    assert!(judge_default(&p, sa.as_ref()).is_stale());
    assert_eq!(judge_default(&p, None), Verdict::OutOfScope);
}

fn owner(kind: &str, name: &str) -> Owner {
    Owner {
        kind: kind.into(),
        name: name.into(),
    }
}

#[test]
fn the_controller_is_the_owner_reference_marked_controller() {
    let meta: ObjectMeta = serde_json::from_value(json!({"ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-me", "uid": "1"},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4f", "uid": "2", "controller": true},
    ]}))
    .unwrap();
    let found = Owner::of(&meta).unwrap();
    assert_eq!(found, owner("ReplicaSet", "web-5d4f"));
    assert!(found.has_known_parent());
    assert!(Owner::of(&ObjectMeta::default()).is_none());
    assert!(!owner("StatefulSet", "db").has_known_parent());
}

#[test]
fn each_owner_gets_its_own_fix() {
    let rs = owner("ReplicaSet", "web-5d4f");
    let deployment = owner("Deployment", "web");
    assert_eq!(
        fix("app", "web-5d4f-x", &[rs.clone(), deployment]),
        "restart its Deployment web: kubectl rollout restart deployment/web -n app"
    );
    assert!(fix("app", "db-0", &[owner("StatefulSet", "db")])
        .ends_with("kubectl rollout restart statefulset/db -n app"));
    assert!(fix("app", "agent-x", &[owner("DaemonSet", "agent")])
        .ends_with("kubectl rollout restart daemonset/agent -n app"));
    // A ReplicaSet of its own: deleting the pod is enough.
    assert_eq!(
        fix("app", "web-5d4f-x", &[rs]),
        "delete the pod so its ReplicaSet web-5d4f creates it again: kubectl delete pod -n app web-5d4f-x"
    );
    let cron = fix(
        "app",
        "nightly-1-x",
        &[owner("Job", "nightly-1"), owner("CronJob", "nightly")],
    );
    assert!(
        cron.contains("CronJob nightly") && cron.contains("Job nightly-1"),
        "{cron}"
    );
    let bare = fix("app", "debug", &[]);
    assert!(
        bare.contains("delete the pod (kubectl delete pod -n app debug)")
            && bare.contains("own manifest"),
        "{bare}"
    );
}

#[test]
fn a_pod_given_pod_identity_is_not_stale_although_the_account_names_a_role() {
    // Pod Identity takes precedence over the role-arn annotation, so such a
    // pod carries no AWS_ROLE_ARN and no aws-iam-token volume by design.
    let sa = account(&[("role-arn", NEW)]);
    let pod_identity = json!({"name": "app", "image": "busybox", "env": [
        {"name": CONTAINER_CREDENTIALS_ENV, "value": "http://169.254.170.23/v1/credentials"},
        {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "value": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"},
    ]});
    let p = pod(vec![pod_identity], vec![], false, json!({}));
    let verdict = judge_default(&p, sa.as_ref());
    assert_eq!(verdict, Verdict::PodIdentity);
    assert!(!verdict.is_stale());
    assert_eq!(explain(&verdict, "ns", "p"), None);
    // Without the variable the same pod is one the webhook never mutated.
    let bare = pod(vec![container("app", None)], vec![], false, json!({}));
    assert!(judge_default(&bare, sa.as_ref()).is_stale());
}

#[test]
fn the_pod_line_passes_what_holds_and_fixes_a_stale_pod_through_its_owner() {
    let current = pod(vec![container("app", Some(NEW))], vec![], true, json!({}));
    let sa = account(&[("role-arn", NEW)]);
    let (link, status, detail, _) =
        pod_line(&judge_default(&current, sa.as_ref()), "app", "web-1", &[]);
    assert_eq!((link, status), (Link::PodMutated, Status::Pass));
    assert!(detail.starts_with("app/web-1: AWS_ROLE_ARN"), "{detail}");
    let (link, status, _, fix) = pod_line(&Verdict::OutOfScope, "app", "web-1", &[]);
    assert_eq!((link, status), (Link::PodMutated, Status::Fail));
    assert!(fix.contains("delete the pod"), "{fix}");
    let old = account(&[("role-arn", OLD)]);
    let verdict = judge_default(&current, old.as_ref());
    let deployment = Owner {
        kind: "Deployment".into(),
        name: "web".into(),
    };
    let (link, status, detail, fix) = pod_line(&verdict, "app", "web-1", &[deployment]);
    assert_eq!((link, status), (Link::PodRoleCurrent, Status::Fail));
    assert!(detail.contains(OLD), "{detail}");
    assert_eq!(
        fix,
        "restart its Deployment web: kubectl rollout restart deployment/web -n app"
    );
}

#[test]
fn the_listing_line_warns_when_cut_short_and_is_left_to_stale_pods_lines() {
    let mut l = Listing {
        selector: Some("app=web"),
        judged: 4,
        running: 2,
        pending: 1,
        stale: 0,
        truncated: false,
    };
    let (status, detail, _) = listing_line("app", "web", &l).unwrap();
    assert_eq!(status, Status::Pass);
    assert_eq!(
        detail,
        "4 unfinished pod(s) of app/web matching app=web (2 running, 1 pending, 1 in another phase), none stale"
    );
    l.stale = 1;
    assert_eq!(listing_line("app", "web", &l), None);
    l.truncated = true;
    let (status, detail, fix) = listing_line("app", "web", &l).unwrap();
    assert_eq!(status, Status::Warn);
    assert!(detail.contains("only the first 4 were judged"), "{detail}");
    assert!(fix.contains("--max-pods"), "{fix}");
}

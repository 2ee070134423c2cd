//! The CloudFront mode's plan: fresh, converged, drift, ownership, destroy.

use std::collections::BTreeSet;

use super::super::*;
use crate::config::IrsaConfig;
use crate::hosting::distribution_arn;

const ACCOUNT: &str = "111122223333";

fn cfg(url: Option<&str>) -> IrsaConfig {
    let url = url.map_or(String::new(), |u| format!("  url: {u}\n"));
    IrsaConfig::from_yaml(&format!(
        "apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: demo\nissuer:\n{url}  s3: {{bucket: b-oidc, region: eu-west-1, prefix: demo}}\n  cloudfront: {{}}\nkeys:\n- {{publicKey: k.pub, algorithm: RS256, state: active}}\nbindings:\n- {{namespace: default, serviceAccount: app}}\n"
    ))
    .expect("valid")
}

fn desired() -> Desired {
    desired_for(&cfg(Some("https://d111abcdef8.cloudfront.net")))
}

/// On a custom domain: the URL does not name a distribution.
fn custom() -> Desired {
    let cfg = IrsaConfig::from_yaml(
        "apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: demo\nissuer:\n  url: https://oidc.example.com\n  s3: {bucket: b-oidc, region: eu-west-1, prefix: demo}\n  cloudfront: {aliases: [oidc.example.com], certificateArn: 'arn:aws:acm:us-east-1:111122223333:certificate/abc'}\nkeys:\n- {publicKey: k.pub, algorithm: RS256, state: active}\nbindings:\n- {namespace: default, serviceAccount: app}\n",
    )
    .expect("valid");
    desired_for(&cfg)
}

fn desired_for(cfg: &IrsaConfig) -> Desired {
    Desired::from_config(
        cfg,
        ACCOUNT,
        "eu-west-1",
        &crate::Discovery::for_issuer(cfg.issuer.url().expect("url"), cfg.issuer.jwks_path, &[]),
        &crate::Jwks::default(),
    )
}

fn symbols(plan: &Plan) -> Vec<String> {
    plan.changes.iter().map(ToString::to_string).collect()
}

/// AWS as a finished apply leaves it.
fn converged(d: &Desired) -> Actual {
    let cf = d.cloudfront.as_ref().expect("cloudfront");
    let statement = d.statement(Some("E1")).expect("statement");
    Actual {
        bucket: Some(d.owner_tags()),
        bucket_fully_private: true,
        bucket_policy: d.merged_policy(&statement, None),
        objects: d
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), (v.clone(), "application/json".into())))
            .collect(),
        providers: [(
            d.provider_host_path.clone(),
            ActualProvider {
                arn: "arn:aws:iam::111122223333:oidc-provider/d111abcdef8.cloudfront.net".into(),
                client_ids: d.client_ids.clone(),
                thumbprints: Vec::new(),
                tags: d.owner_tags(),
            },
        )]
        .into(),
        account_providers: 1,
        roles: d
            .roles
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    ActualRole {
                        trust: r.trust.clone(),
                        managed: r.managed.clone(),
                        max_session: 3600,
                        path: role_path("demo"),
                        tags: r.tags.clone(),
                        ..ActualRole::default()
                    },
                )
            })
            .collect(),
        distribution: Some(ActualDistribution {
            id: "E1".into(),
            domain_name: "d111abcdef8.cloudfront.net".into(),
            status: "Deployed".into(),
            shape: cf.shape("OAC1"),
            tags: d.owner_tags(),
        }),
        oac: Some(ActualOac {
            id: "OAC1".into(),
            description: cf.oac_description("demo"),
            signing_protocol: "sigv4".into(),
            signing_behavior: "always".into(),
            origin_type: "s3".into(),
        }),
        ..Actual::default()
    }
}

#[test]
fn the_bucket_policy_lets_only_this_distribution_read_the_two_documents() {
    let d = desired();
    assert!(d.bucket_statement.is_none(), "no public statement");
    assert_eq!(
        d.statement(None),
        None,
        "no statement before the distribution exists"
    );
    let s = d.statement(Some("E1")).expect("statement");
    assert_eq!(
        s["Principal"],
        serde_json::json!({"Service": "cloudfront.amazonaws.com"})
    );
    assert_eq!(s["Action"], "s3:GetObject");
    assert_eq!(
        s["Resource"],
        serde_json::json!([
            "arn:aws:s3:::b-oidc/demo/.well-known/openid-configuration",
            "arn:aws:s3:::b-oidc/demo/openid/v1/jwks"
        ])
    );
    assert_eq!(
        s["Condition"]["StringEquals"]["AWS:SourceArn"],
        distribution_arn(ACCOUNT, "E1")
    );
    assert!(d.is_our_statement(&s));
}

#[test]
fn fresh_apply_creates_a_private_bucket_an_oac_and_a_distribution() {
    let d = custom();
    let plan = diff(&d, &Actual::default(), &BTreeSet::new());
    let actions: Vec<&Action> = plan.changes.iter().map(|c| &c.action).collect();
    assert!(
        matches!(actions[0], Action::CreateBucket),
        "{:#?}",
        symbols(&plan)
    );
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::BlockAllPublicAccess { .. })));
    assert!(actions.contains(&&Action::CreateOac));
    assert!(actions.contains(&&Action::CreateDistribution));
    assert!(
        !actions.iter().any(|a| matches!(
            a,
            Action::AllowPublicPolicy { .. } | Action::PutBucketPolicy { .. }
        )),
        "never public; the policy waits for the distribution's ARN: {:#?}",
        symbols(&plan)
    );
    // Converged: nothing to do.
    assert!(
        diff(&d, &converged(&d), &BTreeSet::new()).is_empty(),
        "{:#?}",
        symbols(&diff(&d, &converged(&d), &BTreeSet::new()))
    );
}

#[test]
fn drift_is_repaired_and_a_changed_document_is_invalidated() {
    let d = desired();
    let mut drift = converged(&d);
    drift.bucket_fully_private = false;
    drift.bucket_policy = Some(serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Sid": d.statement_sid().expect("sid"), "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b-oidc/*"}]}));
    let dist = drift.distribution.as_mut().expect("distribution");
    dist.shape.viewer_protocol_policy = "allow-all".into();
    dist.shape.allowed_methods.push("POST".into());
    let jwks_key = d
        .objects
        .keys()
        .find(|k| k.ends_with("jwks"))
        .expect("jwks")
        .clone();
    drift.objects.get_mut(&jwks_key).expect("jwks").0 = "{\"keys\":[]}".into();
    let plan = diff(&d, &drift, &BTreeSet::new());
    let actions: Vec<&Action> = plan.changes.iter().map(|c| &c.action).collect();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::BlockAllPublicAccess { .. })),
        "{:#?}",
        symbols(&plan)
    );
    let policy = actions
        .iter()
        .find_map(|a| match a {
            Action::PutBucketPolicy { policy, .. } => Some(policy.clone()),
            _ => None,
        })
        .expect("policy repaired");
    assert_eq!(
        policy["Statement"],
        serde_json::json!([d.statement(Some("E1")).expect("statement")])
    );
    assert!(actions.contains(&&Action::UpdateDistribution { id: "E1".into() }));
    let last = plan
        .changes
        .iter()
        .rposition(|c| matches!(c.action, Action::Invalidate { .. }))
        .expect("invalidation");
    let put = plan
        .changes
        .iter()
        .rposition(|c| matches!(c.action, Action::PutObject { .. }))
        .expect("put");
    assert!(put < last, "the invalidation follows the upload");
    assert_eq!(
        plan.changes[last].lane(),
        plan.changes[put].lane(),
        "in one lane, so in order"
    );
    assert!(
        matches!(&plan.changes[last].action, Action::Invalidate { paths, .. } if paths == &["/.well-known/openid-configuration", "/openid/v1/jwks"])
    );
}

#[test]
fn a_foreign_oac_or_distribution_is_never_changed() {
    let d = custom();
    let mut actual = converged(&d);
    actual.distribution = None;
    actual.foreign_distributions = vec!["EFOREIGN".into()];
    actual.oac.as_mut().expect("oac").description = "someone else's".into();
    let plan = diff(&d, &actual, &BTreeSet::new());
    assert!(
        !plan.changes.iter().any(|c| c.lane() == "cloudfront"),
        "an OAC with irsa's name that is not irsa's blocks, never changes: {:#?}",
        symbols(&plan)
    );
    assert!(
        plan.conflicts
            .iter()
            .any(|c| c.contains("rename or delete it")),
        "{:?}",
        plan.conflicts
    );
    let gone = destroy(&d, &actual, true);
    assert!(
        !gone.changes.iter().any(|c| matches!(
            c.action,
            Action::DeleteOac { .. }
                | Action::DeleteDistribution { .. }
                | Action::DisableDistribution { .. }
        )),
        "{:#?}",
        symbols(&gone)
    );
    assert!(gone.conflicts.iter().any(|c| c.contains("EFOREIGN")));
}

#[test]
fn pending_url_plans_hosting_only_and_publishes_nothing() {
    let cfg = cfg(None);
    assert!(cfg.issuer.url().is_err());
    let d = Desired::hosting_only(&cfg, ACCOUNT, "eu-west-1");
    assert!(d.url_pending && d.objects.is_empty() && d.roles.is_empty());
    let plan = diff(&d, &Actual::default(), &BTreeSet::new());
    assert!(
        plan.changes.iter().all(|c| matches!(
            c.action,
            Action::CreateBucket
                | Action::BlockAllPublicAccess { .. }
                | Action::CreateOac
                | Action::CreateDistribution
        )),
        "{:#?}",
        symbols(&plan)
    );
    assert_eq!(plan.changes.len(), 4);
    assert!(
        crate::documents::render(&cfg, &[]).is_err(),
        "no document without the URL"
    );
}

#[test]
fn destroy_removes_trust_then_the_distribution_then_the_oac_then_the_bucket() {
    let d = desired();
    let plan = destroy(&d, &converged(&d), true);
    let pos = |f: &dyn Fn(&Action) -> bool| {
        plan.changes
            .iter()
            .position(|c| f(&c.action))
            .expect("step")
    };
    let provider = pos(&|a| matches!(a, Action::DeleteProvider { .. }));
    let disable = pos(&|a| matches!(a, Action::DisableDistribution { .. }));
    let delete = pos(&|a| matches!(a, Action::DeleteDistribution { .. }));
    let oac = pos(&|a| matches!(a, Action::DeleteOac { .. }));
    let bucket = pos(&|a| matches!(a, Action::DeleteBucket));
    assert!(
        provider < disable && disable < delete && delete < oac && oac < bucket,
        "{:#?}",
        symbols(&plan)
    );
    for i in [disable, delete, oac, bucket] {
        assert_eq!(plan.changes[i].phase, Phase::HostingRemoval);
    }
    assert_eq!(plan.changes[provider].phase, Phase::Main);
    // A provider for the issuer that irsa does not own keeps all hosting.
    let mut kept = converged(&d);
    kept.providers.values_mut().for_each(|p| p.tags.clear());
    let plan = destroy(&d, &kept, true);
    assert!(
        plan.changes.iter().all(|c| c.phase == Phase::Main),
        "{:#?}",
        symbols(&plan)
    );
    assert!(!plan.withheld.is_empty());
}

#[test]
fn a_recorded_url_of_another_or_a_missing_distribution_stops_everything() {
    let d = desired();
    let mut other = converged(&d);
    other
        .distribution
        .as_mut()
        .expect("distribution")
        .domain_name = "d222.cloudfront.net".into();
    let plan = diff(&d, &other, &BTreeSet::new());
    assert!(plan.changes.is_empty(), "{:#?}", symbols(&plan));
    assert!(
        plan.conflicts[0].contains("is d222.cloudfront.net"),
        "{:?}",
        plan.conflicts
    );
    let mut gone = converged(&d);
    gone.distribution = None;
    gone.objects.clear();
    let plan = diff(&d, &gone, &BTreeSet::new());
    assert!(
        plan.changes.is_empty(),
        "no new distribution under a recorded name: {:#?}",
        symbols(&plan)
    );
    assert!(
        plan.conflicts[0].contains("Remove issuer.url"),
        "{:?}",
        plan.conflicts
    );
}

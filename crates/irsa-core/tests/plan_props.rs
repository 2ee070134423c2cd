//! Property tests of `plan::diff` (apply) and `plan::destroy` over random
//! actual states: resources owned by this bundle, untagged, another
//! cluster's, another bundle's with the same cluster name, half deleted;
//! a bucket shared with other issuers, statements of earlier versions,
//! extra providers on the same bucket. Whatever the state, no plan
//! modifies a resource that is not this bundle's, touches another issuer's
//! bucket-policy statement, or deletes the bucket (or the documents) while
//! a provider that trusts them survives — also counting the order in
//! which the plan runs. Run with `-- --nocapture` to see the case count.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use irsa_core::config::IrsaConfig;
use irsa_core::plan::{self, Action, Actual, ActualProvider, ActualRole, Desired, Phase};
use irsa_core::sid::{legacy_sid, statement_sid};
use irsa_core::{Discovery, Jwks};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{json, Value};

const ACCOUNT: &str = "111122223333";
const BUCKET: &str = "oidc-b";
static RAN: AtomicUsize = AtomicUsize::new(0);

fn arn(host_path: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{host_path}")
}

fn issuer(prefix: &str) -> String {
    format!("{BUCKET}.s3.eu-west-1.amazonaws.com/{prefix}")
}

/// Who a generated resource belongs to (the ground truth, set by the generator).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tag {
    Cluster,
    Other,
    None,
}

fn tags(tag: Tag, cluster: &str) -> BTreeMap<String, String> {
    match tag {
        Tag::Cluster => [(plan::OWNER_TAG.to_string(), cluster.to_string())].into(),
        Tag::Other => [(plan::OWNER_TAG.to_string(), "zeta".to_string())].into(),
        Tag::None => BTreeMap::new(),
    }
}

fn tag() -> impl Strategy<Value = Tag> {
    prop_oneof![Just(Tag::Cluster), Just(Tag::Other), Just(Tag::None)]
}

#[derive(Debug, Clone)]
struct Case {
    cluster: &'static str,
    previous: bool,
    extra_issuer: bool,
    bucket: Option<Tag>,
    public_allowed: bool,
    /// Which statements the bucket policy holds (see `statements`).
    statements: Vec<bool>,
    objects: Vec<bool>,
    /// (present, tag) per provider in `providers`.
    providers: Vec<(bool, Tag)>,
    /// (present, tag, under the path, which trust) per role in `roles`.
    roles: Vec<(bool, Tag, bool, u8)>,
    empty_after: bool,
    /// CloudFront mode: (this issuer's distribution by tag, the OAC with
    /// irsa's name by owner, whether the distribution's name is the URL).
    cf: Option<(Option<Tag>, Option<Tag>, bool)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just("prod"), Just("prod-1"), Just("prod1")],
        any::<(bool, bool, bool)>(),
        prop::option::of(tag()),
        prop::collection::vec(any::<bool>(), 6),
        prop::collection::vec(any::<bool>(), 2),
        prop::collection::vec((any::<bool>(), tag()), 5),
        prop::collection::vec((any::<bool>(), tag(), any::<bool>(), 0u8..5), 5),
        any::<bool>(),
        prop::option::of((
            prop::option::of(tag()),
            prop::option::of(tag()),
            any::<bool>(),
        )),
    )
        .prop_map(
            |(
                cluster,
                (previous, extra_issuer, public_allowed),
                bucket,
                statements,
                objects,
                providers,
                roles,
                empty_after,
                cf,
            )| Case {
                cluster,
                previous,
                extra_issuer,
                bucket,
                public_allowed,
                statements,
                objects,
                providers,
                roles,
                empty_after,
                cf,
            },
        )
}

/// The other bundle with the same cluster name, in the same bucket.
fn twin_prefix(cluster: &str) -> String {
    format!("twin/{cluster}")
}

fn config(c: &Case) -> IrsaConfig {
    let previous = if c.previous {
        format!("  previousUrls: [https://old.example.com/{}]\n", c.cluster)
    } else {
        String::new()
    };
    let extra = if c.extra_issuer {
        format!(
            ", extraIssuers: [https://{}]",
            issuer(&twin_prefix(c.cluster))
        )
    } else {
        String::new()
    };
    let yaml = format!(
        "apiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: {cl}\nissuer:\n  url: https://{url}\n  s3: {{bucket: {BUCKET}, region: eu-west-1, prefix: {cl}}}\n{previous}keys:\n- {{publicKey: k.pub, algorithm: RS256, state: active}}\nbindings:\n- {{namespace: app, serviceAccount: web{extra}}}\n- {{namespace: batch, serviceAccount: 'job-*', policyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]}}\n",
        cl = c.cluster,
        url = issuer(c.cluster),
    );
    IrsaConfig::from_yaml(&yaml).unwrap()
}

/// Host/paths of the candidate providers, with whether each trusts this
/// issuer's documents and whether it trusts anything in the bucket.
fn providers(c: &Case) -> Vec<(String, bool, bool)> {
    vec![
        (issuer(c.cluster), true, true),
        (format!("old.example.com/{}", c.cluster), false, false),
        (
            format!("s3.eu-west-1.amazonaws.com/{BUCKET}/{}", c.cluster),
            true,
            true,
        ),
        (issuer(&twin_prefix(c.cluster)), false, true),
        ("oidc.example.com/elsewhere".to_string(), false, false),
    ]
}

fn role_names(c: &Case) -> Vec<String> {
    let cl = c.cluster;
    vec![
        format!("{cl}-app-web"),
        format!("{cl}-batch-job-any"),
        format!("{cl}-gone-binding"),
        format!("{cl}-twin-role"),
        "hand-made".to_string(),
    ]
}

/// A trust policy federating to: 0 this issuer, 1 the previous issuer,
/// 2 the twin's issuer, 3 a service, 4 the twin's and this issuer.
fn trust(c: &Case, which: u8) -> Value {
    let fed = |hp: &str| json!({"Effect": "Allow", "Principal": {"Federated": arn(hp)}, "Action": "sts:AssumeRoleWithWebIdentity"});
    let st = match which {
        0 => vec![fed(&issuer(c.cluster))],
        1 => vec![fed(&format!("old.example.com/{}", c.cluster))],
        2 => vec![fed(&issuer(&twin_prefix(c.cluster)))],
        3 => vec![
            json!({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}),
        ],
        _ => vec![
            fed(&issuer(&twin_prefix(c.cluster))),
            fed(&issuer(c.cluster)),
        ],
    };
    json!({"Version": "2012-10-17", "Statement": st})
}

/// The statements a bucket policy may hold, with whether each is this issuer's.
fn statements(c: &Case, desired: &Desired) -> Vec<(Value, bool)> {
    let doc = |prefix: &str, path: &str| format!("arn:aws:s3:::{BUCKET}/{prefix}/{path}");
    let read = |sid: String, prefix: &str| {
        json!({"Sid": sid, "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": [doc(prefix, ".well-known/openid-configuration"), doc(prefix, "openid/v1/jwks")]})
    };
    let collider = if c.cluster == "prod1" {
        "prod-1"
    } else {
        "prod1"
    };
    vec![
        (desired.statement(Some("E1")).unwrap(), true),
        (read(legacy_sid(c.cluster), c.cluster), true),
        (read(statement_sid(collider, collider), collider), false),
        // An earlier version's statement of a cluster whose old id collides.
        (read(legacy_sid(collider), collider), false),
        (
            read(
                statement_sid(c.cluster, &twin_prefix(c.cluster)),
                &twin_prefix(c.cluster),
            ),
            false,
        ),
        (
            json!({"Sid": "HandWritten", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": format!("arn:aws:s3:::{BUCKET}")}),
            false,
        ),
    ]
}

struct World {
    desired: Desired,
    actual: Actual,
    /// Roles that are this bundle's (tag, path and trust).
    our_roles: BTreeSet<String>,
    /// Every existing role.
    roles: BTreeSet<String>,
    /// Existing providers: host/path -> (tagged for the cluster, trusts issuer, trusts bucket).
    providers: BTreeMap<String, (bool, bool, bool)>,
    foreign_statements: Vec<Value>,
    /// CloudFront mode: the distribution (`E1`) and the OAC (`O1`) are
    /// this bundle's; `EF` and `OF` are someone else's.
    own_distribution: bool,
    own_oac: bool,
}

fn world(c: &Case) -> World {
    let mut cfg = config(c);
    if c.cf.is_some() {
        // The issuer URL stays the S3 one, so the providers' ground truth
        // holds; the distribution's name is that host when it "matches".
        cfg.issuer.cloudfront = Some(irsa_core::hosting::CloudFrontConfig::default());
    }
    let desired = Desired::from_config(
        &cfg,
        ACCOUNT,
        "eu-west-1",
        &Discovery::for_issuer(cfg.issuer.url().expect("url"), cfg.issuer.jwks_path, &[]),
        &Jwks::default(),
    );
    let (mut own_distribution, mut own_oac) = (false, false);
    let mut cf_actual = Actual::default();
    if let (Some((dist, oac, matches)), Some(cf)) = (c.cf, &desired.cloudfront) {
        match dist {
            Some(Tag::Cluster) => {
                own_distribution = true;
                cf_actual.distribution = Some(plan::ActualDistribution {
                    id: "E1".into(),
                    domain_name: if matches {
                        cfg.issuer.url().unwrap().host().to_string()
                    } else {
                        "d9.cloudfront.net".into()
                    },
                    status: "Deployed".into(),
                    shape: cf.shape("O1"),
                    tags: tags(Tag::Cluster, c.cluster),
                });
            }
            Some(_) => cf_actual.foreign_distributions.push("EF".into()),
            None => {}
        }
        cf_actual.oac = oac.map(|t| {
            own_oac = t == Tag::Cluster;
            plan::ActualOac {
                id: if own_oac { "O1" } else { "OF" }.into(),
                description: if own_oac {
                    cf.oac_description(c.cluster)
                } else {
                    "theirs".into()
                },
                signing_protocol: "sigv4".into(),
                signing_behavior: "always".into(),
                origin_type: "s3".into(),
            }
        });
        cf_actual.bucket_fully_private = c.public_allowed;
    }
    let mut actual = Actual {
        distribution: cf_actual.distribution,
        foreign_distributions: cf_actual.foreign_distributions,
        oac: cf_actual.oac,
        bucket_fully_private: cf_actual.bucket_fully_private,
        bucket: c.bucket.map(|t| tags(t, c.cluster)),
        public_policy_allowed: c.public_allowed && c.bucket.is_some(),
        account_providers: 3,
        ..Actual::default()
    };
    let mut foreign_statements = Vec::new();
    if c.bucket.is_some() {
        let mut policy = Vec::new();
        for ((st, ours), keep) in statements(c, &desired).into_iter().zip(&c.statements) {
            if *keep {
                if !ours {
                    foreign_statements.push(st.clone());
                }
                policy.push(st);
            }
        }
        if !policy.is_empty() {
            actual.bucket_policy = Some(json!({"Version": "2012-10-17", "Statement": policy}));
        }
        for ((key, body), keep) in desired.objects.iter().zip(&c.objects) {
            if *keep {
                actual
                    .objects
                    .insert(key.clone(), (body.clone(), "application/json".into()));
            }
        }
    }
    let mut present = BTreeMap::new();
    for ((hp, issuer, bucket), (exists, t)) in providers(c).into_iter().zip(&c.providers) {
        if *exists {
            actual.providers.insert(
                hp.clone(),
                ActualProvider {
                    arn: arn(&hp),
                    client_ids: desired.client_ids.clone(),
                    thumbprints: Vec::new(),
                    tags: tags(*t, c.cluster),
                },
            );
            present.insert(hp, (*t == Tag::Cluster, issuer, bucket));
        }
    }
    let bound: BTreeSet<String> = desired.roles.iter().map(|r| r.name.clone()).collect();
    let (mut our_roles, mut roles) = (BTreeSet::new(), BTreeSet::new());
    for (name, (exists, t, under_path, which)) in role_names(c).into_iter().zip(&c.roles) {
        if !*exists {
            continue;
        }
        let path = if *under_path {
            plan::role_path(c.cluster)
        } else {
            "/".to_string()
        };
        let trusts_us = *which == 0 || *which == 4 || (*which == 1 && c.previous);
        if *t == Tag::Cluster && *under_path && trusts_us {
            our_roles.insert(name.clone());
        }
        roles.insert(name.clone());
        let role = ActualRole {
            trust: trust(c, *which).into(),
            managed: BTreeSet::new(),
            inline: BTreeMap::new(),
            max_session: 7200,
            boundary: None,
            path,
            tags: tags(*t, c.cluster),
        };
        if *under_path {
            actual.path_roles.insert(name.clone(), role.clone());
        }
        if bound.contains(&name) {
            actual.roles.insert(name, role);
        }
    }
    World {
        desired,
        actual,
        our_roles,
        roles,
        providers: present,
        foreign_statements,
        own_distribution,
        own_oac,
    }
}

/// Checks every change of `p` against the ground truth of `w`.
fn check(w: &World, p: &plan::Plan, destroying: bool) -> Result<(), TestCaseError> {
    let managed: Vec<&str> = w.desired.managed_providers();
    let bucket_tag = w
        .actual
        .bucket
        .as_ref()
        .map(|t| t.get(plan::OWNER_TAG).cloned());
    let owned_bucket = bucket_tag == Some(Some(w.desired.cluster.clone()));
    let deleted: BTreeSet<String> = p
        .changes
        .iter()
        .filter_map(|c| match &c.action {
            Action::DeleteProvider { arn: a } => Some(a.clone()),
            _ => None,
        })
        .collect();
    for (i, c) in p.changes.iter().enumerate() {
        let shown = c.to_string();
        if let Some(role) = c.action.role() {
            prop_assert!(
                !w.roles.contains(role) || w.our_roles.contains(role),
                "{shown}: role {role} is not this bundle's"
            );
        }
        match &c.action {
            Action::CreateProvider { host_path: h } => {
                prop_assert!(!w.providers.contains_key(h), "{shown}")
            }
            Action::AddClientId { host_path: h, .. }
            | Action::TagProvider { host_path: h }
            | Action::UpdateThumbprints { host_path: h, .. } => {
                prop_assert!(managed.contains(&h.as_str()) && w.providers[h].0, "{shown}")
            }
            Action::DeleteProvider { arn: a } => {
                let host = a.split_once(":oidc-provider/").unwrap().1;
                prop_assert!(
                    destroying && managed.contains(&host) && w.providers[host].0,
                    "{shown}"
                );
            }
            Action::CreateBucket => prop_assert!(w.actual.bucket.is_none(), "{shown}"),
            Action::TagBucket => prop_assert!(false, "{shown}: tags a bucket without --adopt"),
            Action::AllowPublicPolicy { .. } => prop_assert!(
                w.desired.cloudfront.is_none() && (w.actual.bucket.is_none() || owned_bucket),
                "{shown}"
            ),
            Action::PutBucketPolicy { policy, .. } => {
                prop_assert!(
                    bucket_tag.is_none() || bucket_tag.clone().flatten().is_some(),
                    "{shown}: untagged bucket's policy"
                );
                let now = policy["Statement"].as_array().unwrap();
                for st in &w.foreign_statements {
                    prop_assert!(now.contains(st), "{shown}: drops {st}");
                }
            }
            Action::DeleteBucketPolicy => {
                prop_assert!(w.foreign_statements.is_empty(), "{shown}")
            }
            Action::CreateDistribution => {
                prop_assert!(!destroying && !w.own_distribution, "{shown}")
            }
            Action::UpdateDistribution { id } | Action::Invalidate { id, .. } => {
                prop_assert!(!destroying && w.own_distribution && id == "E1", "{shown}")
            }
            Action::CreateOac => prop_assert!(w.actual.oac.is_none(), "{shown}"),
            Action::UpdateOac { id } => prop_assert!(w.own_oac && id == "O1", "{shown}"),
            Action::BlockAllPublicAccess { .. } => prop_assert!(
                w.desired.cloudfront.is_some() && (w.actual.bucket.is_none() || owned_bucket),
                "{shown}"
            ),
            Action::DeleteBucket
            | Action::DeleteObject { .. }
            | Action::DisableDistribution { .. }
            | Action::DeleteDistribution { .. }
            | Action::DeleteOac { .. } => {
                prop_assert!(destroying, "{shown}: apply deletes hosting");
                match &c.action {
                    Action::DisableDistribution { id } | Action::DeleteDistribution { id } => {
                        prop_assert!(w.own_distribution && id == "E1", "{shown}: not ours")
                    }
                    Action::DeleteOac { id } => {
                        prop_assert!(w.own_oac && id == "O1", "{shown}: not ours");
                        // The distribution that uses it goes first.
                        let dist = p
                            .changes
                            .iter()
                            .position(|d| matches!(d.action, Action::DeleteDistribution { .. }));
                        prop_assert!(
                            dist.is_none_or(|d| d < i),
                            "{shown} before the distribution"
                        );
                    }
                    _ => {}
                }
                let bucket = matches!(c.action, Action::DeleteBucket);
                prop_assert!(!bucket || owned_bucket, "{shown}: bucket not owned");
                prop_assert_eq!(c.phase, Phase::HostingRemoval, "{}", shown);
                for (host, (_, issuer, in_bucket)) in &w.providers {
                    let trusts = if bucket { *in_bucket } else { *issuer };
                    prop_assert!(
                        !trusts || deleted.contains(&arn(host)),
                        "{shown} while provider {host} survives"
                    );
                }
                // Trust goes first: every deletion of trust is in an earlier phase.
                for d in &p.changes[..] {
                    if matches!(
                        d.action,
                        Action::DeleteProvider { .. } | Action::DeleteRole { .. }
                    ) {
                        prop_assert!(d.phase < c.phase, "{d} runs with {shown}");
                    }
                }
                if bucket {
                    prop_assert!(
                        p.changes[i + 1..].is_empty(),
                        "the bucket goes last: {shown}"
                    );
                }
            }
            _ => {}
        }
    }
    Ok(())
}

const CASES: u32 = 3000;

#[test]
fn no_plan_touches_what_is_not_this_bundles() {
    let config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(CASES)
    };
    let mut runner = proptest::test_runner::TestRunner::new(config.clone());
    let (mut withheld, mut bucket_deleted) = (0usize, 0usize);
    let result = runner.run(&case(), |c| {
        let w = world(&c);
        let applied = plan::diff(&w.desired, &w.actual, &BTreeSet::new());
        check(&w, &applied, false)?;
        let destroyed = plan::destroy(&w.desired, &w.actual, c.empty_after);
        check(&w, &destroyed, true)?;
        // The ground truth and the plan agree on what is ours: destroy
        // deletes every role that is this bundle's.
        for role in &w.our_roles {
            prop_assert!(
                destroyed
                    .changes
                    .iter()
                    .any(|ch| ch.action == Action::DeleteRole { role: role.clone() }),
                "{role} kept"
            );
        }
        RAN.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // How often each outcome came up, so a generator that never reaches
    // the interesting states shows.
    let mut runner = proptest::test_runner::TestRunner::new(config);
    for _ in 0..CASES {
        let c = case().new_tree(&mut runner).unwrap().current();
        let w = world(&c);
        let destroyed = plan::destroy(&w.desired, &w.actual, c.empty_after);
        withheld += usize::from(!destroyed.withheld.is_empty());
        bucket_deleted += usize::from(
            destroyed
                .changes
                .iter()
                .any(|ch| ch.action == Action::DeleteBucket),
        );
    }
    println!(
        "plan_props: {} random states, 0 violations; of {CASES} destroy plans {withheld} held hosting back, {bucket_deleted} deleted the bucket",
        RAN.load(Ordering::Relaxed)
    );
    assert!(
        withheld > 0 && bucket_deleted > 0,
        "the generator reaches both outcomes"
    );
}

//! The CloudFront hosting mode against a real AWS API server (moto): a
//! private bucket, an Origin Access Control and a distribution; the issuer
//! URL recorded by apply; drift repair, invalidation, ownership, destroy;
//! STS for a token from the bundle's key; the published documents served
//! by a real HTTPS server on 127.0.0.1 standing in for the distribution.
//!
//! moto 5.2.1 does not keep an origin's `OriginAccessControlId`: every
//! read shows the distribution's origin without its OAC, so a plan always
//! holds one change restoring it (checked by [`only_the_oac_link_differs`];
//! the diff itself is unit-tested in irsa-core).
#![cfg(feature = "online")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::https::serve;
use common::moto::{Ctl, Moto};
use common::*;
use serde_json::Value;

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// `python` with a CloudFront client `cf` besides `s3` and `iam`.
fn cf(ctl: &Ctl, code: &str) -> String {
    ctl.py(&format!(
        "cf = boto3.client('cloudfront', **{{**kw, 'region_name': 'us-east-1'}})\n{code}"
    ))
}

fn init(dir: &Path) {
    let out = init_prod(dir, &["--hosting", "cloudfront"]);
    ok(&out);
    let yaml = std::fs::read_to_string(dir.join("irsa.yaml")).unwrap();
    assert!(
        !yaml.contains("url:"),
        "no issuer URL before the distribution exists: {yaml}"
    );
    let yaml = yaml
        .replace("issuer:\n", "issuer:\n  # served by CloudFront from a private bucket\n")
        .replace(
            "bindings: []",
            "bindings:\n- namespace: app\n  serviceAccount: s3-echoer\n  policyArns: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]\n",
        );
    std::fs::write(dir.join("irsa.yaml"), yaml).unwrap();
}

/// The `~ cloudfront distribution` lines of a plan, and every other change line.
fn plan_lines(text: &str) -> (Vec<String>, Vec<String>) {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with(['+', '~', '-']))
        .map(String::from)
        .partition(|l| l.starts_with("~ cloudfront distribution"))
}

/// A converged plan: nothing but the OAC link moto drops (see the module doc).
fn only_the_oac_link_differs(d: &Path, moto: &Moto) {
    let out = ok(&moto.run_in(d, &["plan"]));
    let (dist, rest) = plan_lines(&out);
    assert!(rest.is_empty(), "S3, IAM and the OAC converged: {out}");
    assert_eq!(dist.len(), 1, "{out}");
    assert!(
        dist[0].contains("origin access control \"\" -> ") && !dist[0].contains(", "),
        "only the OAC link: {out}"
    );
}

#[test]
fn cloudfront_mode_apply_records_the_url_converges_repairs_and_destroys() {
    let moto = Moto::start();
    let ctl = Ctl::new(&moto);
    let t = tempdir();
    let d = t.path();
    init(d);

    // Before the distribution exists nothing that needs the URL guesses it.
    for args in [
        &["cluster", "config", "--flavour", "kubeadm"][..],
        &["export", "terraform"][..],
    ] {
        let out = run_in(d, args);
        assert!(!out.status.success(), "{args:?}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("run `irsa apply` first"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = ok(&moto.run_in(d, &["plan"]));
    assert!(
        out.contains("+ cloudfront distribution") && !out.contains("s3://"),
        "{out}"
    );

    // A distribution irsa does not own, on the same bucket.
    let foreign = cf(&ctl, "r = cf.create_distribution(DistributionConfig={'CallerReference': 'theirs', 'Comment': 'theirs', 'Enabled': True, 'Origins': {'Quantity': 1, 'Items': [{'Id': 'o', 'DomainName': 'acme-oidc.s3.eu-west-1.amazonaws.com', 'OriginPath': '/prod', 'S3OriginConfig': {'OriginAccessIdentity': ''}}]}, 'DefaultCacheBehavior': {'TargetOriginId': 'o', 'ViewerProtocolPolicy': 'allow-all', 'MinTTL': 0, 'ForwardedValues': {'QueryString': False, 'Cookies': {'Forward': 'none'}}}})\nprint(r['Distribution']['Id'])");
    let foreign_config = || {
        cf(&ctl, &format!("c = cf.get_distribution_config(Id='{foreign}')['DistributionConfig']\nprint(json.dumps(c, sort_keys=True, default=str))"))
    };
    let foreign_before = foreign_config();

    // The account blocks public access, which refuses the public mode; this
    // mode does not need it. (S3 Control clients put the account ID in
    // front of the host; the hook keeps moto's plain host.)
    ctl.py("c = boto3.client('s3control', **kw)\nacct = boto3.client('sts', **kw).get_caller_identity()['Account']\nc.meta.events.register('before-send.s3-control.*', lambda request, **_: setattr(request, 'url', request.url.replace('://' + acct + '.', '://', 1)))\nc.put_public_access_block(AccountId=acct, PublicAccessBlockConfiguration={'BlockPublicAcls': True, 'IgnorePublicAcls': True, 'BlockPublicPolicy': True, 'RestrictPublicBuckets': True})");

    // Fresh apply: hosting, then the URL recorded, then documents and trust.
    let out = moto.run_in(d, &["apply", "--auto-approve"]);
    ok(&out);
    let (id, domain) = {
        let line = cf(&ctl, "for s in cf.list_distributions()['DistributionList']['Items']:\n    t = cf.list_tags_for_resource(Resource=s['ARN'])['Tags']['Items']\n    if {'Key': 'irsa.dev/cluster', 'Value': 'prod'} in t: print(s['Id'], s['DomainName'])");
        let (id, domain) = line.split_once(' ').unwrap();
        (id.to_string(), domain.to_string())
    };
    assert_ne!(id, foreign);
    let url = format!("https://{domain}");
    let yaml = std::fs::read_to_string(d.join("irsa.yaml")).unwrap();
    assert!(
        yaml.contains(&format!(
            "issuer:\n  url: {url}\n  # served by CloudFront from a private bucket\n"
        )),
        "URL recorded under issuer, comment kept: {yaml}"
    );
    assert!(
        stderr(&out).contains(&format!("recorded issuer.url: {url}")),
        "{}",
        stderr(&out)
    );

    // The bucket is private: all four settings on, only CloudFront may read
    // exactly the two documents, for this distribution only.
    let bpa = ctl.py("c = s3.get_public_access_block(Bucket='acme-oidc')['PublicAccessBlockConfiguration']\nprint(sorted(c.values()))");
    assert_eq!(bpa, "[True, True, True, True]");
    let policy: Value =
        serde_json::from_str(&ctl.py("print(s3.get_bucket_policy(Bucket='acme-oidc')['Policy'])"))
            .unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "{policy}");
    let s = &statements[0];
    assert_eq!(
        s["Principal"],
        serde_json::json!({"Service": "cloudfront.amazonaws.com"})
    );
    assert_eq!(s["Action"], "s3:GetObject");
    assert_eq!(
        s["Resource"],
        serde_json::json!([
            "arn:aws:s3:::acme-oidc/prod/.well-known/openid-configuration",
            "arn:aws:s3:::acme-oidc/prod/openid/v1/jwks"
        ])
    );
    let account = ctl.py("print(boto3.client('sts', **kw).get_caller_identity()['Account'])");
    assert_eq!(
        s["Condition"]["StringEquals"]["AWS:SourceArn"],
        format!("arn:aws:cloudfront::{account}:distribution/{id}")
    );
    // The published discovery document names the recorded URL.
    let discovery: Value = serde_json::from_str(&ctl.py("print(s3.get_object(Bucket='acme-oidc', Key='prod/.well-known/openid-configuration')['Body'].read().decode())")).unwrap();
    assert_eq!(discovery["issuer"], url.as_str());
    // The OAC and the distribution's settings.
    let oac = cf(&ctl, "for o in cf.list_origin_access_controls()['OriginAccessControlList']['Items']:\n    print(o['SigningProtocol'], o['SigningBehavior'], o['OriginAccessControlOriginType'], o['Description'])");
    assert_eq!(oac, "sigv4 always s3 irsa.dev/cluster=prod");
    let config: Value = serde_json::from_str(&cf(&ctl, &format!("print(json.dumps(cf.get_distribution_config(Id='{id}')['DistributionConfig'], default=str))"))).unwrap();
    assert_eq!(
        config["Origins"]["Items"][0]["DomainName"],
        "acme-oidc.s3.eu-west-1.amazonaws.com"
    );
    assert_eq!(config["Origins"]["Items"][0]["OriginPath"], "/prod");
    assert_eq!(
        config["DefaultCacheBehavior"]["ViewerProtocolPolicy"],
        "https-only"
    );
    assert_eq!(
        config["DefaultCacheBehavior"]["AllowedMethods"]["Items"],
        serde_json::json!(["GET", "HEAD"])
    );
    assert_eq!(config["DefaultRootObject"], "");
    // The provider is for the recorded URL, the role trusts it.
    let providers = ctl.py("print([p['Arn'] for p in iam.list_open_id_connect_providers()['OpenIDConnectProviderList']])");
    assert!(
        providers.contains(&format!("oidc-provider/{domain}")),
        "{providers}"
    );
    // `irsa cluster config` now uses it.
    let out = ok(&run_in(d, &["cluster", "config", "--flavour", "flags"]));
    assert!(
        out.contains(&format!("--service-account-issuer={url}")),
        "{out}"
    );

    only_the_oac_link_differs(d, &moto);
    // Export writes the same resources and policies as apply.
    let arn = format!("arn:aws:cloudfront::{account}:distribution/{id}");
    let tf = json(ok(&run_in(d, &["export", "terraform"])).as_bytes());
    let r = &tf["resource"];
    let bpa = &r["aws_s3_bucket_public_access_block"]["issuer"];
    for setting in [
        "block_public_acls",
        "ignore_public_acls",
        "block_public_policy",
        "restrict_public_buckets",
    ] {
        assert_eq!(bpa[setting], true, "{setting}");
    }
    let tf_policy = r["aws_s3_bucket_policy"]["issuer"]["policy"]
        .as_str()
        .unwrap();
    assert!(
        tf_policy.contains("${aws_cloudfront_distribution.issuer.arn}"),
        "{tf_policy}"
    );
    let tf_policy: Value =
        serde_json::from_str(&tf_policy.replace("${aws_cloudfront_distribution.issuer.arn}", &arn))
            .unwrap();
    assert_eq!(tf_policy, policy, "the bucket policy apply wrote");
    let oac_tf = &r["aws_cloudfront_origin_access_control"]["issuer"];
    assert_eq!(
        (
            oac_tf["signing_protocol"].as_str(),
            oac_tf["signing_behavior"].as_str(),
            oac_tf["origin_access_control_origin_type"].as_str()
        ),
        (Some("sigv4"), Some("always"), Some("s3"))
    );
    let dist_tf = &r["aws_cloudfront_distribution"]["issuer"];
    assert_eq!(
        dist_tf["origin"][0]["domain_name"],
        config["Origins"]["Items"][0]["DomainName"]
    );
    assert_eq!(
        dist_tf["origin"][0]["origin_path"],
        config["Origins"]["Items"][0]["OriginPath"]
    );
    assert_eq!(
        dist_tf["origin"][0]["origin_access_control_id"],
        "${aws_cloudfront_origin_access_control.issuer.id}"
    );
    assert_eq!(
        dist_tf["default_cache_behavior"][0]["viewer_protocol_policy"],
        config["DefaultCacheBehavior"]["ViewerProtocolPolicy"]
    );
    assert_eq!(
        dist_tf["default_cache_behavior"][0]["allowed_methods"],
        config["DefaultCacheBehavior"]["AllowedMethods"]["Items"]
    );
    assert_eq!(
        dist_tf["default_cache_behavior"][0]["cache_policy_id"],
        config["DefaultCacheBehavior"]["CachePolicyId"]
    );
    assert_eq!(dist_tf["tags"]["irsa.dev/cluster"], "prod");
    assert_eq!(
        r["aws_iam_openid_connect_provider"]["irsa"]["url"],
        url.as_str()
    );
    let cfn = json(ok(&run_in(d, &["export", "cloudformation"])).as_bytes());
    let res = &cfn["Resources"];
    let mut cfn_policy = res["IssuerBucketPolicy"]["Properties"]["PolicyDocument"].clone();
    assert_eq!(
        cfn_policy["Statement"][0]["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Sub"],
        "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${IssuerDistribution}"
    );
    cfn_policy["Statement"][0]["Condition"]["StringEquals"]["AWS:SourceArn"] =
        Value::String(arn.clone());
    assert_eq!(cfn_policy, policy, "the bucket policy apply wrote");
    assert_eq!(
        res["IssuerBucket"]["Properties"]["PublicAccessBlockConfiguration"]
            ["RestrictPublicBuckets"],
        true
    );
    let dist_cfn = &res["IssuerDistribution"]["Properties"]["DistributionConfig"];
    assert_eq!(
        dist_cfn["Origins"][0]["DomainName"],
        config["Origins"]["Items"][0]["DomainName"]
    );
    assert_eq!(
        dist_cfn["Origins"][0]["OriginAccessControlId"],
        serde_json::json!({"Fn::GetAtt": ["IssuerOriginAccessControl", "Id"]})
    );
    assert_eq!(
        dist_cfn["DefaultCacheBehavior"]["AllowedMethods"],
        config["DefaultCacheBehavior"]["AllowedMethods"]["Items"]
    );
    assert_eq!(
        res["IssuerOriginAccessControl"]["Properties"]["OriginAccessControlConfig"]
            ["SigningBehavior"],
        "always"
    );

    // STS accepts a token signed with the bundle's key, issued by the recorded URL.
    let key =
        irsa_core::parse::parse_private_key(&std::fs::read(d.join("keys/sa-signer.key")).unwrap())
            .unwrap();
    let now = now();
    let claims = serde_json::json!({"iss": url, "sub": "system:serviceaccount:app:s3-echoer",
        "aud": ["sts.amazonaws.com"], "iat": now, "exp": now + 3600});
    let token = irsa_core::jwt::sign(&key, irsa_core::Algorithm::RS256, &claims).unwrap();
    let assumed = ctl.py(&format!(
        "sts = boto3.client('sts', **kw)\narn = iam.get_role(RoleName='prod-app-s3-echoer')['Role']['Arn']\nr = sts.assume_role_with_web_identity(RoleArn=arn, RoleSessionName='cf', WebIdentityToken='{token}')\nprint(r['AssumedRoleUser']['Arn'])"
    ));
    assert!(assumed.contains("prod-app-s3-echoer/cf"), "{assumed}");

    // The documents as published, served over HTTPS at the distribution's
    // name by a stand-in on 127.0.0.1, pass `irsa validate`.
    let site = d.join("site");
    for (key, path) in [
        (
            "prod/.well-known/openid-configuration",
            ".well-known/openid-configuration",
        ),
        ("prod/openid/v1/jwks", "openid/v1/jwks"),
    ] {
        let body = ctl.py(&format!("sys.stdout.write(s3.get_object(Bucket='acme-oidc', Key='{key}')['Body'].read().decode())"));
        std::fs::create_dir_all(site.join(path).parent().unwrap()).unwrap();
        std::fs::write(site.join(path), body).unwrap();
    }
    let server = serve(site.clone(), &[&domain]);
    std::fs::write(d.join("ca.pem"), &server.ca_pem).unwrap();
    let resolve = format!("{domain}={}", server.addr);
    let out = run_in(
        d,
        &[
            "validate",
            ".",
            "--issuer",
            &url,
            "--ca-cert",
            "ca.pem",
            "--resolve",
            &resolve,
        ],
    );
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("remote jwks"), "{}", stdout(&out));

    // Rotation checks the JWKS as served through the distribution: `switch`
    // waits until the stand-in serves what `apply` published (and
    // invalidated), not what irsa.yaml or the bucket holds.
    let net = ["--ca-cert", "ca.pem", "--resolve", resolve.as_str()];
    let rotate = |stage: &str| {
        let mut args = vec!["keys", "rotate", "--stage", stage];
        args.extend_from_slice(&net);
        run_in(d, &args)
    };
    let out = rotate("publish");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ok(&moto.run_in(d, &["apply", "--auto-approve"]));
    assert!(
        out.contains("invalidate /.well-known/openid-configuration /openid/v1/jwks"),
        "the new JWKS is invalidated in the distribution: {out}"
    );
    let out = rotate("switch");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the distribution still serves the old JWKS: {}",
        stderr(&out)
    );
    let jwks = ctl.py("sys.stdout.write(s3.get_object(Bucket='acme-oidc', Key='prod/openid/v1/jwks')['Body'].read().decode())");
    assert_eq!(
        json(jwks.as_bytes())["keys"].as_array().map(Vec::len),
        Some(2)
    );
    std::fs::write(site.join("openid/v1/jwks"), &jwks).unwrap();
    let out = rotate("switch");
    assert!(out.status.success(), "{}", stderr(&out));

    // Drift: the bucket policy made public and Block Public Access off.
    ctl.py("s3.delete_public_access_block(Bucket='acme-oidc')\ns3.put_bucket_policy(Bucket='acme-oidc', Policy=json.dumps({'Version': '2012-10-17', 'Statement': [{'Sid': 'IrsaIssuerprodZprod', 'Effect': 'Allow', 'Principal': '*', 'Action': 's3:GetObject', 'Resource': 'arn:aws:s3:::acme-oidc/*'}]}))");
    let out = ok(&moto.run_in(d, &["apply", "--auto-approve"]));
    assert!(
        out.contains("public access block") && out.contains("acme-oidc policy"),
        "{out}"
    );
    assert_eq!(ctl.py("c = s3.get_public_access_block(Bucket='acme-oidc')['PublicAccessBlockConfiguration']\nprint(sorted(c.values()))"), "[True, True, True, True]");
    let repaired: Value =
        serde_json::from_str(&ctl.py("print(s3.get_bucket_policy(Bucket='acme-oidc')['Policy'])"))
            .unwrap();
    assert_eq!(repaired, policy, "the policy is back to CloudFront-only");
    only_the_oac_link_differs(d, &moto);

    // A changed document is re-uploaded and invalidated in the distribution
    // (the second invalidation: the rotation above made the first).
    ctl.put_object("acme-oidc", "prod/openid/v1/jwks", "{\"keys\": []}");
    let out = ok(&moto.run_in(d, &["apply", "--auto-approve"]));
    assert!(
        out.contains("invalidate /.well-known/openid-configuration /openid/v1/jwks"),
        "{out}"
    );
    let paths = cf(&ctl, &format!("i = cf.list_invalidations(DistributionId='{id}')['InvalidationList']['Items']\nprint(len(i), sorted(cf.get_invalidation(DistributionId='{id}', Id=i[0]['Id'])['Invalidation']['InvalidationBatch']['Paths']['Items']))"));
    assert_eq!(
        paths,
        "2 ['/.well-known/openid-configuration', '/openid/v1/jwks']"
    );

    // Destroy: trust first, then the distribution, the OAC and the bucket;
    // the foreign distribution is left exactly as it was.
    let out = moto.run_in(d, &["destroy", "--auto-approve"]);
    let text = ok(&out);
    let err = stderr(&out);
    let at = |what: &str| {
        err.find(what)
            .unwrap_or_else(|| panic!("{what} missing: {err}"))
    };
    assert!(
        at("- iam oidc-provider") < at("~ cloudfront distribution"),
        "{err}"
    );
    assert!(
        at("- iam role prod-app-s3-echoer") < at("~ cloudfront distribution"),
        "{err}"
    );
    assert!(
        at("~ cloudfront distribution") < at("- cloudfront distribution"),
        "{err}"
    );
    assert!(
        at("- cloudfront distribution") < at("- cloudfront origin-access-control"),
        "{err}"
    );
    assert!(
        text.contains(&format!("cloudfront distribution {foreign} is not tagged")),
        "{text}"
    );
    let left = cf(&ctl, "print(sorted(s['Id'] for s in cf.list_distributions()['DistributionList'].get('Items', [])), len(cf.list_origin_access_controls()['OriginAccessControlList'].get('Items', [])))");
    assert_eq!(left, format!("['{foreign}'] 0"));
    assert_eq!(
        foreign_config(),
        foreign_before,
        "the foreign distribution is untouched"
    );
    assert!(!ctl.bucket_exists("acme-oidc"));
    assert!(!ctl.role_exists("prod-app-s3-echoer"));
}

#[test]
fn a_recorded_url_whose_distribution_is_gone_stops_apply_before_any_write() {
    let moto = Moto::start();
    let t = tempdir();
    let d = t.path();
    init(d);
    let yaml = std::fs::read_to_string(d.join("irsa.yaml")).unwrap();
    std::fs::write(
        d.join("irsa.yaml"),
        yaml.replace(
            "issuer:\n",
            "issuer:\n  url: https://d1234abcd.cloudfront.net\n",
        ),
    )
    .unwrap();
    let out = moto.run_in(d, &["apply", "--auto-approve"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("Remove issuer.url"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("0 AWS write call(s)")
            || stdout(&out).contains("0 AWS write call(s)"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn init_with_a_custom_domain_knows_the_url_and_refuses_a_certificate_outside_us_east_1() {
    let t = tempdir();
    let d = t.path();
    let init = |cert: &str| {
        run_in(
            d,
            &[
                "init",
                "--cluster",
                "prod",
                "--bucket",
                "acme-oidc",
                "--region",
                "eu-west-1",
                "--hosting",
                "cloudfront",
                "--domain",
                "oidc.example.com",
                "--certificate-arn",
                cert,
                "--dir",
                ".",
            ],
        )
    };
    let out = init("arn:aws:acm:eu-west-1:111122223333:certificate/abc");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("only from us-east-1"),
        "{}",
        stderr(&out)
    );
    assert!(!d.join("irsa.yaml").exists(), "nothing written");
    ok(&init("arn:aws:acm:us-east-1:111122223333:certificate/abc"));
    let yaml = std::fs::read_to_string(d.join("irsa.yaml")).unwrap();
    assert!(yaml.contains("url: https://oidc.example.com\n"), "{yaml}");
    let discovery =
        json(&std::fs::read(d.join("issuer/.well-known/openid-configuration")).unwrap());
    assert_eq!(discovery["issuer"], "https://oidc.example.com");
    let out = ok(&run_in(d, &["cluster", "config", "--flavour", "flags"]));
    assert!(
        out.contains("--service-account-issuer=https://oidc.example.com"),
        "{out}"
    );
    // A domain without --hosting cloudfront is a mistake, named.
    let out = run_in(
        d,
        &[
            "init",
            "--cluster",
            "prod",
            "--bucket",
            "acme-oidc",
            "--region",
            "eu-west-1",
            "--domain",
            "oidc.example.com",
            "--certificate-arn",
            "arn:aws:acm:us-east-1:111122223333:certificate/abc",
            "--dir",
            "other",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("add --hosting cloudfront"),
        "{}",
        stderr(&out)
    );
}

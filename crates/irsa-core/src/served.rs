//! What an issuer serves, judged as STS fetches it: one GET, no redirects
//! followed, a JSON body, and caching that lets STS keep the documents.
//!
//! The fetching is the caller's; [`check`] is a pure function of the
//! response's description and returns typed [`Finding`]s. [`record`] turns
//! them into lines of a [`Report`] under names the caller chooses, so
//! `irsa validate` and `irsa doctor` apply the same rules.

use crate::checks::Report;

/// Which issuer document a response should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// `/.well-known/openid-configuration`.
    Discovery,
    /// The JWKS at the discovery document's `jwks_uri`.
    Jwks,
}

impl Document {
    /// How messages name the document.
    pub fn name(self) -> &'static str {
        match self {
            Document::Discovery => "discovery document",
            Document::Jwks => "JWKS",
        }
    }
}

/// A fetched response, owned (what a fetcher returns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// Final URL.
    pub url: String,
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// `Cache-Control` header.
    pub cache_control: Option<String>,
    /// `Location` header (for redirects).
    pub location: Option<String>,
    /// Body as text (lossy UTF-8).
    pub body: String,
}

impl Response {
    /// The response as the checks take it.
    pub fn served(&self) -> Served<'_> {
        Served {
            url: &self.url,
            status: self.status,
            location: self.location.as_deref(),
            content_type: self.content_type.as_deref(),
            cache_control: self.cache_control.as_deref(),
            body: self.body.as_bytes(),
        }
    }
}

/// What the issuer serves, as one walk judged it: each document once its
/// links held.
#[derive(Debug, Clone, Default)]
pub struct Walked {
    /// Whether the issuer's host answered the discovery request at all
    /// (TLS and HTTP worked, whatever the status).
    pub reached: bool,
    /// The discovery document, parsed and checked.
    pub discovery: Option<crate::discovery::Discovery>,
    /// Its body, when it was served as STS needs.
    pub discovery_body: Option<String>,
    /// The JWKS, parsed and checked.
    pub jwks: Option<crate::jwks::Jwks>,
    /// Its body, when it was served as STS needs.
    pub jwks_body: Option<String>,
}

/// The one walk over an issuer's documents, shared by `irsa validate
/// --issuer` and `irsa doctor`: the discovery document at `issuer`, then
/// the JWKS at its `jwks_uri`, each fetched with `get` once and judged
/// with the same rules (served as STS needs, the document's content, the
/// algorithms the discovery document advertises for the JWKS's keys).
/// Lines are named `{discovery}: ...` and `{jwks}: ...` after `labels`.
pub fn walk(
    report: &mut Report,
    issuer: &crate::issuer::IssuerUrl,
    labels: (&str, &str),
    get: &mut dyn FnMut(&str) -> Result<Response, String>,
) -> Walked {
    let (d, j) = labels;
    let mut walked = Walked::default();
    let url = issuer.discovery_url();
    let disc = match get(&url) {
        Ok(r) => r,
        Err(e) => {
            report.fail(
                format!("{d}: {}", Rule::Status.title()),
                format!("GET {url}: {e}"),
                "STS fetches this URL from the internet: serve it over HTTPS with a certificate from a public CA (S3 and CloudFront have one); check DNS, TLS and the path (`irsa apply` publishes to S3)",
            );
            return walked;
        }
    };
    walked.reached = true;
    if !record(report, Document::Discovery, &disc.served(), |rule| {
        format!("{d}: {}", rule.title())
    }) {
        return walked;
    }
    walked.discovery_body = Some(disc.body.clone());
    let Some(doc) = crate::checks::check_discovery(d, &disc.body, Some(issuer), None, None, report)
    else {
        return walked;
    };
    let jwks_resp = match get(&doc.jwks_uri) {
        Ok(r) => r,
        Err(e) => {
            report.fail(
                format!("{j}: {}", Rule::Status.title()),
                format!("GET {}: {e}", doc.jwks_uri),
                "serve the JWKS over HTTPS at jwks_uri",
            );
            walked.discovery = Some(doc);
            return walked;
        }
    };
    let served_ok = record(report, Document::Jwks, &jwks_resp.served(), |rule| {
        format!("{j}: {}", rule.title())
    });
    let jwks = if served_ok {
        walked.jwks_body = Some(jwks_resp.body.clone());
        crate::checks::check_jwks(j, &jwks_resp.body, report)
    } else {
        None
    };
    if let Some(jwks) = &jwks {
        crate::checks::check_algorithms(d, &doc, jwks, report);
    }
    walked.discovery = Some(doc);
    walked.jwks = jwks;
    walked
}

/// `irsa validate --issuer URL`: `url` is an issuer URL, the one
/// irsa.yaml names (`configured`, when there is an irsa.yaml), then the
/// [`walk`] over what it serves, and the served JWKS holds every key of
/// the local one (`local`). With `private_ca` the certificate was verified
/// against a CA the caller gave, which AWS does not trust: a warning.
pub fn check_issuer(
    report: &mut Report,
    url: &str,
    configured: Option<&crate::issuer::IssuerUrl>,
    private_ca: bool,
    local: Option<&crate::jwks::Jwks>,
    get: &mut dyn FnMut(&str) -> Result<Response, String>,
) {
    let issuer = match crate::issuer::IssuerUrl::parse(url) {
        Ok(u) => u,
        Err(e) => {
            report.fail(
                "remote: issuer URL",
                e.to_string(),
                "pass the issuer exactly as --service-account-issuer",
            );
            return;
        }
    };
    if let Some(cfg) = configured {
        report.check(
            cfg == &issuer,
            "remote: --issuer equals irsa.yaml issuer",
            issuer.to_string(),
            format!("--issuer {issuer} differs from irsa.yaml issuer {cfg}"),
            "check the issuer the apiserver and IAM use; they must be the same string",
        );
    }
    if private_ca {
        report.warn(
            "remote: certificate trust",
            "verified against --ca-cert only",
            "AWS STS trusts only public CAs; a private CA works here but not at AWS",
        );
    }
    let walked = walk(report, &issuer, ("remote discovery", "remote jwks"), get);
    if walked.reached {
        report.pass(
            "remote: TLS certificate",
            format!(
                "valid for {}",
                issuer.host_path().split('/').next().unwrap_or_default()
            ),
        );
    }
    if let (Some(remote), Some(local)) = (&walked.jwks, local) {
        let served: Vec<&str> = remote
            .keys
            .iter()
            .filter_map(|k| k.kid.as_deref())
            .collect();
        let missing: Vec<&str> = local
            .keys
            .iter()
            .filter_map(|k| k.kid.as_deref())
            .filter(|k| !served.contains(k))
            .collect();
        report.check(
            missing.is_empty(),
            "remote jwks: has every local key",
            format!("{} kid(s) served", served.len()),
            format!("served JWKS lacks kid(s) {missing:?} from the local bundle"),
            "upload the bundle's JWKS (irsa apply)",
        );
    }
}

/// A fetched response, as the checks need it.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    /// The URL that answered (the one requested: redirects are not followed).
    pub url: &'a str,
    /// HTTP status code.
    pub status: u16,
    /// `Location` header, for redirects.
    pub location: Option<&'a str>,
    /// `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// `Cache-Control` header.
    pub cache_control: Option<&'a str>,
    /// The body as received.
    pub body: &'a [u8],
}

/// The aspect of a response a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The status code: 200, no redirect.
    Status,
    /// The media type: `application/json`.
    ContentType,
    /// `Cache-Control`: present and allowing caches to keep the document.
    CacheControl,
    /// The body: present.
    Body,
}

impl Rule {
    /// Every rule, in the order [`check`] applies them.
    pub const ALL: [Rule; 4] = [
        Rule::Status,
        Rule::ContentType,
        Rule::CacheControl,
        Rule::Body,
    ];

    /// The link's name after the document's, e.g. `jwks: Content-Type
    /// application/json` (one naming for `validate` and `doctor`).
    pub fn title(self) -> &'static str {
        match self {
            Rule::Status => "reachable over HTTPS",
            Rule::ContentType => "Content-Type application/json",
            Rule::CacheControl => "caching headers",
            Rule::Body => "served body",
        }
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// STS cannot use the document.
    Error,
    /// STS can use it, but something will go wrong later (e.g. at a key rotation).
    Warning,
}

/// One problem with a response, with its fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What the finding is about.
    pub rule: Rule,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, naming the value found.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl Finding {
    fn error(rule: Rule, problem: String, fix: impl Into<String>) -> Self {
        Self {
            rule,
            severity: Severity::Error,
            problem,
            fix: fix.into(),
        }
    }

    fn warning(rule: Rule, problem: String, fix: impl Into<String>) -> Self {
        Self {
            rule,
            severity: Severity::Warning,
            problem,
            fix: fix.into(),
        }
    }
}

/// The `Cache-Control` value `irsa apply` sets on both documents.
pub const CACHE_CONTROL: &str = "max-age=300";

/// Judges a response that should hold `document`. A status other than 200
/// is the only finding (the headers of an error page say nothing about
/// the document); otherwise every other rule is applied.
pub fn check(document: Document, served: &Served<'_>) -> Vec<Finding> {
    let name = document.name();
    if let Some(status) = status_finding(name, served) {
        return vec![status];
    }
    let mut out = Vec::new();
    if !is_json(served.content_type) {
        out.push(Finding::error(
            Rule::ContentType,
            format!(
                "Content-Type is {:?}, not application/json",
                served.content_type.unwrap_or("<none>")
            ),
            format!("serve the {name} as application/json (aws s3 cp --content-type application/json; `irsa apply` does this)"),
        ));
    }
    match served.cache_control {
        None => out.push(Finding::warning(
            Rule::CacheControl,
            "no Cache-Control header: caches may keep an old copy after a key rotation for as long as they like".into(),
            format!("set Cache-Control: {CACHE_CONTROL} (`irsa apply` does)"),
        )),
        Some(value) => {
            if let Some(directive) = uncacheable(value) {
                out.push(Finding::warning(
                    Rule::CacheControl,
                    format!("Cache-Control {value:?} has {directive}: STS refetches the {name} on every token exchange"),
                    format!("allow caching, e.g. Cache-Control: {CACHE_CONTROL}, so token exchanges stay fast (`irsa apply` sets it)"),
                ));
            }
        }
    }
    if served.body.iter().all(u8::is_ascii_whitespace) {
        out.push(Finding::error(
            Rule::Body,
            format!("{} answered 200 with an empty body", served.url),
            format!("upload the {name} again (`irsa render`, then `irsa apply`)"),
        ));
    }
    out
}

/// Whether STS can read the document from this response: no error about
/// its status or its body (a wrong media type is an error, but the body
/// is still worth checking).
pub fn usable(findings: &[Finding]) -> bool {
    !findings
        .iter()
        .any(|f| f.severity == Severity::Error && matches!(f.rule, Rule::Status | Rule::Body))
}

/// Records [`check`]'s verdict on `served` in `report`: one line per rule
/// (named by `name`) that failed, warned or, for the header rules, passed.
/// Returns [`usable`].
pub fn record(
    report: &mut Report,
    document: Document,
    served: &Served<'_>,
    name: impl Fn(Rule) -> String,
) -> bool {
    let findings = check(document, served);
    // A status error is the only finding: the headers were not judged.
    let judged = !findings.iter().any(|f| f.rule == Rule::Status);
    for rule in Rule::ALL {
        let mine: Vec<&Finding> = findings.iter().filter(|f| f.rule == rule).collect();
        if mine.is_empty() {
            let detail = match rule {
                Rule::Status => format!("200 from {}", served.url),
                Rule::ContentType => served.content_type.unwrap_or_default().to_string(),
                Rule::CacheControl => served.cache_control.unwrap_or_default().to_string(),
                Rule::Body => continue,
            };
            if rule == Rule::Status || judged {
                report.pass(name(rule), detail);
            }
            continue;
        }
        for f in mine {
            match f.severity {
                Severity::Error => report.fail(name(rule), f.problem.clone(), f.fix.clone()),
                Severity::Warning => report.warn(name(rule), f.problem.clone(), f.fix.clone()),
            }
        }
    }
    usable(&findings)
}

fn status_finding(name: &str, served: &Served<'_>) -> Option<Finding> {
    let (url, status) = (served.url, served.status);
    let fix = match status {
        200 => return None,
        300..=399 => {
            return Some(Finding::error(
                Rule::Status,
                format!(
                    "{url} redirects ({status}) to {}",
                    served.location.unwrap_or("<no Location header>")
                ),
                format!("STS does not follow redirects: serve the {name} at this exact URL"),
            ))
        }
        403 => format!("the {name} is not publicly readable: allow public s3:GetObject on the two document keys in the bucket policy (`irsa apply` sets a minimal one; check Block Public Access)"),
        404 => format!("upload the {name} to this path (`irsa apply` does; check the issuer path and prefix)"),
        _ => format!("serve the {name} at this URL with status 200"),
    };
    Some(Finding::error(
        Rule::Status,
        format!("{url} returned HTTP {status}"),
        fix,
    ))
}

/// Whether a `Content-Type` value names `application/json`, in any case
/// and with any parameters (`application/json; charset=utf-8`).
pub fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The first directive of a `Cache-Control` value that keeps caches from
/// reusing the response: `no-store`, `no-cache` or a zero `max-age`.
fn uncacheable(value: &str) -> Option<String> {
    value.split(',').map(str::trim).find_map(|directive| {
        let (key, arg) = match directive.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive, None),
        };
        let key = key.to_ascii_lowercase();
        let stops = match key.as_str() {
            "no-store" | "no-cache" => true,
            "max-age" => arg.is_some_and(|v| v.parse::<u64>().map_or(true, |n| n == 0)),
            _ => false,
        };
        stops.then(|| directive.to_string())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    #[test]
    fn the_walk_fetches_each_document_once_and_stops_at_the_first_broken_link() {
        use crate::checks::Status;
        let cfg = crate::IrsaConfig::from_yaml(crate::config::tests::GOOD).unwrap();
        let key = crate::PrivateKey::generate(crate::Algorithm::ES256, 0).unwrap();
        let docs =
            crate::documents::render(&cfg, &[(key.public_key().clone(), crate::Algorithm::ES256)])
                .unwrap();
        let issuer = cfg.issuer.url().unwrap().clone();
        let ok = |url: &str, body: &str| Response {
            url: url.to_string(),
            status: 200,
            content_type: Some("application/json".into()),
            cache_control: Some("max-age=300".into()),
            location: None,
            body: body.to_string(),
        };
        let (disc, jwks) = (docs.discovery.clone(), docs.jwks.clone());
        let mut asked = Vec::new();
        let mut report = Report::default();
        let walked = walk(&mut report, &issuer, ("discovery", "jwks"), &mut |url| {
            asked.push(url.to_string());
            Ok(if url.ends_with("openid-configuration") {
                ok(url, &disc)
            } else {
                ok(url, &jwks)
            })
        });
        assert!(!report.failed(), "{report:?}");
        assert_eq!(asked.len(), 2, "each document fetched once: {asked:?}");
        assert!(walked.reached && walked.discovery.is_some() && walked.jwks.is_some());
        assert!(report
            .checks
            .iter()
            .any(|c| c.name == "discovery: algorithms match JWKS"));

        // A discovery document not publicly readable: one failed link,
        // the JWKS never asked for, no body kept for later links.
        let mut asked = 0;
        let mut report = Report::default();
        let walked = walk(&mut report, &issuer, ("discovery", "jwks"), &mut |url| {
            asked += 1;
            Ok(Response {
                status: 403,
                ..ok(url, "<Error>AccessDenied</Error>")
            })
        });
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failed, ["discovery: reachable over HTTPS"]);
        assert_eq!(asked, 1);
        assert!(walked.reached && walked.discovery_body.is_none() && walked.jwks.is_none());

        // Unreachable: named with the URL, not reached.
        let mut report = Report::default();
        let walked = walk(
            &mut report,
            &issuer,
            ("remote discovery", "remote jwks"),
            &mut |_| Err("connection refused".into()),
        );
        assert!(!walked.reached);
        assert!(report.checks[0].detail.contains("connection refused"));
        assert_eq!(
            report.checks[0].name,
            "remote discovery: reachable over HTTPS"
        );
    }
    use super::*;
    use crate::checks::Status;

    const URL: &str = "https://oidc.example.com/openid/v1/jwks";

    fn ok() -> Served<'static> {
        Served {
            url: URL,
            status: 200,
            location: None,
            content_type: Some("application/json"),
            cache_control: Some("max-age=300"),
            body: br#"{"keys":[]}"#,
        }
    }

    fn rules(findings: &[Finding]) -> Vec<(Rule, Severity)> {
        findings.iter().map(|f| (f.rule, f.severity)).collect()
    }

    #[test]
    fn a_good_response_has_no_findings() {
        assert_eq!(check(Document::Jwks, &ok()), []);
        assert_eq!(check(Document::Discovery, &ok()), []);
    }

    #[test]
    fn redirects_are_refused_naming_the_target() {
        for status in [301, 302, 307, 308] {
            let served = Served {
                status,
                location: Some("https://elsewhere.example.com/jwks"),
                content_type: None,
                cache_control: None,
                body: b"",
                ..ok()
            };
            let f = check(Document::Jwks, &served);
            assert_eq!(rules(&f), [(Rule::Status, Severity::Error)], "{status}");
            assert!(f[0].problem.contains("elsewhere.example.com"), "{f:?}");
            assert!(f[0].fix.contains("does not follow redirects"), "{f:?}");
            assert!(!usable(&f));
        }
    }

    #[test]
    fn other_statuses_fail_with_a_fix_per_cause() {
        for (status, fix) in [(403, "bucket policy"), (404, "upload"), (500, "status 200")] {
            let served = Served {
                status,
                content_type: Some("application/xml"),
                ..ok()
            };
            let f = check(Document::Discovery, &served);
            // Only the status: an error page's headers are not judged.
            assert_eq!(rules(&f), [(Rule::Status, Severity::Error)], "{status}");
            assert!(f[0].problem.contains(&status.to_string()), "{f:?}");
            assert!(f[0].fix.contains(fix), "{status}: {f:?}");
            assert!(f[0].fix.contains("discovery document"), "{f:?}");
        }
    }

    #[test]
    fn content_type_is_compared_ignoring_case_and_parameters() {
        for good in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            " application/json ;charset=UTF-8",
        ] {
            let served = Served {
                content_type: Some(good),
                ..ok()
            };
            assert_eq!(check(Document::Jwks, &served), [], "{good}");
        }
        for bad in [
            Some("binary/octet-stream"),
            Some("text/plain"),
            Some("application/jsonp"),
            Some(""),
            None,
        ] {
            let served = Served {
                content_type: bad,
                ..ok()
            };
            let f = check(Document::Jwks, &served);
            assert_eq!(rules(&f), [(Rule::ContentType, Severity::Error)], "{bad:?}");
            assert!(f[0].fix.contains("application/json"), "{f:?}");
            // The body is still readable.
            assert!(usable(&f));
        }
    }

    #[test]
    fn caching_that_stops_reuse_or_is_missing_warns() {
        for value in ["max-age=300", "public, max-age=3600", "s-maxage=0"] {
            let served = Served {
                cache_control: Some(value),
                ..ok()
            };
            assert_eq!(check(Document::Jwks, &served), [], "{value}");
        }
        for value in [
            "no-store",
            "public, No-Store",
            "no-cache",
            "max-age=0",
            "max-age=\"0\"",
            "max-age=soon",
        ] {
            let served = Served {
                cache_control: Some(value),
                ..ok()
            };
            let f = check(Document::Discovery, &served);
            assert_eq!(
                rules(&f),
                [(Rule::CacheControl, Severity::Warning)],
                "{value}"
            );
            assert!(f[0].problem.contains(value), "{f:?}");
        }
        let served = Served {
            cache_control: None,
            ..ok()
        };
        let f = check(Document::Jwks, &served);
        assert_eq!(rules(&f), [(Rule::CacheControl, Severity::Warning)]);
        assert!(f[0].fix.contains(CACHE_CONTROL), "{f:?}");
        assert!(usable(&f));
    }

    #[test]
    fn an_empty_body_is_unusable() {
        for body in [&b""[..], b" \n"] {
            let served = Served { body, ..ok() };
            let f = check(Document::Jwks, &served);
            assert_eq!(rules(&f), [(Rule::Body, Severity::Error)]);
            assert!(!usable(&f));
        }
    }

    #[test]
    fn record_names_lines_by_rule_and_reports_usability() {
        let name = |r: Rule| format!("jwks: {}", r.title());
        let mut report = Report::default();
        assert!(record(&mut report, Document::Jwks, &ok(), name));
        let lines: Vec<(&str, Status)> = report
            .checks
            .iter()
            .map(|c| (c.name.as_str(), c.status))
            .collect();
        assert_eq!(
            lines,
            [
                ("jwks: reachable over HTTPS", Status::Pass),
                ("jwks: Content-Type application/json", Status::Pass),
                ("jwks: caching headers", Status::Pass),
            ]
        );

        let mut report = Report::default();
        let redirect = Served {
            status: 302,
            location: Some("/elsewhere"),
            ..ok()
        };
        assert!(!record(&mut report, Document::Jwks, &redirect, name));
        let lines: Vec<(&str, Status)> = report
            .checks
            .iter()
            .map(|c| (c.name.as_str(), c.status))
            .collect();
        assert_eq!(lines, [("jwks: reachable over HTTPS", Status::Fail)]);

        let mut report = Report::default();
        let served = Served {
            content_type: Some("text/html"),
            cache_control: Some("no-store"),
            ..ok()
        };
        assert!(record(&mut report, Document::Jwks, &served, name));
        let lines: Vec<(&str, Status)> = report
            .checks
            .iter()
            .map(|c| (c.name.as_str(), c.status))
            .collect();
        assert_eq!(
            lines,
            [
                ("jwks: reachable over HTTPS", Status::Pass),
                ("jwks: Content-Type application/json", Status::Fail),
                ("jwks: caching headers", Status::Warn),
            ]
        );
    }

    #[test]
    fn validate_issuer_checks_the_url_the_configured_issuer_and_every_local_key() {
        let cfg = crate::IrsaConfig::from_yaml(crate::config::tests::GOOD).unwrap();
        let key = |_| crate::PrivateKey::generate(crate::Algorithm::ES256, 0).unwrap();
        let (a, b) = (key(0), key(1));
        let pairs = |keys: &[&crate::PrivateKey]| -> Vec<(crate::PublicKey, crate::Algorithm)> {
            keys.iter()
                .map(|k| (k.public_key().clone(), crate::Algorithm::ES256))
                .collect()
        };
        let served = crate::documents::render(&cfg, &pairs(&[&a])).unwrap();
        let both = pairs(&[&a, &b]);
        let local = crate::jwks::Jwks::build(both.iter().map(|(k, al)| (k, *al)), false);
        let issuer = cfg.issuer.url().unwrap().clone();
        let mut get = |url: &str| {
            Ok(Response {
                url: url.to_string(),
                status: 200,
                content_type: Some("application/json".into()),
                cache_control: Some("max-age=300".into()),
                location: None,
                body: if url.ends_with("openid-configuration") {
                    served.discovery.clone()
                } else {
                    served.jwks.clone()
                },
            })
        };
        let line =
            |r: &Report, name: &str| r.checks.iter().find(|c| c.name == name).map(|c| c.status);
        // The served JWKS lacks the local key b: that line fails, naming it.
        let mut r = Report::default();
        check_issuer(
            &mut r,
            issuer.as_str(),
            Some(&issuer),
            true,
            Some(&local),
            &mut get,
        );
        assert_eq!(
            line(&r, "remote: --issuer equals irsa.yaml issuer"),
            Some(Status::Pass)
        );
        assert_eq!(line(&r, "remote: certificate trust"), Some(Status::Warn));
        assert_eq!(line(&r, "remote: TLS certificate"), Some(Status::Pass));
        assert_eq!(
            line(&r, "remote jwks: has every local key"),
            Some(Status::Fail)
        );
        let b_kid = b.public_key().kid().to_string();
        assert!(r.checks.iter().any(|c| c.detail.contains(&b_kid)), "{r:?}");
        // Another issuer than irsa.yaml's; no private CA; nothing local.
        let other = crate::issuer::IssuerUrl::parse("https://other.example.com/x").unwrap();
        let mut r = Report::default();
        check_issuer(&mut r, issuer.as_str(), Some(&other), false, None, &mut get);
        assert_eq!(
            line(&r, "remote: --issuer equals irsa.yaml issuer"),
            Some(Status::Fail)
        );
        assert_eq!(line(&r, "remote: certificate trust"), None);
        assert_eq!(line(&r, "remote jwks: has every local key"), None);
        // Not an issuer URL: one line, nothing fetched.
        let mut r = Report::default();
        check_issuer(
            &mut r,
            "http://plain.example.com",
            None,
            false,
            None,
            &mut |_| panic!("nothing is fetched for a URL STS refuses"),
        );
        assert_eq!(line(&r, "remote: issuer URL"), Some(Status::Fail));
        assert_eq!(r.checks.len(), 1);
    }
}

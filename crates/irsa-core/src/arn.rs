//! ARNs. IAM role ARNs (`arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`) are
//! one type, one rule for every place irsa reads or writes one: the
//! webhook's check of the `role-arn` annotation, `irsa doctor`, and the
//! annotation `irsa bind` prints. Every other ARN irsa renders (OIDC
//! provider, S3 object, CloudFront distribution, AWS managed policy) is
//! built by a function here, with the partition taken from
//! [`crate::partition::Partition`].

use std::fmt;
use std::str::FromStr;

use crate::partition::Partition;

/// Longest role name IAM accepts.
pub const MAX_NAME: usize = crate::names::MAX_ROLE_NAME;
/// Longest role path IAM accepts, slashes included.
pub const MAX_PATH: usize = 512;

/// An IAM role ARN, checked part by part against IAM's rules.
///
/// Its [`Display`](fmt::Display) is the ARN it was parsed from (or built
/// of): parsing and printing round-trip.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleArn {
    partition: String,
    account: String,
    /// `/` or `/.../`.
    path: String,
    name: String,
}

/// What is wrong with a role ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleArnProblem {
    /// Not `arn:PARTITION:iam::ACCOUNT:role/...` at all.
    #[error("it does not have the form arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME")]
    Shape,
    /// The partition is not `aws` or `aws-…`.
    #[error("the partition {0:?} is not aws or aws-<name> (aws-cn, aws-us-gov, aws-iso, ...)")]
    Partition(String),
    /// The service is not `iam`, or a region is given.
    #[error("a role ARN names the service iam and no region (arn:PARTITION:iam::...)")]
    Service,
    /// The account is not 12 digits.
    #[error("the account {0:?} is not a 12-digit AWS account ID")]
    Account(String),
    /// The resource is not a role.
    #[error("the resource is not role/[PATH/]NAME")]
    NotARole,
    /// The role name is empty, too long or has a character IAM refuses.
    #[error("the role name {0:?} must be 1 to 64 letters, digits or +=,.@_-")]
    Name(String),
    /// The path is too long or has a character IAM refuses.
    #[error("the role path {0:?} must be / or /.../ of at most 512 printable ASCII characters without spaces")]
    Path(String),
}

/// A string that is not an IAM role ARN, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{arn:?} is not an IAM role ARN: {problem}; write it as arn:aws:iam::ACCOUNT:role/[PATH/]NAME (`irsa bind` prints the exact value)")]
pub struct RoleArnError {
    /// The string given.
    pub arn: String,
    /// What is wrong with it.
    pub problem: RoleArnProblem,
}

/// `aws`, or `aws-` and dash-separated groups of lowercase letters and
/// digits: every partition AWS has (`aws-cn`, `aws-us-gov`, `aws-iso`,
/// `aws-iso-b`, `aws-iso-e`, `aws-iso-f`, ...) and any it may add.
fn partition_ok(p: &str) -> bool {
    match p.strip_prefix("aws") {
        Some("") => true,
        Some(rest) => rest.strip_prefix('-').is_some_and(|groups| {
            groups.split('-').all(|g| {
                !g.is_empty()
                    && g.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
        }),
        None => false,
    }
}

fn account_ok(a: &str) -> bool {
    a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit())
}

/// Checks an AWS account ID: 12 digits.
pub fn check_account(account: &str) -> Result<(), RoleArnProblem> {
    if account_ok(account) {
        Ok(())
    } else {
        Err(RoleArnProblem::Account(account.into()))
    }
}

/// IAM's role names: `[\w+=,.@-]{1,64}` (one rule: [`crate::names`]).
fn name_ok(n: &str) -> bool {
    crate::names::is_role_name(n)
}

/// IAM's paths: `/`, or `/` + characters `!` to `~` + `/`, at most 512.
fn path_ok(p: &str) -> bool {
    p.len() <= MAX_PATH
        && (p == "/"
            || (p.len() >= 3
                && p.starts_with('/')
                && p.ends_with('/')
                && p.bytes().all(|b| (b'!'..=b'~').contains(&b))))
}

impl RoleArn {
    /// Builds the ARN of role `name` under `path` (`/` or `/.../`) in
    /// `account` of `partition`, checking each part.
    pub fn new(
        partition: &str,
        account: &str,
        path: &str,
        name: &str,
    ) -> Result<Self, RoleArnProblem> {
        if !partition_ok(partition) {
            return Err(RoleArnProblem::Partition(partition.into()));
        }
        check_account(account)?;
        if !path_ok(path) {
            return Err(RoleArnProblem::Path(path.into()));
        }
        if !name_ok(name) {
            return Err(RoleArnProblem::Name(name.into()));
        }
        Ok(Self {
            partition: partition.into(),
            account: account.into(),
            path: path.into(),
            name: name.into(),
        })
    }

    /// Reads `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`.
    pub fn parse(arn: &str) -> Result<Self, RoleArnError> {
        Self::parts(arn).map_err(|problem| RoleArnError {
            arn: arn.into(),
            problem,
        })
    }

    fn parts(arn: &str) -> Result<Self, RoleArnProblem> {
        let mut fields = arn.splitn(6, ':');
        let mut next = || fields.next().ok_or(RoleArnProblem::Shape);
        let (prefix, partition, service, region, account, resource) =
            (next()?, next()?, next()?, next()?, next()?, next()?);
        if prefix != "arn" {
            return Err(RoleArnProblem::Shape);
        }
        if service != "iam" || !region.is_empty() {
            return Err(RoleArnProblem::Service);
        }
        let role = resource
            .strip_prefix("role/")
            .ok_or(RoleArnProblem::NotARole)?;
        // `role/` + `a/b/` + `name`: the path keeps its slashes.
        let cut = role.rfind('/').map_or(0, |i| i + 1);
        let (path, name) = (&resource[4..5 + cut], &role[cut..]);
        Self::new(partition, account, path, name)
    }

    /// The partition: `aws`, `aws-cn`, `aws-us-gov`, ...
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The 12-digit account ID.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The path: `/` or `/.../`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The role name (the last part).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ARN with `account` written in place of the account ID: a
    /// template such as `arn:aws:iam::<AWS_ACCOUNT_ID>:role/x` for a user
    /// to fill in.
    pub fn display_account_as<'a>(&'a self, account: &'a str) -> WithAccount<'a> {
        WithAccount { arn: self, account }
    }
}

/// A role ARN printed with something else in place of its account ID,
/// see [`RoleArn::display_account_as`].
#[derive(Debug, Clone, Copy)]
pub struct WithAccount<'a> {
    arn: &'a RoleArn,
    account: &'a str,
}

impl fmt::Display for WithAccount<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.arn;
        write!(
            f,
            "arn:{}:iam::{}:role{}{}",
            a.partition, self.account, a.path, a.name
        )
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.display_account_as(&self.account).fmt(f)
    }
}

impl FromStr for RoleArn {
    type Err = RoleArnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The ARN of the IAM OIDC provider for an issuer's `host/path` (no
/// `https://`) in `account` of `partition` (an id such as `aws-cn`).
pub fn oidc_provider(partition: &str, account: &str, host_path: &str) -> String {
    format!("arn:{partition}:iam::{account}:oidc-provider/{host_path}")
}

/// The role ARN for `name` (a role name, optionally after its path:
/// `team/app/s3-reader`) in `account` of `partition`, as the webhook's
/// `--compose-role-arn` writes it. The parts are not checked here; the
/// webhook checks the composed ARN like any annotation.
pub fn role_of_name(partition: &str, account: &str, name: &str) -> String {
    format!("arn:{partition}:iam::{account}:role/{name}")
}

/// The ARN of object `key` in `bucket`.
pub fn s3_object(partition: Partition, bucket: &str, key: &str) -> String {
    format!("arn:{partition}:s3:::{bucket}/{key}")
}

/// The ARN of a CloudFront distribution (CloudFront exists in `aws` only).
pub fn cloudfront_distribution(account: &str, id: &str) -> String {
    format!(
        "arn:{}:cloudfront::{account}:distribution/{id}",
        Partition::Aws
    )
}

/// The ARN of the AWS managed policy `name` (`AmazonS3ReadOnlyAccess`) in
/// `partition`.
pub fn managed_policy(partition: Partition, name: &str) -> String {
    format!("arn:{partition}:iam::aws:policy/{name}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_round_trip() {
        let arn = RoleArn::parse("arn:aws:iam::123456789012:role/irsa/prod/prod-app-web").unwrap();
        assert_eq!(
            (arn.partition(), arn.account(), arn.path(), arn.name()),
            ("aws", "123456789012", "/irsa/prod/", "prod-app-web")
        );
        assert_eq!(
            arn.to_string(),
            "arn:aws:iam::123456789012:role/irsa/prod/prod-app-web"
        );
        let plain = RoleArn::parse("arn:aws:iam::111122223333:role/s3-reader").unwrap();
        assert_eq!((plain.path(), plain.name()), ("/", "s3-reader"));
        let built = RoleArn::new("aws-cn", "111122223333", "/irsa/c/", "r").unwrap();
        assert_eq!(
            built.to_string(),
            "arn:aws-cn:iam::111122223333:role/irsa/c/r"
        );
        assert_eq!(
            built.display_account_as("<AWS_ACCOUNT_ID>").to_string(),
            "arn:aws-cn:iam::<AWS_ACCOUNT_ID>:role/irsa/c/r"
        );
        assert_eq!(
            check_account("12345678901"),
            Err(RoleArnProblem::Account("12345678901".into()))
        );
        assert_eq!(check_account("123456789012"), Ok(()));
    }

    #[test]
    fn every_partition_one_rule() {
        for p in [
            "aws",
            "aws-cn",
            "aws-us-gov",
            "aws-iso",
            "aws-iso-b",
            "aws-iso-e",
            "aws-iso-f",
            "aws-eusc",
        ] {
            let s = format!("arn:{p}:iam::111122223333:role/x");
            assert_eq!(RoleArn::parse(&s).unwrap().partition(), p);
        }
        for p in [
            "azure", "aws_x", "awsx", "aws-", "aws--cn", "aws-cn-", "AWS", "aws-CN", "",
        ] {
            let s = format!("arn:{p}:iam::111122223333:role/x");
            assert_eq!(
                RoleArn::parse(&s).unwrap_err().problem,
                RoleArnProblem::Partition(p.into()),
                "{s}"
            );
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        use RoleArnProblem as P;
        let long_name = "n".repeat(65);
        let long_path = format!("/{}/", "p".repeat(511));
        let cases = [
            ("s3-reader", P::Shape),
            ("xrn:aws:iam::111122223333:role/x", P::Shape),
            ("arn:aws:sts::111122223333:role/x", P::Service),
            ("arn:aws:iam:us-east-1:111122223333:role/x", P::Service),
            (
                "arn:aws:iam::11112222333:role/x",
                P::Account("11112222333".into()),
            ),
            (
                "arn:aws:iam::11112222333a:role/x",
                P::Account("11112222333a".into()),
            ),
            ("arn:aws:iam::111122223333:user/x", P::NotARole),
            ("arn:aws:iam::111122223333:role", P::NotARole),
            ("arn:aws:iam::111122223333:role/", P::Name(String::new())),
            ("arn:aws:iam::111122223333:role/a/", P::Name(String::new())),
            ("arn:aws:iam::111122223333:role/a:b", P::Name("a:b".into())),
            ("arn:aws:iam::111122223333:role/a b", P::Name("a b".into())),
            (
                "arn:aws:iam::111122223333:role/a b/x",
                P::Path("/a b/".into()),
            ),
            ("arn:aws:iam::111122223333:role//x", P::Path("//".into())),
            ("arn:aws:iam::111122223333:role/é/x", P::Path("/é/".into())),
        ];
        for (arn, problem) in cases {
            let e = RoleArn::parse(arn).unwrap_err();
            assert_eq!(e.problem, problem, "{arn}");
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("{arn:?}")) && msg.contains("arn:aws:iam::ACCOUNT:role/"),
                "{msg}"
            );
        }
        let at_limit = format!("arn:aws:iam::111122223333:role/{}", "n".repeat(64));
        assert!(RoleArn::parse(&at_limit).is_ok());
        let over = format!("arn:aws:iam::111122223333:role/{long_name}");
        assert_eq!(
            RoleArn::parse(&over).unwrap_err().problem,
            P::Name(long_name)
        );
        let path_at_limit = format!("arn:aws:iam::111122223333:role/{}/x", "p".repeat(510));
        assert!(RoleArn::parse(&path_at_limit).is_ok());
        let path_over = format!("arn:aws:iam::111122223333:role{long_path}x");
        assert_eq!(
            RoleArn::parse(&path_over).unwrap_err().problem,
            P::Path(long_path)
        );
    }
}

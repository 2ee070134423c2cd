//! AWS partitions: the one table irsa consults for everything that differs
//! between them (the ARN prefix, and the DNS suffix of S3 and STS hosts).
//!
//! A region belongs to a partition by its name's shape (`cn-…`, `us-gov-…`,
//! `us-iso-…`, …); any other region is in `aws`. The table is checked
//! against botocore's own `partitions.json` by
//! `crates/irsa/tests/partitions.rs`.

use std::fmt;
use std::str::FromStr;

/// An AWS partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Partition {
    /// `aws`: the commercial regions.
    Aws,
    /// `aws-cn`: China (Beijing, Ningxia).
    AwsCn,
    /// `aws-us-gov`: AWS GovCloud (US).
    AwsUsGov,
    /// `aws-iso`: US ISO (C2S).
    AwsIso,
    /// `aws-iso-b`: US ISOB (SC2S).
    AwsIsoB,
    /// `aws-iso-e`: EU ISOE.
    AwsIsoE,
    /// `aws-iso-f`: US ISOF.
    AwsIsoF,
    /// `aws-eusc`: the AWS European Sovereign Cloud.
    AwsEusc,
}

/// One row of the table: partition, id, DNS suffix, region-name prefix.
const TABLE: [(Partition, &str, &str, &str); 8] = [
    (Partition::Aws, "aws", "amazonaws.com", ""),
    (Partition::AwsCn, "aws-cn", "amazonaws.com.cn", "cn-"),
    (
        Partition::AwsUsGov,
        "aws-us-gov",
        "amazonaws.com",
        "us-gov-",
    ),
    (Partition::AwsIso, "aws-iso", "c2s.ic.gov", "us-iso-"),
    (Partition::AwsIsoB, "aws-iso-b", "sc2s.sgov.gov", "us-isob-"),
    (
        Partition::AwsIsoE,
        "aws-iso-e",
        "cloud.adc-e.uk",
        "eu-isoe-",
    ),
    (
        Partition::AwsIsoF,
        "aws-iso-f",
        "csp.hci.ic.gov",
        "us-isof-",
    ),
    (Partition::AwsEusc, "aws-eusc", "amazonaws.eu", "eusc-"),
];

/// A partition id irsa does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an AWS partition irsa knows; use one of {list}", list = Partition::ids().join(", "))]
pub struct UnknownPartition(pub String);

impl Partition {
    /// Every partition, in the table's order.
    pub const ALL: [Partition; 8] = [
        Partition::Aws,
        Partition::AwsCn,
        Partition::AwsUsGov,
        Partition::AwsIso,
        Partition::AwsIsoB,
        Partition::AwsIsoE,
        Partition::AwsIsoF,
        Partition::AwsEusc,
    ];

    fn row(self) -> &'static (Partition, &'static str, &'static str, &'static str) {
        // Every variant has exactly one row (`table_is_complete`).
        TABLE.iter().find(|r| r.0 == self).unwrap_or(&TABLE[0])
    }

    /// The partition of `region`. Regions of no other partition are `aws`.
    pub fn of_region(region: &str) -> Self {
        TABLE
            .iter()
            .filter(|r| !r.3.is_empty() && region.starts_with(r.3))
            // `us-isob-` and `us-isof-` are not `us-iso-` regions: the
            // longest matching prefix wins.
            .max_by_key(|r| r.3.len())
            .map_or(Partition::Aws, |r| r.0)
    }

    /// The partition's id, as in ARNs: `aws`, `aws-cn`, ….
    pub fn id(self) -> &'static str {
        self.row().1
    }

    /// The DNS suffix of the partition's service endpoints.
    pub fn dns_suffix(self) -> &'static str {
        self.row().2
    }

    /// Every partition id.
    pub fn ids() -> Vec<&'static str> {
        TABLE.iter().map(|r| r.1).collect()
    }

    /// S3's regional host: `s3.REGION.SUFFIX`.
    pub fn s3_host(self, region: &str) -> String {
        format!("s3.{region}.{}", self.dns_suffix())
    }

    /// A bucket's virtual-hosted regional host: `BUCKET.s3.REGION.SUFFIX`.
    pub fn s3_bucket_host(self, bucket: &str, region: &str) -> String {
        format!("{bucket}.{}", self.s3_host(region))
    }

    /// STS's regional endpoint: `https://sts.REGION.SUFFIX`.
    pub fn sts_url(self, region: &str) -> String {
        format!("https://sts.{region}.{}", self.dns_suffix())
    }

    /// Strips any partition's DNS suffix (with its dot) off `host`.
    pub fn strip_dns_suffix(host: &str) -> Option<&str> {
        // Longest suffix first: `amazonaws.com.cn` before `amazonaws.com`.
        let mut rows: Vec<_> = TABLE.iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.2.len()));
        rows.iter().find_map(|r| {
            host.strip_suffix(r.2)
                .and_then(|rest| rest.strip_suffix('.'))
        })
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Partition {
    type Err = UnknownPartition;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TABLE
            .iter()
            .find(|r| r.1 == s)
            .map(|r| r.0)
            .ok_or_else(|| UnknownPartition(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete() {
        for p in Partition::ALL {
            assert_eq!(TABLE.iter().filter(|r| r.0 == p).count(), 1, "{p:?}");
            assert_eq!(p.id().parse::<Partition>(), Ok(p));
        }
    }

    #[test]
    fn regions_find_their_partition() {
        for (region, id) in [
            ("eu-west-1", "aws"),
            ("us-east-1", "aws"),
            ("il-central-1", "aws"),
            ("cn-north-1", "aws-cn"),
            ("cn-northwest-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("eu-isoe-west-1", "aws-iso-e"),
            ("us-isof-south-1", "aws-iso-f"),
            ("eusc-de-east-1", "aws-eusc"),
        ] {
            assert_eq!(Partition::of_region(region).id(), id, "{region}");
        }
    }

    #[test]
    fn hosts_use_the_partition_suffix() {
        let p = Partition::of_region("us-iso-east-1");
        assert_eq!(
            p.s3_bucket_host("b", "us-iso-east-1"),
            "b.s3.us-iso-east-1.c2s.ic.gov"
        );
        assert_eq!(
            Partition::AwsCn.sts_url("cn-north-1"),
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            Partition::strip_dns_suffix("b.s3.cn-north-1.amazonaws.com.cn"),
            Some("b.s3.cn-north-1")
        );
        assert_eq!(
            Partition::strip_dns_suffix("b.s3.eusc-de-east-1.amazonaws.eu"),
            Some("b.s3.eusc-de-east-1")
        );
        assert_eq!(Partition::strip_dns_suffix("example.com"), None);
        assert_eq!(Partition::strip_dns_suffix("amazonaws.com"), None);
    }

    #[test]
    fn unknown_ids_are_refused_with_the_list() {
        let err = "aws-mars"
            .parse::<Partition>()
            .expect_err("unknown")
            .to_string();
        assert!(
            err.contains("aws-iso-f") && err.contains("aws-mars"),
            "{err}"
        );
    }
}

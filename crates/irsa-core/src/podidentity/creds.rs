//! The answer the SDKs' container-credentials provider reads, and when a
//! cached answer is too old to hand out.

use serde::Serialize;

use crate::timestamp::Timestamp;

/// A cached session is handed out until this long before it expires.
/// The SDKs refresh container credentials when fewer than 15 minutes are
/// left (botocore) or 5 (aws-sdk-rust, Go, Java); handing out a session
/// inside that window would make every call refresh again.
pub const REFRESH_MARGIN_SECONDS: i64 = 20 * 60;

/// The container-credentials JSON. Its `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerCredentials {
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token.
    pub token: String,
    /// When the session ends (RFC 3339, UTC).
    #[serde(serialize_with = "rfc3339")]
    pub expiration: Timestamp,
    /// The role's account.
    pub account_id: String,
}

fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

impl std::fmt::Debug for ContainerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration.to_string())
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

impl ContainerCredentials {
    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Bytes held by the strings (for cache bounds).
    pub fn bytes(&self) -> usize {
        self.access_key_id.len()
            + self.secret_access_key.len()
            + self.token.len()
            + self.account_id.len()
    }
}

/// Whether a session ending at `expiration` may still be handed out at
/// `now` (both seconds since 1970): more than [`REFRESH_MARGIN_SECONDS`]
/// left.
pub fn fresh(expiration: i64, now: i64) -> bool {
    now.saturating_add(REFRESH_MARGIN_SECONDS) < expiration
}

/// The account in an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:...`),
/// when it is 12 digits.
pub fn account_of(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_is_what_the_sdks_read() {
        let c = ContainerCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "s3cr3t".into(),
            token: "tok".into(),
            expiration: Timestamp::saturating_from_unix(1_800_000_000),
            account_id: "111122223333".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&c.to_json()).unwrap_or_default();
        assert_eq!(
            v,
            serde_json::json!({"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "s3cr3t", "Token": "tok",
                "Expiration": "2027-01-15T08:00:00Z", "AccountId": "111122223333"})
        );
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("\"tok\""),
            "{debug}"
        );
    }

    #[test]
    fn a_session_is_reused_until_the_margin_before_it_ends() {
        let end = 10_000;
        assert!(fresh(end, end - REFRESH_MARGIN_SECONDS - 1));
        assert!(!fresh(end, end - REFRESH_MARGIN_SECONDS));
        assert!(!fresh(end, end + 5));
        assert!(!fresh(i64::MIN, i64::MAX));
    }

    #[test]
    fn the_account_comes_from_the_assumed_role_arn() {
        assert_eq!(
            account_of("arn:aws:sts::111122223333:assumed-role/r/s"),
            Some("111122223333")
        );
        assert_eq!(account_of("arn:aws:sts::1111:assumed-role/r/s"), None);
        assert_eq!(account_of("nonsense"), None);
    }
}

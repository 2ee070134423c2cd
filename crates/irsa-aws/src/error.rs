//! Failures talking to AWS: one enum for the crate, with the AWS error
//! code kept apart from the text so callers can match on it.

use aws_sdk_iam::error::ProvideErrorMetadata;

use crate::sts::StsRefusal;

/// Failures talking to AWS.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// An API call failed.
    #[error("{operation} failed: {message}")]
    Call {
        /// The operation, e.g. `iam:CreateRole`.
        operation: &'static str,
        /// The AWS error code, when there is one.
        code: Option<String>,
        /// Error code and message from AWS.
        message: String,
    },
    /// STS refused to exchange a web identity token for role credentials;
    /// `refusal` says which link of the chain it named.
    #[error("sts:AssumeRoleWithWebIdentity failed: {message}")]
    WebIdentityRefused {
        /// Which link STS named, read from its code and message.
        refusal: StsRefusal,
        /// The AWS error code, when there is one.
        code: Option<String>,
        /// Error code and message from AWS.
        message: String,
    },
    /// AWS returned something irsa cannot read.
    #[error("{0}")]
    Unexpected(String),
    /// A step was not run because running it could let someone else take
    /// over trust (the message says why and what to do).
    #[error("{0}")]
    Withheld(String),
}

pub(crate) fn call_err<E: ProvideErrorMetadata + std::fmt::Debug>(
    operation: &'static str,
    e: E,
) -> AwsError {
    let message = match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => format!("{e:?}"),
    };
    AwsError::Call {
        operation,
        code: e.code().map(String::from),
        message,
    }
}

impl AwsError {
    /// Whether this error, from carrying out `action`, may have left a
    /// bucket irsa created but did not tag: anything but S3 answering
    /// `CreateBucket` with an error code (tagging after creation failed, or
    /// no answer came).
    pub fn may_leave_an_untagged_bucket(&self, action: &irsa_core::plan::Action) -> bool {
        matches!(action, irsa_core::plan::Action::CreateBucket)
            && !matches!(
                self,
                AwsError::Call {
                    operation: "s3:CreateBucket",
                    code: Some(_),
                    ..
                }
            )
    }

    /// The AWS error code, e.g. `EntityAlreadyExists`.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Call { code, .. } | Self::WebIdentityRefused { code, .. } => code.as_deref(),
            Self::Unexpected(_) | Self::Withheld(_) => None,
        }
    }

    /// Whether AWS refused the call for lack of permission.
    pub fn denied(&self) -> bool {
        matches!(
            self.code(),
            Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation")
        )
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_iam::error::ErrorMetadata;

    use super::*;

    fn call(operation: &'static str, code: Option<&str>) -> AwsError {
        AwsError::Call {
            operation,
            code: code.map(String::from),
            message: code.unwrap_or("dispatch failure").to_string(),
        }
    }

    #[test]
    fn only_a_bucket_creation_s3_answered_leaves_no_untagged_bucket() {
        use irsa_core::plan::Action;
        let create = Action::CreateBucket;
        assert!(!call("s3:CreateBucket", Some("BucketAlreadyExists"))
            .may_leave_an_untagged_bucket(&create));
        // No answer from S3: the bucket may exist.
        assert!(call("s3:CreateBucket", None).may_leave_an_untagged_bucket(&create));
        // Created, then tagging failed.
        assert!(
            call("s3:PutBucketTagging", Some("AccessDenied")).may_leave_an_untagged_bucket(&create)
        );
        assert!(AwsError::Unexpected("bad tag".into()).may_leave_an_untagged_bucket(&create));
        assert!(!call("s3:PutBucketTagging", None).may_leave_an_untagged_bucket(&Action::TagBucket));
    }

    fn sdk_error(code: Option<&str>, message: Option<&str>) -> ErrorMetadata {
        let mut b = ErrorMetadata::builder();
        if let Some(c) = code {
            b = b.code(c);
        }
        if let Some(m) = message {
            b = b.message(m);
        }
        b.build()
    }

    #[test]
    fn a_failed_call_keeps_operation_code_and_message() {
        let e = call_err(
            "iam:GetRole",
            sdk_error(Some("NoSuchEntity"), Some("role x not found")),
        );
        assert!(
            matches!(&e, AwsError::Call { operation: "iam:GetRole", code: Some(c), .. } if c == "NoSuchEntity")
        );
        assert_eq!(e.code(), Some("NoSuchEntity"));
        assert_eq!(
            e.to_string(),
            "iam:GetRole failed: NoSuchEntity: role x not found"
        );
    }

    #[test]
    fn a_code_without_message_is_the_message() {
        let e = call_err("s3:PutObject", sdk_error(Some("SlowDown"), None));
        assert_eq!(e.to_string(), "s3:PutObject failed: SlowDown");
        assert_eq!(e.code(), Some("SlowDown"));
    }

    #[test]
    fn an_error_without_code_has_none_and_says_what_it_got() {
        let e = call_err("s3:HeadBucket", sdk_error(None, Some("dispatch failure")));
        assert_eq!(e.code(), None);
        assert!(!e.denied());
        assert!(e.to_string().starts_with("s3:HeadBucket failed: "), "{e}");
    }

    #[test]
    fn access_denied_codes_of_every_service_count_as_denied() {
        for code in [
            "AccessDenied",
            "AccessDeniedException",
            "UnauthorizedOperation",
        ] {
            assert!(
                call_err(
                    "iam:GetAccountAuthorizationDetails",
                    sdk_error(Some(code), None)
                )
                .denied(),
                "{code}"
            );
        }
        for code in [
            "NoSuchEntity",
            "Throttling",
            "InvalidIdentityToken",
            "accessdenied",
            "ExpiredToken",
        ] {
            assert!(
                !call_err("iam:GetRole", sdk_error(Some(code), None)).denied(),
                "{code}"
            );
        }
    }

    #[test]
    fn errors_irsa_makes_itself_have_no_code() {
        for e in [
            AwsError::Unexpected("GetCallerIdentity returned no account".into()),
            AwsError::Withheld("not run".into()),
        ] {
            assert_eq!(e.code(), None);
            assert!(!e.denied());
        }
    }
}

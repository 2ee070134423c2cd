//! Failures talking to AWS: one enum for the crate, with the AWS error
//! code kept apart from the text so callers can match on it.

use aws_sdk_iam::error::ProvideErrorMetadata;

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
    /// The AWS error code, e.g. `EntityAlreadyExists`.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Call { code, .. } => code.as_deref(),
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

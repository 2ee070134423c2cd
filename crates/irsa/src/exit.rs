//! How irsa ends: the exit code a command has already reported the
//! reason for travels as an [`Exit`] error, shared by every verb from this
//! leaf module; `main` turns it, or any other error, into the process's
//! exit code (the table in docs/issuer-and-keys.md#exit-codes).

/// How a command ends with an exit code it has already reported the
/// reason for (a failed check, a plan with changes under
/// `--detailed-exitcode`): the process only exits with this code. Every
/// other error is printed as `irsa: {error:#}` and exits with
/// [`Exit::of_error`]: 3 when an AWS call failed, else 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(pub u8);

impl Exit {
    /// A check failed (`validate`, `token verify`, `doctor`, ...): exit 1.
    pub const CHECKS_FAILED: Exit = Exit(1);
    /// Usage or input error: exit 2.
    pub const USAGE: Exit = Exit(2);
    /// An AWS call failed: exit 3.
    pub const AWS_FAILED: Exit = Exit(3);

    /// The code an error exits with when it was not reported already: 3
    /// when an AWS call failed (an `AwsError` in its chain), else 2.
    pub fn of_error(e: &anyhow::Error) -> Exit {
        if crate::net::is_aws_error(e) {
            Self::AWS_FAILED
        } else {
            Self::USAGE
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            1 => f.write_str("one or more checks failed"),
            code => write!(f, "exit {code}"),
        }
    }
}

impl std::error::Error for Exit {}

//! STS: who the caller is, and exchanging a web identity token for a role.

use crate::error::call_err;
use crate::{Aws, AwsError};

impl Aws {
    /// The caller's account ID.
    pub async fn account_id(&self) -> Result<String, AwsError> {
        self.read();
        let who = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| call_err("sts:GetCallerIdentity", e))?;
        who.account()
            .map(String::from)
            .ok_or_else(|| AwsError::Unexpected("GetCallerIdentity returned no account".into()))
    }

    /// STS AssumeRoleWithWebIdentity (used by tests and `doctor`).
    pub async fn assume_role_with_web_identity(
        &self,
        role_arn: &str,
        token: &str,
    ) -> Result<String, AwsError> {
        let out = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(role_arn)
            .role_session_name("irsa-check")
            .web_identity_token(token)
            .send()
            .await
            .map_err(|e| call_err("sts:AssumeRoleWithWebIdentity", e))?;
        out.assumed_role_user()
            .map(|u| u.arn().to_string())
            .ok_or_else(|| AwsError::Unexpected("no assumed role user".into()))
    }
}

//! Applying one plan [`Change`] to S3 or IAM (the order and the safety
//! checks between changes are in `phases`).

use aws_sdk_s3::primitives::ByteStream;
use irsa_core::plan::{role_path, Action, Change, Desired};

use crate::convert::{arn_for, tags_iam};
use crate::{Aws, AwsError};

impl Aws {
    /// Executes one change.
    pub async fn execute(&self, desired: &Desired, change: &Change) -> Result<(), AwsError> {
        let bucket = desired
            .s3
            .as_ref()
            .map(|s| s.bucket.clone())
            .unwrap_or_default();
        match &change.action {
            Action::CreateBucket => {
                let region = desired
                    .s3
                    .as_ref()
                    .map(|s| s.region.clone())
                    .unwrap_or_default();
                let mut req = self.s3.create_bucket().bucket(&bucket);
                if region != "us-east-1" {
                    let cfg = aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                            region.as_str(),
                        ))
                        .build();
                    req = req.create_bucket_configuration(cfg);
                }
                self.call("s3:CreateBucket", req.send()).await?;
                self.tag_bucket(desired, &bucket).await?;
            }
            Action::TagBucket => self.tag_bucket(desired, &bucket).await?,
            Action::AllowPublicPolicy { .. } => {
                self.put_public_access_block(&bucket, false).await?;
            }
            Action::PutBucketPolicy { policy, .. } => {
                self.call(
                    "s3:PutBucketPolicy",
                    self.s3
                        .put_bucket_policy()
                        .bucket(&bucket)
                        .policy(policy.to_string())
                        .send(),
                )
                .await?;
            }
            Action::PutObject { key, body, .. } => {
                self.call(
                    "s3:PutObject",
                    self.s3
                        .put_object()
                        .bucket(&bucket)
                        .key(key)
                        .content_type("application/json")
                        .cache_control("max-age=300")
                        .body(ByteStream::from(body.clone().into_bytes()))
                        .send(),
                )
                .await?;
            }
            Action::CreateProvider { host_path: host } => {
                self.call(
                    "iam:CreateOpenIDConnectProvider",
                    self.iam
                        .create_open_id_connect_provider()
                        .url(format!("https://{host}"))
                        .set_thumbprint_list(
                            (!desired.thumbprints.is_empty()).then(|| desired.thumbprints.clone()),
                        )
                        .set_client_id_list(Some(desired.client_ids.iter().cloned().collect()))
                        .set_tags(Some(tags_iam(&desired.owner_tags())))
                        .send(),
                )
                .await?;
            }
            Action::AddClientId {
                host_path: host,
                client_id: id,
            } => {
                let arn = self.provider_arn(host).await?;
                self.call(
                    "iam:AddClientIDToOpenIDConnectProvider",
                    self.iam
                        .add_client_id_to_open_id_connect_provider()
                        .open_id_connect_provider_arn(arn)
                        .client_id(id)
                        .send(),
                )
                .await?;
            }
            Action::UpdateThumbprints {
                host_path: host,
                thumbprints,
            } => {
                let arn = self.provider_arn(host).await?;
                self.call(
                    "iam:UpdateOpenIDConnectProviderThumbprint",
                    self.iam
                        .update_open_id_connect_provider_thumbprint()
                        .open_id_connect_provider_arn(arn)
                        .set_thumbprint_list(Some(thumbprints.clone()))
                        .send(),
                )
                .await?;
            }
            Action::TagProvider { host_path: host } => {
                let arn = self.provider_arn(host).await?;
                self.call(
                    "iam:TagOpenIDConnectProvider",
                    self.iam
                        .tag_open_id_connect_provider()
                        .open_id_connect_provider_arn(arn)
                        .set_tags(Some(tags_iam(&desired.owner_tags())))
                        .send(),
                )
                .await?;
            }
            Action::CreateRole { role } => {
                self.call(
                    "iam:CreateRole",
                    self.iam
                        .create_role()
                        .role_name(&role.name)
                        .path(role_path(&desired.cluster))
                        .assume_role_policy_document(role.trust.to_string())
                        .max_session_duration(role.max_session)
                        .set_permissions_boundary(role.boundary.clone())
                        .description(format!(
                            "IRSA role for cluster {} (managed by irsa)",
                            desired.cluster
                        ))
                        .set_tags(Some(tags_iam(&role.tags)))
                        .send(),
                )
                .await?;
            }
            Action::UpdateTrust { role: name, trust } => {
                self.call(
                    "iam:UpdateAssumeRolePolicy",
                    self.iam
                        .update_assume_role_policy()
                        .role_name(name)
                        .policy_document(trust.to_string())
                        .send(),
                )
                .await?;
            }
            Action::UpdateMaxSession {
                role: name,
                seconds: secs,
            } => {
                self.call(
                    "iam:UpdateRole",
                    self.iam
                        .update_role()
                        .role_name(name)
                        .max_session_duration(*secs)
                        .send(),
                )
                .await?;
            }
            Action::TagRole { role: name, tags } => {
                self.call(
                    "iam:TagRole",
                    self.iam
                        .tag_role()
                        .role_name(name)
                        .set_tags(Some(tags_iam(tags)))
                        .send(),
                )
                .await?;
            }
            Action::PutBoundary {
                role: name,
                policy_arn: arn,
            } => {
                self.call(
                    "iam:PutRolePermissionsBoundary",
                    self.iam
                        .put_role_permissions_boundary()
                        .role_name(name)
                        .permissions_boundary(arn)
                        .send(),
                )
                .await?;
            }
            Action::DeleteBoundary { role: name } => {
                self.call(
                    "iam:DeleteRolePermissionsBoundary",
                    self.iam
                        .delete_role_permissions_boundary()
                        .role_name(name)
                        .send(),
                )
                .await?;
            }
            Action::AttachPolicy {
                role: name,
                policy_arn: arn,
            } => {
                self.call(
                    "iam:AttachRolePolicy",
                    self.iam
                        .attach_role_policy()
                        .role_name(name)
                        .policy_arn(arn)
                        .send(),
                )
                .await?;
            }
            Action::DetachPolicy {
                role: name,
                policy_arn: arn,
            } => self.detach_policy(name, arn).await?,
            Action::PutInline {
                role: name,
                policy_name: policy,
                document: doc,
                ..
            } => {
                self.call(
                    "iam:PutRolePolicy",
                    self.iam
                        .put_role_policy()
                        .role_name(name)
                        .policy_name(policy)
                        .policy_document(doc.to_string())
                        .send(),
                )
                .await?;
            }
            Action::DeleteInline {
                role: name,
                policy_name: policy,
            } => self.delete_inline(name, policy).await?,
            Action::DeleteRole { role: name } => {
                if let Some(role) = self.read_role(name).await? {
                    for arn in &role.managed {
                        self.detach_policy(name, arn).await?;
                    }
                    for policy in role.inline.keys() {
                        self.delete_inline(name, policy).await?;
                    }
                    self.call(
                        "iam:DeleteRole",
                        self.iam.delete_role().role_name(name).send(),
                    )
                    .await?;
                }
            }
            Action::DeleteProvider { arn } => {
                self.call(
                    "iam:DeleteOpenIDConnectProvider",
                    self.iam
                        .delete_open_id_connect_provider()
                        .open_id_connect_provider_arn(arn)
                        .send(),
                )
                .await?;
            }
            Action::DeleteObject { key } => {
                self.call(
                    "s3:DeleteObject",
                    self.s3.delete_object().bucket(&bucket).key(key).send(),
                )
                .await?;
            }
            Action::DeleteBucketPolicy => {
                self.call(
                    "s3:DeleteBucketPolicy",
                    self.s3.delete_bucket_policy().bucket(&bucket).send(),
                )
                .await?;
            }
            Action::BlockAllPublicAccess { .. } => {
                self.put_public_access_block(&bucket, true).await?;
            }
            Action::CreateOac => self.create_oac(desired, cloudfront(desired)?).await?,
            Action::UpdateOac { id } => self.update_oac(desired, cloudfront(desired)?, id).await?,
            Action::CreateDistribution => {
                self.create_distribution(desired, cloudfront(desired)?)
                    .await?;
            }
            Action::UpdateDistribution { id } => {
                self.update_distribution(cloudfront(desired)?, id).await?
            }
            Action::Invalidate { id, paths } => self.invalidate(id, paths).await?,
            Action::DisableDistribution { id } => self.disable_distribution(id).await?,
            Action::DeleteDistribution { id } => self.delete_distribution(id).await?,
            Action::DeleteOac { id } => self.delete_oac(id).await?,
            Action::DeleteBucket => {
                self.call(
                    "s3:DeleteBucket",
                    self.s3.delete_bucket().bucket(&bucket).send(),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn detach_policy(&self, role: &str, arn: &str) -> Result<(), AwsError> {
        self.call(
            "iam:DetachRolePolicy",
            self.iam
                .detach_role_policy()
                .role_name(role)
                .policy_arn(arn)
                .send(),
        )
        .await?;
        Ok(())
    }

    async fn delete_inline(&self, role: &str, policy: &str) -> Result<(), AwsError> {
        self.call(
            "iam:DeleteRolePolicy",
            self.iam
                .delete_role_policy()
                .role_name(role)
                .policy_name(policy)
                .send(),
        )
        .await?;
        Ok(())
    }

    /// Adds the owner tag to the bucket, keeping its other tags
    /// (`PutBucketTagging` replaces the whole set).
    async fn tag_bucket(&self, desired: &Desired, bucket: &str) -> Result<(), AwsError> {
        let mut tags = self.bucket_tags(bucket).await?;
        tags.extend(desired.owner_tags());
        let tags: Vec<aws_sdk_s3::types::Tag> = tags
            .iter()
            .filter_map(|(k, v)| {
                aws_sdk_s3::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .ok()
            })
            .collect();
        let tagging = aws_sdk_s3::types::Tagging::builder()
            .set_tag_set(Some(tags))
            .build()
            .map_err(|e| AwsError::Unexpected(e.to_string()))?;
        self.call(
            "s3:PutBucketTagging",
            self.s3
                .put_bucket_tagging()
                .bucket(bucket)
                .tagging(tagging)
                .send(),
        )
        .await?;
        Ok(())
    }

    async fn provider_arn(&self, host_path: &str) -> Result<String, AwsError> {
        let arns = self.provider_arns().await?;
        arn_for(&arns, host_path).map(String::from).ok_or_else(|| {
            AwsError::Unexpected(format!("OIDC provider for {host_path} disappeared"))
        })
    }
}

/// The CloudFront part of `desired`, which a CloudFront change needs.
fn cloudfront(desired: &Desired) -> Result<&irsa_core::plan::DesiredCloudFront, AwsError> {
    desired.cloudfront.as_ref().ok_or_else(|| {
        AwsError::Unexpected("a CloudFront change in a plan without issuer.cloudfront".into())
    })
}

impl Aws {
    /// The bucket's public access block: ACLs always blocked and ignored;
    /// public bucket policies blocked too when `policies` is set (the
    /// private bucket behind CloudFront), else allowed (the public issuer
    /// bucket's one statement).
    async fn put_public_access_block(&self, bucket: &str, policies: bool) -> Result<(), AwsError> {
        let cfg = aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(policies)
            .restrict_public_buckets(policies)
            .build();
        self.call(
            "s3:PutPublicAccessBlock",
            self.s3
                .put_public_access_block()
                .bucket(bucket)
                .public_access_block_configuration(cfg)
                .send(),
        )
        .await?;
        Ok(())
    }
}

//! CloudFront mode: reading this issuer's distribution and Origin Access
//! Control, and the calls that create, repair, invalidate and remove them.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudfront::types::{
    DistributionConfig, DistributionConfigWithTags, InvalidationBatch, OriginAccessControlConfig,
    OriginAccessControlOriginTypes, OriginAccessControlSigningBehaviors,
    OriginAccessControlSigningProtocols, Origins, Paths, Tag, Tags,
};
use irsa_core::hosting::distribution_arn;
use irsa_core::plan::{
    Actual, ActualDistribution, ActualOac, Desired, DesiredCloudFront, OWNER_TAG,
};

use crate::cloudfront_shape::{distribution_config, shape_of};
use crate::{Aws, AwsError};

/// How long `destroy` waits for a disabled distribution to be deployed.
pub const DEPLOY_WAIT: Duration = Duration::from_secs(30 * 60);

fn unexpected(what: &str, e: impl std::fmt::Display) -> AwsError {
    AwsError::Unexpected(format!("{what}: {e}"))
}

impl Aws {
    /// Reads the OAC with this issuer's name and the distributions whose
    /// origin is this issuer's bucket (the bucket's Block Public Access is
    /// read with the bucket).
    pub(crate) async fn read_cloudfront(
        &self,
        desired: &Desired,
        cf: &DesiredCloudFront,
        actual: &mut Actual,
    ) -> Result<(), AwsError> {
        actual.oac = self.find_oac(&cf.names.oac_name).await?;
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .get(
                    "cloudfront:ListDistributions",
                    self.cf
                        .list_distributions()
                        .set_marker(marker.clone())
                        .send(),
                )
                .await?;
            let Some(list) = page.distribution_list() else {
                break;
            };
            for d in list.items() {
                let serves = |comment: &str, origins: Option<&Origins>| {
                    comment == cf.names.comment
                        || origins.is_some_and(|o| {
                            o.items().iter().any(|o| {
                                o.domain_name() == cf.names.origin_domain
                                    && o.origin_path().unwrap_or("") == cf.names.origin_path
                            })
                        })
                };
                // A summary always lists the origins; when one does not,
                // the configuration says.
                let mut config = None;
                let serves_us = match d.origins().filter(|o| !o.items().is_empty()) {
                    Some(o) => serves(d.comment(), Some(o)),
                    None => {
                        let (c, _) = self.distribution_config(d.id()).await?;
                        let yes = serves(c.comment(), c.origins());
                        config = Some(c);
                        yes
                    }
                };
                if !serves_us {
                    continue;
                }
                let tags = self.distribution_tags(d.arn()).await?;
                if tags.get(OWNER_TAG) == Some(&desired.cluster) && actual.distribution.is_none() {
                    let config = match config {
                        Some(c) => c,
                        None => self.distribution_config(d.id()).await?.0,
                    };
                    actual.distribution = Some(ActualDistribution {
                        id: d.id().to_string(),
                        domain_name: d.domain_name().to_string(),
                        status: d.status().to_string(),
                        shape: shape_of(&config),
                        tags,
                    });
                } else {
                    actual.foreign_distributions.push(d.id().to_string());
                }
            }
            match list.next_marker() {
                Some(m) if list.is_truncated() && !m.is_empty() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(())
    }

    async fn distribution_tags(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let out = self
            .get(
                "cloudfront:ListTagsForResource",
                self.cf.list_tags_for_resource().resource(arn).send(),
            )
            .await?;
        Ok(out
            .tags()
            .map(|t| {
                t.items()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn distribution_config(
        &self,
        id: &str,
    ) -> Result<(DistributionConfig, String), AwsError> {
        let out = self
            .get(
                "cloudfront:GetDistributionConfig",
                self.cf.get_distribution_config().id(id).send(),
            )
            .await?;
        let etag = out.e_tag().unwrap_or("").to_string();
        let config = out.distribution_config.ok_or_else(|| {
            unexpected(
                "cloudfront:GetDistributionConfig",
                format!("no configuration for {id}"),
            )
        })?;
        Ok((config, etag))
    }

    /// The OAC named `name`, if the account has one.
    async fn find_oac(&self, name: &str) -> Result<Option<ActualOac>, AwsError> {
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .get(
                    "cloudfront:ListOriginAccessControls",
                    self.cf
                        .list_origin_access_controls()
                        .set_marker(marker.clone())
                        .send(),
                )
                .await?;
            let Some(list) = page.origin_access_control_list() else {
                return Ok(None);
            };
            if let Some(o) = list.items().iter().find(|o| o.name() == name) {
                return Ok(Some(ActualOac {
                    id: o.id().to_string(),
                    description: o.description().to_string(),
                    signing_protocol: o.signing_protocol().as_str().to_string(),
                    signing_behavior: o.signing_behavior().as_str().to_string(),
                    origin_type: o.origin_access_control_origin_type().as_str().to_string(),
                }));
            }
            match list.next_marker() {
                Some(m) if list.is_truncated() && !m.is_empty() => marker = Some(m.to_string()),
                _ => return Ok(None),
            }
        }
    }

    fn oac_config(
        desired: &Desired,
        cf: &DesiredCloudFront,
    ) -> Result<OriginAccessControlConfig, AwsError> {
        OriginAccessControlConfig::builder()
            .name(&cf.names.oac_name)
            .description(cf.oac_description(&desired.cluster))
            .signing_protocol(OriginAccessControlSigningProtocols::Sigv4)
            .signing_behavior(OriginAccessControlSigningBehaviors::Always)
            .origin_access_control_origin_type(OriginAccessControlOriginTypes::S3)
            .build()
            .map_err(|e| unexpected("origin access control", e))
    }

    /// Creates this issuer's OAC.
    pub(crate) async fn create_oac(
        &self,
        desired: &Desired,
        cf: &DesiredCloudFront,
    ) -> Result<(), AwsError> {
        self.call(
            "cloudfront:CreateOriginAccessControl",
            self.cf
                .create_origin_access_control()
                .origin_access_control_config(Self::oac_config(desired, cf)?)
                .send(),
        )
        .await?;
        Ok(())
    }

    /// Restores the OAC's settings.
    pub(crate) async fn update_oac(
        &self,
        desired: &Desired,
        cf: &DesiredCloudFront,
        id: &str,
    ) -> Result<(), AwsError> {
        let etag = self.oac_etag(id).await?;
        self.call(
            "cloudfront:UpdateOriginAccessControl",
            self.cf
                .update_origin_access_control()
                .id(id)
                .if_match(etag)
                .origin_access_control_config(Self::oac_config(desired, cf)?)
                .send(),
        )
        .await?;
        Ok(())
    }

    /// Deletes the OAC.
    pub(crate) async fn delete_oac(&self, id: &str) -> Result<(), AwsError> {
        let etag = self.oac_etag(id).await?;
        self.call(
            "cloudfront:DeleteOriginAccessControl",
            self.cf
                .delete_origin_access_control()
                .id(id)
                .if_match(etag)
                .send(),
        )
        .await?;
        Ok(())
    }

    async fn oac_etag(&self, id: &str) -> Result<String, AwsError> {
        let out = self
            .get(
                "cloudfront:GetOriginAccessControl",
                self.cf.get_origin_access_control().id(id).send(),
            )
            .await?;
        Ok(out.e_tag().unwrap_or("").to_string())
    }

    async fn oac_id(&self, cf: &DesiredCloudFront) -> Result<String, AwsError> {
        self.find_oac(&cf.names.oac_name)
            .await?
            .map(|o| o.id)
            .ok_or_else(|| {
                AwsError::Unexpected(format!(
                    "origin access control {} disappeared before the distribution could use it",
                    cf.names.oac_name
                ))
            })
    }

    /// Creates this issuer's distribution, tagged as owned; returns its id
    /// and domain name.
    pub(crate) async fn create_distribution(
        &self,
        desired: &Desired,
        cf: &DesiredCloudFront,
    ) -> Result<(String, String), AwsError> {
        let oac = self.oac_id(cf).await?;
        let config = distribution_config(&cf.shape(&oac), &cf.names.caller_reference)?;
        let tags: Vec<Tag> = desired
            .owner_tags()
            .into_iter()
            .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
            .collect();
        let with_tags = DistributionConfigWithTags::builder()
            .distribution_config(config)
            .tags(Tags::builder().set_items(Some(tags)).build())
            .build();
        let out = self
            .call(
                "cloudfront:CreateDistributionWithTags",
                self.cf
                    .create_distribution_with_tags()
                    .distribution_config_with_tags(with_tags)
                    .send(),
            )
            .await?;
        let d = out.distribution().ok_or_else(|| {
            unexpected(
                "cloudfront:CreateDistributionWithTags",
                "no distribution in the answer",
            )
        })?;
        Ok((d.id().to_string(), d.domain_name().to_string()))
    }

    /// Restores the distribution's settings, keeping its caller reference.
    pub(crate) async fn update_distribution(
        &self,
        cf: &DesiredCloudFront,
        id: &str,
    ) -> Result<(), AwsError> {
        let oac = self.oac_id(cf).await?;
        let (current, etag) = self.distribution_config(id).await?;
        let config = distribution_config(&cf.shape(&oac), current.caller_reference())?;
        self.put_distribution_config(id, etag, config).await
    }

    /// Disables the distribution (its other settings unchanged).
    pub(crate) async fn disable_distribution(&self, id: &str) -> Result<(), AwsError> {
        let (current, etag) = self.distribution_config(id).await?;
        if !current.enabled() {
            return Ok(());
        }
        let mut config = current;
        config.enabled = false;
        self.put_distribution_config(id, etag, config).await
    }

    /// Replaces the distribution's configuration; `etag` is the one its
    /// configuration was read with, so a change made since is not lost.
    async fn put_distribution_config(
        &self,
        id: &str,
        etag: String,
        config: DistributionConfig,
    ) -> Result<(), AwsError> {
        self.call(
            "cloudfront:UpdateDistribution",
            self.cf
                .update_distribution()
                .id(id)
                .if_match(etag)
                .distribution_config(config)
                .send(),
        )
        .await?;
        Ok(())
    }

    /// Waits (at most [`DEPLOY_WAIT`]) until the disabled distribution is
    /// deployed, then deletes it.
    pub(crate) async fn delete_distribution(&self, id: &str) -> Result<(), AwsError> {
        let deadline = tokio::time::Instant::now() + DEPLOY_WAIT;
        let mut pause = Duration::from_millis(200);
        loop {
            let out = self
                .get(
                    "cloudfront:GetDistribution",
                    self.cf.get_distribution().id(id).send(),
                )
                .await?;
            let status = out
                .distribution()
                .map(|d| d.status().to_string())
                .unwrap_or_default();
            if status == "Deployed" {
                break;
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(AwsError::Unexpected(format!(
                    "cloudfront distribution {id} is still {status} after {} minutes; run irsa destroy again later to delete it",
                    DEPLOY_WAIT.as_secs() / 60
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(30));
        }
        let (_, etag) = self.distribution_config(id).await?;
        self.call(
            "cloudfront:DeleteDistribution",
            self.cf.delete_distribution().id(id).if_match(etag).send(),
        )
        .await?;
        Ok(())
    }

    /// Invalidates `paths` in the distribution's caches.
    pub(crate) async fn invalidate(&self, id: &str, paths: &[String]) -> Result<(), AwsError> {
        let paths = Paths::builder()
            .quantity(paths.len() as i32)
            .set_items(Some(paths.to_vec()))
            .build()
            .map_err(|e| unexpected("invalidation paths", e))?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let batch = InvalidationBatch::builder()
            .paths(paths)
            .caller_reference(format!("irsa-{stamp}"))
            .build()
            .map_err(|e| unexpected("invalidation", e))?;
        self.call(
            "cloudfront:CreateInvalidation",
            self.cf
                .create_invalidation()
                .distribution_id(id)
                .invalidation_batch(batch)
                .send(),
        )
        .await?;
        Ok(())
    }

    /// The ARN of distribution `id` in `desired`'s account.
    pub fn distribution_arn(desired: &Desired, id: &str) -> Option<String> {
        desired
            .cloudfront
            .as_ref()
            .map(|cf| distribution_arn(&cf.account, id))
    }
}

//! Between irsa's [`DistributionShape`] and CloudFront's distribution
//! configuration: what a read is compared as, and what a write sends.

use aws_sdk_cloudfront::types::{
    Aliases, AllowedMethods, CachedMethods, DefaultCacheBehavior, DistributionConfig, Method,
    Origin, Origins, S3OriginConfig, ViewerCertificate, ViewerProtocolPolicy,
};
use irsa_core::export::{CACHING_OPTIMIZED, ORIGIN_ID};
use irsa_core::plan::DistributionShape;

use crate::AwsError;

fn unexpected(what: &str, e: impl std::fmt::Display) -> AwsError {
    AwsError::Unexpected(format!("{what}: {e}"))
}

/// The settings irsa compares, read from a distribution's configuration.
pub(crate) fn shape_of(c: &DistributionConfig) -> DistributionShape {
    let origin = c.origins().and_then(|o| o.items().first());
    let behaviour = c.default_cache_behavior();
    let mut methods: Vec<String> = behaviour
        .and_then(|b| b.allowed_methods())
        .map(|m| m.items().iter().map(|m| m.as_str().to_string()).collect())
        .unwrap_or_default();
    methods.sort();
    DistributionShape {
        enabled: c.enabled(),
        comment: c.comment().to_string(),
        origin_domain: origin
            .map(|o| o.domain_name().to_string())
            .unwrap_or_default(),
        origin_path: origin
            .and_then(|o| o.origin_path())
            .unwrap_or("")
            .to_string(),
        oac_id: origin
            .and_then(|o| o.origin_access_control_id())
            .unwrap_or("")
            .to_string(),
        aliases: c.aliases().map(|a| a.items().to_vec()).unwrap_or_default(),
        certificate_arn: c
            .viewer_certificate()
            .and_then(|v| v.acm_certificate_arn())
            .filter(|a| !a.is_empty())
            .map(String::from),
        viewer_protocol_policy: behaviour
            .map(|b| b.viewer_protocol_policy().as_str().to_string())
            .unwrap_or_default(),
        allowed_methods: methods,
        default_root_object: c.default_root_object().unwrap_or("").to_string(),
    }
}

/// The distribution configuration for `shape`.
pub(crate) fn distribution_config(
    shape: &DistributionShape,
    caller_reference: &str,
) -> Result<DistributionConfig, AwsError> {
    let err = |e| unexpected("distribution configuration", e);
    let origin = Origin::builder()
        .id(ORIGIN_ID)
        .domain_name(&shape.origin_domain)
        .origin_path(&shape.origin_path)
        .origin_access_control_id(&shape.oac_id)
        // With an OAC, the S3 origin has no origin access identity.
        .s3_origin_config(S3OriginConfig::builder().origin_access_identity("").build())
        .build()
        .map_err(err)?;
    let methods: Vec<Method> = shape
        .allowed_methods
        .iter()
        .map(|m| Method::from(m.as_str()))
        .collect();
    let cached = CachedMethods::builder()
        .quantity(methods.len() as i32)
        .set_items(Some(methods.clone()))
        .build()
        .map_err(err)?;
    let allowed = AllowedMethods::builder()
        .quantity(methods.len() as i32)
        .set_items(Some(methods))
        .cached_methods(cached)
        .build()
        .map_err(err)?;
    let behaviour = DefaultCacheBehavior::builder()
        .target_origin_id(ORIGIN_ID)
        .viewer_protocol_policy(ViewerProtocolPolicy::from(
            shape.viewer_protocol_policy.as_str(),
        ))
        .allowed_methods(allowed)
        .cache_policy_id(CACHING_OPTIMIZED)
        .compress(true)
        .build()
        .map_err(err)?;
    let certificate = match &shape.certificate_arn {
        Some(arn) => ViewerCertificate::builder()
            .acm_certificate_arn(arn)
            .ssl_support_method(aws_sdk_cloudfront::types::SslSupportMethod::SniOnly)
            .minimum_protocol_version(aws_sdk_cloudfront::types::MinimumProtocolVersion::TlSv122021)
            .build(),
        None => ViewerCertificate::builder()
            .cloud_front_default_certificate(true)
            .build(),
    };
    let aliases = Aliases::builder()
        .quantity(shape.aliases.len() as i32)
        .set_items(Some(shape.aliases.clone()))
        .build()
        .map_err(err)?;
    DistributionConfig::builder()
        .caller_reference(caller_reference)
        .comment(&shape.comment)
        .enabled(shape.enabled)
        .default_root_object(&shape.default_root_object)
        .origins(
            Origins::builder()
                .quantity(1)
                .items(origin)
                .build()
                .map_err(err)?,
        )
        .default_cache_behavior(behaviour)
        .viewer_certificate(certificate)
        .aliases(aliases)
        .build()
        .map_err(err)
}

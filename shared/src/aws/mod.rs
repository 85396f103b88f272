//! The AWS SDK configuration of a Lambda function, read from the environment Lambda sets
//! (feature `aws`).
//!
//! A Lambda function needs none of the AWS configuration chain that `aws-config` walks on a
//! developer's machine (profiles, SSO, STS web identity, IMDS, `credential_process`):
//! Lambda puts the region and the function's temporary credentials in environment
//! variables. Reading them directly keeps that chain, and its roughly 1.5 MB of code,
//! out of every function binary (BENCHMARKS.md, "Lambda binaries").
//!
//! | setting | read from |
//! |---|---|
//! | region | `AWS_REGION`, else `AWS_DEFAULT_REGION` |
//! | credentials | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (optional) |
//! | endpoint | `AWS_ENDPOINT_URL_<SERVICE>` (e.g. `AWS_ENDPOINT_URL_DYNAMODB`), else `AWS_ENDPOINT_URL` |
//!
//! HTTPS goes through [`http_client`]: hyper with rustls on the *ring* crypto provider and
//! the system's root certificates. The SDK crates of this workspace are built without
//! their `default-https-client` feature (which brings aws-lc), so every SDK client must be
//! given this client, as [`sdk_config_from_env`] does.
//!
//! Programs that run on a developer's machine (the `actiondo` CLI) load the full chain with
//! `aws-config` instead, passing [`http_client`] to its loader.

pub mod signed;

use std::fmt;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_types::SdkConfig;
use aws_types::region::Region;
use aws_types::sdk_config::SharedHttpClient;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

pub use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;

/// The region variables, in the order they are read.
pub const REGION_ENV: [&str; 2] = ["AWS_REGION", "AWS_DEFAULT_REGION"];
/// The access key id variable.
pub const ACCESS_KEY_ID_ENV: &str = "AWS_ACCESS_KEY_ID";
/// The secret access key variable.
pub const SECRET_ACCESS_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";
/// The session token variable (temporary credentials; Lambda always sets it).
pub const SESSION_TOKEN_ENV: &str = "AWS_SESSION_TOKEN";

/// Why the environment does not configure the AWS SDK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfigError {
    missing: Vec<&'static str>,
}

impl AwsConfigError {
    /// The variables that are missing or empty.
    pub fn missing(&self) -> &[&'static str] {
        &self.missing
    }
}

impl fmt::Display for AwsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the AWS configuration is incomplete: set {} (Lambda sets them for every function)",
            self.missing.join(", ")
        )
    }
}

impl std::error::Error for AwsConfigError {}

/// The HTTPS client of every AWS SDK client: hyper, rustls with the *ring* provider, the
/// system's root certificates. Clone it freely; clones share their connection pool.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The SDK configuration of a Lambda function: region, credentials and endpoints from the
/// environment (see the [module documentation](self)), [`http_client`], and the latest
/// behavior version. Give it to any SDK client: `aws_sdk_dynamodb::Client::new(&config)`.
///
/// Fails, naming every missing variable, when the region or the credentials are not set.
pub fn sdk_config_from_env() -> Result<SdkConfig, AwsConfigError> {
    sdk_config_from_settings(&crate::config::Settings::from_env())
}

/// As [`sdk_config_from_env`], with the variables of `settings` (what a program's edge
/// read once).
pub fn sdk_config_from_settings(
    settings: &crate::config::Settings,
) -> Result<SdkConfig, AwsConfigError> {
    sdk_config_from(settings.lookup())
}

/// As [`sdk_config_from_env`], with the variables that `lookup` returns (for tests and for
/// programs that keep their settings elsewhere). Empty values count as unset.
pub fn sdk_config_from(
    lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
) -> Result<SdkConfig, AwsConfigError> {
    let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
    let mut missing = Vec::new();
    let region = REGION_ENV.iter().find_map(|name| get(name));
    if region.is_none() {
        missing.push(REGION_ENV[0]);
    }
    let key_id = get(ACCESS_KEY_ID_ENV);
    if key_id.is_none() {
        missing.push(ACCESS_KEY_ID_ENV);
    }
    let secret = get(SECRET_ACCESS_KEY_ENV);
    if secret.is_none() {
        missing.push(SECRET_ACCESS_KEY_ENV);
    }
    let (Some(region), Some(key_id), Some(secret)) = (region, key_id, secret) else {
        return Err(AwsConfigError { missing });
    };
    let credentials = Credentials::new(key_id, secret, get(SESSION_TOKEN_ENV), None, "environment");
    Ok(SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(http_client())
        .service_config(EnvEndpoints(Box::new(lookup)))
        .build())
}

/// Per-service settings from the environment: `<VAR>_<SERVICE ID>` (the service id upper
/// case, spaces as underscores: `AWS_ENDPOINT_URL_DYNAMODB`), else `<VAR>`, the convention
/// of the AWS SDKs.
struct EnvEndpoints(Box<Lookup>);

/// Reads a setting by name.
type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl fmt::Debug for EnvEndpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvEndpoints")
    }
}

impl LoadServiceConfig for EnvEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        let service = key.service_id().to_uppercase().replace(' ', "_");
        [format!("{}_{service}", key.env()), key.env().to_owned()]
            .iter()
            .find_map(|name| (self.0)(name).filter(|v| !v.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn key<'a>(service: &'a str) -> ServiceConfigKey<'a> {
        ServiceConfigKey::builder()
            .service_id(service)
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .expect("every field is set")
    }

    #[test]
    fn missing_settings_are_all_named() {
        let err =
            sdk_config_from(lookup(&[("AWS_SECRET_ACCESS_KEY", "s")])).expect_err("incomplete");
        assert_eq!(err.missing(), ["AWS_REGION", "AWS_ACCESS_KEY_ID"]);
        assert!(err.to_string().contains("AWS_REGION, AWS_ACCESS_KEY_ID"));
        let err = sdk_config_from(lookup(&[
            ("AWS_REGION", ""),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]))
        .expect_err("incomplete");
        assert_eq!(err.missing(), ["AWS_REGION"]);
    }

    #[test]
    fn region_falls_back_to_the_default_region() {
        let config = sdk_config_from(lookup(&[
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]))
        .expect("complete");
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert!(config.http_client().is_some());
        assert!(config.credentials_provider().is_some());
    }

    #[test]
    fn service_endpoints_come_before_the_global_one() {
        let endpoints = EnvEndpoints(Box::new(lookup(&[
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
            (
                "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING",
                "http://127.0.0.1:9",
            ),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ])));
        assert_eq!(
            endpoints.load_config(key("DynamoDB")).as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(
            endpoints
                .load_config(key("Elastic Load Balancing"))
                .as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(
            endpoints.load_config(key("SFN")).as_deref(),
            Some("http://127.0.0.1:5000")
        );
        let none = EnvEndpoints(Box::new(lookup(&[("AWS_ENDPOINT_URL", "")])));
        assert_eq!(none.load_config(key("SFN")), None);
    }
}

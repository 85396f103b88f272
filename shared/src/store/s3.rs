//! Result objects in S3 (feature `s3`): the [`ObjectStore`] of the DynamoDB store when
//! `ACTIONDO_RESULTS_BUCKET` names a bucket (docs/architecture.md §4.6).
//!
//! One `PutObject` before the completion transaction, one `GetObject` per replay; the
//! bucket (created by `template.yaml`: encrypted, public access blocked, objects expiring
//! with the idempotency records' retention) takes keys under
//! [`RESULTS_PREFIX`](super::objects::RESULTS_PREFIX). With an
//! endpoint of its own (`AWS_ENDPOINT_URL_S3`, an emulator such as moto), requests use
//! path-style addressing: `http://127.0.0.1:5000/bucket/key`.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_types::SdkConfig;
use aws_types::service_config::ServiceConfigKey;

use super::objects::{ObjectStore, RESULTS_BUCKET_ENV};
use crate::error::StoreError;

/// Result objects in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Objects {
    client: Client,
    bucket: String,
}

fn sdk_err<E, R>(what: &str, err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    // Every S3 failure is retryable for the executor: a missing bucket or a denied
    // request is a deployment to fix, after which the same request succeeds.
    let message = match &err {
        SdkError::ServiceError(service) => format!(
            "S3 {what}: {}: {}",
            service.err().code().unwrap_or("(no code)"),
            service.err().message().unwrap_or("(no message)")
        ),
        other => format!("S3 {what}: {other}"),
    };
    StoreError::Unavailable {
        message,
        source: Some(Box::new(err)),
    }
}

impl S3Objects {
    /// Result objects in `bucket` through `client`.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// How long the SDK waits for the connection to S3 (as for DynamoDB).
    pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(3_100);

    /// How long one request may take before the SDK abandons it and retries it: a 6 MiB
    /// upload within a region takes well under a second.
    pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

    /// The S3 client configuration for `config`: the timeouts above, and path-style
    /// addressing when `config` gives S3 an endpoint of its own (an emulator).
    pub fn client_config(config: &SdkConfig) -> aws_sdk_s3::Config {
        let own_endpoint = config.endpoint_url().is_some()
            || config.service_config().is_some_and(|services| {
                ServiceConfigKey::builder()
                    .service_id("S3")
                    .env("AWS_ENDPOINT_URL")
                    .profile("endpoint_url")
                    .build()
                    .ok()
                    .and_then(|key| services.load_config(key))
                    .is_some()
            });
        aws_sdk_s3::config::Builder::from(config)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Self::CONNECT_TIMEOUT)
                    .operation_attempt_timeout(Self::ATTEMPT_TIMEOUT)
                    .build(),
            )
            .force_path_style(own_endpoint)
            .build()
    }

    /// The bucket `ACTIONDO_RESULTS_BUCKET` names (through `lookup`), with a client built
    /// from `config`; `None` when it is unset or empty.
    pub fn from_lookup(
        config: &SdkConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Option<Self> {
        let bucket = lookup(RESULTS_BUCKET_ENV).filter(|b| !b.is_empty())?;
        Some(Self::new(
            Client::from_conf(Self::client_config(config)),
            bucket,
        ))
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Create the bucket if it does not exist (local stacks and tests; in AWS,
    /// `template.yaml` creates it).
    pub async fn create_bucket(&self) -> Result<(), StoreError> {
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err)
                if err.as_service_error().is_some_and(|e| {
                    e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
                }) =>
            {
                Ok(())
            }
            Err(err) => Err(sdk_err("CreateBucket", err)),
        }
    }
}

#[async_trait]
impl ObjectStore for S3Objects {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(&self, key: &str, body: Vec<u8>, gzip: bool) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(if gzip {
                "application/gzip"
            } else {
                "application/json"
            })
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_err("PutObject", e))
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let output = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(err) => return Err(sdk_err("GetObject", err)),
        };
        let body = output.body.collect().await.map_err(|e| {
            StoreError::unavailable(format!("S3 GetObject {bucket}/{key}: reading the body"), e)
        })?;
        Ok(Some(body.into_bytes().to_vec()))
    }
}

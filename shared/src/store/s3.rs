//! Result objects in S3: the [`ObjectStore`] of the DynamoDB store when
//! `ACTIONDO_RESULTS_BUCKET` names a bucket (docs/architecture.md §4.6).
//!
//! One `PutObject` before the completion transaction, one `GetObject` per replay; the
//! bucket (created by `template.yaml`: encrypted, public access blocked, objects expiring
//! with the idempotency records' retention) takes keys under
//! [`RESULTS_PREFIX`](super::objects::RESULTS_PREFIX). The three operations are S3's REST
//! API signed by [`SignedClient`], not `aws-sdk-s3`, which would add 1.45 MB to every
//! function (BENCHMARKS.md, issue 13). Buckets are addressed virtual-hosted style
//! (`https://bucket.s3.region.amazonaws.com/key`); with an endpoint of its own
//! (`AWS_ENDPOINT_URL_S3`, an emulator such as moto), or a bucket name that is not a DNS
//! label, path style: `http://127.0.0.1:5000/bucket/key`.

use std::time::Duration;

use async_trait::async_trait;
use aws_types::SdkConfig;
use http::Method;

use super::objects::{ObjectStore, RESULTS_BUCKET_ENV};
use crate::aws::signed::{
    AwsError, AwsRequest, AwsService, ClientSettings, SignedClient, dns_suffix, encode_segment,
};
use crate::error::StoreError;

/// Result objects in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Objects {
    client: SignedClient,
    bucket: String,
}

fn s3_err(what: &str, err: AwsError) -> StoreError {
    // Every S3 failure is retryable for the executor: a missing bucket or a denied
    // request is a deployment to fix, after which the same request succeeds.
    StoreError::Unavailable {
        message: format!("S3 {what}: {err}"),
        source: Some(Box::new(err)),
    }
}

impl S3Objects {
    /// How long to wait for the connection to S3 (as for DynamoDB).
    pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(3_100);

    /// How long one request may take before it is abandoned and sent again: a 6 MiB
    /// upload within a region takes well under a second.
    pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Result objects in `bucket`, reached with the region, credentials and endpoints of
    /// `config`. A name no S3 bucket can have (empty, over 255 characters, or with a
    /// character other than ASCII letters, digits, `.`, `-` and `_`, the widest rules S3
    /// ever accepted) is refused here, naming the variable, rather than on every large
    /// result.
    pub fn new(config: &SdkConfig, bucket: impl Into<String>) -> Result<Self, StoreError> {
        let bucket = bucket.into();
        if bucket.is_empty()
            || bucket.len() > 255
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(StoreError::InvalidRequest(format!(
                "{RESULTS_BUCKET_ENV} is not an S3 bucket name: {bucket:?} (letters, digits, '.', '-' and '_' only)"
            )));
        }
        let settings = ClientSettings {
            connect_timeout: Self::CONNECT_TIMEOUT,
            attempt_timeout: Self::ATTEMPT_TIMEOUT,
            ..ClientSettings::default()
        };
        let client = SignedClient::with_settings(config, AwsService::S3, settings)
            .map_err(|e| StoreError::InvalidRequest(e.to_string()))?;
        Ok(Self { client, bucket })
    }

    /// The bucket `ACTIONDO_RESULTS_BUCKET` names (through `lookup`), reached with
    /// `config`; `None` when it is unset or empty.
    pub fn from_lookup(
        config: &SdkConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, StoreError> {
        lookup(RESULTS_BUCKET_ENV)
            .filter(|b| !b.is_empty())
            .map(|bucket| Self::new(config, bucket))
            .transpose()
    }

    /// The signed client.
    pub fn client(&self) -> &SignedClient {
        &self.client
    }

    /// These objects, telling `observer` the operation of each request (see
    /// [`SignedClient::observe`]).
    #[must_use]
    pub fn observe(self, observer: crate::aws::signed::Observer) -> Self {
        Self {
            client: self.client.observe(observer),
            bucket: self.bucket,
        }
    }

    /// The URL of `key` in `bucket` (the bucket alone when `key` is empty).
    pub fn url(&self, bucket: &str, key: &str) -> String {
        let key: Vec<String> = key.split('/').map(encode_segment).collect();
        let key = key.join("/");
        let endpoint = self.client.endpoint();
        if endpoint.configured || !virtual_hostable(bucket) {
            let base = if endpoint.configured {
                endpoint.url.clone()
            } else {
                let region = self.client.region();
                format!("https://s3.{region}.{}", dns_suffix(region))
            };
            if key.is_empty() {
                format!("{base}/{bucket}")
            } else {
                format!("{base}/{bucket}/{key}")
            }
        } else {
            let region = self.client.region();
            format!("https://{bucket}.s3.{region}.{}/{key}", dns_suffix(region))
        }
    }

    /// Create the bucket if it does not exist (local stacks and tests; in AWS,
    /// `template.yaml` creates it).
    pub async fn create_bucket(&self) -> Result<(), StoreError> {
        let region = self.client.region();
        let mut request = AwsRequest::new("CreateBucket", Method::PUT, self.url(&self.bucket, ""));
        if region != "us-east-1" {
            request = request
                .header("content-type", "application/xml")
                .body(format!(
                    "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                     <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
                ));
        }
        match self.client.send(&request).await {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.code(),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(s3_err("CreateBucket", err)),
        }
    }
}

/// Whether `bucket` can be a host name label (no dots, which would not match the
/// certificate's `*.s3.<region>.amazonaws.com`).
fn virtual_hostable(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !bucket.starts_with('-')
        && !bucket.ends_with('-')
}

#[async_trait]
impl ObjectStore for S3Objects {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(&self, key: &str, body: Vec<u8>, gzip: bool) -> Result<(), StoreError> {
        let request = AwsRequest::new("PutObject", Method::PUT, self.url(&self.bucket, key))
            .header(
                "content-type",
                if gzip {
                    "application/gzip"
                } else {
                    "application/json"
                },
            )
            .body(body);
        self.client
            .send(&request)
            .await
            .map(|_| ())
            .map_err(|e| s3_err("PutObject", e))
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let request = AwsRequest::new("GetObject", Method::GET, self.url(bucket, key));
        match self.client.send(&request).await {
            Ok(response) => Ok(Some(response.body.to_vec())),
            Err(err) if err.code() == Some("NoSuchKey") => Ok(None),
            Err(err) => Err(s3_err("GetObject", err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_types::region::Region;

    fn objects(region: &str, endpoint: Option<&str>, bucket: &str) -> S3Objects {
        let mut config = SdkConfig::builder()
            .region(Region::new(region.to_owned()))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKID", "SECRET", None, None, "test",
            )));
        if let Some(url) = endpoint {
            config = config.endpoint_url(url);
        }
        S3Objects::new(&config.build(), bucket).expect("objects")
    }

    #[test]
    fn buckets_are_virtual_hosted_in_aws_and_path_style_elsewhere() {
        let aws = objects("eu-west-1", None, "stack-resultsbucket-1a2b");
        assert_eq!(
            aws.url("stack-resultsbucket-1a2b", "results/create-user/ab/cd"),
            "https://stack-resultsbucket-1a2b.s3.eu-west-1.amazonaws.com/results/create-user/ab/cd"
        );
        assert_eq!(
            aws.url("my.dotted.bucket", "results/x"),
            "https://s3.eu-west-1.amazonaws.com/my.dotted.bucket/results/x"
        );
        let local = objects("us-east-1", Some("http://127.0.0.1:5000"), "results");
        assert_eq!(
            local.url("results", "results/a b/c+d"),
            "http://127.0.0.1:5000/results/results/a%20b/c%2Bd"
        );
        assert_eq!(local.url("results", ""), "http://127.0.0.1:5000/results");
    }

    #[test]
    fn a_name_no_bucket_can_have_is_refused_naming_the_variable() {
        let config = SdkConfig::builder()
            .region(Region::new("us-east-1"))
            .build();
        for bad in ["my bucket", "results/x", "", "ü-bucket", &"b".repeat(256)] {
            let err = S3Objects::new(&config, bad).expect_err(bad);
            assert!(
                err.to_string()
                    .contains("ACTIONDO_RESULTS_BUCKET is not an S3 bucket name"),
                "{err}"
            );
        }
        for good in [
            "stack-resultsbucket-1a2b",
            "my.dotted.bucket",
            "Legacy_Bucket",
        ] {
            S3Objects::new(&config, good).expect(good);
        }
    }
}

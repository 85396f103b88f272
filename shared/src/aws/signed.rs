//! Signed requests to AWS services without their SDK crates (feature `aws`).
//!
//! A deployed function talks to DynamoDB through `aws-sdk-dynamodb`; every other service
//! it calls takes one to five operations of a simple wire protocol (S3's REST, Lambda's
//! `Invoke`, Step Functions' JSON). Linking an SDK crate for each costs 0.7–1.5 MB of
//! binary per service (BENCHMARKS.md, "Lambda binaries"), which would put the functions
//! over their 8 MB goal. [`SignedClient`] sends such requests itself: Signature Version 4
//! by `aws-sigv4` (the signer the SDK uses, already linked through the DynamoDB client),
//! over the SDK's own HTTPS connector (hyper, rustls on *ring*), with the credentials,
//! region and endpoints of the same [`SdkConfig`].
//!
//! What it does, as the SDK would:
//!
//! - **endpoints**: `AWS_ENDPOINT_URL_<SERVICE ID>`, else `AWS_ENDPOINT_URL` (the
//!   configuration's [service config](aws_types::sdk_config::SdkConfig::service_config)),
//!   else the service's regional endpoint `https://<prefix>.<region>.<DNS suffix>`;
//! - **retries**: a transport failure, a timeout, a 5xx answer or a throttling error is
//!   sent again, up to [`ClientSettings::max_attempts`] sends in all, after an exponential
//!   backoff with full jitter; each send is signed anew;
//! - **timeouts**: a connect timeout and a timeout per attempt;
//! - **credentials**: read from the configuration's provider and kept until five minutes
//!   before they expire;
//! - **errors**: [`AwsError`] carries the service's error code (`x-amzn-ErrorType`, a JSON
//!   `__type`, or S3's XML `<Code>`), its message and the HTTP status.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_http_client::Connector;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorSettings};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::body::SdkBody;
use aws_types::SdkConfig;
use aws_types::service_config::ServiceConfigKey;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::BodyExt;

/// An AWS service as [`SignedClient`] reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsService {
    /// The SDK's service id, which names its endpoint variable (`AWS_ENDPOINT_URL_<ID>`,
    /// upper case, spaces as underscores).
    pub service_id: &'static str,
    /// The name the service's signatures use (`s3`, `lambda`, `states`).
    pub signing_name: &'static str,
    /// The first label of its regional endpoint's host.
    pub endpoint_prefix: &'static str,
    /// S3 signs differently: the path encoded once and not normalized, and the payload's
    /// SHA-256 in `x-amz-content-sha256`.
    pub s3_signing: bool,
}

impl AwsService {
    /// Amazon S3.
    pub const S3: Self = Self {
        service_id: "S3",
        signing_name: "s3",
        endpoint_prefix: "s3",
        s3_signing: true,
    };
    /// AWS Lambda.
    pub const LAMBDA: Self = Self {
        service_id: "Lambda",
        signing_name: "lambda",
        endpoint_prefix: "lambda",
        s3_signing: false,
    };
    /// AWS Step Functions.
    pub const STEP_FUNCTIONS: Self = Self {
        service_id: "SFN",
        signing_name: "states",
        endpoint_prefix: "states",
        s3_signing: false,
    };
}

/// Timeouts and retries of a [`SignedClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    /// How long to wait for a connection (the SDK clients of this crate use 3.1 s).
    pub connect_timeout: Duration,
    /// How long one send may take, answer included, before it counts as failed.
    pub attempt_timeout: Duration,
    /// Sends in all, the first included (1: no retry).
    pub max_attempts: u32,
    /// The first retry waits up to this long; each further one up to twice as long.
    pub base_backoff: Duration,
    /// The longest wait between two sends.
    pub max_backoff: Duration,
}

impl Default for ClientSettings {
    /// As the SDK's standard retry mode, with a shorter first backoff: a function's
    /// caller is waiting.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(3_100),
            attempt_timeout: Duration::from_secs(10),
            max_attempts: 3,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The service answered with an error.
    #[error("{service}: {code}: {message} (HTTP {status})")]
    Service {
        /// The service's id ([`AwsService::service_id`]).
        service: &'static str,
        /// The HTTP status.
        status: u16,
        /// The error code (`ResourceNotFoundException`, `NoSuchKey`, …); `HTTP <status>`
        /// when the answer named none.
        code: String,
        /// The service's message (empty when it sent none).
        message: String,
        /// The answer's headers (`Retry-After`, `x-amzn-RequestId`, …); see
        /// [`AwsError::header`].
        headers: Box<HeaderMap>,
    },
    /// No answer: the connection failed or an attempt timed out.
    #[error("{service} could not be reached: {message}")]
    Transport {
        /// The service's id.
        service: &'static str,
        /// What failed.
        message: String,
        /// Whether an attempt ran out of time (the request may have been applied).
        timeout: bool,
    },
    /// No credentials to sign with.
    #[error("{service}: no credentials to sign the request: {message}")]
    Credentials {
        /// The service's id.
        service: &'static str,
        /// Why.
        message: String,
    },
    /// The request could not be built or signed (a bad endpoint or path).
    #[error("{service}: the request could not be built: {message}")]
    Request {
        /// The service's id.
        service: &'static str,
        /// Why.
        message: String,
    },
}

/// The error codes that mean "slow down" rather than "wrong", across the services.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "ProvisionedThroughputExceededException",
    "EC2ThrottledException",
];

impl AwsError {
    /// The service's error code, when it answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A header of the service's error answer, when it answered with one that is text
    /// (`Retry-After` of Lambda's `TooManyRequestsException`, …).
    pub fn header(&self, name: &str) -> Option<&str> {
        match self {
            Self::Service { headers, .. } => headers.get(name).and_then(|v| v.to_str().ok()),
            _ => None,
        }
    }

    /// The HTTP status, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether sending the same request again may succeed: no answer, a 5xx answer or a
    /// throttling error.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Service { status, code, .. } => {
                *status >= 500 || *status == 429 || THROTTLING_CODES.contains(&code.as_str())
            }
            Self::Credentials { .. } | Self::Request { .. } => false,
        }
    }
}

/// A successful answer (status below 300, or one the caller accepted).
#[derive(Debug, Clone)]
pub struct AwsResponse {
    /// The HTTP status.
    pub status: u16,
    /// The answer's headers.
    pub headers: HeaderMap,
    /// The answer's body.
    pub body: bytes::Bytes,
}

impl AwsResponse {
    /// A header's value, when it is present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request to send: the operation's name, method, path and query (relative to the
/// service's endpoint, or an absolute URL), headers and body.
#[derive(Debug, Clone)]
pub struct AwsRequest {
    /// The operation (`PutObject`, `Invoke`, …), for logs and [observers](SignedClient::observe).
    pub operation: &'static str,
    /// The method.
    pub method: Method,
    /// `/path?query`, already percent-encoded, appended to the endpoint; or an absolute
    /// `https://…` URL (S3's virtual-hosted buckets).
    pub target: String,
    /// Headers to send and sign (`content-type`, `x-amz-target`, …).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: bytes::Bytes,
}

impl AwsRequest {
    /// A request of `operation` without headers or body.
    pub fn new(operation: &'static str, method: Method, target: impl Into<String>) -> Self {
        Self {
            operation,
            method,
            target: target.into(),
            headers: Vec::new(),
            body: bytes::Bytes::new(),
        }
    }

    /// With one more header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// With `body`.
    pub fn body(mut self, body: impl Into<bytes::Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

/// Where a service is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port]`, no trailing slash.
    pub url: String,
    /// Whether it was configured (`AWS_ENDPOINT_URL…`: an emulator, a VPC endpoint) rather
    /// than the service's regional endpoint.
    pub configured: bool,
}

impl Endpoint {
    /// The endpoint of `service` for `config`: configured, else regional.
    pub fn resolve(config: &SdkConfig, service: AwsService, region: &str) -> Self {
        let configured = config
            .service_config()
            .and_then(|services| {
                ServiceConfigKey::builder()
                    .service_id(service.service_id)
                    .env("AWS_ENDPOINT_URL")
                    .profile("endpoint_url")
                    .build()
                    .ok()
                    .and_then(|key| services.load_config(key))
            })
            .or_else(|| config.endpoint_url().map(str::to_owned));
        match configured {
            Some(url) => Self {
                url: url.trim_end_matches('/').to_owned(),
                configured: true,
            },
            None => Self {
                url: format!(
                    "https://{}.{region}.{}",
                    service.endpoint_prefix,
                    dns_suffix(region)
                ),
                configured: false,
            },
        }
    }
}

/// What a path segment keeps unencoded: RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` as one percent-encoded path segment: everything but RFC 3986's unreserved
/// characters encoded (`/` and `:` too), as the SDKs encode a URI label (an S3 key's
/// segment, a Lambda function name or ARN).
pub fn encode_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

/// The DNS suffix of a region's partition.
pub fn dns_suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else if region.starts_with("us-isob-") {
        "sc2s.sgov.gov"
    } else if region.starts_with("us-isof-") {
        "csp.hci.ic.gov"
    } else if region.starts_with("us-iso-") {
        "c2s.ic.gov"
    } else if region.starts_with("eu-isoe-") {
        "cloud.adc-e.uk"
    } else {
        "amazonaws.com"
    }
}

/// Signs and sends requests to one AWS service. Clone it freely: clones share the
/// connection pool and the credentials.
#[derive(Clone)]
pub struct SignedClient {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    service: AwsService,
    region: String,
    endpoint: Endpoint,
    settings: ClientSettings,
    connector: Arc<Connector>,
    credentials: Option<SharedCredentialsProvider>,
    cached: Arc<Mutex<Option<Credentials>>>,
    observer: Option<Observer>,
}

/// Told the operation of every request [`SignedClient::send`] is given (once per request,
/// however many sends it takes).
pub type Observer = Arc<dyn Fn(&'static str) + Send + Sync>;

impl fmt::Debug for SignedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedClient")
            .field("service", &self.inner.service.service_id)
            .field("region", &self.inner.region)
            .field("endpoint", &self.inner.endpoint.url)
            .finish_non_exhaustive()
    }
}

/// Credentials are read again this long before they expire.
const CREDENTIALS_REFRESH: Duration = Duration::from_secs(300);

impl SignedClient {
    /// A client of `service` with the region, credentials and endpoints of `config`, and
    /// the default [`ClientSettings`]. Fails when `config` has no region.
    pub fn new(config: &SdkConfig, service: AwsService) -> Result<Self, AwsError> {
        Self::with_settings(config, service, ClientSettings::default())
    }

    /// As [`new`](Self::new), with `settings`.
    pub fn with_settings(
        config: &SdkConfig,
        service: AwsService,
        settings: ClientSettings,
    ) -> Result<Self, AwsError> {
        let region = config
            .region()
            .map(|r| r.as_ref().to_owned())
            .ok_or_else(|| AwsError::Request {
                service: service.service_id,
                message: "no AWS region is configured (AWS_REGION)".into(),
            })?;
        let endpoint = Endpoint::resolve(config, service, &region);
        let connector = Connector::builder()
            .connector_settings(
                HttpConnectorSettings::builder()
                    .connect_timeout(settings.connect_timeout)
                    .build(),
            )
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build();
        Ok(Self {
            inner: Arc::new(Inner {
                service,
                region,
                endpoint,
                settings,
                connector: Arc::new(connector),
                credentials: config.credentials_provider(),
                cached: Arc::new(Mutex::new(None)),
                observer: None,
            }),
        })
    }

    /// This client, telling `observer` the operation of each request it sends (request
    /// counts in tests, metrics). It shares the connection pool and credentials of `self`.
    #[must_use]
    pub fn observe(self, observer: Observer) -> Self {
        Self {
            inner: Arc::new(Inner {
                observer: Some(observer),
                ..(*self.inner).clone()
            }),
        }
    }

    /// The service.
    pub fn service(&self) -> AwsService {
        self.inner.service
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.inner.region
    }

    /// Where requests go.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The settings.
    pub fn settings(&self) -> &ClientSettings {
        &self.inner.settings
    }

    /// Send `request`, signed, retried as the [module](self) says; an answer with a status
    /// of 300 or above is an [`AwsError::Service`].
    pub async fn send(&self, request: &AwsRequest) -> Result<AwsResponse, AwsError> {
        let settings = &self.inner.settings;
        if let Some(observer) = &self.inner.observer {
            observer(request.operation);
        }
        let mut attempt = 1;
        loop {
            let result = self.send_once(request).await;
            match result {
                Err(err) if err.is_retryable() && attempt < settings.max_attempts => {
                    tracing::debug!(
                        operation = request.operation,
                        error = %err,
                        attempt,
                        "retrying an AWS request"
                    );
                    tokio::time::sleep(backoff(settings, attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Call an operation of a JSON protocol service (`awsJson1.0`: Step Functions): a
    /// `POST /` with `X-Amz-Target: <prefix>.<operation>`, the input as the body; the
    /// output is the answer's JSON (`{}` when empty); an answer that is not JSON is an
    /// [`AwsError::Service`] of code `InvalidResponse`.
    pub async fn call_json(
        &self,
        target: &'static str,
        input: &serde_json::Value,
    ) -> Result<serde_json::Value, AwsError> {
        let body = serde_json::to_vec(input).map_err(|e| self.request_error(e.to_string()))?;
        let operation = target.rsplit('.').next().unwrap_or(target);
        let request = AwsRequest::new(operation, Method::POST, "/")
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", target)
            .body(body);
        let response = self.send(&request).await?;
        if response.body.is_empty() {
            return Ok(serde_json::json!({}));
        }
        serde_json::from_slice(&response.body).map_err(|e| AwsError::Service {
            service: self.inner.service.service_id,
            status: response.status,
            code: "InvalidResponse".into(),
            message: format!("the answer to {target} is not JSON: {e}"),
            headers: Box::new(response.headers.clone()),
        })
    }

    fn request_error(&self, message: String) -> AwsError {
        AwsError::Request {
            service: self.inner.service.service_id,
            message,
        }
    }

    fn url(&self, target: &str) -> String {
        if target.starts_with("https://") || target.starts_with("http://") {
            target.to_owned()
        } else {
            format!("{}{target}", self.inner.endpoint.url)
        }
    }

    async fn credentials(&self) -> Result<Credentials, AwsError> {
        let service = self.inner.service.service_id;
        let Some(provider) = &self.inner.credentials else {
            return Err(AwsError::Credentials {
                service,
                message: "the configuration has no credentials provider".into(),
            });
        };
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|at| SystemTime::now() + CREDENTIALS_REFRESH < at)
        };
        if let Some(cached) = self
            .inner
            .cached
            .lock()
            .expect("credentials cache")
            .as_ref()
            && fresh(cached)
        {
            return Ok(cached.clone());
        }
        let credentials =
            provider
                .provide_credentials()
                .await
                .map_err(|e| AwsError::Credentials {
                    service,
                    message: aws_smithy_types::error::display::DisplayErrorContext(e).to_string(),
                })?;
        *self.inner.cached.lock().expect("credentials cache") = Some(credentials.clone());
        Ok(credentials)
    }

    /// The request `request` becomes when signed with `credentials` at `time`.
    fn signed(
        &self,
        request: &AwsRequest,
        credentials: Credentials,
        time: SystemTime,
    ) -> Result<http::Request<SdkBody>, AwsError> {
        let service = self.inner.service;
        let url = self.url(&request.target);
        let mut settings = SigningSettings::default();
        if service.s3_signing {
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let identity: Identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.inner.region)
            .name(service.signing_name)
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| self.request_error(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            request.method.as_str(),
            url.as_str(),
            request.headers.iter().map(|(n, v)| (*n, v.as_str())),
            SignableBody::Bytes(&request.body),
        )
        .map_err(|e| self.request_error(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| self.request_error(e.to_string()))?
            .into_parts();
        let mut builder = http::Request::builder()
            .method(request.method.clone())
            .uri(url.as_str())
            .header(
                "user-agent",
                concat!("actiondo/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.as_str());
        }
        let mut http_request = builder
            .body(SdkBody::from(request.body.clone()))
            .map_err(|e| self.request_error(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut http_request);
        Ok(http_request)
    }

    async fn send_once(&self, request: &AwsRequest) -> Result<AwsResponse, AwsError> {
        let service = self.inner.service.service_id;
        let credentials = self.credentials().await?;
        let http_request = self.signed(request, credentials, SystemTime::now())?;
        let http_request =
            http_request
                .try_into()
                .map_err(|e: aws_smithy_runtime_api::http::HttpError| {
                    self.request_error(e.to_string())
                })?;
        let transport = |message: String, timeout: bool| AwsError::Transport {
            service,
            message,
            timeout,
        };
        let exchange = async {
            let response = self.inner.connector.call(http_request).await.map_err(|e| {
                transport(
                    aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
                    e.is_timeout(),
                )
            })?;
            let status = response.status().as_u16();
            let mut headers = HeaderMap::new();
            for (name, value) in response.headers() {
                if let (Ok(name), Ok(value)) = (
                    http::HeaderName::try_from(name),
                    HeaderValue::from_str(value),
                ) {
                    headers.append(name, value);
                }
            }
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(format!("reading the answer: {e}"), false))?
                .to_bytes();
            Ok::<_, AwsError>(AwsResponse {
                status,
                headers,
                body,
            })
        };
        let response = tokio::time::timeout(self.inner.settings.attempt_timeout, exchange)
            .await
            .map_err(|_| {
                transport(
                    format!(
                        "no answer within {} ms",
                        self.inner.settings.attempt_timeout.as_millis()
                    ),
                    true,
                )
            })??;
        if response.status >= 300 {
            let (code, message) = error_code_and_message(&response);
            return Err(AwsError::Service {
                service,
                status: response.status,
                code,
                message,
                headers: Box::new(response.headers),
            });
        }
        Ok(response)
    }
}

/// The wait before send `attempt + 1`: full jitter over an exponential ceiling.
fn backoff(settings: &ClientSettings, attempt: u32) -> Duration {
    let ceiling = settings
        .base_backoff
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(settings.max_backoff);
    ceiling.mul_f64(fastrand::f64())
}

/// The error code and message of an error answer, in any of the services' forms: the
/// `x-amzn-ErrorType` header, a JSON body's `__type`/`code` and `message`, or an XML
/// body's `<Code>` and `<Message>` (S3).
pub fn error_code_and_message(response: &AwsResponse) -> (String, String) {
    let clean = |code: &str| {
        // `aws.protocoltests#ValidationException:http://internal…` → `ValidationException`
        let code = code.split(':').next().unwrap_or(code);
        code.rsplit('#').next().unwrap_or(code).trim().to_owned()
    };
    let mut code = response
        .header("x-amzn-errortype")
        .map(clean)
        .filter(|c| !c.is_empty());
    let mut message = String::new();
    if let Ok(serde_json::Value::Object(body)) =
        serde_json::from_slice::<serde_json::Value>(&response.body)
    {
        if code.is_none() {
            code = ["__type", "code", "Code"]
                .iter()
                .find_map(|k| body.get(*k).and_then(|v| v.as_str()))
                .map(clean);
        }
        message = ["message", "Message", "errorMessage"]
            .iter()
            .find_map(|k| body.get(*k).and_then(|v| v.as_str()))
            .unwrap_or_default()
            .to_owned();
    } else if let Ok(text) = std::str::from_utf8(&response.body) {
        if code.is_none() {
            code = xml_element(text, "Code").map(|c| clean(&c));
        }
        message = xml_element(text, "Message").unwrap_or_default();
    }
    let code = code
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("HTTP {}", response.status));
    (code, message)
}

/// The text of the first `<name>…</name>` element of an S3 error document, with the five
/// predefined XML entities decoded (the documents hold no other markup in these elements).
fn xml_element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(
        text[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_types::region::Region;

    fn config(endpoint: Option<&str>) -> SdkConfig {
        let mut builder = SdkConfig::builder()
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                None,
                None,
                "test",
            )));
        if let Some(url) = endpoint {
            builder = builder.endpoint_url(url);
        }
        builder.build()
    }

    fn at(rfc3339: &str) -> SystemTime {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .expect("time")
            .into()
    }

    fn header<'a>(request: &'a http::Request<SdkBody>, name: &str) -> &'a str {
        request.headers()[name].to_str().expect("text")
    }

    /// `request` signed with the example credentials and time of S3's documentation.
    fn signed_as_documented(client: &SignedClient, request: &AwsRequest) -> http::Request<SdkBody> {
        let credentials = Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        client
            .signed(request, credentials, at("2013-05-24T00:00:00Z"))
            .expect("signed")
    }

    /// The "GET Object" example of Amazon S3's Signature Version 4 documentation: its
    /// signature is published, so this proves S3's signing settings (the path encoded
    /// once, `x-amz-content-sha256`), not only that the code signs something.
    #[test]
    fn s3_requests_are_signed_as_s3_documents() {
        let client = SignedClient::new(&config(None), AwsService::S3).expect("client");
        let request = AwsRequest::new(
            "GetObject",
            Method::GET,
            "https://examplebucket.s3.amazonaws.com/test.txt",
        )
        .header("range", "bytes=0-9");
        let signed = signed_as_documented(&client, &request);
        assert_eq!(
            header(&signed, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert_eq!(
            header(&signed, "x-amz-content-sha256"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// The "PUT Object" example of the same documentation: a body, its hash, a storage
    /// class header, and a key with `$` that S3 signs encoded once.
    #[test]
    fn s3_uploads_sign_the_body_hash() {
        let client = SignedClient::new(&config(None), AwsService::S3).expect("client");
        let request = AwsRequest::new(
            "PutObject",
            Method::PUT,
            "https://examplebucket.s3.amazonaws.com/test%24file.text",
        )
        .header("date", "Fri, 24 May 2013 00:00:00 GMT")
        .header("x-amz-storage-class", "REDUCED_REDUNDANCY")
        .body(&b"Welcome to Amazon S3."[..]);
        let signed = signed_as_documented(&client, &request);
        assert_eq!(
            header(&signed, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, \
             Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn other_services_sign_without_the_payload_header() {
        let client = SignedClient::new(&config(None), AwsService::STEP_FUNCTIONS).expect("client");
        let request = AwsRequest::new("DescribeExecution", Method::POST, "/")
            .header("x-amz-target", "AWSStepFunctions.DescribeExecution")
            .body(&b"{}"[..]);
        let signed = client
            .signed(
                &request,
                Credentials::new("AKID", "SECRET", Some("TOKEN".into()), None, "test"),
                at("2026-11-30T00:00:00Z"),
            )
            .expect("signed");
        assert_eq!(
            signed.uri().to_string(),
            "https://states.us-east-1.amazonaws.com/"
        );
        let authorization = header(&signed, "authorization");
        assert!(
            authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/states/aws4_request, \
                 SignedHeaders=host;x-amz-date;x-amz-security-token;x-amz-target, Signature="
            ),
            "{authorization}"
        );
        assert_eq!(header(&signed, "x-amz-security-token"), "TOKEN");
        assert!(signed.headers().get("x-amz-content-sha256").is_none());
    }

    #[test]
    fn endpoints_are_configured_or_regional() {
        let regional = Endpoint::resolve(&config(None), AwsService::LAMBDA, "eu-west-1");
        assert_eq!(
            regional,
            Endpoint {
                url: "https://lambda.eu-west-1.amazonaws.com".into(),
                configured: false
            }
        );
        let china = Endpoint::resolve(&config(None), AwsService::STEP_FUNCTIONS, "cn-north-1");
        assert_eq!(china.url, "https://states.cn-north-1.amazonaws.com.cn");
        let local = Endpoint::resolve(
            &config(Some("http://127.0.0.1:5000/")),
            AwsService::S3,
            "us-east-1",
        );
        assert_eq!(
            local,
            Endpoint {
                url: "http://127.0.0.1:5000".into(),
                configured: true
            }
        );
    }

    #[test]
    fn a_configuration_without_region_is_refused() {
        let config = SdkConfig::builder().build();
        let err = SignedClient::new(&config, AwsService::S3).expect_err("no region");
        assert!(err.to_string().contains("AWS_REGION"), "{err}");
    }

    fn answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> AwsResponse {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).expect("value"));
        }
        AwsResponse {
            status,
            headers: map,
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn error_codes_are_read_in_every_form() {
        let json = answer(
            400,
            &[],
            r#"{"__type":"com.amazonaws.swf.service.v2.model#ExecutionDoesNotExist","message":"no such execution"}"#,
        );
        assert_eq!(
            error_code_and_message(&json),
            ("ExecutionDoesNotExist".into(), "no such execution".into())
        );
        let header = answer(
            404,
            &[(
                "x-amzn-errortype",
                "ResourceNotFoundException:http://internal.amazon.com/coral/com.amazonaws.awsgirapi/",
            )],
            r#"{"Message":"Function not found"}"#,
        );
        assert_eq!(
            error_code_and_message(&header),
            (
                "ResourceNotFoundException".into(),
                "Function not found".into()
            )
        );
        let xml = answer(
            404,
            &[],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
             <Message>The specified key does not exist &amp; never did.</Message></Error>",
        );
        assert_eq!(
            error_code_and_message(&xml),
            (
                "NoSuchKey".into(),
                "The specified key does not exist & never did.".into()
            )
        );
        assert_eq!(
            error_code_and_message(&answer(503, &[], "")),
            ("HTTP 503".into(), String::new())
        );
    }

    #[test]
    fn retryable_errors_are_transport_5xx_and_throttling() {
        let service = |status: u16, code: &str| AwsError::Service {
            service: "S3",
            status,
            code: code.into(),
            message: String::new(),
            headers: Box::default(),
        };
        assert!(service(503, "SlowDown").is_retryable());
        assert!(service(500, "InternalError").is_retryable());
        assert!(service(400, "ThrottlingException").is_retryable());
        assert!(service(429, "TooManyRequestsException").is_retryable());
        assert!(!service(404, "NoSuchKey").is_retryable());
        assert!(!service(403, "AccessDenied").is_retryable());
        assert!(
            AwsError::Transport {
                service: "S3",
                message: "connection refused".into(),
                timeout: false
            }
            .is_retryable()
        );
    }

    #[test]
    fn backoff_grows_and_stays_under_its_ceiling() {
        let settings = ClientSettings::default();
        for attempt in 1..40 {
            let wait = backoff(&settings, attempt);
            assert!(wait <= settings.max_backoff, "{attempt}: {wait:?}");
            let ceiling = settings.base_backoff * (1 << (attempt - 1).min(16));
            assert!(wait <= ceiling, "{attempt}: {wait:?}");
        }
        // Full jitter over a ceiling that doubles: the third wait's ceiling is four times
        // the base, so among 200 draws some exceed twice the base (all failing to has a
        // probability of 2^-200).
        let longest = (0..200)
            .map(|_| backoff(&settings, 3))
            .max()
            .expect("draws");
        assert!(
            longest > settings.base_backoff * 2,
            "the third wait never exceeded twice the base: {longest:?}"
        );
    }
}

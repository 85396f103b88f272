//! `actiondo::aws::signed` against a local HTTP server: what it sends, which answers it
//! sends again and which it does not, and how error answers become `AwsError`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actiondo::aws::signed::{AwsError, AwsRequest, AwsService, ClientSettings, SignedClient};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_types::SdkConfig;
use aws_types::region::Region;
use http::Method;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn config(url: &str) -> SdkConfig {
    SdkConfig::builder()
        .region(Region::new("eu-west-1"))
        .endpoint_url(url)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKID", "SECRET", None, None, "test",
        )))
        .build()
}

fn quick() -> ClientSettings {
    ClientSettings {
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        attempt_timeout: Duration::from_millis(500),
        ..ClientSettings::default()
    }
}

fn client(server: &MockServer, service: AwsService) -> SignedClient {
    SignedClient::with_settings(&config(&server.uri()), service, quick()).expect("client")
}

#[tokio::test]
async fn a_json_call_is_signed_and_targeted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("x-amz-target", "AWSStepFunctions.DescribeExecution"))
        .and(header("content-type", "application/x-amz-json-1.0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "RUNNING"})))
        .expect(1)
        .mount(&server)
        .await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let observer = {
        let seen = seen.clone();
        Arc::new(move |op: &'static str| seen.lock().expect("seen").push(op))
    };
    let client = client(&server, AwsService::STEP_FUNCTIONS).observe(observer);
    let output = client
        .call_json(
            "AWSStepFunctions.DescribeExecution",
            &json!({"executionArn": "arn:x"}),
        )
        .await
        .expect("answer");
    assert_eq!(output, json!({"status": "RUNNING"}));
    assert_eq!(*seen.lock().expect("seen"), ["DescribeExecution"]);

    let received = server.received_requests().await.expect("recorded");
    let request = &received[0];
    assert_eq!(request.body, br#"{"executionArn":"arn:x"}"#);
    let authorization = request.headers["authorization"].to_str().expect("text");
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKID/")
            && authorization.contains("/eu-west-1/states/aws4_request, SignedHeaders=")
            && authorization.contains("x-amz-target"),
        "{authorization}"
    );
    assert!(request.headers.contains_key("x-amz-date"));
}

#[tokio::test]
async fn server_errors_and_throttling_are_sent_again() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(503).set_body_string(
            "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"__type": "ThrottlingException", "message": "slow"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let client = client(&server, AwsService::S3);
    let request = AwsRequest::new("PutObject", Method::PUT, "/bucket/key").body(&b"{}"[..]);
    let response = client.send(&request).await.expect("third send succeeds");
    assert_eq!(response.status, 200);
    let received = server.received_requests().await.expect("recorded");
    assert_eq!(received.len(), 3, "one send and two more");
    for r in &received {
        assert_eq!(r.body, b"{}");
        assert!(r.headers.contains_key("x-amz-content-sha256"));
    }
}

#[tokio::test]
async fn a_client_error_is_not_sent_again_and_names_its_code() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_string(
            "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>gone</Message></Error>",
        ))
        .mount(&server)
        .await;
    let client = client(&server, AwsService::S3);
    let err = client
        .send(&AwsRequest::new("GetObject", Method::GET, "/bucket/key"))
        .await
        .expect_err("404");
    assert_eq!(err.code(), Some("NoSuchKey"));
    assert_eq!(err.status(), Some(404));
    assert!(!err.is_retryable());
    assert_eq!(err.to_string(), "S3: NoSuchKey: gone (HTTP 404)");
    assert_eq!(server.received_requests().await.expect("recorded").len(), 1);
}

#[tokio::test]
async fn persistent_failures_stop_after_the_last_attempt() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let client = client(&server, AwsService::LAMBDA);
    let err = client
        .send(&AwsRequest::new(
            "Invoke",
            Method::POST,
            "/2015-03-31/functions/f/invocations",
        ))
        .await
        .expect_err("500");
    assert!(
        matches!(&err, AwsError::Service { status: 500, code, .. } if code == "HTTP 500"),
        "{err:?}"
    );
    assert_eq!(server.received_requests().await.expect("recorded").len(), 3);
}

#[tokio::test]
async fn a_silent_server_times_out_each_attempt() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let settings = ClientSettings {
        attempt_timeout: Duration::from_millis(100),
        max_attempts: 2,
        ..quick()
    };
    let client = SignedClient::with_settings(&config(&server.uri()), AwsService::S3, settings)
        .expect("client");
    let err = client
        .send(&AwsRequest::new("GetObject", Method::GET, "/bucket/key"))
        .await
        .expect_err("timeout");
    assert!(
        matches!(err, AwsError::Transport { timeout: true, .. }),
        "{err:?}"
    );
    assert_eq!(server.received_requests().await.expect("recorded").len(), 2);
}

#[tokio::test]
async fn nothing_listening_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let client =
        SignedClient::with_settings(&config(&url), AwsService::S3, quick()).expect("client");
    let err = client
        .send(&AwsRequest::new("GetObject", Method::GET, "/bucket/key"))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, AwsError::Transport { timeout: false, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

/// A credentials provider that counts how often it is asked, handing out credentials
/// that expire `lifetime` from now.
#[derive(Debug)]
struct Counting {
    calls: Arc<Mutex<u32>>,
    lifetime: Duration,
}

impl aws_credential_types::provider::ProvideCredentials for Counting {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        *self.calls.lock().expect("calls") += 1;
        aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
            "AKID",
            "SECRET",
            Some("TOKEN".into()),
            Some(std::time::SystemTime::now() + self.lifetime),
            "counting",
        )))
    }
}

/// How often the provider is asked for two requests, when its credentials last `lifetime`.
async fn provider_calls_for_two_requests(lifetime: Duration) -> u32 {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let calls = Arc::new(Mutex::new(0));
    let config = config(&server.uri())
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(Counting {
            calls: calls.clone(),
            lifetime,
        }))
        .build();
    let client = SignedClient::with_settings(&config, AwsService::S3, quick()).expect("client");
    for _ in 0..2 {
        client
            .send(&AwsRequest::new("GetObject", Method::GET, "/bucket/key"))
            .await
            .expect("answer");
    }
    for r in server.received_requests().await.expect("recorded") {
        assert_eq!(r.headers["x-amz-security-token"], "TOKEN");
    }
    *calls.lock().expect("calls")
}

#[tokio::test]
async fn credentials_are_kept_until_five_minutes_before_they_expire() {
    assert_eq!(
        provider_calls_for_two_requests(Duration::from_secs(3600)).await,
        1,
        "fresh credentials are read once"
    );
    assert_eq!(
        provider_calls_for_two_requests(Duration::from_secs(240)).await,
        2,
        "credentials expiring within five minutes are read again"
    );
}

/// The S3 result objects (`actiondo::store::s3::S3Objects`) against moto's S3: what the
/// conformance suite's large results do not reach.
#[tokio::test]
async fn s3_objects_on_moto_create_read_and_refuse() {
    use actiondo::store::ObjectStore;
    use actiondo::store::s3::S3Objects;
    let Some(moto) = actiondo::testing::server_url("ACTIONDO_TEST_MOTO_URL", "S3 objects on moto")
    else {
        return;
    };
    let config = config(&moto)
        .into_builder()
        .region(Region::new("us-east-1"))
        .build();
    let bucket = format!("signed-{}", uuid::Uuid::new_v4().simple());
    let objects = S3Objects::new(&config, bucket.as_str()).expect("objects");
    objects.create_bucket().await.expect("created");
    objects
        .create_bucket()
        .await
        .expect("creating a bucket we own again is not an error");

    // A missing key reads as none (the executor then says the object is gone); a missing
    // bucket is an error to retry, not an absent result.
    assert_eq!(
        objects.get(&bucket, "results/none").await.expect("get"),
        None
    );
    let err = objects
        .get(&format!("{bucket}-absent"), "results/none")
        .await
        .expect_err("no such bucket");
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");

    objects
        .put("results/a/b", b"{\"x\":1}".to_vec(), false)
        .await
        .expect("put");
    assert_eq!(
        objects.get(&bucket, "results/a/b").await.expect("get"),
        Some(b"{\"x\":1}".to_vec())
    );
}

#[tokio::test]
async fn creating_a_bucket_fails_unless_it_exists_already() {
    use actiondo::store::s3::S3Objects;
    let server = MockServer::start().await;
    let answer = |code: &str, status: u16| {
        ResponseTemplate::new(status).set_body_string(format!(
            "<Error><Code>{code}</Code><Message>m</Message></Error>"
        ))
    };
    Mock::given(method("PUT"))
        .and(path("/owned"))
        .respond_with(answer("BucketAlreadyOwnedByYou", 409))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/denied"))
        .respond_with(answer("AccessDenied", 403))
        .mount(&server)
        .await;
    let config = config(&server.uri());
    S3Objects::new(&config, "owned")
        .expect("objects")
        .create_bucket()
        .await
        .expect("a bucket we own already is created");
    let err = S3Objects::new(&config, "denied")
        .expect("objects")
        .create_bucket()
        .await
        .expect_err("denied");
    assert!(err.to_string().contains("AccessDenied"), "{err}");
}

#[test]
fn the_results_bucket_comes_from_its_variable() {
    use actiondo::store::ObjectStore;
    use actiondo::store::s3::S3Objects;
    let config = config("http://127.0.0.1:1");
    let named = S3Objects::from_lookup(&config, |name| {
        (name == "ACTIONDO_RESULTS_BUCKET").then(|| "results-b".to_owned())
    })
    .expect("lookup")
    .expect("a bucket");
    assert_eq!(named.bucket(), "results-b");
    for value in [None, Some(String::new())] {
        let none = S3Objects::from_lookup(&config, |_| value.clone()).expect("lookup");
        assert!(none.is_none(), "{value:?}");
    }
}

/// Lambda's throttling answer (`429 TooManyRequestsException`, its `Retry-After` header),
/// with retries turned off: one send, and the error keeps the code and the header the
/// caller needs for its own retry hint.
#[tokio::test]
async fn an_error_answer_keeps_its_headers_and_one_attempt_sends_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2015-03-31/functions/f/invocations"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-amzn-errortype", "TooManyRequestsException")
                .insert_header("retry-after", "7")
                .set_body_json(json!({"Type": "User", "message": "Rate Exceeded."})),
        )
        .mount(&server)
        .await;
    let settings = ClientSettings {
        max_attempts: 1,
        ..quick()
    };
    let client = SignedClient::with_settings(&config(&server.uri()), AwsService::LAMBDA, settings)
        .expect("client");
    let err = client
        .send(&AwsRequest::new(
            "Invoke",
            Method::POST,
            "/2015-03-31/functions/f/invocations",
        ))
        .await
        .expect_err("429");
    assert_eq!(err.code(), Some("TooManyRequestsException"));
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.header("retry-after"), Some("7"));
    assert_eq!(
        err.header("Retry-After"),
        Some("7"),
        "names are case-insensitive"
    );
    assert_eq!(err.header("x-amz-function-error"), None);
    assert!(err.is_retryable(), "throttling is retryable by the caller");
    assert_eq!(server.received_requests().await.expect("recorded").len(), 1);
}

//! A Lambda Runtime API of our own on `127.0.0.1`, for the measuring tools
//! (`src/bin/lambda-startup.rs`, `src/bin/lambda-throughput.rs`): what Lambda gives a
//! function's process (its environment, the `next` answer's headers), and the accept loop.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use http::{Request, Response};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The function ARN every invocation names.
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:bench";

/// Bind a free port on `127.0.0.1` and serve every connection with `handle` (HTTP/1.1, as
/// the runtime client speaks), in the background. Returns the address to give
/// `AWS_LAMBDA_RUNTIME_API`.
pub async fn serve<F, Fut>(handle: F) -> std::io::Result<SocketAddr>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(handle);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The answer to a `next`: `event`, with the request id, a deadline a minute away and the
/// function ARN, as Lambda sends them.
pub fn invocation(request_id: &str, event: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let deadline_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 60_000) + 60_000
        });
    let mut response = Response::new(Full::new(event.into()));
    let headers = response.headers_mut();
    if let Ok(id) = http::HeaderValue::from_str(request_id) {
        headers.insert("lambda-runtime-aws-request-id", id);
    }
    headers.insert("lambda-runtime-deadline-ms", deadline_ms.into());
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        http::HeaderValue::from_static(FUNCTION_ARN),
    );
    response
}

/// `binary` as Lambda starts it against the Runtime API at `addr`: the variables Lambda
/// sets, dummy credentials, region us-east-1, the bench tables, and no standard
/// streams. Add the caller's own variables after.
pub fn function_command(binary: &Path, addr: SocketAddr, memory_mb: u32) -> Command {
    let mut command = Command::new(binary);
    command
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("ACTIONDO_IDEMPOTENCY_TABLE", "bench-idempotency")
        .env("ACTIONDO_AUDIT_TABLE", "bench-audit")
        .env("ACTIONDO_ENTITIES_TABLE", "bench-entities")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

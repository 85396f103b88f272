//! [`Mailer`]: the one way action.do sends email — SES v2 in AWS, an outbox of `.eml`
//! files locally. `send-email` and `send-welcome-email` both send through it.
//!
//! ## Configuration (environment)
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `EMAIL_TRANSPORT` | `ses` or `outbox` | `ses` when `AWS_LAMBDA_FUNCTION_NAME` is set (in Lambda), else `outbox` |
//! | `EMAIL_FROM` | the From address, `addr@domain` or `Name <addr@domain>` (with SES: a verified identity) | required for `ses`; `action.do <no-reply@example.com>` for `outbox` |
//! | `EMAIL_OUTBOX_DIR` | where the outbox writes | `.actiondo/outbox` |
//! | `SES_CONFIGURATION_SET` | SES configuration set to send with | none |
//!
//! The SES client is configured from the environment Lambda sets ([`actiondo::aws`]:
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, and
//! `AWS_ENDPOINT_URL_SESV2` / `AWS_ENDPOINT_URL` for an emulator).
//!
//! ## Idempotency
//!
//! Every send carries an *execution id*, `{action}#{idempotency key}`
//! ([`Mailer::send_for`] builds it from the [`ActionContext`]):
//! - the outbox names the file after it (sanitized, plus a hash), so a retry of the same
//!   execution overwrites its file instead of adding a second message, and derives the
//!   `Message-ID` from it, so the retried message is the same message;
//! - SES has no idempotency key: the send is tagged `actiondo-execution=<hash>` so that
//!   duplicates can be traced in SES events. The executor's claim makes the send happen
//!   at most once at a time; a crash between SES accepting and the commit can still
//!   send twice (at least once), as docs/architecture.md §4 states for external effects.
//!
//! ## Errors
//!
//! | what happened | error |
//! |---|---|
//! | SES throttling (`TooManyRequests`, `LimitExceeded`), 5xx, timeout, connection failure | `ActionDo.Transient` |
//! | SES refused the message (`MessageRejected`, sender not verified, sending paused, account suspended, bad request) | `ActionDo.Rejected` |
//! | the outbox folder cannot be written | `ActionDo.Transient` |
//! | a recipient or subject that cannot be put in a message | `ActionDo.Validation` |

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actiondo::config::not_configured;
use actiondo::{ActionContext, ActionError};
use aws_sdk_sesv2::error::{ProvideErrorMetadata as _, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageTag};
use lettre::message::{Mailbox, SinglePart};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;

/// Selects the transport: `ses` or `outbox`.
pub const EMAIL_TRANSPORT_ENV: &str = "EMAIL_TRANSPORT";
/// The From address.
pub const EMAIL_FROM_ENV: &str = "EMAIL_FROM";
/// The outbox folder.
pub const EMAIL_OUTBOX_DIR_ENV: &str = "EMAIL_OUTBOX_DIR";
/// An optional SES configuration set.
pub const SES_CONFIGURATION_SET_ENV: &str = "SES_CONFIGURATION_SET";
/// The outbox folder when `EMAIL_OUTBOX_DIR` is unset.
pub const DEFAULT_OUTBOX_DIR: &str = ".actiondo/outbox";
/// The From address of the outbox when `EMAIL_FROM` is unset.
pub const DEFAULT_OUTBOX_FROM: &str = "action.do <no-reply@example.com>";
/// The time budget of one SES call, retries included.
pub const SES_TIMEOUT: Duration = Duration::from_secs(10);

/// Which transport sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Amazon SES v2.
    Ses,
    /// An `.eml` file in the outbox folder.
    Outbox,
}

impl TransportKind {
    /// `ses` or `outbox`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Ses => "ses",
            TransportKind::Outbox => "outbox",
        }
    }
}

/// A plain-text message to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The recipient's address.
    pub to: String,
    /// One line.
    pub subject: String,
    /// Plain text (UTF-8).
    pub body: String,
}

/// What a transport did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// SES's `MessageId`, or the outbox message's `Message-ID` without the angle brackets.
    pub message_id: String,
    /// Which transport.
    pub transport: TransportKind,
    /// The `.eml` file written (outbox only).
    pub path: Option<PathBuf>,
}

/// A configuration that cannot work (read at start-up).
#[derive(Debug, thiserror::Error)]
#[error("email configuration: {0}")]
pub struct ConfigError(String);

/// Sends [`Email`]s through SES v2 or into an outbox folder. Cheap to clone.
///
/// # Example
///
/// ```
/// use send_email::mailer::{Email, Mailer, TransportKind};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dir = tempfile::tempdir()?;
/// let mailer = Mailer::outbox(dir.path(), "Shop <shop@example.com>")?;
/// let email = Email { to: "ada@example.com".into(), subject: "Hi".into(), body: "Hello!\n".into() };
/// let sent = mailer.send(&email, "send-email#order-42").await?;
/// assert_eq!(sent.transport, TransportKind::Outbox);
/// assert!(sent.path.unwrap().exists());
/// # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

#[derive(Debug, Clone)]
enum Transport {
    Ses(Arc<Ses>),
    Outbox(PathBuf),
}

#[derive(Debug)]
struct Ses {
    /// Built on first use from the Lambda environment ([`actiondo::aws`]), unless given.
    client: OnceCell<aws_sdk_sesv2::Client>,
    configuration_set: Option<String>,
}

impl Mailer {
    /// The mailer the environment describes (see the [module docs](self)).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The mailer described by the settings `lookup` returns (by environment variable
    /// name); what [`from_env`](Self::from_env) uses. Blank values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let kind = match var(EMAIL_TRANSPORT_ENV).as_deref().map(str::trim) {
            Some("ses") => TransportKind::Ses,
            Some("outbox") => TransportKind::Outbox,
            Some(other) => {
                return Err(ConfigError(format!(
                    "{EMAIL_TRANSPORT_ENV}={other:?}; use ses or outbox"
                )));
            }
            None if var("AWS_LAMBDA_FUNCTION_NAME").is_some() => TransportKind::Ses,
            None => TransportKind::Outbox,
        };
        match kind {
            TransportKind::Ses => {
                let from = var(EMAIL_FROM_ENV).ok_or_else(|| {
                    ConfigError(format!(
                        "{EMAIL_FROM_ENV} must name a verified SES identity when {EMAIL_TRANSPORT_ENV} is ses"
                    ))
                })?;
                Ok(Self::ses_lazy(&from)?.with_configuration_set(var(SES_CONFIGURATION_SET_ENV)))
            }
            TransportKind::Outbox => Self::outbox(
                var(EMAIL_OUTBOX_DIR_ENV).unwrap_or_else(|| DEFAULT_OUTBOX_DIR.to_owned()),
                &var(EMAIL_FROM_ENV).unwrap_or_else(|| DEFAULT_OUTBOX_FROM.to_owned()),
            ),
        }
    }

    /// A mailer that writes `.eml` files into `dir` (created on first send).
    pub fn outbox(dir: impl Into<PathBuf>, from: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            from: parse_from(from)?,
            transport: Transport::Outbox(dir.into()),
        })
    }

    /// A mailer that sends through SES v2 with `client`.
    pub fn ses(client: aws_sdk_sesv2::Client, from: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            from: parse_from(from)?,
            transport: Transport::Ses(Arc::new(Ses {
                client: OnceCell::new_with(Some(client)),
                configuration_set: None,
            })),
        })
    }

    /// A mailer that sends through SES v2 with a client built, on first use, from the
    /// standard AWS configuration of the environment.
    pub fn ses_lazy(from: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            from: parse_from(from)?,
            transport: Transport::Ses(Arc::new(Ses {
                client: OnceCell::new(),
                configuration_set: None,
            })),
        })
    }

    /// Send through this SES configuration set (no effect on the outbox).
    #[must_use]
    pub fn with_configuration_set(mut self, name: Option<String>) -> Self {
        if let Transport::Ses(ses) = &self.transport {
            self.transport = Transport::Ses(Arc::new(Ses {
                client: ses.client.clone(),
                configuration_set: name,
            }));
        }
        self
    }

    /// Which transport this mailer uses.
    pub fn kind(&self) -> TransportKind {
        match self.transport {
            Transport::Ses(_) => TransportKind::Ses,
            Transport::Outbox(_) => TransportKind::Outbox,
        }
    }

    /// The From mailbox.
    pub fn from_address(&self) -> String {
        self.from.to_string()
    }

    /// [`send`](Self::send) with the execution id `{action}#{key}` of `cx`.
    pub async fn send_for(
        &self,
        cx: &ActionContext,
        email: &Email,
    ) -> Result<Delivery, ActionError> {
        self.send(email, &execution_id(cx)).await
    }

    /// Send `email`; `execution_id` identifies the execution it belongs to (see the
    /// [module docs](self)): the same id is the same message.
    pub async fn send(&self, email: &Email, execution_id: &str) -> Result<Delivery, ActionError> {
        let to = parse_to(&email.to)?;
        if email.subject.contains(['\r', '\n']) {
            return Err(
                ActionError::validation("the subject must be one line").with_details(
                    json!({"errors": [{"path": "/subject", "message": "must be one line"}]}),
                ),
            );
        }
        match &self.transport {
            Transport::Outbox(dir) => self.write_outbox(dir, to, email, execution_id).await,
            Transport::Ses(ses) => self.send_ses(ses, to, email, execution_id).await,
        }
    }

    async fn write_outbox(
        &self,
        dir: &Path,
        to: Mailbox,
        email: &Email,
        execution_id: &str,
    ) -> Result<Delivery, ActionError> {
        let digest = hex::encode(Sha256::digest(execution_id.as_bytes()));
        let domain = self.from.email.domain().to_owned();
        let message_id = format!("{}@{domain}", &digest[..32]);
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .date(SystemTime::now())
            .message_id(Some(format!("<{message_id}>")))
            .singlepart(SinglePart::plain(email.body.clone()))
            .map_err(|e| ActionError::validation(format!("the message cannot be built: {e}")))?;
        let bytes = message.formatted();
        let path = dir.join(outbox_file_name(execution_id));
        let (dir, target) = (dir.to_path_buf(), path.clone());
        tokio::task::spawn_blocking(move || write_atomically(&dir, &target, &bytes))
            .await
            .map_err(|e| ActionError::internal(format!("the outbox writer panicked: {e}")))?
            .map_err(|e| {
                ActionError::transient(format!(
                    "cannot write the outbox file {}: {e}",
                    path.display()
                ))
                .with_details(json!({"transport": "outbox", "path": path.display().to_string()}))
                .with_source(e)
            })?;
        tracing::info!(path = %path.display(), %message_id, "email written to the outbox");
        Ok(Delivery {
            message_id,
            transport: TransportKind::Outbox,
            path: Some(path),
        })
    }

    async fn send_ses(
        &self,
        ses: &Ses,
        to: Mailbox,
        email: &Email,
        execution_id: &str,
    ) -> Result<Delivery, ActionError> {
        let client = ses
            .client
            .get_or_try_init(|| async {
                let config = actiondo::aws::sdk_config_from_env()
                    .map_err(|e| not_configured("the SES transport", &e.to_string()))?;
                let config = aws_sdk_sesv2::config::Builder::from(&config)
                    .timeout_config(
                        aws_sdk_sesv2::config::timeout::TimeoutConfig::builder()
                            .operation_timeout(SES_TIMEOUT)
                            .operation_attempt_timeout(SES_TIMEOUT / 3)
                            .build(),
                    )
                    .build();
                Ok::<_, ActionError>(aws_sdk_sesv2::Client::from_conf(config))
            })
            .await?;
        let text = |data: &str| Content::builder().data(data).charset("UTF-8").build();
        let subject = text(&email.subject).map_err(build_error)?;
        let body = text(&email.body).map_err(build_error)?;
        let digest = hex::encode(Sha256::digest(execution_id.as_bytes()));
        let tag = MessageTag::builder()
            .name("actiondo-execution")
            .value(&digest[..32])
            .build()
            .map_err(build_error)?;
        let sent = client
            .send_email()
            .from_email_address(self.from.to_string())
            .destination(Destination::builder().to_addresses(to.to_string()).build())
            .content(
                EmailContent::builder()
                    .simple(
                        Message::builder()
                            .subject(subject)
                            .body(Body::builder().text(body).build())
                            .build(),
                    )
                    .build(),
            )
            .email_tags(tag)
            .set_configuration_set_name(ses.configuration_set.clone())
            .send()
            .await
            .map_err(ses_error)?;
        let message_id = sent.message_id().unwrap_or_default().to_owned();
        tracing::info!(%message_id, "email sent through SES");
        Ok(Delivery {
            message_id,
            transport: TransportKind::Ses,
            path: None,
        })
    }
}

/// The mailer of the environment, or (logged) why there is none: what the actions'
/// `from_env` hold, so that a bad setting fails executions, not the process (the CLI
/// builds every action at start-up).
pub fn mailer_or_problem(action: &str) -> Result<Mailer, String> {
    Mailer::from_env().map_err(|e| {
        tracing::error!(action, error = %e, "email is not configured; every execution will fail");
        e.to_string()
    })
}

/// The execution id of `cx`: `{action}#{idempotency key}`.
pub fn execution_id(cx: &ActionContext) -> String {
    format!("{}#{}", cx.action(), cx.idempotency_key())
}

/// The outbox file of an execution: its id with every character outside
/// `[A-Za-z0-9._-]` replaced by `_` (at most 80 of them), a dash, the first 16 hex digits
/// of its SHA-256 (so that two ids that sanitize alike never share a file), `.eml`.
pub fn outbox_file_name(execution_id: &str) -> String {
    let readable: String = execution_id
        .chars()
        .take(80)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let digest = hex::encode(Sha256::digest(execution_id.as_bytes()));
    format!("{}-{}.eml", readable.trim_start_matches('.'), &digest[..16])
}

/// Write `bytes` to `target` through a temporary file in the same folder and a rename,
/// so a reader never sees half a message and a rewrite replaces the file whole.
fn write_atomically(dir: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", uuid_like()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, target).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A unique-enough suffix for temporary files (process id and a counter and the clock).
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn parse_from(from: &str) -> Result<Mailbox, ConfigError> {
    from.trim()
        .parse::<Mailbox>()
        .map_err(|e| ConfigError(format!("{EMAIL_FROM_ENV}={from:?} is not an address: {e}")))
}

fn parse_to(to: &str) -> Result<Mailbox, ActionError> {
    to.trim().parse::<Mailbox>().map_err(|e| {
        ActionError::validation(format!("{to:?} is not a valid recipient: {e}"))
            .with_details(json!({"errors": [{"path": "/to", "message": e.to_string()}]}))
    })
}

fn build_error(e: aws_sdk_sesv2::error::BuildError) -> ActionError {
    ActionError::internal(format!("building the SES request: {e}"))
}

/// Map an SES `SendEmail` failure to the error classes of the [module docs](self).
fn ses_error(
    err: SdkError<SendEmailError, aws_sdk_sesv2::config::http::HttpResponse>,
) -> ActionError {
    let details = |code: Option<&str>, status: Option<u16>| json!({"transport": "ses", "code": code, "status": status});
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().map(str::to_owned);
            let message = service
                .err()
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| service.err().to_string());
            let retryable = matches!(
                service.err(),
                SendEmailError::TooManyRequestsException(_)
                    | SendEmailError::LimitExceededException(_)
            ) || status >= 500
                || status == 429;
            let text = format!(
                "SES refused the message ({}): {message}",
                code.as_deref().unwrap_or("unknown error")
            );
            let e = if retryable {
                ActionError::transient(text)
            } else {
                ActionError::rejected(text)
            };
            e.with_details(details(code.as_deref(), Some(status)))
                .with_source(err)
        }
        SdkError::ConstructionFailure(_) => {
            ActionError::internal(format!("the SES request could not be built: {err}"))
                .with_source(err)
        }
        // Timeouts, connection failures, unreadable responses: a retry may succeed.
        _ => ActionError::transient(format!("SES could not be reached: {err}"))
            .with_details(details(None, None))
            .with_source(err),
    }
}

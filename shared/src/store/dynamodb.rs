//! The DynamoDB store (feature `dynamodb`): the three tables of docs/architecture.md §5.
//!
//! - claim: one conditional `UpdateItem` with `ReturnValues=ALL_OLD` (success tells whether
//!   an abandoned attempt was taken over) and `ReturnValuesOnConditionCheckFailure=ALL_OLD`
//!   (failure returns the record that stopped it: no second read);
//! - commit: one `TransactWriteItems` of the record write, the audit put and the staged
//!   entity writes;
//! - reads are strongly consistent.
//!
//! Table names come from `ACTIONDO_IDEMPOTENCY_TABLE`, `ACTIONDO_AUDIT_TABLE` and
//! `ACTIONDO_ENTITIES_TABLE`; region, credentials and endpoint from the environment Lambda
//! sets ([`crate::aws`]; `AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local), or from any
//! [`SdkConfig`] with [`DynamoStore::from_sdk_config`].

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, PutRequest, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TransactWriteItem, Update, WriteRequest,
};
use aws_types::SdkConfig;
use base64::Engine as _;
use serde_json::Value;

use crate::audit::{AuditFilter, AuditPage, AuditQuery, AuditRecord, AuditStatus};
use crate::error::StoreError;
use crate::invocation::Source;
use crate::limits;
use crate::store::{
    Claim, ClaimOutcome, Commit, CommitOutcome, Entity, EntityKey, Expect, IdempotencyRecord,
    RELEASED_LEASE_MS, RecordStatus, RecordWrite, StagedWrite, Store, StoredResult,
};

type Item = HashMap<String, AttributeValue>;

/// The names of the three tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    /// The idempotency table (`id`).
    pub idempotency: String,
    /// The audit table (`execution`, `seq`).
    pub audit: String,
    /// The entity table (`pk`, `sk`).
    pub entities: String,
}

impl Tables {
    /// The environment variable naming the idempotency table.
    pub const IDEMPOTENCY_ENV: &'static str = "ACTIONDO_IDEMPOTENCY_TABLE";
    /// The environment variable naming the audit table.
    pub const AUDIT_ENV: &'static str = "ACTIONDO_AUDIT_TABLE";
    /// The environment variable naming the entity table.
    pub const ENTITIES_ENV: &'static str = "ACTIONDO_ENTITIES_TABLE";

    /// The names from `ACTIONDO_IDEMPOTENCY_TABLE`, `ACTIONDO_AUDIT_TABLE` and
    /// `ACTIONDO_ENTITIES_TABLE`; an error names every one that is missing.
    pub fn from_env() -> Result<Self, StoreError> {
        Self::from_settings(&crate::config::Settings::from_env())
    }

    /// As [`from_env`](Self::from_env), with the names in `settings`.
    pub fn from_settings(settings: &crate::config::Settings) -> Result<Self, StoreError> {
        let vars = [Self::IDEMPOTENCY_ENV, Self::AUDIT_ENV, Self::ENTITIES_ENV];
        let values: Vec<Option<String>> = vars.iter().map(|v| settings.get(v)).collect();
        let missing: Vec<&str> = vars
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
        match values.as_slice() {
            [Some(i), Some(a), Some(e)] => Ok(Self {
                idempotency: i.clone(),
                audit: a.clone(),
                entities: e.clone(),
            }),
            _ => Err(StoreError::InvalidRequest(format!(
                "the DynamoDB store needs the table names in {}",
                missing.join(", ")
            ))),
        }
    }

    /// `{prefix}-idempotency`, `{prefix}-audit`, `{prefix}-entities`.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            idempotency: format!("{prefix}-idempotency"),
            audit: format!("{prefix}-audit"),
            entities: format!("{prefix}-entities"),
        }
    }
}

#[cfg(feature = "testing")]
pub use super::call_counter::CallCounter;

/// The DynamoDB store.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    tables: Tables,
    /// Where results too large for a record go (docs/architecture.md §4.6).
    objects: Option<std::sync::Arc<dyn crate::store::ObjectStore>>,
}

fn sdk_err<E, R>(what: &str, err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    // A ValidationException is DynamoDB refusing the request itself: never retryable.
    if let SdkError::ServiceError(service) = &err
        && service.err().code() == Some("ValidationException")
    {
        return StoreError::Refused(format!(
            "DynamoDB {what}: ValidationException: {}",
            service.err().message().unwrap_or("(no message)")
        ));
    }
    let message = match &err {
        SdkError::ServiceError(service) => format!("DynamoDB {what}: {}", service.err()),
        other => format!("DynamoDB {what}: {other}"),
    };
    StoreError::Unavailable {
        message,
        source: Some(Box::new(err)),
    }
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Corrupt(format!("building a DynamoDB request: {e}"))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A JSON value as a DynamoDB attribute value.
pub fn json_to_attr(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(num) => AttributeValue::N(num.to_string()),
        Value::String(st) => AttributeValue::S(st.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(json_to_attr).collect()),
        Value::Object(map) => AttributeValue::M(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_attr(v)))
                .collect(),
        ),
    }
}

/// A DynamoDB attribute value as JSON (sets become arrays, binary becomes base64).
pub fn attr_to_json(attr: &AttributeValue) -> Result<Value, StoreError> {
    Ok(match attr {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(num) => parse_number(num)?,
        AttributeValue::S(st) => Value::String(st.clone()),
        AttributeValue::L(items) => {
            Value::Array(items.iter().map(attr_to_json).collect::<Result<_, _>>()?)
        }
        AttributeValue::M(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), attr_to_json(v)?)))
                .collect::<Result<_, StoreError>>()?,
        ),
        AttributeValue::Ss(items) => Value::from(items.clone()),
        AttributeValue::Ns(items) => Value::Array(
            items
                .iter()
                .map(|x| parse_number(x))
                .collect::<Result<_, _>>()?,
        ),
        AttributeValue::B(blob) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(blob.as_ref()))
        }
        other => {
            return Err(StoreError::Corrupt(format!(
                "unsupported attribute {other:?}"
            )));
        }
    })
}

fn parse_number(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str::<serde_json::Number>(text)
        .map(Value::Number)
        .map_err(|e| StoreError::Corrupt(format!("number {text:?}: {e}")))
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        other => Err(StoreError::Corrupt(format!(
            "attribute {name}: expected S, got {other:?}"
        ))),
    }
}

fn get_opt_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("attribute {name}: bad number {v:?}"))),
        other => Err(StoreError::Corrupt(format!(
            "attribute {name}: expected N, got {other:?}"
        ))),
    }
}

fn record_from_item(item: &Item) -> Result<IdempotencyRecord, StoreError> {
    Ok(IdempotencyRecord {
        id: get_s(item, "id")?.to_owned(),
        status: RecordStatus::parse(get_s(item, "status")?)?,
        payload_hash: get_s(item, "payload_hash")?.to_owned(),
        attempt: get_n(item, "attempt")?,
        lease_owner: get_s(item, "lease_owner")?.to_owned(),
        lease_expires_at_ms: get_n(item, "lease_expires_at_ms")?,
        expires_at_s: get_n(item, "expires_at_s")?,
        result: match item.get("result") {
            Some(AttributeValue::S(json)) => Some(StoredResult::Json(json.clone())),
            Some(AttributeValue::B(gz)) => Some(StoredResult::Gzip(gz.clone().into_inner())),
            Some(AttributeValue::M(reference)) => {
                Some(StoredResult::Object(Box::new(object_ref(reference)?)))
            }
            _ => None,
        },
        error: get_opt_s(item, "error"),
        created_at_ms: get_n(item, "created_at_ms")?,
        completed_at_ms: get_n(item, "completed_at_ms").ok(),
    })
}

fn result_attr(result: &StoredResult) -> AttributeValue {
    match result {
        StoredResult::Json(json) => s(json.clone()),
        StoredResult::Gzip(bytes) => AttributeValue::B(Blob::new(bytes.clone())),
        // A reference to the object holding the result: a map, told from the text (S) and
        // the gzip (B) by its type (docs/architecture.md §5.1).
        StoredResult::Object(reference) => AttributeValue::M(HashMap::from([
            ("bucket".into(), s(&reference.bucket)),
            ("key".into(), s(&reference.key)),
            ("bytes".into(), n(reference.bytes)),
            ("sha256".into(), s(&reference.sha256)),
            ("gzip".into(), AttributeValue::Bool(reference.gzip)),
        ])),
    }
}

fn object_ref(item: &Item) -> Result<crate::store::ObjectRef, StoreError> {
    Ok(crate::store::ObjectRef {
        bucket: get_s(item, "bucket")?.to_owned(),
        key: get_s(item, "key")?.to_owned(),
        bytes: get_n(item, "bytes")?,
        sha256: get_s(item, "sha256")?.to_owned(),
        gzip: matches!(item.get("gzip"), Some(AttributeValue::Bool(true))),
    })
}

fn record_to_item(r: &IdempotencyRecord) -> Item {
    let mut item = Item::from([
        ("id".into(), s(&r.id)),
        ("status".into(), s(r.status.as_str())),
        ("payload_hash".into(), s(&r.payload_hash)),
        ("attempt".into(), n(r.attempt)),
        ("lease_owner".into(), s(&r.lease_owner)),
        ("lease_expires_at_ms".into(), n(r.lease_expires_at_ms)),
        ("expires_at_s".into(), n(r.expires_at_s)),
        ("created_at_ms".into(), n(r.created_at_ms)),
    ]);
    if let Some(result) = &r.result {
        item.insert("result".into(), result_attr(result));
    }
    if let Some(error) = &r.error {
        item.insert("error".into(), s(error));
    }
    if let Some(at) = r.completed_at_ms {
        item.insert("completed_at_ms".into(), n(at));
    }
    item
}

fn audit_to_item(a: &AuditRecord) -> Item {
    let mut item = Item::from([
        ("execution".into(), s(&a.execution)),
        ("seq".into(), s(&a.seq)),
        ("type".into(), s(&a.action)),
        ("status".into(), s(a.status.as_str())),
        (
            "details".into(),
            result_attr(&crate::audit::stored_details(&a.details)),
        ),
        ("timestamp".into(), s(&a.timestamp)),
        ("duration_ms".into(), n(a.duration_ms)),
        ("attempt".into(), n(a.attempt)),
        ("request_id".into(), s(&a.request_id)),
        ("source".into(), s(a.source.as_str())),
    ]);
    for (name, value) in [
        ("caller", &a.caller),
        ("correlation_id", &a.correlation_id),
        ("trace_id", &a.trace_id),
    ] {
        if let Some(v) = value {
            item.insert(name.into(), s(v));
        }
    }
    item
}

fn audit_from_item(item: &Item) -> Result<AuditRecord, StoreError> {
    let parse_enum = |name: &str| -> Result<Value, StoreError> {
        Ok(Value::String(get_s(item, name)?.to_owned()))
    };
    let status: AuditStatus = serde_json::from_value(parse_enum("status")?)
        .map_err(|e| StoreError::Corrupt(format!("audit status: {e}")))?;
    let source: Source = serde_json::from_value(parse_enum("source")?)
        .map_err(|e| StoreError::Corrupt(format!("audit source: {e}")))?;
    Ok(AuditRecord {
        execution: get_s(item, "execution")?.to_owned(),
        seq: get_s(item, "seq")?.to_owned(),
        action: get_s(item, "type")?.to_owned(),
        status,
        details: match item.get("details") {
            Some(AttributeValue::S(json)) => {
                crate::audit::details_from_stored(&StoredResult::Json(json.clone()))?
            }
            Some(AttributeValue::B(gz)) => {
                crate::audit::details_from_stored(&StoredResult::Gzip(gz.clone().into_inner()))?
            }
            // Records written before details were stored as text.
            Some(other) => attr_to_json(other)?,
            None => Value::Null,
        },
        timestamp: get_s(item, "timestamp")?.to_owned(),
        duration_ms: get_n(item, "duration_ms")?,
        attempt: get_n(item, "attempt")?,
        request_id: get_s(item, "request_id")?.to_owned(),
        source,
        caller: get_opt_s(item, "caller"),
        correlation_id: get_opt_s(item, "correlation_id"),
        trace_id: get_opt_s(item, "trace_id"),
    })
}

/// The `ClientRequestToken` of a commit: the same for the same commit sent again (by the
/// SDK's retries or the executor's), so that DynamoDB applies it at most once within its
/// ten-minute idempotency window; different for every other commit, since each carries an
/// audit record whose sort key is unique.
fn commit_token(commit: &Commit) -> String {
    let digest = crate::hash::sha256_hex(
        format!("{}\n{}", commit.audit.execution, commit.audit.seq).as_bytes(),
    );
    digest[..36].to_owned()
}

/// The most items one `BatchWriteItem` takes.
pub const BATCH_WRITE_ITEMS: usize = 25;

/// How many times the items of one `BatchWriteItem` are sent in all while DynamoDB
/// leaves some of them unprocessed (throttling): the first send and 4 resends of what is
/// left, 50, 100, 200 and 400 ms apart.
pub const BATCH_WRITE_SENDS: u32 = 5;

/// Send `pending` with `send` (which answers the unprocessed items) until none is left,
/// at most [`BATCH_WRITE_SENDS`] times, with exponential backoff in between.
async fn write_until_processed<F, Fut>(
    mut pending: Vec<WriteRequest>,
    mut send: F,
) -> Result<(), StoreError>
where
    F: FnMut(Vec<WriteRequest>) -> Fut,
    Fut: Future<Output = Result<Vec<WriteRequest>, StoreError>>,
{
    for sent in 1..=BATCH_WRITE_SENDS {
        pending = send(pending).await?;
        if pending.is_empty() {
            return Ok(());
        }
        if sent < BATCH_WRITE_SENDS {
            tracing::warn!(
                unprocessed = pending.len(),
                sent,
                "BatchWriteItem left items unprocessed; sending them again"
            );
            tokio::time::sleep(Duration::from_millis(50 << (sent - 1))).await;
        }
    }
    Err(StoreError::Unavailable {
        message: format!(
            "DynamoDB BatchWriteItem: {} audit records still unprocessed after {BATCH_WRITE_SENDS} sends",
            pending.len()
        ),
        source: None,
    })
}

fn entity_key(key: &EntityKey) -> Item {
    Item::from([("pk".into(), s(&key.pk)), ("sk".into(), s(&key.sk))])
}

/// The condition expression (and its values) of an entity write.
fn entity_condition(expect: Expect) -> (Option<&'static str>, Option<(String, AttributeValue)>) {
    match expect {
        Expect::Absent => (Some("attribute_not_exists(pk)"), None),
        Expect::Version(v) => (
            Some("#version = :expected"),
            Some((":expected".into(), n(v))),
        ),
        Expect::Any => (None, None),
    }
}

impl DynamoStore {
    /// A store over `client` and `tables`.
    pub fn new(client: Client, tables: Tables) -> Self {
        Self {
            client,
            tables,
            objects: None,
        }
    }

    /// This store, writing results too large for a record to `objects`
    /// (docs/architecture.md §4.6).
    #[must_use]
    pub fn with_objects(mut self, objects: std::sync::Arc<dyn crate::store::ObjectStore>) -> Self {
        self.objects = Some(objects);
        self
    }

    /// The bucket of `ACTIONDO_RESULTS_BUCKET` in `settings`, when set, as this store's
    /// object store (S3, [`crate::store::s3::S3Objects`]).
    fn with_results_bucket(
        self,
        config: &SdkConfig,
        settings: &crate::config::Settings,
    ) -> Result<Self, StoreError> {
        Ok(
            match crate::store::s3::S3Objects::from_lookup(config, settings.lookup())? {
                Some(objects) => self.with_objects(std::sync::Arc::new(objects)),
                None => self,
            },
        )
    }

    /// A store configured from the environment Lambda sets: region, credentials and
    /// endpoint by [`crate::aws::sdk_config_from_env`], table names by
    /// [`Tables::from_env`], the results bucket by `ACTIONDO_RESULTS_BUCKET`. An error names every missing variable.
    pub fn from_env() -> Result<Self, StoreError> {
        Self::from_settings(&crate::config::Settings::from_env())
    }

    /// As [`from_env`](Self::from_env), with the variables of `settings`.
    pub fn from_settings(settings: &crate::config::Settings) -> Result<Self, StoreError> {
        let tables = Tables::from_settings(settings);
        let config = crate::aws::sdk_config_from_settings(settings);
        match (tables, config) {
            (Ok(tables), Ok(config)) => {
                Self::new(Self::client_for(&config), tables).with_results_bucket(&config, settings)
            }
            (Err(e), Ok(_)) => Err(e),
            (Ok(_), Err(e)) => Err(StoreError::InvalidRequest(e.to_string())),
            (Err(tables), Err(config)) => {
                Err(StoreError::InvalidRequest(format!("{tables}; {config}")))
            }
        }
    }

    /// A store over a client built from `config` (e.g. one `aws-config` loaded, given
    /// [`crate::aws::http_client`]) with the store's timeouts, table names by
    /// [`Tables::from_env`], the results bucket by `ACTIONDO_RESULTS_BUCKET`.
    pub fn from_sdk_config(config: &SdkConfig) -> Result<Self, StoreError> {
        let settings = crate::config::Settings::from_env();
        Self::new(Self::client_for(config), Tables::from_settings(&settings)?)
            .with_results_bucket(config, &settings)
    }

    /// A store over a client built from `config` with the store's timeouts, and these
    /// tables (tests and local stacks with their own table names).
    pub fn with_tables(config: &SdkConfig, tables: Tables) -> Self {
        Self::new(Self::client_for(config), tables)
    }

    /// How long the SDK waits for the connection to DynamoDB (the SDK's default).
    pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(3_100);

    /// How long one DynamoDB request may take before the SDK abandons it and retries it
    /// (standard retry mode: 3 attempts; a retried `TransactWriteItems` keeps its
    /// client request token, so it cannot apply twice). The SDK sets no such limit: a
    /// stalled connection would hold an execution until the function's timeout.
    pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

    /// The DynamoDB client configuration of [`from_env`](Self::from_env) and
    /// [`from_sdk_config`](Self::from_sdk_config): `config` with [`Self::CONNECT_TIMEOUT`]
    /// and [`Self::ATTEMPT_TIMEOUT`].
    pub fn client_config(config: &SdkConfig) -> aws_sdk_dynamodb::Config {
        aws_sdk_dynamodb::config::Builder::from(config)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Self::CONNECT_TIMEOUT)
                    .operation_attempt_timeout(Self::ATTEMPT_TIMEOUT)
                    .build(),
            )
            .build()
    }

    fn client_for(config: &SdkConfig) -> Client {
        Client::from_conf(Self::client_config(config))
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table names.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Create the three tables with the keys, GSIs and TTL of docs/architecture.md §5, on-demand
    /// billing; tables that exist already are left as they are. For local stacks and tests
    /// (in AWS, `template.yaml` creates them).
    pub async fn create_tables(&self) -> Result<(), StoreError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_err)
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(build_err)
        };
        let gsi = |index: &str, hash: &str| -> Result<GlobalSecondaryIndex, StoreError> {
            GlobalSecondaryIndex::builder()
                .index_name(index)
                .key_schema(key(hash, KeyType::Hash)?)
                .key_schema(key("timestamp", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(build_err)
        };
        let requests = [
            self.client
                .create_table()
                .table_name(&self.tables.idempotency)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(attr("id")?)
                .key_schema(key("id", KeyType::Hash)?),
            self.client
                .create_table()
                .table_name(&self.tables.audit)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(attr("execution")?)
                .attribute_definitions(attr("seq")?)
                .attribute_definitions(attr("type")?)
                .attribute_definitions(attr("timestamp")?)
                .attribute_definitions(attr("correlation_id")?)
                .key_schema(key("execution", KeyType::Hash)?)
                .key_schema(key("seq", KeyType::Range)?)
                .global_secondary_indexes(gsi("by-type", "type")?)
                .global_secondary_indexes(gsi("by-correlation", "correlation_id")?),
            self.client
                .create_table()
                .table_name(&self.tables.entities)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(attr("pk")?)
                .attribute_definitions(attr("sk")?)
                .key_schema(key("pk", KeyType::Hash)?)
                .key_schema(key("sk", KeyType::Range)?),
        ];
        for request in requests {
            match request.send().await {
                Ok(_) => {}
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_in_use_exception()) => {}
                Err(err) => return Err(sdk_err("CreateTable", err)),
            }
        }
        for table in [
            &self.tables.idempotency,
            &self.tables.audit,
            &self.tables.entities,
        ] {
            self.wait_active(table).await?;
        }
        let ttl = self
            .client
            .update_time_to_live()
            .table_name(&self.tables.idempotency)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("expires_at_s")
                    .build()
                    .map_err(build_err)?,
            )
            .send()
            .await;
        match ttl {
            Ok(_) => Ok(()),
            // Enabling TTL twice is refused with a ValidationException; it is on already.
            Err(err) if format!("{err:?}").contains("TimeToLive is already enabled") => Ok(()),
            Err(err) => Err(sdk_err("UpdateTimeToLive", err)),
        }
    }

    async fn wait_active(&self, table: &str) -> Result<(), StoreError> {
        for _ in 0..120 {
            let described = self
                .client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| sdk_err("DescribeTable", e))?;
            if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        Err(StoreError::Unavailable {
            message: format!("table {table} did not become ACTIVE within a minute"),
            source: None,
        })
    }

    async fn audit_page(
        &self,
        query: &AuditQuery,
    ) -> Result<aws_sdk_dynamodb::operation::query::QueryOutput, StoreError> {
        let limit = i32::try_from(query.page_size()).unwrap_or(100);
        let request = self
            .client
            .query()
            .table_name(&self.tables.audit)
            .scan_index_forward(false)
            .limit(limit);
        // (index, partition attribute, sort attribute, partition value, lower bound of the sort key)
        let (index, partition, sort, value, since) = match &query.filter {
            AuditFilter::Execution(execution) => {
                // seq starts with the 13-digit time, so `since` bounds the sort key.
                let since = query
                    .since
                    .as_deref()
                    .map(|ts| {
                        chrono::DateTime::parse_from_rfc3339(ts)
                            .map(|t| format!("{:013}", t.timestamp_millis()))
                            .map_err(|e| StoreError::InvalidRequest(format!("since {ts:?}: {e}")))
                    })
                    .transpose()?;
                (None, "execution", "seq", execution, since)
            }
            AuditFilter::Type(name) => (
                Some("by-type"),
                "type",
                "timestamp",
                name,
                query.since.clone(),
            ),
            AuditFilter::Correlation(id) => (
                Some("by-correlation"),
                "correlation_id",
                "timestamp",
                id,
                query.since.clone(),
            ),
            AuditFilter::All => {
                return Err(StoreError::InvalidRequest(
                    "listing the audit trail from DynamoDB needs a filter: an action type, a correlation id or an execution"
                        .into(),
                ));
            }
        };
        let mut request = request
            .set_index_name(index.map(str::to_owned))
            .expression_attribute_names("#pk", partition)
            .expression_attribute_values(":pk", s(value));
        request = match since {
            // DynamoDB refuses empty strings in key conditions: bound the sort key only when asked.
            Some(since) => request
                .key_condition_expression("#pk = :pk AND #sk >= :since")
                .expression_attribute_names("#sk", sort)
                .expression_attribute_values(":since", s(since)),
            None => request.key_condition_expression("#pk = :pk"),
        };
        let request = match &query.cursor {
            Some(cursor) => request.set_exclusive_start_key(Some(decode_cursor(cursor)?)),
            None => request,
        };
        request.send().await.map_err(|e| sdk_err("Query", e))
    }
}

fn encode_cursor(key: &Item) -> String {
    let map: serde_json::Map<String, Value> = key
        .iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|v| (k.clone(), Value::String(v.clone()))))
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Value::Object(map).to_string())
}

fn decode_cursor(cursor: &str) -> Result<Item, StoreError> {
    let invalid = || StoreError::InvalidRequest(format!("invalid audit cursor {cursor:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    let map: HashMap<String, String> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    Ok(map.into_iter().map(|(k, v)| (k, s(v))).collect())
}

#[async_trait]
impl Store for DynamoStore {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        limits::check_claim(claim).map_err(|e| StoreError::Refused(e.to_string()))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.idempotency)
            .key("id", s(&claim.id))
            .update_expression(
                "SET #status = :in_progress, payload_hash = :hash, lease_owner = :owner, \
                 lease_expires_at_ms = :lease, expires_at_s = :expires, created_at_ms = :now_ms, \
                 attempt = if_not_exists(attempt, :zero) + :one \
                 REMOVE #result, #error, completed_at_ms",
            )
            .condition_expression(
                "attribute_not_exists(id) OR expires_at_s < :now_s OR \
                 (#status = :in_progress AND lease_expires_at_ms < :now_ms AND payload_hash = :hash)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#result", "result")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":in_progress", s(RecordStatus::InProgress.as_str()))
            .expression_attribute_values(":hash", s(&claim.payload_hash))
            .expression_attribute_values(":owner", s(&claim.lease_owner))
            .expression_attribute_values(":lease", n(claim.lease_expires_at_ms))
            .expression_attribute_values(":expires", n(claim.expires_at_s))
            .expression_attribute_values(":now_ms", n(claim.now_ms))
            .expression_attribute_values(":now_s", n(claim.now_ms.div_euclid(1000)))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => {
                let old = output
                    .attributes()
                    .filter(|a| !a.is_empty())
                    .map(record_from_item)
                    .transpose()?;
                let old_attempt = old.as_ref().map_or(0, |r| r.attempt);
                let taken_over = old.as_ref().is_some_and(IdempotencyRecord::is_abandoned);
                Ok(ClaimOutcome::Claimed {
                    attempt: old_attempt.saturating_add(1),
                    taken_over,
                })
            }
            Err(SdkError::ServiceError(service)) => match service.err() {
                UpdateItemError::ConditionalCheckFailedException(failed) => {
                    match failed.item() {
                        Some(item) => Ok(ClaimOutcome::Existing(record_from_item(item)?)),
                        // An emulator without ReturnValuesOnConditionCheckFailure: read it.
                        None => match self.get_record(&claim.id).await? {
                            Some(record) => Ok(ClaimOutcome::Existing(record)),
                            None => Err(StoreError::Unavailable {
                                message: format!("{} changed during the claim", claim.id),
                                source: None,
                            }),
                        },
                    }
                }
                _ => Err(sdk_err(
                    "UpdateItem (claim)",
                    SdkError::ServiceError(service),
                )),
            },
            Err(err) => Err(sdk_err("UpdateItem (claim)", err)),
        }
    }

    async fn commit(&self, commit: &Commit) -> Result<CommitOutcome, StoreError> {
        limits::check_commit(commit).map_err(|e| StoreError::Refused(e.to_string()))?;
        let mut items: Vec<TransactWriteItem> = Vec::with_capacity(commit.writes.len() + 2);
        let owner_condition = "#status = :in_progress AND lease_owner = :owner";
        match &commit.record {
            RecordWrite::Finish {
                id,
                lease_owner,
                status,
                result,
                error,
                completed_at_ms,
                expires_at_s,
            } => {
                let mut set = vec![
                    "#status = :status",
                    "completed_at_ms = :completed",
                    "expires_at_s = :expires",
                ];
                let mut update = Update::builder()
                    .table_name(&self.tables.idempotency)
                    .key("id", s(id))
                    .condition_expression(owner_condition)
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(
                        ":in_progress",
                        s(RecordStatus::InProgress.as_str()),
                    )
                    .expression_attribute_values(":owner", s(lease_owner))
                    .expression_attribute_values(":status", s(status.as_str()))
                    .expression_attribute_values(":completed", n(completed_at_ms))
                    .expression_attribute_values(":expires", n(expires_at_s));
                if let Some(result) = result {
                    set.push("#result = :result");
                    update = update
                        .expression_attribute_names("#result", "result")
                        .expression_attribute_values(":result", result_attr(result));
                }
                if let Some(error) = error {
                    set.push("#error = :error");
                    update = update
                        .expression_attribute_names("#error", "error")
                        .expression_attribute_values(":error", s(error));
                }
                let update = update
                    .update_expression(format!("SET {}", set.join(", ")))
                    .build()
                    .map_err(build_err)?;
                items.push(TransactWriteItem::builder().update(update).build());
            }
            RecordWrite::Release { id, lease_owner } => {
                let update = Update::builder()
                    .table_name(&self.tables.idempotency)
                    .key("id", s(id))
                    .update_expression("SET lease_expires_at_ms = :released")
                    .condition_expression(owner_condition)
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(
                        ":in_progress",
                        s(RecordStatus::InProgress.as_str()),
                    )
                    .expression_attribute_values(":owner", s(lease_owner))
                    .expression_attribute_values(":released", n(RELEASED_LEASE_MS))
                    .build()
                    .map_err(build_err)?;
                items.push(TransactWriteItem::builder().update(update).build());
            }
            RecordWrite::Insert { record, now_ms } => {
                let put = Put::builder()
                    .table_name(&self.tables.idempotency)
                    .set_item(Some(record_to_item(record)))
                    .condition_expression("attribute_not_exists(id) OR expires_at_s < :now_s")
                    .expression_attribute_values(":now_s", n(now_ms.div_euclid(1000)))
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()
                    .map_err(build_err)?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            RecordWrite::None => {}
        }
        let audit_index = items.len();
        let audit = Put::builder()
            .table_name(&self.tables.audit)
            .set_item(Some(audit_to_item(&commit.audit)))
            .condition_expression("attribute_not_exists(execution)")
            .build()
            .map_err(build_err)?;
        items.push(TransactWriteItem::builder().put(audit).build());
        let first_write = items.len();
        for write in &commit.writes {
            let (condition, value) = entity_condition(write.expect());
            let item = match write {
                StagedWrite::Put { key, doc, .. } => {
                    let mut update = Update::builder()
                        .table_name(&self.tables.entities)
                        .set_key(Some(entity_key(key)))
                        .update_expression("SET #doc = :doc ADD #version :one")
                        .expression_attribute_names("#doc", "doc")
                        .expression_attribute_names("#version", "version")
                        .expression_attribute_values(":doc", json_to_attr(doc))
                        .expression_attribute_values(":one", n(1))
                        .set_condition_expression(condition.map(str::to_owned));
                    if let Some((name, v)) = value {
                        update = update.expression_attribute_values(name, v);
                    }
                    TransactWriteItem::builder()
                        .update(update.build().map_err(build_err)?)
                        .build()
                }
                StagedWrite::Delete { key, .. } => {
                    let mut delete = Delete::builder()
                        .table_name(&self.tables.entities)
                        .set_key(Some(entity_key(key)))
                        .set_condition_expression(condition.map(str::to_owned));
                    if let Some((name, v)) = value {
                        delete = delete
                            .expression_attribute_names("#version", "version")
                            .expression_attribute_values(name, v);
                    }
                    TransactWriteItem::builder()
                        .delete(delete.build().map_err(build_err)?)
                        .build()
                }
            };
            items.push(item);
        }

        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(commit_token(commit))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(CommitOutcome::Committed),
            Err(err) => err,
        };
        let reasons = match err.as_service_error() {
            Some(e) if e.is_transaction_canceled_exception() => match e {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => c.cancellation_reasons().to_vec(),
                _ => Vec::new(),
            },
            _ => return Err(sdk_err("TransactWriteItems", err)),
        };
        let failed = reasons
            .iter()
            .enumerate()
            .find(|(_, r)| r.code().is_some_and(|c| c != "None"));
        match failed {
            Some((i, reason)) if reason.code() == Some("ConditionalCheckFailed") => {
                if i >= first_write {
                    return Ok(CommitOutcome::EntityConflict {
                        index: i - first_write,
                    });
                }
                if i == audit_index {
                    return Err(StoreError::Corrupt(format!(
                        "audit record {} {} exists already",
                        commit.audit.execution, commit.audit.seq
                    )));
                }
                match &commit.record {
                    RecordWrite::Insert { record, .. } => {
                        let existing = match reason.item() {
                            Some(item) if !item.is_empty() => Some(record_from_item(item)?),
                            // An emulator that leaves the item out: read it.
                            _ => self.get_record(&record.id).await?,
                        };
                        match existing {
                            Some(existing) => Ok(CommitOutcome::Exists(existing)),
                            None => Err(StoreError::Unavailable {
                                message: format!("{} changed during the commit", record.id),
                                source: None,
                            }),
                        }
                    }
                    _ => Ok(CommitOutcome::LeaseLost),
                }
            }
            // Another transaction touched one of our entities at the same moment.
            Some((i, reason))
                if i >= first_write && reason.code() == Some("TransactionConflict") =>
            {
                Ok(CommitOutcome::EntityConflict {
                    index: i - first_write,
                })
            }
            _ => Err(sdk_err("TransactWriteItems", err)),
        }
    }

    async fn put_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        limits::check_audit(record).map_err(|e| StoreError::Refused(e.to_string()))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.audit)
            .set_item(Some(audit_to_item(record)))
            .condition_expression("attribute_not_exists(execution)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Corrupt(format!(
                    "audit record {} {} exists already; audit records are never overwritten",
                    record.execution, record.seq
                )))
            }
            Err(err) => Err(sdk_err("PutItem (audit)", err)),
        }
    }

    /// `BatchWriteItem`, 25 records a request, resending what DynamoDB leaves
    /// unprocessed ([`BATCH_WRITE_SENDS`]). `BatchWriteItem` takes no condition: a record
    /// is never overwritten because its sort key is unique (time, attempt, status, request
    /// id and 32 random bits, [`crate::audit::seq`]), not because DynamoDB checks it.
    async fn put_audits(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        for record in records {
            limits::check_audit(record).map_err(|e| StoreError::Refused(e.to_string()))?;
        }
        for chunk in records.chunks(BATCH_WRITE_ITEMS) {
            let requests = chunk
                .iter()
                .map(|record| {
                    PutRequest::builder()
                        .set_item(Some(audit_to_item(record)))
                        .build()
                        .map(|put| WriteRequest::builder().put_request(put).build())
                        .map_err(build_err)
                })
                .collect::<Result<Vec<_>, _>>()?;
            write_until_processed(requests, |pending| async move {
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.tables.audit, pending)
                    .send()
                    .await
                    .map_err(|e| sdk_err("BatchWriteItem (audit)", e))?;
                Ok(output
                    .unprocessed_items()
                    .and_then(|items| items.get(&self.tables.audit))
                    .cloned()
                    .unwrap_or_default())
            })
            .await?;
        }
        Ok(())
    }

    async fn get_record(&self, id: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.idempotency)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        output.item().map(record_from_item).transpose()
    }

    async fn get_entity(&self, key: &EntityKey) -> Result<Option<Entity>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.entities)
            .set_key(Some(entity_key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        output
            .item()
            .map(|item| {
                Ok(Entity {
                    key: key.clone(),
                    doc: item
                        .get("doc")
                        .map(attr_to_json)
                        .transpose()?
                        .unwrap_or(Value::Null),
                    version: get_n(item, "version")?,
                })
            })
            .transpose()
    }

    async fn put_entity(
        &self,
        key: &EntityKey,
        doc: &Value,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        // The update of a commit's staged put, on its own: one `UpdateItem`.
        let (condition, value) = entity_condition(expect);
        let mut update = self
            .client
            .update_item()
            .table_name(&self.tables.entities)
            .set_key(Some(entity_key(key)))
            .update_expression("SET #doc = :doc ADD #version :one")
            .expression_attribute_names("#doc", "doc")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":doc", json_to_attr(doc))
            .expression_attribute_values(":one", n(1))
            .set_condition_expression(condition.map(str::to_owned));
        if let Some((name, v)) = value {
            update = update.expression_attribute_values(name, v);
        }
        match update.send().await {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(sdk_err("UpdateItem (entity)", err)),
        }
    }

    fn objects(&self) -> Option<&dyn crate::store::ObjectStore> {
        self.objects.as_deref()
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let output = self.audit_page(query).await?;
        let mut records = output
            .items()
            .iter()
            .map(audit_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        // Completion outputs stored once, in their idempotency record: one read per
        // execution of the page that refers to one.
        let ids = crate::audit::referenced_records(&records);
        let held = futures::future::try_join_all(ids.iter().map(|id| self.get_record(id))).await?;
        let held: HashMap<&str, IdempotencyRecord> = ids
            .iter()
            .map(String::as_str)
            .zip(held)
            .filter_map(|(id, record)| record.map(|r| (id, r)))
            .collect();
        crate::audit::resolve_outputs(&mut records, |id| Ok(held.get(id).cloned()))?;
        Ok(AuditPage {
            records,
            next_cursor: output.last_evaluated_key().map(encode_cursor),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_survives_the_attribute_value_round_trip() {
        let doc = serde_json::json!({"a": [1, 2.5, -3], "b": {"c": null, "d": true}, "e": "x", "f": 18446744073709551615u64});
        assert_eq!(attr_to_json(&json_to_attr(&doc)).expect("converts"), doc);
    }

    /// A DynamoDB endpoint that accepts connections and never answers: a request of the
    /// store fails as `Unavailable` after [`DynamoStore::ATTEMPT_TIMEOUT`] instead of
    /// waiting for ever (retries off, so the test takes one attempt: 5 s).
    #[tokio::test]
    async fn a_stalled_request_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let url = format!("http://{}", listener.local_addr().expect("has an address"));
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let vars: HashMap<&str, String> = HashMap::from([
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_ENDPOINT_URL_DYNAMODB", url),
        ]);
        let sdk = crate::aws::sdk_config_from(move |name| vars.get(name).cloned())
            .expect("complete configuration");
        let config = DynamoStore::client_config(&sdk);
        assert_eq!(
            config
                .timeout_config()
                .and_then(|t| t.operation_attempt_timeout()),
            Some(DynamoStore::ATTEMPT_TIMEOUT)
        );
        let config = config
            .to_builder()
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .build();
        let store = DynamoStore::new(Client::from_conf(config), Tables::with_prefix("t"));
        let outcome = tokio::time::timeout(Duration::from_secs(60), store.get_record("a#k"))
            .await
            .expect("the store gives up before the test does");
        match outcome {
            Err(StoreError::Unavailable { message, .. }) => {
                assert!(message.contains("timed out"), "{message}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        silent.abort();
    }

    fn put(n: usize) -> WriteRequest {
        let item = Item::from([
            ("execution".into(), s("a#k")),
            ("seq".into(), s(n.to_string())),
        ]);
        WriteRequest::builder()
            .put_request(
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .expect("item"),
            )
            .build()
    }

    /// Unprocessed items are sent again, and only they, until none is left; items left
    /// after the last send are an error that says how many.
    #[tokio::test(start_paused = true)]
    async fn unprocessed_batch_items_are_sent_again() {
        let sends = std::sync::Mutex::new(Vec::new());
        let outcome = write_until_processed((0..10).map(put).collect(), |pending| {
            let n = pending.len();
            sends.lock().expect("sends").push(n);
            // DynamoDB processes the first half of each send (rounded up).
            async move { Ok(pending.into_iter().skip(n.div_ceil(2)).collect()) }
        })
        .await;
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(*sends.lock().expect("sends"), [10, 5, 2, 1]);

        let sends = std::sync::Mutex::new(0);
        let outcome = write_until_processed((0..3).map(put).collect(), |pending| {
            *sends.lock().expect("sends") += 1;
            async move { Ok(pending) }
        })
        .await;
        match outcome {
            Err(StoreError::Unavailable { message, .. }) => {
                assert!(message.contains("3 audit records"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(*sends.lock().expect("sends"), BATCH_WRITE_SENDS);
    }

    #[test]
    fn cursors_round_trip() {
        let key = Item::from([
            ("execution".into(), s("a#k")),
            ("seq".into(), s("0001#001")),
        ]);
        assert_eq!(decode_cursor(&encode_cursor(&key)).expect("decodes"), key);
        assert!(decode_cursor("not a cursor").is_err());
    }
}

//! Test support (feature `testing`): [`CallCounter`], the DynamoDB round trips of a client
//! (and of an S3 client given the same counter) and the write capacity DynamoDB reports
//! for them.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut,
    BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::batch_write_item::{BatchWriteItemInput, BatchWriteItemOutput};
use aws_sdk_dynamodb::operation::delete_item::{DeleteItemInput, DeleteItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsInput, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;

#[derive(Debug, Default)]
struct Counts {
    /// The operation of every request sent, in order.
    calls: Vec<String>,
    /// The write capacity units reported by each successful write, in order.
    write_units: Vec<(String, f64)>,
}

/// Counts the DynamoDB requests a client sends (every attempt, retries included), by
/// operation name, and sums the write capacity units DynamoDB reports for them. Add it
/// to a client config with `.interceptor(counter.clone())`.
///
/// It asks every write for `ReturnConsumedCapacity = TOTAL` (which changes nothing else
/// in the request). A write refused by its condition consumes capacity too, but no
/// response reports it: [`write_units`](Self::write_units) holds what was reported.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<Mutex<Counts>>);

impl CallCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The operations sent so far, in order (`PutItem`, `TransactWriteItems`, …).
    pub fn calls(&self) -> Vec<String> {
        self.counts().calls.clone()
    }

    /// How many requests were sent.
    pub fn count(&self) -> usize {
        self.counts().calls.len()
    }

    /// The write capacity units each successful write reported, in order, by operation.
    pub fn write_units(&self) -> Vec<(String, f64)> {
        self.counts().write_units.clone()
    }

    /// The write capacity units reported since the last reset, in all.
    pub fn total_write_units(&self) -> f64 {
        self.counts().write_units.iter().map(|(_, u)| u).sum()
    }

    /// Count one request of `operation` sent by something other than an SDK client.
    pub fn record(&self, operation: &str) {
        self.counts().calls.push(operation.to_owned());
    }

    /// An observer for [`crate::aws::signed::SignedClient::observe`] that counts here the
    /// requests of a signed client (the S3 result objects).
    pub fn observer(&self) -> crate::aws::signed::Observer {
        let counter = self.clone();
        std::sync::Arc::new(move |operation| counter.record(operation))
    }

    /// Back to zero.
    pub fn reset(&self) {
        let mut counts = self.counts();
        counts.calls.clear();
        counts.write_units.clear();
    }
}

fn units<'a>(capacity: impl IntoIterator<Item = &'a ConsumedCapacity>) -> f64 {
    capacity
        .into_iter()
        .map(|c| {
            c.write_capacity_units()
                .or(c.capacity_units())
                .unwrap_or(0.0)
        })
        .sum()
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "actiondo.CallCounter"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input_mut();
        let total = Some(ReturnConsumedCapacity::Total);
        if let Some(i) = input.downcast_mut::<PutItemInput>() {
            i.return_consumed_capacity = total;
        } else if let Some(i) = input.downcast_mut::<UpdateItemInput>() {
            i.return_consumed_capacity = total;
        } else if let Some(i) = input.downcast_mut::<DeleteItemInput>() {
            i.return_consumed_capacity = total;
        } else if let Some(i) = input.downcast_mut::<TransactWriteItemsInput>() {
            i.return_consumed_capacity = total;
        } else if let Some(i) = input.downcast_mut::<BatchWriteItemInput>() {
            i.return_consumed_capacity = total;
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // DynamoDB names the operation in a header; other SDK clients given this counter
        // by their operation metadata.
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .or_else(|| {
                cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
                    .map(|m| m.name())
            })
            .unwrap_or("unknown")
            .to_owned();
        self.counts().calls.push(operation);
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Ok(output) = context.output_or_error() else {
            return Ok(());
        };
        let reported = if let Some(o) = output.downcast_ref::<PutItemOutput>() {
            Some(("PutItem", units(o.consumed_capacity())))
        } else if let Some(o) = output.downcast_ref::<UpdateItemOutput>() {
            Some(("UpdateItem", units(o.consumed_capacity())))
        } else if let Some(o) = output.downcast_ref::<DeleteItemOutput>() {
            Some(("DeleteItem", units(o.consumed_capacity())))
        } else if let Some(o) = output.downcast_ref::<TransactWriteItemsOutput>() {
            Some(("TransactWriteItems", units(o.consumed_capacity())))
        } else {
            output
                .downcast_ref::<BatchWriteItemOutput>()
                .map(|o| ("BatchWriteItem", units(o.consumed_capacity())))
        };
        if let Some((operation, units)) = reported {
            self.counts()
                .write_units
                .push((operation.to_owned(), units));
        }
        Ok(())
    }
}

//! Idempotency keys for every creating endpoint (as zero-to-production's `idempotency/`):
//! a retried request with the same key gets the first answer again instead of creating a
//! second resource.
//!
//! - A key belongs to its caller: [`IdempotencyKey::scope`] names a customer or a staff
//!   role, so one customer can neither see nor block another's keys.
//! - The request is compared by the SHA-256 of its operation and its parsed form (as
//!   canonical JSON: object keys sorted), never of a debug rendering.
//! - [`replay`] claims the key in the use case's own transaction, before its work, and
//!   [`record`] stores the answer before it commits. A concurrent request with the same key waits on that
//!   claim and then replays the answer: one creation, never a 500, never a 409 for an
//!   identical request. The same key with another request is a conflict.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};

use crate::schema::idempotency_keys;

/// A caller's key: the `Idempotency-Key` header, in the caller's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    scope: String,
    key: String,
}

impl IdempotencyKey {
    /// `key` (1 to 200 characters, checked by the caller) in the scope of `principal`:
    /// its customer for a customer key, its role for staff.
    pub fn new(principal: &crate::auth::Principal, key: impl Into<String>) -> IdempotencyKey {
        let scope = match principal.customer_id {
            Some(customer) => format!("customer:{customer}"),
            None => format!("role:{}", principal.role.as_str()),
        };
        IdempotencyKey {
            scope,
            key: key.into(),
        }
    }
}

impl IdempotencyKey {
    /// A business reference that is its operation's key whoever sends it (a payment's bank
    /// or processor reference, unique in its table): one scope per kind of reference, so
    /// that the same payment reported by two staff keys is one payment.
    pub fn of_reference(kind: &str, reference: impl Into<String>) -> IdempotencyKey {
        IdempotencyKey {
            scope: format!("reference:{kind}"),
            key: reference.into(),
        }
    }
}

/// The key was used before for another request (another operation or other values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the idempotency key was already used for a different request")]
pub struct KeyReused;

/// SHA-256 of `operation` and the canonical JSON of `request`.
pub fn request_hash(operation: &str, request: &impl Serialize) -> Vec<u8> {
    // a `Value`'s objects are sorted maps: the same request always gives the same bytes
    let canonical = serde_json::to_value(request)
        .and_then(|v| serde_json::to_vec(&v))
        .unwrap_or_default();
    let mut hash = Sha256::new();
    hash.update(operation.as_bytes());
    hash.update([0]);
    hash.update(&canonical);
    hash.finalize().to_vec()
}

/// What a claim found.
enum Claim {
    /// The key is new: this request does the work.
    Fresh,
    /// The key answered the same request before: that answer.
    Replay(serde_json::Value),
}

/// Claims `key` for `hash` inside the caller's transaction. A concurrent claim of the same
/// key waits here until the first one's transaction ends.
async fn claim(
    c: &mut AsyncPgConnection,
    key: &IdempotencyKey,
    operation: &str,
    hash: &[u8],
    now: DateTime<Utc>,
) -> Result<Result<Claim, KeyReused>, diesel::result::Error> {
    let claimed = diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::scope.eq(&key.scope),
            idempotency_keys::key.eq(&key.key),
            idempotency_keys::operation.eq(operation),
            idempotency_keys::request_hash.eq(hash),
            idempotency_keys::created_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(c)
        .await?;
    if claimed == 1 {
        return Ok(Ok(Claim::Fresh));
    }
    let (first, response): (Vec<u8>, Option<serde_json::Value>) = idempotency_keys::table
        .find((&key.scope, &key.key))
        .select((idempotency_keys::request_hash, idempotency_keys::response))
        .first(c)
        .await?;
    Ok(match response {
        Some(answer) if first == hash => Ok(Claim::Replay(answer)),
        _ => Err(KeyReused),
    })
}

/// The first step of a keyed use case, inside its transaction and before its work:
/// claims `key` for this `request`. `Some(answer)` replays an earlier identical request's
/// answer (the use case returns it as is); `None` means the work is this request's, and
/// [`record`] must store its answer before the transaction commits. Without a key: `None`.
pub async fn replay<T, E>(
    c: &mut AsyncPgConnection,
    key: Option<&IdempotencyKey>,
    operation: &str,
    request: &impl Serialize,
    now: DateTime<Utc>,
) -> Result<Option<T>, E>
where
    T: DeserializeOwned,
    E: From<diesel::result::Error> + From<KeyReused>,
{
    let Some(key) = key else {
        return Ok(None);
    };
    match claim(c, key, operation, &request_hash(operation, request), now).await? {
        Ok(Claim::Fresh) => Ok(None),
        Ok(Claim::Replay(answer)) => serde_json::from_value(answer)
            .map(Some)
            .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)).into()),
        Err(reused) => Err(reused.into()),
    }
}

/// The last step of a keyed use case, inside its transaction: stores its `answer` under
/// the key [`replay`] claimed.
pub async fn record(
    c: &mut AsyncPgConnection,
    key: Option<&IdempotencyKey>,
    answer: &impl Serialize,
) -> Result<(), diesel::result::Error> {
    let Some(key) = key else {
        return Ok(());
    };
    let stored = serde_json::to_value(answer)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    diesel::update(idempotency_keys::table.find((&key.scope, &key.key)))
        .set(idempotency_keys::response.eq(stored))
        .execute(c)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_of_the_parsed_request_whatever_its_field_order() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b": 1, "a": "x"}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a": "x", "b": 1}"#).unwrap();
        assert_eq!(request_hash("op", &a), request_hash("op", &b));
        assert_ne!(request_hash("op", &a), request_hash("other", &a));
        let c: serde_json::Value = serde_json::from_str(r#"{"a": "x", "b": 2}"#).unwrap();
        assert_ne!(request_hash("op", &a), request_hash("op", &c));
    }
}

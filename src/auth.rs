//! API keys: bearer tokens stored as SHA-256 digests, each with one role; a `customer` key
//! is bound to one customer and sees only that customer's resources.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::schema::api_keys;

crate::text_enum! {
    #[derive(
        Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, clap::ValueEnum,
    )]
    #[serde(rename_all = "snake_case")]
    pub enum Role {
        Admin = "admin",
        Finance = "finance",
        Ticketing = "ticketing",
        Customer = "customer",
    }
}

/// Who is calling: the key's role and, for a customer key, its customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: Uuid,
    pub role: Role,
    pub customer_id: Option<Uuid>,
}

impl Principal {
    /// Whether this principal may see resources of `customer`: staff roles see every
    /// customer, a customer key only its own.
    pub fn can_see_customer(&self, customer: Uuid) -> bool {
        self.role != Role::Customer || self.customer_id == Some(customer)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("a customer key needs a customer, and only a customer key may have one")]
    CustomerBinding,
    #[error("customer {0} does not exist")]
    UnknownCustomer(Uuid),
    #[error("a label is 1 to {MAX_LABEL_CHARS} characters")]
    Label,
    #[error("key {0} does not exist")]
    NotFound(Uuid),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// The longest label a key may carry.
pub const MAX_LABEL_CHARS: usize = 200;

/// A key as it is listed: never its secret, nor the secret's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct KeyView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub role: Role,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub customer_id: Option<Uuid>,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it stopped working; null while it works.
    pub revoked_at: Option<DateTime<Utc>>,
}

fn digest(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Creates a key and returns it with its secret in clear, the only time it is ever shown.
pub async fn create_key(
    conn: &mut AsyncPgConnection,
    role: Role,
    customer_id: Option<Uuid>,
    label: Option<&str>,
) -> Result<(KeyView, String), KeyError> {
    if (role == Role::Customer) != customer_id.is_some() {
        return Err(KeyError::CustomerBinding);
    }
    let label = label.map(str::trim);
    if label.is_some_and(|l| l.is_empty() || l.chars().count() > MAX_LABEL_CHARS) {
        return Err(KeyError::Label);
    }
    if let Some(customer) = customer_id {
        let known = diesel::select(diesel::dsl::exists(
            crate::schema::customers::table.find(customer),
        ))
        .get_result::<bool>(conn)
        .await?;
        if !known {
            return Err(KeyError::UnknownCustomer(customer));
        }
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let key = format!("gl_{}_{}", role.as_str(), hex::encode(secret));
    let view = diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(Uuid::now_v7()),
            api_keys::key_hash.eq(digest(&key)),
            api_keys::role.eq(role),
            api_keys::customer_id.eq(customer_id),
            api_keys::label.eq(label),
        ))
        .returning(KeyView::as_returning())
        .get_result(conn)
        .await?;
    Ok((view, key))
}

/// Keys in id order (their creation order: ids are UUIDv7) after `after`.
pub async fn list_keys(
    conn: &mut AsyncPgConnection,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<KeyView>, diesel::result::Error> {
    let mut q = api_keys::table
        .select(KeyView::as_select())
        .order(api_keys::id)
        .limit(limit)
        .into_boxed();
    if let Some(a) = after {
        q = q.filter(api_keys::id.gt(a));
    }
    q.load(conn).await
}

/// Revokes the key `id` now (the database's clock, as for `created_at`). Revoking a
/// revoked key changes nothing and returns it as it is, with its first `revoked_at`.
pub async fn revoke_key(conn: &mut AsyncPgConnection, id: Uuid) -> Result<KeyView, KeyError> {
    diesel::update(api_keys::table.find(id))
        .set(api_keys::revoked_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("coalesce(revoked_at, now())")))
        .returning(KeyView::as_returning())
        .get_result(conn)
        .await
        .optional()?
        .ok_or(KeyError::NotFound(id))
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_keys)]
struct KeyRow {
    id: Uuid,
    role: Role,
    customer_id: Option<Uuid>,
    revoked_at: Option<DateTime<Utc>>,
}

/// Recently resolved keys, so that the hot path does not read `api_keys` on every call.
/// Only valid keys are kept, each for at most `ttl` counted from before the read that
/// found it valid: a key revoked in the database (by the API, the CLI or SQL) stops
/// working within `ttl` in every process that shares that database.
#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    entries: RwLock<HashMap<Vec<u8>, (Principal, Instant)>>,
}

/// At most this many keys are cached (far more than a deployment has).
const MAX_CACHED_KEYS: usize = 10_000;

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        KeyCache {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The principal of a recently seen valid key, without touching the database.
    pub fn cached(&self, key: &str) -> Option<Principal> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&digest(key))
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(p, _)| p.clone())
    }

    /// Drops the key `id` from this cache: a key revoked through this process stops
    /// working here at once (elsewhere, within the TTL).
    pub fn forget(&self, id: Uuid) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (p, _)| p.key_id != id);
    }

    /// The principal for a presented key, or `None` when the key is unknown or revoked.
    pub async fn resolve(
        &self,
        conn: &mut AsyncPgConnection,
        key: &str,
    ) -> Result<Option<Principal>, diesel::result::Error> {
        let hash = digest(key);
        // before the read: the entry may not outlive a revocation the read missed by `ttl`
        let read_at = Instant::now();
        let row: Option<KeyRow> = api_keys::table
            .filter(api_keys::key_hash.eq(&hash))
            .select(KeyRow::as_select())
            .first(conn)
            .await
            .optional()?;
        let principal = row.filter(|k| k.revoked_at.is_none()).map(|k| Principal {
            key_id: k.id,
            role: k.role,
            customer_id: k.customer_id,
        });
        if let Some(p) = &principal {
            let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
            if entries.len() >= MAX_CACHED_KEYS {
                entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
            }
            if entries.len() < MAX_CACHED_KEYS {
                entries.insert(hash, (p.clone(), read_at));
            }
        }
        Ok(principal)
    }
}

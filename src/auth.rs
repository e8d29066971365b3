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

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Finance,
    Ticketing,
    Customer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Finance => "finance",
            Role::Ticketing => "ticketing",
            Role::Customer => "customer",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::Finance, Role::Ticketing, Role::Customer]
            .into_iter()
            .find(|r| r.as_str() == s)
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
    #[error("a customer key needs --customer, and only a customer key may have one")]
    CustomerBinding,
    #[error("customer {0} does not exist")]
    UnknownCustomer(Uuid),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

fn digest(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Creates a key and returns it in clear, the only time it is ever shown.
pub async fn create_key(
    conn: &mut AsyncPgConnection,
    role: Role,
    customer_id: Option<Uuid>,
    label: Option<&str>,
) -> Result<(Uuid, String), KeyError> {
    if (role == Role::Customer) != customer_id.is_some() {
        return Err(KeyError::CustomerBinding);
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
    let id = Uuid::now_v7();
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(id),
            api_keys::key_hash.eq(digest(&key)),
            api_keys::role.eq(role.as_str()),
            api_keys::customer_id.eq(customer_id),
            api_keys::label.eq(label),
        ))
        .execute(conn)
        .await?;
    Ok((id, key))
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_keys)]
struct KeyRow {
    id: Uuid,
    role: String,
    customer_id: Option<Uuid>,
    revoked_at: Option<DateTime<Utc>>,
}

/// Recently resolved keys, so that the hot path does not read `api_keys` on every call.
/// Only valid keys are kept; a revoked key stops working within `ttl`.
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

    /// The principal for a presented key, or `None` when the key is unknown or revoked.
    pub async fn resolve(
        &self,
        conn: &mut AsyncPgConnection,
        key: &str,
    ) -> Result<Option<Principal>, diesel::result::Error> {
        let hash = digest(key);
        let row: Option<KeyRow> = api_keys::table
            .filter(api_keys::key_hash.eq(&hash))
            .select(KeyRow::as_select())
            .first(conn)
            .await
            .optional()?;
        let principal = row.and_then(|k| {
            k.revoked_at.is_none().then_some(())?;
            Some(Principal {
                key_id: k.id,
                role: Role::parse(&k.role)?,
                customer_id: k.customer_id,
            })
        });
        if let Some(p) = &principal {
            let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
            if entries.len() >= MAX_CACHED_KEYS {
                entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
            }
            if entries.len() < MAX_CACHED_KEYS {
                entries.insert(hash, (p.clone(), Instant::now()));
            }
        }
        Ok(principal)
    }
}

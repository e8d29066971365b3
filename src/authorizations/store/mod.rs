//! Authorizations: gather what the customer holds, decide, hold what will be consumed —
//! all in one database transaction under the customer's row lock, so that concurrent
//! requests of one customer are decided one after the other (and no other customer waits).

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

pub use super::decision::AuthorizationRequest;
use super::decision::{
    self, Classification, Decision, Funding, Holdings, Outcome, Reason, RequestKind, ServicePrice,
};
use crate::calendar::{paris_date, BusinessHours};
use crate::catalog;
use crate::interventions;
use crate::ledger::chart::CustomerAccount;
use crate::ledger::store::{self as ledger, Settlement};
use crate::ledger::{AccountId, HoldId, HoldView, LedgerError, NewHold};
use crate::money::{round_cents, Amount, DecimalString, Unit};
use crate::schema::authorizations;
use crate::wallets::store as wallets;

mod authorize;
mod capture;

pub use authorize::*;
pub use capture::*;

/// How long a hold lasts before the hold-expiry job releases it (config).
pub const HOLD_TTL: Duration = Duration::days(7);
/// The increment when an hourly offer names none (DOMAIN.md: per started 15 minutes).
pub const DEFAULT_INCREMENT_MINUTES: i64 = 15;
pub const USAGE_HELP_OFFER: &str = "usage_help";

crate::text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum AuthorizationStatus {
        Denied = "denied",
        /// Approved; capture or void it.
        Open = "open",
        Captured = "captured",
        Voided = "voided",
        Expired = "expired",
    }
}

/// A decision, and where it stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthorizationView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    pub request_ref: String,
    pub decision: Decision,
    pub funding: Option<Funding>,
    pub reason: Reason,
    pub status: AuthorizationStatus,
    /// The first hold reserved for it (credits may span several lots: `hold_ids`).
    #[schema(value_type = Option<String>, format = Uuid)]
    pub hold_id: Option<Uuid>,
    #[schema(value_type = Vec<String>)]
    pub hold_ids: Vec<Uuid>,
    pub hold_expires_at: Option<DateTime<Utc>>,
    /// EUR excl. VAT when chargeable: per hour (`hourly`) or per unit.
    pub price: Option<DecimalString>,
    pub hourly: bool,
    /// Credits reserved when paid in credits.
    pub credits: Option<DecimalString>,
    pub take_charge_due_at: Option<DateTime<Utc>>,
    /// Minutes or units captured.
    pub captured_units: Option<DecimalString>,
    /// The intervention a chargeable capture created.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub intervention_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorizationError {
    #[error("customer {0} does not exist")]
    UnknownCustomer(Uuid),
    #[error("request_ref `{0}` was already used for a different request")]
    Conflict(String),
    #[error("authorization {0} does not exist")]
    NotFound(Uuid),
    #[error("authorization {0} is {1}")]
    WrongState(Uuid, &'static str),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Wallet(#[from] crate::wallets::WalletError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl crate::db::Retryable for AuthorizationError {
    fn is_retryable(&self) -> bool {
        match self {
            AuthorizationError::Database(e) => crate::db::is_retryable(e),
            AuthorizationError::Ledger(e) => crate::db::Retryable::is_retryable(e),
            AuthorizationError::Wallet(e) => crate::db::Retryable::is_retryable(e),
            _ => false,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = authorizations)]
struct Row {
    id: Uuid,
    customer_id: Uuid,
    request_ref: String,
    decision: Decision,
    funding: Option<Funding>,
    reason: Reason,
    status: AuthorizationStatus,
    price: Option<Decimal>,
    hourly: bool,
    offer_code: Option<String>,
    credits: Option<Decimal>,
    subscription_id: Option<Uuid>,
    hold_ids: Vec<Option<Uuid>>,
    expires_at: Option<DateTime<Utc>>,
    take_charge_due_at: Option<DateTime<Utc>>,
    captured_units: Option<Decimal>,
    created_at: DateTime<Utc>,
}

impl Row {
    fn holds(&self) -> Vec<Uuid> {
        self.hold_ids.iter().flatten().copied().collect()
    }

    fn view(self, intervention_id: Option<Uuid>) -> AuthorizationView {
        let holds = self.holds();
        AuthorizationView {
            id: self.id,
            customer_id: self.customer_id,
            request_ref: self.request_ref.clone(),
            decision: self.decision,
            funding: self.funding,
            reason: self.reason,
            status: self.status,
            hold_id: <[Uuid]>::first(&holds).copied(),
            hold_expires_at: self.expires_at.filter(|_| !holds.is_empty()),
            hold_ids: holds,
            price: self.price.map(crate::money::price),
            hourly: self.hourly,
            credits: self.credits.map(|c| DecimalString(round_cents(c))),
            take_charge_due_at: self.take_charge_due_at,
            captured_units: self.captured_units.map(|c| DecimalString(c.normalize())),
            intervention_id,
            created_at: self.created_at,
        }
    }
}

fn request_hash(req: &AuthorizationRequest) -> Vec<u8> {
    Sha256::digest(serde_json::to_string(req).unwrap_or_default().as_bytes()).to_vec()
}

async fn load(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Row, AuthorizationError> {
    let q = authorizations::table.find(id).select(Row::as_select());
    let row = if lock {
        q.for_update().first(conn).await
    } else {
        q.first(conn).await
    };
    row.optional()?.ok_or(AuthorizationError::NotFound(id))
}

pub async fn view(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<AuthorizationView, AuthorizationError> {
    let row = load(conn, id, false).await?;
    let intervention = interventions::store::of_authorization(conn, id).await?;
    Ok(row.view(intervention))
}

fn amount_of(v: Decimal, unit: Unit) -> Result<Amount, AuthorizationError> {
    Amount::new(v, unit).map_err(|e| AuthorizationError::Invalid(e.to_string()))
}

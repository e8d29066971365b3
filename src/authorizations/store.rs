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
use crate::ledger::store::{self as ledger, Settlement};
use crate::ledger::{AccountId, HoldId, HoldView, LedgerError, NewHold, Side};
use crate::money::{round_cents, Amount, DecimalString, Unit};
use crate::schema::authorizations;
use crate::wallets::store as wallets;

/// How long a hold lasts before the hold-expiry job releases it (config).
pub const HOLD_TTL: Duration = Duration::days(7);
/// Intervention time is billed per started increment of its offer's `increment_minutes`,
/// at this offer's rate.
pub const INTERVENTION_OFFER: &str = "intervention_time";
/// The increment when an hourly offer names none (DOMAIN.md: per started 15 minutes).
pub const DEFAULT_INCREMENT_MINUTES: i64 = 15;
pub const USAGE_HELP_OFFER: &str = "usage_help";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationStatus {
    Denied,
    /// Approved; capture or void it.
    Open,
    Captured,
    Voided,
    Expired,
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
    decision: String,
    funding: Option<String>,
    reason: String,
    status: String,
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

fn parse<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

fn name<T: Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl Row {
    fn status(&self) -> AuthorizationStatus {
        parse(&self.status).unwrap_or(AuthorizationStatus::Denied)
    }

    fn funding(&self) -> Option<Funding> {
        self.funding.as_deref().and_then(parse)
    }

    fn holds(&self) -> Vec<Uuid> {
        self.hold_ids.iter().flatten().copied().collect()
    }

    fn view(self, intervention_id: Option<Uuid>) -> AuthorizationView {
        let holds = self.holds();
        AuthorizationView {
            id: self.id,
            customer_id: self.customer_id,
            request_ref: self.request_ref.clone(),
            decision: parse(&self.decision).unwrap_or(Decision::Denied),
            funding: self.funding(),
            reason: parse(&self.reason).unwrap_or(Reason::NoCoverage),
            status: self.status(),
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

mod sql {
    use diesel::sql_types::{Bool, Date, Nullable, Numeric, Record, Text, Timestamptz, Uuid};

    pub type Snapshot = Record<(
        Text,
        Bool,
        Bool,
        Bool,
        Nullable<Uuid>,
        Numeric,
        Nullable<Uuid>,
        Nullable<Uuid>,
        Nullable<Uuid>,
        Numeric,
        Nullable<Numeric>,
        Nullable<Numeric>,
        Nullable<Numeric>,
    )>;

    #[diesel::declare_sql_function]
    extern "SQL" {
        /// Locks the customer, then reads its snapshot (migration 5).
        fn authorization_begin(
            customer: Uuid,
            at: Timestamptz,
            today: Date,
            service: Text,
        ) -> Snapshot;
    }
}

/// Everything the decision needs, read in one call after the customer's row is locked
/// (see the `authorization_begin` and `authorization_snapshot` functions).
struct Snapshot {
    status: String,
    free_diagnostics: bool,
    assistance_included: bool,
    maintenance: bool,
    pack_id: Option<Uuid>,
    tickets: Decimal,
    ticket_wallet: Option<Uuid>,
    ticket_used: Option<Uuid>,
    credit_used: Option<Uuid>,
    credits: Decimal,
    hourly_rate: Option<Decimal>,
    service_euros: Option<Decimal>,
    service_credits: Option<Decimal>,
}

type SnapshotRow = (
    String,
    bool,
    bool,
    bool,
    Option<Uuid>,
    Decimal,
    Option<Uuid>,
    Option<Uuid>,
    Option<Uuid>,
    Decimal,
    Option<Decimal>,
    Option<Decimal>,
    Option<Decimal>,
);

impl diesel::Queryable<sql::Snapshot, diesel::pg::Pg> for Snapshot {
    type Row = SnapshotRow;

    fn build(r: SnapshotRow) -> diesel::deserialize::Result<Self> {
        Ok(Snapshot {
            status: r.0,
            free_diagnostics: r.1,
            assistance_included: r.2,
            maintenance: r.3,
            pack_id: r.4,
            tickets: r.5,
            ticket_wallet: r.6,
            ticket_used: r.7,
            credit_used: r.8,
            credits: r.9,
            hourly_rate: r.10,
            service_euros: r.11,
            service_credits: r.12,
        })
    }
}

/// What the customer holds at `at`, the pack an appointment would use, the offer a
/// chargeable request is billed at, and the accounts a hold needs (when they exist).
async fn holdings(
    conn: &mut AsyncPgConnection,
    req: &AuthorizationRequest,
    at: DateTime<Utc>,
) -> Result<Gathered, AuthorizationError> {
    let today = paris_date(at);
    let service_code = match (req.kind, req.classification) {
        (RequestKind::ServicePurchase, _) => req.service_code.clone(),
        (_, Classification::OutOfScope(sub)) => sub.service().map(str::to_string),
        (_, Classification::UsageQuestion) => Some(USAGE_HELP_OFFER.to_string()),
        _ => None,
    };
    let snap: Snapshot = diesel::select(sql::authorization_begin(
        req.customer_id,
        at,
        today,
        service_code.clone().unwrap_or_default(),
    ))
    .get_result(conn)
    .await
    .optional()?
    .ok_or(AuthorizationError::UnknownCustomer(req.customer_id))?;
    let mut h = Holdings {
        suspended: snap.status == "suspended",
        free_diagnostics: snap.free_diagnostics,
        assistance_included: snap.assistance_included,
        maintenance: snap.maintenance,
        credits_available: snap.credits,
        tickets_available: i64::try_from(snap.tickets.trunc().mantissa()).unwrap_or(0),
        misdeclared_chargeable: true,
        hourly_rate: snap.hourly_rate.map(|r| r.normalize()),
        ..Holdings::default()
    };
    if let (Some(code), Some(euros)) = (&service_code, snap.service_euros) {
        h.service = Some(ServicePrice {
            code: code.clone(),
            euros: euros.normalize(),
            credits: snap.service_credits,
        });
    }
    let mut period = None;
    if let (Some(pack), RequestKind::Appointment) = (snap.pack_id, req.kind) {
        // under the customer's lock: what is left counts the appointments held
        let p = wallets::pack_period(conn, pack, at).await?;
        h.appointment_quota_left = Some(i64::try_from(p.left.trunc().mantissa()).unwrap_or(0));
        period = Some(p);
    }
    let charged_offer = match &h.service {
        Some(s) => Some(s.code.clone()),
        None => Some(INTERVENTION_OFFER.to_string()),
    };
    Ok(Gathered {
        holdings: h,
        charged_offer,
        snap,
        period,
    })
}

/// What an authorization is decided on, and what its holds need.
struct Gathered {
    holdings: Holdings,
    /// The offer a chargeable outcome is billed at.
    charged_offer: Option<String>,
    snap: Snapshot,
    /// An appointment's pack period.
    period: Option<wallets::PackPeriod>,
}

/// The holds an approved outcome needs, under fresh ids (written with the decision).
async fn reserve(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    customer: Uuid,
    outcome: &Outcome,
    gathered: &Gathered,
    expires_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Result<Vec<(HoldId, NewHold)>, AuthorizationError> {
    let snap = &gathered.snap;
    let hold = |key: String, from: AccountId, to: AccountId, what: Amount| {
        Ok::<_, AuthorizationError>((
            HoldId(Uuid::now_v7()),
            NewHold::new(key, from, to, what, expires_at)?,
        ))
    };
    // the accounts the snapshot found, else opened now (a customer's first use)
    let account =
        async |known: Option<Uuid>, code: &str, unit: Unit, no_overdraft: bool| match known {
            Some(a) => Ok::<_, LedgerError>(AccountId(a)),
            None => wallets::account(conn, customer, code, unit, Side::Credit, no_overdraft).await,
        };
    match outcome.funding {
        Some(Funding::Ticket) => {
            let wallet = account(snap.ticket_wallet, "TICKET-WALLET", Unit::Ticket, true).await?;
            let used = account(snap.ticket_used, "TICKET-USED", Unit::Ticket, false).await?;
            let one = amount_of(Decimal::ONE, Unit::Ticket)?;
            Ok(vec![hold(format!("authz:{id}:ticket"), wallet, used, one)?])
        }
        Some(Funding::Credits) => {
            let used = account(snap.credit_used, "CREDIT-USED", Unit::Credit, false).await?;
            let wanted = amount_of(outcome.credits.unwrap_or_default(), Unit::Credit)?;
            wallets::allocate_credits(conn, customer, wanted, at)
                .await?
                .into_iter()
                .enumerate()
                .map(|(n, (lot, take, _))| {
                    hold(
                        format!("authz:{id}:lot:{n}"),
                        lot,
                        used,
                        amount_of(take, Unit::Credit)?,
                    )
                })
                .collect()
        }
        Some(Funding::Quota) => {
            let period = gathered
                .period
                .as_ref()
                .ok_or_else(|| AuthorizationError::Invalid("no pack".into()))?;
            let used = period.used_account(conn).await?;
            let one = amount_of(Decimal::ONE, Unit::Appointment)?;
            Ok(vec![hold(
                format!("authz:{id}:appointment"),
                period.quota,
                used,
                one,
            )?])
        }
        _ => Ok(Vec::new()),
    }
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

/// Decides a request at `at` and holds what it will consume. Idempotent on `request_ref`:
/// a replay returns the first decision (`true`), another body with the same ref is refused.
pub async fn authorize(
    conn: &mut AsyncPgConnection,
    req: &AuthorizationRequest,
    at: DateTime<Utc>,
    hours: &BusinessHours,
) -> Result<(AuthorizationView, bool), AuthorizationError> {
    // a replay costs a rolled-back attempt; the first request costs no look-up
    let hash = request_hash(req);
    let id = Uuid::now_v7();
    let result = crate::retry_transaction!(conn, AuthorizationError, |c| {
        let gathered = holdings(c, req, at).await?;
        let outcome = decision::decide(req, &gathered.holdings, hours);
        let expires_at = at + HOLD_TTL;
        let holds = if outcome.decision == Decision::Approved {
            reserve(c, id, req.customer_id, &outcome, &gathered, expires_at, at).await?
        } else {
            Vec::new()
        };
        let approved = outcome.decision == Decision::Approved;
        let mut shared: &AsyncPgConnection = c;
        let insert = diesel::insert_into(authorizations::table)
            .values((
                authorizations::id.eq(id),
                authorizations::customer_id.eq(req.customer_id),
                authorizations::request_ref.eq(&req.request_ref),
                authorizations::request_hash.eq(&hash),
                authorizations::request.eq(serde_json::to_value(req).unwrap_or_default()),
                authorizations::decision.eq(name(outcome.decision)),
                authorizations::funding.eq(outcome.funding.map(name)),
                authorizations::reason.eq(name(outcome.reason)),
                authorizations::status.eq(if approved { "open" } else { "denied" }),
                authorizations::price.eq(outcome.price),
                authorizations::hourly.eq(outcome.hourly),
                authorizations::offer_code.eq(if outcome.funding == Some(Funding::Chargeable) {
                    gathered.charged_offer.clone()
                } else {
                    None
                }),
                authorizations::credits.eq(outcome.credits),
                authorizations::subscription_id.eq(
                    if matches!(outcome.funding, Some(Funding::Quota | Funding::Overage)) {
                        gathered.period.as_ref().map(|p| p.pack)
                    } else {
                        None
                    },
                ),
                authorizations::hold_ids
                    .eq(holds.iter().map(|(h, _)| Some(h.0)).collect::<Vec<_>>()),
                authorizations::expires_at.eq(approved.then_some(expires_at)),
                authorizations::take_charge_due_at.eq(outcome.take_charge_due_at),
                authorizations::created_at.eq(at),
            ))
            .on_conflict_do_nothing()
            .returning(Row::as_returning())
            .get_result::<Row>(&mut shared);
        // the holds and the decision go out together (pipelined)
        let (_, inserted) = futures_util::try_join!(
            async { Ok::<_, AuthorizationError>(ledger::hold_in_tx(c, &holds, at).await?) },
            async { Ok::<_, AuthorizationError>(insert.await.optional()?) },
        )?;
        // the ref exists (a replay, or a concurrent twin): this attempt is rolled back
        inserted.ok_or_else(|| AuthorizationError::Conflict(req.request_ref.clone()))
    });
    match result {
        Ok(row) => Ok((row.view(None), false)),
        Err(AuthorizationError::Conflict(r)) => {
            let (other, h): (Uuid, Vec<u8>) = authorizations::table
                .filter(authorizations::request_ref.eq(&r))
                .select((authorizations::id, authorizations::request_hash))
                .first(conn)
                .await?;
            if h == hash {
                Ok((view(conn, other).await?, true))
            } else {
                Err(AuthorizationError::Conflict(r))
            }
        }
        Err(e) => Err(e),
    }
}

/// What was actually done, for a capture: minutes of work (hourly-priced) or units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capture {
    /// Minutes worked (hourly-priced interventions: billed per started increment of the
    /// offer's `increment_minutes`, 15 by default).
    pub minutes: Option<i64>,
    /// Units consumed (credits, a ticket, service units); at most what was held.
    pub units: Option<DecimalString>,
}

/// Captures an open authorization at `at`: consumes at most what was held (the rest is
/// released); a chargeable one becomes an intervention held for the dispute window.
/// The authorization is read (locked) with its holds, then every write goes out at once.
pub async fn capture(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    what: Capture,
    at: DateTime<Utc>,
) -> Result<AuthorizationView, AuthorizationError> {
    crate::retry_transaction!(conn, AuthorizationError, |c| {
        let row = load(c, id, true).await?;
        match row.status() {
            AuthorizationStatus::Open => {}
            AuthorizationStatus::Denied => {
                return Err(AuthorizationError::WrongState(id, "denied"))
            }
            AuthorizationStatus::Captured => {
                return Err(AuthorizationError::WrongState(id, "already captured"))
            }
            AuthorizationStatus::Voided => {
                return Err(AuthorizationError::WrongState(id, "voided"))
            }
            AuthorizationStatus::Expired => {
                return Err(AuthorizationError::WrongState(id, "expired"))
            }
        }
        if row.expires_at.is_some_and(|e| e <= at) {
            return Err(AuthorizationError::WrongState(id, "expired"));
        }
        let units = what.units.map(|u| u.0);
        if units.is_some_and(|u| u < Decimal::ZERO)
            || what.minutes.is_some_and(|m| !(0..=24 * 60).contains(&m))
        {
            return Err(AuthorizationError::Invalid(
                "units must be 0 or more, minutes 0 to 1440".into(),
            ));
        }
        let plan = plan_capture(c, &row, what, at).await?;
        let mut shared: &AsyncPgConnection = c;
        // every hold in one call: captured for what was taken, or released
        let settlements: Vec<(HoldId, Settlement)> = plan
            .holds
            .iter()
            .map(|(hold, take)| match take {
                Some(a) => (hold.id, Settlement::Capture(Some(*a))),
                None => (hold.id, Settlement::Void),
            })
            .collect();
        let settle = async {
            ledger::settle_in_tx(c, &settlements, at, false).await?;
            Ok::<_, AuthorizationError>(())
        };
        let revenue = async {
            if let Some(tx) = &plan.revenue {
                ledger::post_in_tx(c, tx).await?;
            }
            Ok::<_, AuthorizationError>(())
        };
        let sheet = async {
            if let Some(sheet) = &plan.intervention {
                interventions::store::insert_in_tx(c, sheet, id, row.customer_id, at).await?;
            }
            Ok::<_, AuthorizationError>(())
        };
        let update = diesel::update(authorizations::table.find(id))
            .set((
                authorizations::status.eq("captured"),
                authorizations::captured_units.eq(plan.captured),
                authorizations::resolved_at.eq(at),
            ))
            .returning(Row::as_returning())
            .get_result::<Row>(&mut shared);
        let (_, _, _, updated) = futures_util::try_join!(settle, revenue, sheet, async {
            Ok::<_, AuthorizationError>(update.await?)
        },)?;
        if let Some((period, overage)) = &plan.appointment {
            period
                .record(c, *overage, &format!("authz:{id}"), at)
                .await?;
        }
        // credits released on a lot that expired meanwhile expire at once
        let released: Vec<Uuid> = plan
            .holds
            .iter()
            .filter(|(hold, take)| {
                hold.unit == Unit::Credit && take.is_none_or(|t| t.value() < hold.amount.0)
            })
            .map(|(hold, _)| hold.debit_account_id.0)
            .collect();
        wallets::expire_released_in_tx(c, &released, at).await?;
        Ok(updated.view(plan.intervention.map(|i| i.id)))
    })
}

/// What a capture writes: each hold captured (for so much) or released, the revenue the
/// credits used earn, the intervention sheet, the appointment taken.
struct CapturePlan {
    captured: Decimal,
    holds: Vec<(HoldView, Option<Amount>)>,
    revenue: Option<crate::ledger::NewTransaction>,
    intervention: Option<interventions::Sheet>,
    /// The pack period an appointment is recorded in, and whether it is overage.
    appointment: Option<(wallets::PackPeriod, bool)>,
}

fn amount_of(v: Decimal, unit: Unit) -> Result<Amount, AuthorizationError> {
    Amount::new(v, unit).map_err(|e| AuthorizationError::Invalid(e.to_string()))
}

/// Works out a capture of the open authorization `row` (reading its holds).
async fn plan_capture(
    conn: &mut AsyncPgConnection,
    row: &Row,
    what: Capture,
    at: DateTime<Utc>,
) -> Result<CapturePlan, AuthorizationError> {
    let id = row.id;
    let units = what.units.map(|u| u.0);
    let mut plan = CapturePlan {
        captured: units.unwrap_or(Decimal::ONE),
        holds: Vec::new(),
        revenue: None,
        intervention: None,
        appointment: None,
    };
    match row.funding() {
        Some(funding @ (Funding::Ticket | Funding::Quota | Funding::Overage)) => {
            if plan.captured > Decimal::ONE {
                return Err(AuthorizationError::Invalid(
                    "units: at most 1 (one ticket or one appointment), 0 for none".into(),
                ));
            }
            let used = !plan.captured.is_zero();
            if funding != Funding::Ticket && used {
                let pack = row
                    .subscription_id
                    .ok_or_else(|| AuthorizationError::Invalid("no pack".into()))?;
                // the period the authorization was decided in, which its hold is on; the
                // pack is locked before any balance, as when authorizing (no deadlock)
                let period = wallets::pack_period(conn, pack, row.created_at).await?;
                plan.appointment = Some((period, funding == Funding::Overage));
            }
            if funding != Funding::Overage {
                let hold = ledger::get_holds(conn, &row.holds())
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| AuthorizationError::Invalid("no hold".into()))?;
                let unit = hold.unit;
                let take = match used {
                    true => Some(amount_of(Decimal::ONE, unit)?),
                    false => None,
                };
                plan.holds.push((hold, take));
            }
        }
        Some(Funding::Credits) => {
            let held = row.credits.unwrap_or_default();
            plan.captured = units.unwrap_or(held);
            if plan.captured > held {
                return Err(AuthorizationError::Invalid(format!(
                    "units: at most the {held} credits held"
                )));
            }
            let held_lots = ledger::get_holds(conn, &row.holds()).await?;
            // the lots before their balances (the lock order), so that each movement off a
            // lot knows whether it is the last one: that one takes the rest of its revenue
            let accounts: Vec<Uuid> = held_lots.iter().map(|h| h.debit_account_id.0).collect();
            let mut lots = wallets::lock_lots(conn, &accounts).await?;
            let mut left = plan.captured;
            let mut takes = Vec::new();
            for hold in held_lots {
                let take = hold.amount.0.min(left);
                left -= take;
                if take.is_zero() {
                    plan.holds.push((hold, None));
                    continue;
                }
                takes.push((hold.debit_account_id, take));
                plan.holds
                    .push((hold, Some(amount_of(take, Unit::Credit)?)));
            }
            let postings = lots.use_postings(conn, row.customer_id, &takes).await?;
            if !postings.is_empty() {
                plan.revenue = Some(
                    crate::ledger::NewTransaction::new(
                        format!("authz:{id}:revenue"),
                        "credits.use",
                        postings,
                    )?
                    .effective_at(at),
                );
            }
        }
        Some(Funding::Chargeable) => {
            let price = row.price.unwrap_or_default();
            let offer_code = row
                .offer_code
                .clone()
                .unwrap_or_else(|| INTERVENTION_OFFER.to_string());
            let (quantity, unit_price, description) = if row.hourly {
                let minutes = what.minutes.ok_or_else(|| {
                    AuthorizationError::Invalid("minutes: the time worked is required".into())
                })?;
                // per started increment of the offer's (15 minutes when it names none)
                let step = catalog::store::get(conn, &offer_code)
                    .await?
                    .and_then(|o| o.increment_minutes)
                    .map_or(DEFAULT_INCREMENT_MINUTES, i64::from);
                let increments = (minutes + step - 1) / step;
                plan.captured = Decimal::from(minutes);
                (
                    Decimal::from(increments),
                    (price * Decimal::from(step) / Decimal::from(60)).round_dp(4),
                    format!("Intervention, {minutes} min ({increments} × {step} min)"),
                )
            } else {
                let n = plan.captured;
                (n, price, format!("Service `{offer_code}` × {n}"))
            };
            if quantity > Decimal::ZERO {
                plan.intervention = Some(interventions::Sheet {
                    id: Uuid::now_v7(),
                    offer_code,
                    description,
                    quantity,
                    unit_price,
                });
            }
        }
        Some(Funding::Included) | None => {}
    }
    Ok(plan)
}

/// Voids an open authorization: its holds are released.
pub async fn void(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<AuthorizationView, AuthorizationError> {
    crate::retry_transaction!(conn, AuthorizationError, |c| {
        let row = load(c, id, true).await?;
        if row.status() != AuthorizationStatus::Open {
            return Err(AuthorizationError::WrongState(id, "not open"));
        }
        // credit lots are locked before holds and balances, as every writer of a lot does
        let lots: Vec<Uuid> = if row.funding() == Some(Funding::Credits) {
            let lots: Vec<Uuid> = ledger::get_holds(c, &row.holds())
                .await?
                .into_iter()
                .map(|h| h.debit_account_id.0)
                .collect();
            wallets::lock_lots(c, &lots).await?;
            lots
        } else {
            Vec::new()
        };
        // holds already resolved (expired meanwhile) are left as they are
        let voids: Vec<(HoldId, Settlement)> = row
            .holds()
            .into_iter()
            .map(|h| (HoldId(h), Settlement::Void))
            .collect();
        ledger::settle_in_tx(c, &voids, at, true).await?;
        // credits released on a lot that expired meanwhile expire at once
        wallets::expire_released_in_tx(c, &lots, at).await?;
        diesel::update(authorizations::table.find(id))
            .set((
                authorizations::status.eq("voided"),
                authorizations::resolved_at.eq(at),
            ))
            .execute(c)
            .await?;
        Ok(())
    })?;
    view(conn, id).await
}

/// `hold-expiry` at `as_of`: open authorizations past their hold's expiry are expired and
/// every such hold released. Returns the holds expired.
pub async fn expire(
    conn: &mut AsyncPgConnection,
    as_of: DateTime<Utc>,
) -> Result<u32, AuthorizationError> {
    diesel::update(
        authorizations::table
            .filter(authorizations::status.eq("open"))
            .filter(authorizations::expires_at.le(as_of)),
    )
    .set((
        authorizations::status.eq("expired"),
        authorizations::resolved_at.eq(as_of),
    ))
    .execute(conn)
    .await?;
    let expired = ledger::expire_holds(conn, as_of).await?;
    // credits the expired holds released on lots that expired meanwhile expire at once
    wallets::expire_released(conn, as_of).await?;
    Ok(expired as u32)
}

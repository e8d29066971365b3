//! Deciding a request: the customer's snapshot read under its lock, the rules of
//! `decision`, the holds an approval needs, written with the decision.

use super::*;
use crate::customers::CustomerStatus;
use chrono::{DateTime, Utc};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

mod sql {
    use diesel::sql_types::{
        Array, Bool, Date, Nullable, Numeric, Record, Text, Timestamptz, Uuid,
    };

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
        Nullable<Text>,
        Nullable<Numeric>,
        Nullable<Numeric>,
        Nullable<Numeric>,
    )>;

    #[diesel::declare_sql_function]
    extern "SQL" {
        /// Locks the customer, then reads its snapshot (migration 9); `accounts` are the
        /// codes of the customer's ticket wallet, used tickets and used credits.
        fn authorization_begin(
            customer: Uuid,
            at: Timestamptz,
            today: Date,
            service: Text,
            accounts: Array<Text>,
        ) -> Snapshot;
    }
}

/// Everything the decision needs, read in one call after the customer's row is locked
/// (see the `authorization_begin` and `authorization_snapshot` functions).
struct Snapshot {
    status: CustomerStatus,
    free_diagnostics: bool,
    assistance_included: bool,
    maintenance: bool,
    pack_id: Option<Uuid>,
    tickets: Decimal,
    ticket_wallet: Option<Uuid>,
    ticket_used: Option<Uuid>,
    credit_used: Option<Uuid>,
    credits: Decimal,
    /// The offer with the role `intervention_time`, if the catalog has one.
    intervention_offer: Option<String>,
    hourly_rate: Option<Decimal>,
    service_euros: Option<Decimal>,
    service_credits: Option<Decimal>,
}

type SnapshotRow = (
    CustomerStatus,
    bool,
    bool,
    bool,
    Option<Uuid>,
    Decimal,
    Option<Uuid>,
    Option<Uuid>,
    Option<Uuid>,
    Decimal,
    Option<String>,
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
            intervention_offer: r.10,
            hourly_rate: r.11,
            service_euros: r.12,
            service_credits: r.13,
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
        [
            CustomerAccount::TicketWallet,
            CustomerAccount::TicketUsed,
            CustomerAccount::CreditUsed,
        ]
        .map(CustomerAccount::code)
        .to_vec(),
    ))
    .get_result(conn)
    .await
    .optional()?
    .ok_or(AuthorizationError::UnknownCustomer(req.customer_id))?;
    let mut h = Holdings {
        closed: snap.status == CustomerStatus::Closed,
        suspended: snap.status == CustomerStatus::Suspended,
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
        None => snap.intervention_offer.clone(),
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
    let account = async |known: Option<Uuid>, which: CustomerAccount| match known {
        Some(a) => Ok::<_, LedgerError>(AccountId(a)),
        None => wallets::account(conn, customer, which).await,
    };
    match outcome.funding {
        Some(Funding::Ticket) => {
            let wallet = account(snap.ticket_wallet, CustomerAccount::TicketWallet).await?;
            let used = account(snap.ticket_used, CustomerAccount::TicketUsed).await?;
            let one = amount_of(Decimal::ONE, Unit::Ticket)?;
            Ok(vec![hold(format!("authz:{id}:ticket"), wallet, used, one)?])
        }
        Some(Funding::Credits) => {
            let used = account(snap.credit_used, CustomerAccount::CreditUsed).await?;
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
                authorizations::decision.eq(outcome.decision),
                authorizations::funding.eq(outcome.funding),
                authorizations::reason.eq(outcome.reason),
                authorizations::status.eq(if approved {
                    AuthorizationStatus::Open
                } else {
                    AuthorizationStatus::Denied
                }),
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

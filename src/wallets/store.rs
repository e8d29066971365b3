//! Wallet operations and jobs. Each runs in one database transaction and moves balances
//! only through the ledger.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::calendar::{add_months, paris_date, paris_midnight};
use crate::catalog::{self, Offer};
use crate::charges::{self, ChargeSource, NewCharge};
use crate::ledger::store::{self as ledger, NewAccount};
use crate::ledger::{AccountId, BalanceView, LedgerError, NewTransaction, Posting, Side};
use crate::money::{price, round_cents, Amount, Unit};
use crate::schema::{
    appointment_period_closes, appointments, balances, credit_lots, customers, subscriptions,
    ticket_purchases,
};

/// Platform account of the first migration.
const BREAKAGE_7088: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_7088);

/// What the wallets need to know of a subscription.
#[derive(Queryable, Selectable)]
#[diesel(table_name = subscriptions)]
struct SubFacts {
    id: Uuid,
    customer_id: Uuid,
    offer_code: String,
    status: String,
    start_date: NaiveDate,
    ends_at: Option<DateTime<Utc>>,
}

/// The customer's account `code` (created on first use).
pub(crate) async fn account(
    conn: &AsyncPgConnection,
    customer: Uuid,
    code: &str,
    unit: Unit,
    normal_side: Side,
    no_overdraft: bool,
) -> Result<AccountId, LedgerError> {
    let new = NewAccount {
        code: code.to_string(),
        name: code.to_string(),
        unit,
        customer_id: Some(customer),
        normal_side,
        no_overdraft,
    };
    Ok(ledger::ensure_account(conn, &new).await?.id)
}

/// What credits used earn (`revenue`, EUR): deferred revenue (487) recognised in the
/// customer's services-revenue sub-account (706). Recognised on the hot path, so never
/// through one row that every customer shares. None when nothing is earned.
pub(crate) async fn revenue_postings(
    conn: &AsyncPgConnection,
    customer: Uuid,
    revenue: Decimal,
) -> Result<Vec<Posting>, WalletError> {
    if revenue <= Decimal::ZERO {
        return Ok(Vec::new());
    }
    let eur = amount(revenue, Unit::Eur)?;
    let (deferred, revenue_706) = futures_util::try_join!(
        account(conn, customer, "487", Unit::Eur, Side::Credit, false),
        account(conn, customer, "706", Unit::Eur, Side::Credit, false),
    )?;
    Ok(vec![
        Posting::debit(deferred, eur),
        Posting::credit(revenue_706, eur),
    ])
}

/// A counter account: where issued units come from (debit-normal, may go below zero).
async fn issuer(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    code: &str,
    unit: Unit,
) -> Result<AccountId, LedgerError> {
    account(conn, customer, code, unit, Side::Debit, false).await
}

/// A holding account: credit-normal, never below zero.
async fn holder(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    code: &str,
    unit: Unit,
) -> Result<AccountId, LedgerError> {
    account(conn, customer, code, unit, Side::Credit, true).await
}

fn amount(value: Decimal, unit: Unit) -> Result<Amount, WalletError> {
    Amount::new(value, unit).map_err(|e| WalletError::Invalid(e.to_string()))
}

async fn require_customer(conn: &mut AsyncPgConnection, customer: Uuid) -> Result<(), WalletError> {
    let found: Option<Uuid> = customers::table
        .find(customer)
        .select(customers::id)
        .for_share()
        .first(conn)
        .await
        .optional()?;
    found
        .map(|_| ())
        .ok_or(WalletError::UnknownCustomer(customer))
}

/// The offers of the customer's subscriptions active at `at` (started, not ended).
pub async fn active_offers(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    at: DateTime<Utc>,
) -> Result<Vec<(Uuid, Offer)>, diesel::result::Error> {
    let rows: Vec<SubFacts> = subscriptions::table
        .filter(subscriptions::customer_id.eq(customer))
        .filter(subscriptions::status.eq("active"))
        .select(SubFacts::as_select())
        .load(conn)
        .await?;
    let mut out = Vec::new();
    for sub in rows {
        let started = paris_midnight(sub.start_date) <= at;
        if started && sub.ends_at.is_none_or(|e| e > at) {
            if let Some(o) = catalog::store::get(conn, &sub.offer_code).await? {
                out.push((sub.id, o));
            }
        }
    }
    Ok(out)
}

async fn price_on(
    conn: &mut AsyncPgConnection,
    offer: &str,
    date: NaiveDate,
) -> Result<(Offer, Decimal), WalletError> {
    let o = catalog::store::get(conn, offer)
        .await?
        .ok_or_else(|| WalletError::NotFound(format!("offer `{offer}`")))?;
    let p = catalog::store::price_on(conn, offer, date)
        .await?
        .ok_or_else(|| WalletError::NoPrice(offer.to_string(), date))?;
    Ok((o, p))
}

// ---------------------------------------------------------------------------- tickets

/// A purchase of tickets.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TicketPurchaseView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    pub quantity: i32,
    /// `pending_payment` until the invoice is paid, then `available`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = ticket_purchases)]
struct PurchaseRow {
    id: Uuid,
    customer_id: Uuid,
    quantity: i32,
    status: String,
    request_hash: Option<Vec<u8>>,
    created_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
}

impl From<PurchaseRow> for TicketPurchaseView {
    fn from(r: PurchaseRow) -> Self {
        TicketPurchaseView {
            id: r.id,
            customer_id: r.customer_id,
            quantity: r.quantity,
            status: r.status,
            created_at: r.created_at,
            paid_at: r.paid_at,
        }
    }
}

/// Buys `quantity` tickets at `now`: a charge for immediate invoicing, and the tickets
/// pending until that invoice is paid. Refused while a subscription includes assistance.
pub async fn buy_tickets(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    quantity: i32,
    key: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(TicketPurchaseView, bool), WalletError> {
    if !(1..=1000).contains(&quantity) {
        return Err(WalletError::Invalid("quantity: 1 to 1000 tickets".into()));
    }
    let hash = format!("{customer}|{quantity}").into_bytes();
    if let Some(k) = key {
        let existing: Option<PurchaseRow> = ticket_purchases::table
            .filter(ticket_purchases::idempotency_key.eq(k))
            .select(PurchaseRow::as_select())
            .first(conn)
            .await
            .optional()?;
        if let Some(row) = existing {
            return if row.request_hash.as_deref() == Some(hash.as_slice()) {
                Ok((row.into(), true))
            } else {
                Err(WalletError::IdempotencyConflict)
            };
        }
    }
    crate::retry_transaction!(conn, WalletError, |c| {
        require_customer(c, customer).await?;
        if active_offers(c, customer, now)
            .await?
            .iter()
            .any(|(_, o)| o.entitlements.assistance_included)
        {
            return Err(WalletError::AssistanceIncluded);
        }
        let (offer, unit_price) = price_on(c, TICKET_OFFER, paris_date(now)).await?;
        let id = Uuid::now_v7();
        diesel::insert_into(ticket_purchases::table)
            .values((
                ticket_purchases::id.eq(id),
                ticket_purchases::customer_id.eq(customer),
                ticket_purchases::quantity.eq(quantity),
                ticket_purchases::status.eq("pending_payment"),
                ticket_purchases::idempotency_key.eq(key),
                ticket_purchases::request_hash.eq(&hash),
                ticket_purchases::created_at.eq(now),
            ))
            .execute(c)
            .await?;
        charges::insert(
            c,
            &NewCharge {
                idempotency_key: Some(format!("tickets:{id}")),
                ..NewCharge::of_offer(
                    customer,
                    &offer,
                    ChargeSource::TicketPurchase,
                    format!("{} × {quantity}", offer.name),
                    Decimal::from(quantity),
                    unit_price,
                )
            },
            now,
        )
        .await?;
        let issued = issuer(c, customer, "TICKET-ISSUED", Unit::Ticket).await?;
        let pending = holder(c, customer, "TICKET-PENDING", Unit::Ticket).await?;
        let n = amount(Decimal::from(quantity), Unit::Ticket)?;
        let tx = NewTransaction::new(
            format!("tickets:buy:{id}"),
            "tickets.purchase",
            vec![Posting::debit(issued, n), Posting::credit(pending, n)],
        )?
        .effective_at(now);
        ledger::post_in_tx(c, &tx).await?;
        let row: PurchaseRow = ticket_purchases::table
            .find(id)
            .select(PurchaseRow::as_select())
            .first(c)
            .await?;
        Ok((row.into(), false))
    })
}

/// The invoice of a ticket purchase is paid: its tickets become usable. Idempotent.
pub async fn ticket_purchase_paid(
    conn: &mut AsyncPgConnection,
    purchase: Uuid,
    at: DateTime<Utc>,
) -> Result<TicketPurchaseView, WalletError> {
    crate::retry_transaction!(conn, WalletError, |c| {
        let row: PurchaseRow = ticket_purchases::table
            .find(purchase)
            .select(PurchaseRow::as_select())
            .for_update()
            .first(c)
            .await
            .optional()?
            .ok_or_else(|| WalletError::NotFound(format!("ticket purchase {purchase}")))?;
        if row.status == "available" {
            return Ok(row.into());
        }
        let pending = holder(c, row.customer_id, "TICKET-PENDING", Unit::Ticket).await?;
        let wallet = holder(c, row.customer_id, "TICKET-WALLET", Unit::Ticket).await?;
        let n = amount(Decimal::from(row.quantity), Unit::Ticket)?;
        let tx = NewTransaction::new(
            format!("tickets:paid:{purchase}"),
            "tickets.paid",
            vec![Posting::debit(pending, n), Posting::credit(wallet, n)],
        )?
        .effective_at(at);
        ledger::post_in_tx(c, &tx).await?;
        diesel::update(ticket_purchases::table.find(purchase))
            .set((
                ticket_purchases::status.eq("available"),
                ticket_purchases::paid_at.eq(at),
            ))
            .execute(c)
            .await?;
        Ok(TicketPurchaseView {
            status: "available".into(),
            paid_at: Some(at),
            ..row.into()
        })
    })
}

/// Uses one ticket (one intervention on one incident). Idempotent on `key`.
pub async fn consume_ticket(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    key: &str,
    at: DateTime<Utc>,
) -> Result<crate::ledger::Posted, WalletError> {
    if let Some(done) = ledger::find_by_key(conn, &format!("tickets:use:{key}")).await? {
        return Ok(crate::ledger::Posted {
            id: done.id,
            replayed: true,
        });
    }
    let wallet = holder(conn, customer, "TICKET-WALLET", Unit::Ticket).await?;
    let used = account(
        conn,
        customer,
        "TICKET-USED",
        Unit::Ticket,
        Side::Credit,
        false,
    )
    .await?;
    let one = amount(Decimal::ONE, Unit::Ticket)?;
    let tx = NewTransaction::new(
        format!("tickets:use:{key}"),
        "tickets.use",
        vec![Posting::debit(wallet, one), Posting::credit(used, one)],
    )?
    .effective_at(at);
    match ledger::post(conn, &tx).await {
        Err(LedgerError::InsufficientFunds) => Err(WalletError::Insufficient("1 ticket".into())),
        other => Ok(other?),
    }
}

// ---------------------------------------------------------------------------- credits

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = credit_lots)]
struct LotRow {
    id: Uuid,
    customer_id: Uuid,
    account_id: Uuid,
    origin: String,
    subscription_id: Option<Uuid>,
    granted: Decimal,
    unit_price: Decimal,
    granted_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    expired_at: Option<DateTime<Utc>>,
}

#[derive(Clone)]
struct NewLot {
    customer: Uuid,
    origin: LotOrigin,
    subscription: Option<(Uuid, i32)>,
    credits: Amount,
    unit_price: Decimal,
    granted_at: DateTime<Utc>,
    key: Option<String>,
}

/// Creates a lot and credits it; `AlreadyGranted` when it exists (same pack term or key),
/// which rolls back the caller's transaction and the lot account opened here.
async fn grant_lot(conn: &mut AsyncPgConnection, lot: NewLot) -> Result<Uuid, WalletError> {
    let id = Uuid::now_v7();
    let lot_account = holder(
        conn,
        lot.customer,
        &format!("CREDIT-LOT:{id}"),
        Unit::Credit,
    )
    .await?;
    let inserted = diesel::insert_into(credit_lots::table)
        .values((
            credit_lots::id.eq(id),
            credit_lots::customer_id.eq(lot.customer),
            credit_lots::account_id.eq(lot_account.0),
            credit_lots::origin.eq(match lot.origin {
                LotOrigin::PackGrant => "pack_grant",
                LotOrigin::Purchase => "purchase",
            }),
            credit_lots::subscription_id.eq(lot.subscription.map(|s| s.0)),
            credit_lots::term_index.eq(lot.subscription.map(|s| s.1)),
            credit_lots::granted.eq(lot.credits.value()),
            credit_lots::unit_price.eq(lot.unit_price),
            credit_lots::granted_at.eq(lot.granted_at),
            credit_lots::expires_at.eq(lot_expiry(lot.granted_at)),
            credit_lots::idempotency_key.eq(&lot.key),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted == 0 {
        return Err(WalletError::AlreadyGranted);
    }
    let issued = issuer(conn, lot.customer, "CREDIT-ISSUED", Unit::Credit).await?;
    let tx = NewTransaction::new(
        format!("credits:grant:{id}"),
        "credits.grant",
        vec![
            Posting::debit(issued, lot.credits),
            Posting::credit(lot_account, lot.credits),
        ],
    )?
    .effective_at(lot.granted_at);
    ledger::post_in_tx(conn, &tx).await?;
    Ok(id)
}

/// Buys unit credits at `now`, only while an active subscription allows it: a charge at the
/// unit-credit price, and a lot at that price expiring 12 months on.
pub async fn buy_credits(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    credits: Amount,
    key: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(CreditLotView, bool), WalletError> {
    if let Some(replay) = purchase_replay(conn, customer, credits, key).await? {
        return Ok((replay, true));
    }
    let id = crate::retry_transaction!(conn, WalletError, |c| {
        require_customer(c, customer).await?;
        if !active_offers(c, customer, now)
            .await?
            .iter()
            .any(|(_, o)| o.entitlements.unit_credit_purchase)
        {
            return Err(WalletError::ServicePlusRequired);
        }
        let (offer, unit_price) = price_on(c, UNIT_CREDIT_OFFER, paris_date(now)).await?;
        let id = grant_lot(
            c,
            NewLot {
                customer,
                origin: LotOrigin::Purchase,
                subscription: None,
                credits,
                unit_price,
                granted_at: now,
                key: key.map(|k| format!("purchase:{customer}:{k}")),
            },
        )
        .await?;
        charges::insert(
            c,
            &NewCharge {
                idempotency_key: Some(format!("credits:{id}")),
                ..NewCharge::of_offer(
                    customer,
                    &offer,
                    ChargeSource::CreditPurchase,
                    format!("{} × {}", offer.name, credits.value()),
                    credits.value(),
                    unit_price,
                )
            },
            now,
        )
        .await?;
        Ok(id)
    });
    let id = match id {
        // a concurrent request with the same key bought it first: a replay of it
        Err(WalletError::AlreadyGranted) => {
            return purchase_replay(conn, customer, credits, key)
                .await?
                .map(|lot| (lot, true))
                .ok_or(WalletError::IdempotencyConflict);
        }
        other => other?,
    };
    let lot = lots(conn, customer)
        .await?
        .into_iter()
        .find(|l| l.id == id)
        .ok_or_else(|| WalletError::NotFound(format!("lot {id}")))?;
    Ok((lot, false))
}

/// The lot an earlier purchase with `key` bought, when it bought the same credits;
/// `IdempotencyConflict` when it bought others.
async fn purchase_replay(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    credits: Amount,
    key: Option<&str>,
) -> Result<Option<CreditLotView>, WalletError> {
    let Some(k) = key else {
        return Ok(None);
    };
    let existing: Option<(Uuid, Decimal)> = credit_lots::table
        .filter(credit_lots::idempotency_key.eq(format!("purchase:{customer}:{k}")))
        .select((credit_lots::id, credit_lots::granted))
        .first(conn)
        .await
        .optional()?;
    let Some((id, granted)) = existing else {
        return Ok(None);
    };
    if granted != credits.value() {
        return Err(WalletError::IdempotencyConflict);
    }
    lots(conn, customer)
        .await?
        .into_iter()
        .find(|l| l.id == id)
        .map(Some)
        .ok_or_else(|| WalletError::NotFound(format!("lot {id}")))
}

/// Grants the included credits of every Service+ pack term that has begun by `as_of` (and
/// before the pack's end), once per term. Returns how many lots were granted.
pub async fn grant_pack_credits(
    conn: &mut AsyncPgConnection,
    as_of: DateTime<Utc>,
) -> Result<u32, WalletError> {
    let packs: Vec<SubFacts> = subscriptions::table
        .filter(subscriptions::anchor_date.is_not_null())
        .select(SubFacts::as_select())
        .load(conn)
        .await?;
    let mut granted = 0;
    for SubFacts {
        id,
        customer_id: customer,
        offer_code: code,
        start_date,
        ends_at,
        ..
    } in packs
    {
        let Some(offer) = catalog::store::get(conn, &code).await? else {
            continue;
        };
        let Some(per_term) = offer.entitlements.credits_per_term else {
            continue;
        };
        let Some((plan, _)) = crate::subscriptions::store::plan(conn, id)
            .await
            .map_err(|e| WalletError::Invalid(e.to_string()))?
        else {
            continue;
        };
        let start = paris_midnight(start_date);
        let until = crate::subscriptions::schedule::alive_until(ends_at, as_of);
        if until < start {
            continue;
        }
        for k in plan.term_at(start).index..=plan.term_at(until).index {
            let granted_at = paris_midnight(plan.term(k).start).max(start);
            let lot = NewLot {
                customer,
                origin: LotOrigin::PackGrant,
                subscription: Some((id, k as i32)),
                credits: amount(per_term.0, Unit::Credit)?,
                unit_price: Decimal::ZERO,
                granted_at,
                key: None,
            };
            // a term granted before costs one look-up, and opens no account
            let exists = diesel::select(diesel::dsl::exists(
                credit_lots::table
                    .filter(credit_lots::subscription_id.eq(id))
                    .filter(credit_lots::term_index.eq(k as i32)),
            ))
            .get_result::<bool>(conn)
            .await?;
            if exists {
                continue;
            }
            match crate::retry_transaction!(conn, WalletError, |c| {
                grant_lot(c, lot.clone()).await
            }) {
                Ok(_) => granted += 1,
                // granted meanwhile by a concurrent run
                Err(WalletError::AlreadyGranted) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(granted)
}

/// What a consumption of credits took from which lot.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CreditUse {
    pub transaction_id: crate::ledger::TransactionId,
    /// `(lot id, credits)` in the order they were used.
    #[schema(value_type = Vec<Object>)]
    pub lots: Vec<(Uuid, DecimalString)>,
    /// Revenue recognised (EUR, at the lots' unit prices).
    pub revenue: DecimalString,
}

/// Which lots `credits` come from at `at`: the customer's live lots in consumption order
/// (earliest expiry, then oldest), each for at most what it has free (holds excluded), as
/// `(lot account, credits, unit price)`. Locks those lots, which serialises consumers of
/// one customer. `Insufficient` when they cannot cover it.
pub(crate) async fn allocate_credits(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    credits: Amount,
    at: DateTime<Utc>,
) -> Result<Vec<(AccountId, Decimal, Decimal)>, WalletError> {
    let lots = || {
        credit_lots::table
            .filter(credit_lots::customer_id.eq(customer))
            .filter(credit_lots::expires_at.gt(at))
            .filter(credit_lots::granted_at.le(at))
            .filter(credit_lots::expired_at.is_null())
    };
    // the lots first (the service may not lock balance rows: only the ledger functions
    // do), then what each has free in a statement of its own, which sees what the
    // consumer that held the lock before us committed
    lots()
        .select(credit_lots::id)
        .for_update()
        .load::<Uuid>(conn)
        .await?;
    let live: Vec<(Uuid, Decimal, Decimal)> = lots()
        .inner_join(balances::table.on(balances::account_id.eq(credit_lots::account_id)))
        .order((
            credit_lots::expires_at,
            credit_lots::granted_at,
            credit_lots::id,
        ))
        .select((
            credit_lots::account_id,
            credit_lots::unit_price,
            balances::posted_credits - balances::posted_debits - balances::pending_debits,
        ))
        .load(conn)
        .await?;
    let mut left = credits.value();
    let mut parts = Vec::new();
    for (account, unit_price, free) in live {
        if left.is_zero() {
            break;
        }
        let take = free.min(left);
        if take > Decimal::ZERO {
            parts.push((AccountId(account), take, unit_price));
            left -= take;
        }
    }
    if !left.is_zero() {
        return Err(WalletError::Insufficient(format!(
            "{} credits",
            credits.value()
        )));
    }
    Ok(parts)
}

/// Consumes `credits` at `at`: earliest expiry first, then oldest lot; one consumption may
/// span several lots; refused when the usable balance cannot cover it. Idempotent on `key`.
pub async fn consume_credits(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    credits: Amount,
    key: &str,
    at: DateTime<Utc>,
) -> Result<CreditUse, WalletError> {
    let tx_key = format!("credits:use:{customer}:{key}");
    if let Some(done) = ledger::find_by_key(conn, &tx_key).await? {
        return use_of(conn, done).await;
    }
    let used = account(
        conn,
        customer,
        "CREDIT-USED",
        Unit::Credit,
        Side::Credit,
        false,
    )
    .await?;
    let tx = crate::retry_transaction!(conn, WalletError, |c| {
        let mut postings = Vec::new();
        let mut revenue = Decimal::ZERO;
        for (lot, take, unit_price) in allocate_credits(c, customer, credits, at).await? {
            let part = amount(take, Unit::Credit)?;
            postings.push(Posting::debit(lot, part));
            postings.push(Posting::credit(used, part));
            revenue += round_cents(take * unit_price);
        }
        postings.extend(revenue_postings(c, customer, revenue).await?);
        let tx = NewTransaction::new(tx_key.clone(), "credits.use", postings)?.effective_at(at);
        Ok(ledger::post_in_tx(c, &tx).await?.id)
    })?;
    let done = ledger::get_transaction(conn, tx)
        .await?
        .ok_or_else(|| WalletError::NotFound(format!("transaction {tx}")))?;
    use_of(conn, done).await
}

async fn use_of(
    conn: &mut AsyncPgConnection,
    tx: crate::ledger::TransactionView,
) -> Result<CreditUse, WalletError> {
    let accounts: Vec<Uuid> = tx
        .postings
        .iter()
        .filter(|p| p.side == Side::Debit && p.unit == Unit::Credit)
        .map(|p| p.account_id.0)
        .collect();
    let by_account: HashMap<Uuid, Uuid> = credit_lots::table
        .filter(credit_lots::account_id.eq_any(&accounts))
        .select((credit_lots::account_id, credit_lots::id))
        .load::<(Uuid, Uuid)>(conn)
        .await?
        .into_iter()
        .collect();
    let lots = tx
        .postings
        .iter()
        .filter(|p| p.side == Side::Debit && p.unit == Unit::Credit)
        .filter_map(|p| Some((*by_account.get(&p.account_id.0)?, p.amount)))
        .collect();
    let revenue = tx
        .postings
        .iter()
        .filter(|p| p.unit == Unit::Eur && p.side == Side::Debit)
        .map(|p| p.amount.0)
        .sum();
    Ok(CreditUse {
        transaction_id: tx.id,
        lots,
        revenue: crate::money::DecimalString(round_cents(revenue)),
    })
}

/// `credit-expiry` at `as_of`: each lot expired by then sends its remainder to breakage (a
/// ledger movement; in EUR at the lot's unit price). Idempotent. Returns the lots expired.
/// Credits held on a lot stay held; what a hold releases later expires at once
/// ([`expire_released_in_tx`]).
pub async fn expire_lots(
    conn: &mut AsyncPgConnection,
    as_of: DateTime<Utc>,
) -> Result<u32, WalletError> {
    let due: Vec<Uuid> = credit_lots::table
        .filter(credit_lots::expires_at.le(as_of))
        .filter(credit_lots::expired_at.is_null())
        .order(credit_lots::expires_at)
        .select(credit_lots::id)
        .load(conn)
        .await?;
    let mut expired = 0;
    for id in due {
        let done = crate::retry_transaction!(conn, WalletError, |c| {
            let lot: LotRow = credit_lots::table
                .find(id)
                .select(LotRow::as_select())
                .for_update()
                .first(c)
                .await?;
            if lot.expired_at.is_some() {
                return Ok(false);
            }
            breakage(c, &lot, format!("credits:expire:{id}"), lot.expires_at).await?;
            diesel::update(credit_lots::table.find(id))
                .set(credit_lots::expired_at.eq(as_of))
                .execute(c)
                .await?;
            Ok(true)
        })?;
        expired += u32::from(done);
    }
    Ok(expired)
}

/// Credits that holds released (void, expiry, capture for less) on lots among `accounts`
/// that have already expired expire at once (DOMAIN.md: never back on a dead lot), in the
/// caller's transaction, at `at`. Returns the lots swept.
pub async fn expire_released_in_tx(
    c: &mut AsyncPgConnection,
    accounts: &[Uuid],
    at: DateTime<Utc>,
) -> Result<u32, WalletError> {
    if accounts.is_empty() {
        return Ok(0);
    }
    let dead: Vec<LotRow> = credit_lots::table
        .filter(credit_lots::account_id.eq_any(accounts))
        .filter(credit_lots::expired_at.is_not_null())
        .order(credit_lots::account_id)
        .select(LotRow::as_select())
        .for_update()
        .load(c)
        .await?;
    let mut swept = 0;
    for lot in dead {
        let key = format!("credits:expire:{}:{}", lot.id, Uuid::now_v7());
        swept += u32::from(breakage(c, &lot, key, at).await?);
    }
    Ok(swept)
}

/// `hold-expiry`'s second half: what the expired holds released on dead lots expires.
pub async fn expire_released(
    conn: &mut AsyncPgConnection,
    at: DateTime<Utc>,
) -> Result<u32, WalletError> {
    let accounts: Vec<Uuid> = credit_lots::table
        .inner_join(
            crate::schema::balances::table
                .on(crate::schema::balances::account_id.eq(credit_lots::account_id)),
        )
        .filter(credit_lots::expired_at.is_not_null())
        .filter(
            (crate::schema::balances::posted_credits
                - crate::schema::balances::posted_debits
                - crate::schema::balances::pending_debits)
                .gt(Decimal::ZERO),
        )
        .select(credit_lots::account_id)
        .load(conn)
        .await?;
    let mut swept = 0;
    for account in accounts {
        swept += crate::retry_transaction!(conn, WalletError, |c| {
            expire_released_in_tx(c, &[account], at).await
        })?;
    }
    Ok(swept)
}

/// Sends what is usable on `lot` to breakage under `key`, effective `at` (nothing when
/// nothing is left). Whether it posted.
async fn breakage(
    c: &mut AsyncPgConnection,
    lot: &LotRow,
    key: String,
    at: DateTime<Utc>,
) -> Result<bool, WalletError> {
    let remaining = ledger::get_account(c, AccountId(lot.account_id))
        .await?
        .map(|a| a.balance.available.0)
        .unwrap_or_default();
    if remaining <= Decimal::ZERO {
        return Ok(false);
    }
    let customer = lot.customer_id;
    let expired_acct = account(
        c,
        customer,
        "CREDIT-EXPIRED",
        Unit::Credit,
        Side::Credit,
        false,
    )
    .await?;
    let part = amount(remaining, Unit::Credit)?;
    let mut postings = vec![
        Posting::debit(AccountId(lot.account_id), part),
        Posting::credit(expired_acct, part),
    ];
    let breakage = round_cents(remaining * lot.unit_price);
    if breakage > Decimal::ZERO {
        let deferred = account(c, customer, "487", Unit::Eur, Side::Credit, false).await?;
        let eur = amount(breakage, Unit::Eur)?;
        postings.push(Posting::debit(deferred, eur));
        postings.push(Posting::credit(AccountId(BREAKAGE_7088), eur));
    }
    let tx = NewTransaction::new(key, "credits.expire", postings)?.effective_at(at);
    ledger::post_in_tx(c, &tx).await?;
    Ok(true)
}

/// A customer's lots, earliest expiry first, with what became of each (from the ledger).
pub async fn lots(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
) -> Result<Vec<CreditLotView>, WalletError> {
    let rows: Vec<LotRow> = credit_lots::table
        .filter(credit_lots::customer_id.eq(customer))
        .order((
            credit_lots::expires_at,
            credit_lots::granted_at,
            credit_lots::id,
        ))
        .select(LotRow::as_select())
        .load(conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for lot in rows {
        #[derive(QueryableByName)]
        struct Moves {
            #[diesel(sql_type = diesel::sql_types::Numeric)]
            consumed: Decimal,
            #[diesel(sql_type = diesel::sql_types::Numeric)]
            expired: Decimal,
        }
        let moves: Moves = diesel::sql_query(
            "SELECT coalesce(sum(p.amount) FILTER (WHERE t.kind IN ('credits.use', 'hold.capture')), 0) AS consumed,
                    coalesce(sum(p.amount) FILTER (WHERE t.kind = 'credits.expire'), 0) AS expired
             FROM postings p JOIN transactions t ON t.id = p.transaction_id
             WHERE p.account_id = $1 AND p.side = 'debit'",
        )
        .bind::<diesel::sql_types::Uuid, _>(lot.account_id)
        .get_result(conn)
        .await?;
        let balance = ledger::get_account(conn, AccountId(lot.account_id))
            .await?
            .map(|a| a.balance);
        let two = |d: Decimal| crate::money::DecimalString(round_cents(d));
        out.push(CreditLotView {
            id: lot.id,
            origin: if lot.origin == "purchase" {
                LotOrigin::Purchase
            } else {
                LotOrigin::PackGrant
            },
            subscription_id: lot.subscription_id,
            granted: two(lot.granted),
            consumed: two(moves.consumed),
            expired: two(moves.expired),
            held: two(balance
                .as_ref()
                .map(|b| b.pending_debits.0)
                .unwrap_or_default()),
            remaining: two(balance.map(|b| b.available.0).unwrap_or_default()),
            unit_price: price(lot.unit_price),
            granted_at: lot.granted_at,
            expires_at: lot.expires_at,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------- appointments

/// An Assistance+ pack's period, from the ledger.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AppointmentPeriod {
    #[schema(value_type = String, format = Uuid)]
    pub subscription_id: Uuid,
    pub period_index: u32,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub quota: i32,
    pub used: i32,
    pub overage: i32,
}

fn appt_codes(pack: Uuid, period: u32) -> (String, String, String) {
    (
        format!("APPT-QUOTA:{pack}:{period}"),
        format!("APPT-USED:{pack}:{period}"),
        format!("APPT-OVERAGE:{pack}:{period}"),
    )
}

async fn pack(conn: &mut AsyncPgConnection, id: Uuid) -> Result<(SubFacts, Offer), WalletError> {
    let sub: SubFacts = subscriptions::table
        .find(id)
        .select(SubFacts::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| WalletError::NotFound(format!("subscription {id}")))?;
    let offer = catalog::store::get(conn, &sub.offer_code)
        .await?
        .ok_or_else(|| WalletError::NotFound(format!("offer `{}`", sub.offer_code)))?;
    Ok((sub, offer))
}

/// An Assistance+ pack's period, its quota granted: where appointments are counted.
pub(crate) struct PackPeriod {
    pub pack: Uuid,
    pub customer: Uuid,
    pub period: u32,
    issued: AccountId,
    /// The period's quota account: its available balance is what is left (holds count).
    pub quota: AccountId,
    pub left: Decimal,
}

/// The period of the pack `pack_id` at `at` (the pack locked, live at `at`), its quota
/// granted on first use.
pub(crate) async fn pack_period(
    c: &mut AsyncPgConnection,
    pack_id: Uuid,
    at: DateTime<Utc>,
) -> Result<PackPeriod, WalletError> {
    let (sub, offer) = pack(c, pack_id).await?;
    let SubFacts {
        customer_id: customer,
        start_date: start,
        ends_at,
        status,
        ..
    } = sub;
    let Some(quota) = offer.entitlements.appointment_quota else {
        return Err(WalletError::Invalid(format!(
            "subscription {pack_id} has no appointment quota"
        )));
    };
    let live = status == "active" && paris_midnight(start) <= at && ends_at.is_none_or(|e| e > at);
    if !live {
        return Err(WalletError::Invalid(format!(
            "subscription {pack_id} is not active at {at}"
        )));
    }
    let period = appointment_period(start, paris_date(at));
    let (q, _, _) = appt_codes(pack_id, period);
    let issued = issuer(
        c,
        customer,
        &format!("APPT-ISSUED:{pack_id}"),
        Unit::Appointment,
    )
    .await?;
    let quota_acct = holder(c, customer, &q, Unit::Appointment).await?;
    let balance = ledger::get_account(c, quota_acct)
        .await?
        .map(|a| a.balance)
        .ok_or_else(|| WalletError::NotFound(format!("account {q}")))?;
    let mut left = balance.available.0;
    if balance.posted_credits.0.is_zero() {
        let n = amount(Decimal::from(quota), Unit::Appointment)?;
        let grant = NewTransaction::new(
            format!("appointments:quota:{pack_id}:{period}"),
            "appointments.quota",
            vec![Posting::debit(issued, n), Posting::credit(quota_acct, n)],
        )?
        .effective_at(paris_midnight(add_months(start, 12 * period)));
        ledger::post_in_tx(c, &grant).await?;
        left += n.value();
    }
    Ok(PackPeriod {
        pack: pack_id,
        customer,
        period,
        issued,
        quota: quota_acct,
        left,
    })
}

impl PackPeriod {
    /// Where an appointment within the quota goes (quota → used).
    pub(crate) async fn used_account(
        &self,
        conn: &AsyncPgConnection,
    ) -> Result<AccountId, LedgerError> {
        let (_, u, _) = appt_codes(self.pack, self.period);
        account(
            conn,
            self.customer,
            &u,
            Unit::Appointment,
            Side::Credit,
            false,
        )
        .await
    }

    /// Records an appointment taken at `at` under `key`. Beyond the quota (`overage`) it is
    /// posted here (issued → overage); within it the caller has moved one from the quota
    /// to the used account, directly or by capturing a hold.
    pub(crate) async fn record(
        &self,
        c: &mut AsyncPgConnection,
        overage: bool,
        key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), WalletError> {
        if overage {
            let (_, _, o) = appt_codes(self.pack, self.period);
            let over =
                account(c, self.customer, &o, Unit::Appointment, Side::Credit, false).await?;
            let one = amount(Decimal::ONE, Unit::Appointment)?;
            let tx = NewTransaction::new(
                format!("appointments:book:{key}"),
                "appointments.book",
                vec![Posting::debit(self.issued, one), Posting::credit(over, one)],
            )?
            .effective_at(at);
            ledger::post_in_tx(c, &tx).await?;
        }
        diesel::insert_into(appointments::table)
            .values((
                appointments::id.eq(Uuid::now_v7()),
                appointments::subscription_id.eq(self.pack),
                appointments::period_index.eq(self.period as i32),
                appointments::overage.eq(overage),
                appointments::booked_at.eq(at),
                appointments::idempotency_key.eq(key),
            ))
            .execute(c)
            .await?;
        Ok(())
    }
}

/// Books an appointment on an Assistance+ pack at `at`: within the period's quota, or as
/// overage beyond it. Idempotent on `key`. Returns whether it is overage.
pub async fn book_appointment(
    conn: &mut AsyncPgConnection,
    pack_id: Uuid,
    key: &str,
    at: DateTime<Utc>,
) -> Result<bool, WalletError> {
    let existing: Option<bool> = appointments::table
        .filter(appointments::idempotency_key.eq(key))
        .select(appointments::overage)
        .first(conn)
        .await
        .optional()?;
    if let Some(overage) = existing {
        return Ok(overage);
    }
    crate::retry_transaction!(conn, WalletError, |c| {
        let period = pack_period(c, pack_id, at).await?;
        let overage = period.left < Decimal::ONE;
        if !overage {
            let one = amount(Decimal::ONE, Unit::Appointment)?;
            let used = period.used_account(c).await?;
            let tx = NewTransaction::new(
                format!("appointments:book:{key}"),
                "appointments.book",
                vec![
                    Posting::debit(period.quota, one),
                    Posting::credit(used, one),
                ],
            )?
            .effective_at(at);
            ledger::post_in_tx(c, &tx).await?;
        }
        period.record(c, overage, key, at).await?;
        Ok(overage)
    })
}

async fn period_figures(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    pack_id: Uuid,
    period: u32,
) -> Result<(i32, i32), WalletError> {
    let (_, used, overage) = appt_codes(pack_id, period);
    let count =
        |b: Option<BalanceView>| i32::try_from(whole(b.map(|b| b.posted.0))).unwrap_or(i32::MAX);
    Ok((
        count(balance_of(conn, customer, &used).await?),
        count(balance_of(conn, customer, &overage).await?),
    ))
}

/// `assistance-period-close` at `as_of`: each Assistance+ period that has ended by then (or
/// whose pack has ended) is closed once, its overage charged at the appointment tariff in
/// force on the closing date. Returns the charges created.
pub async fn close_appointment_periods(
    conn: &mut AsyncPgConnection,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<u32, WalletError> {
    let packs: Vec<SubFacts> = subscriptions::table
        .filter(subscriptions::anchor_date.is_not_null())
        .select(SubFacts::as_select())
        .load(conn)
        .await?;
    let mut created = 0;
    for SubFacts {
        id,
        customer_id: customer,
        start_date: start,
        ends_at,
        offer_code: code,
        ..
    } in packs
    {
        let Some(offer) = catalog::store::get(conn, &code).await? else {
            continue;
        };
        if offer.entitlements.appointment_quota.is_none() {
            continue;
        }
        let mut period = 0u32;
        loop {
            let period_start = paris_midnight(add_months(start, 12 * period));
            let natural_end = paris_midnight(add_months(start, 12 * (period + 1)));
            let close_at = match ends_at {
                Some(e) if e < natural_end => e,
                _ => natural_end,
            };
            if close_at > as_of || period_start >= close_at {
                break;
            }
            let (_, overage) = period_figures(conn, customer, id, period).await?;
            let closed = crate::retry_transaction!(conn, WalletError, |c| {
                let inserted = diesel::insert_into(appointment_period_closes::table)
                    .values((
                        appointment_period_closes::subscription_id.eq(id),
                        appointment_period_closes::period_index.eq(period as i32),
                        appointment_period_closes::closed_at.eq(close_at),
                        appointment_period_closes::overage.eq(overage),
                    ))
                    .on_conflict_do_nothing()
                    .execute(c)
                    .await?;
                if inserted == 0 || overage == 0 {
                    return Ok(false);
                }
                let close_date = paris_date(close_at);
                let (tariff, unit_price) = price_on(c, APPOINTMENT_OFFER, close_date).await?;
                charges::insert(
                    c,
                    &NewCharge {
                        subscription_id: Some(id),
                        period_index: Some(period as i32),
                        service_start: Some(add_months(start, 12 * period)),
                        service_end: Some(
                            close_date.max(
                                add_months(start, 12 * period)
                                    .succ_opt()
                                    .unwrap_or(close_date),
                            ),
                        ),
                        ..NewCharge::of_offer(
                            customer,
                            &tariff,
                            ChargeSource::AssistanceOverage,
                            format!(
                                "{} × {overage}, period from {}",
                                tariff.name,
                                add_months(start, 12 * period)
                            ),
                            Decimal::from(overage),
                            unit_price,
                        )
                    },
                    now,
                )
                .await?;
                Ok(true)
            })?;
            created += u32::from(closed);
            if ends_at.is_some_and(|e| e <= natural_end) {
                break;
            }
            period += 1;
        }
    }
    Ok(created)
}

// --------------------------------------------------------------------------- balances

/// What a customer holds, every figure read from the ledger.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Balances {
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    pub as_of: DateTime<Utc>,
    pub credits: CreditBalance,
    pub tickets: TicketBalance,
    pub appointments: Vec<AppointmentPeriod>,
    /// What the customer owes (their receivable account, EUR).
    pub amount_owed: DecimalString,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CreditBalance {
    /// Usable credits over every lot granted and not expired at `as_of`.
    pub total: DecimalString,
    pub next_expiry_at: Option<DateTime<Utc>>,
    /// Credits that expire at `next_expiry_at`.
    pub next_expiry_amount: Option<DecimalString>,
    pub lots: Vec<CreditLotView>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TicketBalance {
    pub available: i64,
    pub pending_payment: i64,
}

async fn balance_of(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    code: &str,
) -> Result<Option<BalanceView>, WalletError> {
    let found: Option<Uuid> = crate::schema::accounts::table
        .filter(crate::schema::accounts::code.eq(code))
        .filter(crate::schema::accounts::customer_id.eq(customer))
        .select(crate::schema::accounts::id)
        .first(conn)
        .await
        .optional()?;
    match found {
        Some(id) => Ok(ledger::get_account(conn, AccountId(id))
            .await?
            .map(|a| a.balance)),
        None => Ok(None),
    }
}

/// A count held as a whole-unit balance (0 when there is no account).
fn whole(d: Option<Decimal>) -> i64 {
    d.map(|d| i64::try_from(d.trunc().mantissa()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub async fn balances(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    at: DateTime<Utc>,
) -> Result<Balances, WalletError> {
    let all = lots(conn, customer).await?;
    // a lot granted for a future period counts from its grant instant (DOMAIN.md)
    let live: Vec<CreditLotView> = all
        .into_iter()
        .filter(|l| l.granted_at <= at && l.expires_at > at && l.remaining.0 > Decimal::ZERO)
        .collect();
    let total: Decimal = live.iter().map(|l| l.remaining.0).sum();
    let next_expiry_at = live.iter().map(|l| l.expires_at).min();
    let next_expiry_amount = next_expiry_at.map(|n| {
        DecimalString(round_cents(
            live.iter()
                .filter(|l| l.expires_at == n)
                .map(|l| l.remaining.0)
                .sum(),
        ))
    });
    let tickets = TicketBalance {
        available: whole(
            balance_of(conn, customer, "TICKET-WALLET")
                .await?
                .map(|b| b.available.0),
        ),
        pending_payment: whole(
            balance_of(conn, customer, "TICKET-PENDING")
                .await?
                .map(|b| b.posted.0),
        ),
    };
    let mut appointments = Vec::new();
    for (id, offer) in active_offers(conn, customer, at).await? {
        let Some(quota) = offer.entitlements.appointment_quota else {
            continue;
        };
        let start: NaiveDate = subscriptions::table
            .find(id)
            .select(subscriptions::start_date)
            .first(conn)
            .await?;
        let period = appointment_period(start, paris_date(at));
        let (used, overage) = period_figures(conn, customer, id, period).await?;
        appointments.push(AppointmentPeriod {
            subscription_id: id,
            period_index: period,
            period_start: add_months(start, 12 * period),
            period_end: add_months(start, 12 * (period + 1)),
            quota,
            used,
            overage,
        });
    }
    let owed = balance_of(conn, customer, "411")
        .await?
        .map(|b| b.posted.0)
        .unwrap_or_default();
    Ok(Balances {
        customer_id: customer,
        as_of: at,
        credits: CreditBalance {
            total: DecimalString(round_cents(total)),
            next_expiry_at,
            next_expiry_amount,
            lots: live,
        },
        tickets,
        appointments,
        amount_owed: DecimalString(round_cents(owed)),
    })
}

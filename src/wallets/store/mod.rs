//! Wallet operations and jobs, one file per kind of holding: tickets, credit lots (and
//! their expiry), Assistance+ appointments, and the balances read model. Each operation
//! runs in one database transaction and moves balances only through the ledger. This file
//! holds what they share: the customer's accounts and active offers, prices.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::calendar::paris_midnight;
use crate::catalog::{self, Offer};
use crate::customers::CustomerStatus;
use crate::ledger::chart::{CustomerAccount, Platform};
use crate::ledger::store as ledger;
use crate::ledger::{AccountId, LedgerError, Posting};
use crate::money::{Amount, Unit};
use crate::schema::subscriptions;

mod credits;
mod expiry;
mod pack_periods;
mod summary;
mod tickets;

pub use credits::*;
pub use expiry::*;
pub use pack_periods::*;
pub use summary::*;
pub use tickets::*;

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

/// The customer's account `which` (opened on first use).
pub(crate) async fn account(
    conn: &AsyncPgConnection,
    customer: Uuid,
    which: CustomerAccount,
) -> Result<AccountId, LedgerError> {
    Ok(ledger::ensure_account(conn, &which.new_account(customer))
        .await?
        .id)
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
        account(conn, customer, CustomerAccount::DeferredRevenue),
        account(conn, customer, CustomerAccount::Revenue),
    )?;
    Ok(vec![
        Posting::debit(deferred, eur),
        Posting::credit(revenue_706, eur),
    ])
}

fn amount(value: Decimal, unit: Unit) -> Result<Amount, WalletError> {
    Amount::new(value, unit).map_err(|e| WalletError::Invalid(e.to_string()))
}

/// Refuses a purchase for a customer that does not exist or is closed; the customer's row
/// stays locked to the end of the transaction, first of the customer's rows, as the
/// purchase's invoice locks it (see [`crate::customers::store::status_for_update`]).
async fn require_open_customer(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
) -> Result<(), WalletError> {
    match crate::customers::store::status_for_update(conn, customer).await? {
        None => Err(WalletError::UnknownCustomer(customer)),
        Some(CustomerStatus::Closed) => Err(WalletError::CustomerClosed(customer)),
        Some(_) => Ok(()),
    }
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

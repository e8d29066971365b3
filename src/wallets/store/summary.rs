//! The balances read model: credits, tickets, appointments, amount owed.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::calendar::paris_date;
use crate::ledger::store as ledger;
use crate::ledger::{AccountId, BalanceView};
use crate::money::round_cents;
use crate::schema::subscriptions;
use crate::subscriptions::schedule::twelve_month_period_at;

/// What a customer holds, every figure read from the ledger.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Balances {
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    pub as_of: DateTime<Utc>,
    pub credits: CreditBalance,
    pub tickets: TicketBalance,
    pub appointments: Vec<AppointmentPeriod>,
    /// What the customer's open invoices still ask (EUR): their totals incl. VAT less what
    /// payments, the credit balance and credit notes settled; equal to the receivable 411.
    #[schema(example = "100.00")]
    pub amount_owed: DecimalString,
    /// Paid beyond what was invoiced (EUR, the customer's account 4191): applied to the
    /// next invoices, or refunded.
    #[schema(example = "0.00")]
    pub credit_balance: DecimalString,
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

pub(super) async fn balance_of(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    which: CustomerAccount,
) -> Result<Option<BalanceView>, WalletError> {
    let found: Option<Uuid> = crate::schema::accounts::table
        .filter(crate::schema::accounts::code.eq(which.code()))
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
pub(super) fn whole(d: Option<Decimal>) -> i64 {
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
            balance_of(conn, customer, CustomerAccount::TicketWallet)
                .await?
                .map(|b| b.available.0),
        ),
        pending_payment: whole(
            balance_of(conn, customer, CustomerAccount::TicketPending)
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
        let period = twelve_month_period_at(start, paris_date(at));
        let (used, overage) = period_figures(conn, customer, id, period.index).await?;
        appointments.push(AppointmentPeriod {
            subscription_id: id,
            period_index: period.index,
            period_start: period.start,
            period_end: period.end,
            quota,
            used,
            overage,
        });
    }
    let owed: Decimal = crate::invoicing::store_settlements::open_invoices(conn, customer)
        .await?
        .iter()
        .map(|i| i.due)
        .sum();
    let credit_balance = crate::payments::store::credit_balance(conn, customer).await?;
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
        credit_balance: DecimalString(round_cents(credit_balance)),
    })
}

//! Credit-lot expiry: the remainder, and what holds release later, go to breakage.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::ledger::store as ledger;
use crate::ledger::{AccountId, NewTransaction, Posting};
use crate::money::Unit;
use crate::schema::credit_lots;

/// `credit-expiry` at `as_of`: each lot expired by then sends its remainder to breakage (a
/// ledger movement; in EUR at the lot's unit price, or the rest of its sale value when it
/// empties the lot). Idempotent. Returns the lots expired.
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
        .order(credit_lots::id)
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

/// Sends what is usable on `lot` (locked by the caller) to breakage under `key`, effective
/// `at` (nothing when nothing is left): in EUR at the lot's unit price, or the rest of what
/// the lot was sold for when nothing stays held on it ([`crate::wallets::lots::LotSale::movement_eur`]). Whether
/// it posted.
pub(super) async fn breakage(
    c: &mut AsyncPgConnection,
    lot: &LotRow,
    key: String,
    at: DateTime<Utc>,
) -> Result<bool, WalletError> {
    let (remaining, left) = ledger::get_account(c, AccountId(lot.account_id))
        .await?
        .map(|a| (a.balance.available.0, a.balance.posted.0))
        .unwrap_or_default();
    if remaining <= Decimal::ZERO {
        return Ok(false);
    }
    let customer = lot.customer_id;
    let expired_acct = account(c, customer, CustomerAccount::CreditExpired).await?;
    let part = amount(remaining, Unit::Credit)?;
    let mut postings = vec![
        Posting::debit(AccountId(lot.account_id), part),
        Posting::credit(expired_acct, part),
    ];
    let breakage = movement_eur(c, lot, left, remaining).await?;
    if !breakage.is_zero() {
        let deferred = account(c, customer, CustomerAccount::DeferredRevenue).await?;
        let eur = amount(breakage.abs(), Unit::Eur)?;
        // a negative remainder gives back what the lot's earlier movements over-recognised
        let (from, to) = match breakage > Decimal::ZERO {
            true => (deferred, Platform::Breakage.id()),
            false => (Platform::Breakage.id(), deferred),
        };
        postings.push(Posting::debit(from, eur));
        postings.push(Posting::credit(to, eur));
    }
    let tx = NewTransaction::new(key, "credits.expire", postings)?.effective_at(at);
    ledger::post_in_tx(c, &tx).await?;
    Ok(true)
}

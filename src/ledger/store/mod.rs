//! Persistence of the ledger. Every function takes `&mut AsyncPgConnection`, so a domain
//! use case can compose several of them inside one database transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{
    Array, Bool, Bytea, Jsonb, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::db::is_retryable;
use crate::money::Unit;
use crate::schema::{accounts, balances, holds, postings, transactions};

#[diesel::declare_sql_function]
extern "SQL" {
    #[sql_name = "ledger_post"]
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors the SQL function's signature"
    )]
    fn ledger_post_fn(
        p_id: SqlUuid,
        p_kind: Text,
        p_key: Text,
        p_hash: Bytea,
        p_effective_at: Nullable<Timestamptz>,
        p_description: Nullable<Text>,
        p_metadata: Jsonb,
        p_reverses: Nullable<SqlUuid>,
        p_accounts: Array<SqlUuid>,
        p_sides: Array<Text>,
        p_amounts: Array<Numeric>,
        p_units: Array<Text>,
    ) -> SqlUuid;

    #[sql_name = "ledger_open_account"]
    fn ledger_open_account_fn(
        p_id: SqlUuid,
        p_code: Text,
        p_name: Text,
        p_unit: Text,
        p_customer: Nullable<SqlUuid>,
        p_normal_side: Text,
        p_no_overdraft: Bool,
    ) -> Nullable<SqlUuid>;
}

/// How many times a use case that PostgreSQL asked to run again (a serialization failure
/// or a deadlock, by SQLSTATE) is tried in all.
pub const MAX_ATTEMPTS: u32 = 8;

/// Maps the database's refusals (see the migrations' `gl_*` constraint names) to ours.
fn refusal(e: DieselError) -> LedgerError {
    if let DieselError::DatabaseError(_, info) = &e {
        match info.constraint_name() {
            Some("gl_insufficient_funds") => return LedgerError::InsufficientFunds,
            Some("gl_idempotency_conflict") => return LedgerError::IdempotencyConflict,
            Some("gl_posting_invalid") => return LedgerError::PostingInvalid,
            Some("gl_hold_not_pending") => {
                // DETAIL: "<hold id> <status>"
                let mut detail = info.details().unwrap_or_default().split(' ');
                let id = detail.next().and_then(|i| i.parse().ok());
                let status = detail.next().and_then(HoldStatus::parse);
                if let (Some(id), Some(status)) = (id, status) {
                    return LedgerError::HoldNotPending(HoldId(id), status);
                }
            }
            Some("gl_unknown_hold") => return LedgerError::UnknownHold(HoldId(Uuid::nil())),
            _ => {}
        }
    }
    LedgerError::Database(e)
}

impl crate::db::Retryable for LedgerError {
    fn is_retryable(&self) -> bool {
        matches!(self, LedgerError::Database(e) if is_retryable(e))
    }
}

/// How long to wait before attempt `attempt + 1`: exponential from 2 ms, with full jitter
/// so that the transactions that collided do not collide again.
pub fn backoff(attempt: u32) -> std::time::Duration {
    let ceiling = 2u64 << attempt.min(10);
    std::time::Duration::from_micros(rand::random_range(ceiling * 500..=ceiling * 1000))
}

/// Runs a use case's block in a database transaction, again (at most [`MAX_ATTEMPTS`] in
/// all, after a jittered [`backoff`]) when PostgreSQL reports a serialization failure or
/// a deadlock. The block is an `async |conn| { ... }` body returning `Result<_, E>` where
/// `E: From<diesel::result::Error> + db::Retryable`. Only at a use case's boundary: never
/// inside another transaction (the functions it calls are the `_in_tx` ones).
#[macro_export]
macro_rules! retry_transaction {
    ($conn:expr, $err:ty, |$c:ident| $body:block) => {{
        let mut attempt = 1u32;
        loop {
            let result: Result<_, $err> =
                diesel_async::AsyncConnection::transaction(&mut *$conn, async |$c| $body).await;
            match result {
                Err(e) if $crate::db::Retryable::is_retryable(&e) && attempt < $crate::ledger::store::MAX_ATTEMPTS => {
                    tracing::debug!(attempt, error = %e, "retrying a database transaction");
                    tokio::time::sleep($crate::ledger::store::backoff(attempt)).await;
                    attempt += 1;
                }
                other => break other,
            }
        }
    }};
}

/// Runs one statement (its own transaction) again like [`retry_transaction!`].
async fn retried<T, F, Fut>(mut once: F) -> Result<T, LedgerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, LedgerError>>,
{
    let mut attempt = 1;
    loop {
        match once().await {
            Err(e) if crate::db::Retryable::is_retryable(&e) && attempt < MAX_ATTEMPTS => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = accounts)]
struct AccountRow {
    id: Uuid,
    code: String,
    name: String,
    unit: String,
    customer_id: Option<Uuid>,
    normal_side: String,
    no_overdraft: bool,
    created_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = balances)]
struct BalanceRow {
    posted_debits: Decimal,
    posted_credits: Decimal,
    pending_debits: Decimal,
    pending_credits: Decimal,
}

fn parse_unit(s: &str) -> Unit {
    // the units table and `Unit` are kept in step by the migration; a mismatch is a bug
    s.parse()
        .unwrap_or_else(|e| panic!("unit in database unknown to this build: {e}"))
}

fn parse_side(s: &str) -> Side {
    Side::parse(s).unwrap_or_else(|| panic!("side in database unknown to this build: {s}"))
}

fn account_view(a: AccountRow, b: BalanceRow) -> AccountView {
    let unit = parse_unit(&a.unit);
    let side = parse_side(&a.normal_side);
    AccountView {
        id: AccountId(a.id),
        code: a.code,
        name: a.name,
        unit,
        customer_id: a.customer_id,
        normal_side: side,
        no_overdraft: a.no_overdraft,
        balance: BalanceView::compute(
            side,
            unit,
            [
                b.posted_debits,
                b.posted_credits,
                b.pending_debits,
                b.pending_credits,
            ],
            None,
        ),
        created_at: a.created_at,
    }
}

/// What an account is; `code` is unique per customer (or among platform accounts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub code: String,
    pub name: String,
    pub unit: Unit,
    pub customer_id: Option<Uuid>,
    pub normal_side: Side,
    pub no_overdraft: bool,
}

/// Opens the account unless one with the same code exists for the same customer (one
/// statement when it exists, two when it is opened), and returns it. An existing account
/// with other properties is an error, never changed. Needs no transaction of its own.
pub async fn ensure_account(
    mut conn: &AsyncPgConnection,
    new: &NewAccount,
) -> Result<AccountView, LedgerError> {
    let find = || {
        accounts::table
            .inner_join(balances::table)
            .filter(accounts::code.eq(&new.code))
            .filter(accounts::customer_id.is_not_distinct_from(new.customer_id))
            .select((AccountRow::as_select(), BalanceRow::as_select()))
    };
    // most calls find it: one statement
    let found: Option<(AccountRow, BalanceRow)> = find().first(&mut conn).await.optional()?;
    let (a, b) = match found {
        Some(row) => row,
        None => {
            diesel::select(ledger_open_account_fn(
                Uuid::now_v7(),
                &new.code,
                &new.name,
                new.unit.code(),
                new.customer_id,
                new.normal_side.as_str(),
                new.no_overdraft,
            ))
            .get_result::<Option<Uuid>>(&mut conn)
            .await
            .map_err(refusal)?;
            find().first(&mut conn).await?
        }
    };
    let view = account_view(a, b);
    if (view.unit, view.normal_side, view.no_overdraft)
        != (new.unit, new.normal_side, new.no_overdraft)
    {
        return Err(LedgerError::Invalid {
            field: "code",
            reason: format!(
                "account {} exists with another unit, side or overdraft rule",
                new.code
            ),
        });
    }
    Ok(view)
}

/// [`ensure_account`] for many customer accounts at once: finds those that exist in one
/// statement and opens the others in one more (one `ledger_open_account` call per row).
/// Returns their ids in the order of `wanted`. For accounts of the chart, whose unit, side
/// and overdraft rule are fixed, so an existing account is taken as it is.
pub async fn ensure_accounts(
    mut conn: &AsyncPgConnection,
    wanted: &[NewAccount],
) -> Result<Vec<AccountId>, LedgerError> {
    let customers: Vec<Uuid> = wanted.iter().filter_map(|a| a.customer_id).collect();
    let codes: Vec<&str> = wanted.iter().map(|a| a.code.as_str()).collect();
    let found: Vec<(Uuid, String, Option<Uuid>)> = accounts::table
        .filter(accounts::customer_id.eq_any(&customers))
        .filter(accounts::code.eq_any(&codes))
        .select((accounts::id, accounts::code, accounts::customer_id))
        .load(&mut conn)
        .await?;
    let mut ids: std::collections::HashMap<(Option<Uuid>, String), Uuid> = found
        .into_iter()
        .map(|(id, code, customer)| ((customer, code), id))
        .collect();
    let missing: Vec<&NewAccount> = wanted
        .iter()
        .filter(|a| !ids.contains_key(&(a.customer_id, a.code.clone())))
        .collect();
    if !missing.is_empty() {
        #[derive(QueryableByName)]
        struct Opened {
            #[diesel(sql_type = SqlUuid)]
            id: Uuid,
        }
        let opened: Vec<Opened> = diesel::sql_query(
            "SELECT ledger_open_account(x.id, x.code, x.name, x.unit, x.customer, x.side, x.no_overdraft) AS id
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::boolean[])
                    WITH ORDINALITY AS x(id, code, name, unit, customer, side, no_overdraft, n)
              ORDER BY x.n",
        )
        .bind::<Array<SqlUuid>, _>(missing.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(missing.iter().map(|a| a.code.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(missing.iter().map(|a| a.name.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(missing.iter().map(|a| a.unit.code()).collect::<Vec<_>>())
        .bind::<Array<Nullable<SqlUuid>>, _>(
            missing.iter().map(|a| a.customer_id).collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            missing
                .iter()
                .map(|a| a.normal_side.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Bool>, _>(missing.iter().map(|a| a.no_overdraft).collect::<Vec<_>>())
        .load(&mut conn)
        .await
        .map_err(refusal)?;
        for (a, o) in missing.iter().zip(opened) {
            ids.insert((a.customer_id, a.code.clone()), o.id);
        }
    }
    wanted
        .iter()
        .map(|a| {
            ids.get(&(a.customer_id, a.code.clone()))
                .map(|id| AccountId(*id))
                .ok_or_else(|| LedgerError::Invalid {
                    field: "code",
                    reason: format!("account {} could not be opened", a.code),
                })
        })
        .collect()
}

pub async fn get_account(
    conn: &mut AsyncPgConnection,
    id: AccountId,
) -> Result<Option<AccountView>, LedgerError> {
    let row: Option<(AccountRow, BalanceRow)> = accounts::table
        .inner_join(balances::table)
        .filter(accounts::id.eq(id.0))
        .select((AccountRow::as_select(), BalanceRow::as_select()))
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(|(a, b)| account_view(a, b)))
}

/// Accounts in id order, after `after`, optionally of one customer.
pub async fn list_accounts(
    conn: &mut AsyncPgConnection,
    customer: Option<Uuid>,
    after: Option<AccountId>,
    limit: i64,
) -> Result<Vec<AccountView>, LedgerError> {
    let mut q = accounts::table
        .inner_join(balances::table)
        .select((AccountRow::as_select(), BalanceRow::as_select()))
        .order(accounts::id)
        .limit(limit)
        .into_boxed();
    if let Some(c) = customer {
        q = q.filter(accounts::customer_id.eq(c));
    }
    if let Some(a) = after {
        q = q.filter(accounts::id.gt(a.0));
    }
    let rows: Vec<(AccountRow, BalanceRow)> = q.load(conn).await?;
    Ok(rows.into_iter().map(|(a, b)| account_view(a, b)).collect())
}

/// Posts a balanced transaction: one function call, its own database transaction.
/// Replaying the same idempotency key with the same request returns the first transaction
/// (`replayed: true`).
pub async fn post(
    conn: &mut AsyncPgConnection,
    tx: &NewTransaction,
) -> Result<Posted, LedgerError> {
    let conn: &AsyncPgConnection = conn;
    retried(|| post_as(conn, Uuid::now_v7(), tx)).await
}

/// Posts `tx` inside the caller's database transaction (which retries as a whole); through
/// `&AsyncPgConnection`, so that it can go out along with other statements.
pub async fn post_in_tx(
    conn: &AsyncPgConnection,
    tx: &NewTransaction,
) -> Result<Posted, LedgerError> {
    post_as(conn, Uuid::now_v7(), tx).await
}

/// Posts `tx` under the id `id`, once.
async fn post_as(
    mut conn: &AsyncPgConnection,
    id: Uuid,
    tx: &NewTransaction,
) -> Result<Posted, LedgerError> {
    let accounts: Vec<Uuid> = tx.postings.iter().map(|p| p.account.0).collect();
    let sides: Vec<&str> = tx.postings.iter().map(|p| p.side.as_str()).collect();
    let amounts: Vec<Decimal> = tx.postings.iter().map(|p| p.amount.value()).collect();
    let units: Vec<&str> = tx.postings.iter().map(|p| p.amount.unit().code()).collect();
    let got = diesel::select(ledger_post_fn(
        id,
        &tx.kind,
        &tx.idempotency_key,
        tx.request_hash(),
        tx.effective_at.or(tx.posted_at),
        tx.description.as_deref(),
        serde_json::Value::Object(tx.metadata.clone()),
        tx.reverses.map(|r| r.0),
        accounts,
        sides,
        amounts,
        units,
    ))
    .get_result::<Uuid>(&mut conn)
    .await
    .map_err(|e| match refusal(e) {
        LedgerError::Database(DieselError::DatabaseError(_, info))
            if info.constraint_name() == Some("gl_already_reversed") =>
        {
            LedgerError::AlreadyReversed(tx.reverses.unwrap_or(TransactionId(Uuid::nil())))
        }
        other => other,
    })?;
    Ok(Posted {
        id: TransactionId(got),
        replayed: got != id,
    })
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = transactions)]
struct TransactionRow {
    id: Uuid,
    kind: String,
    idempotency_key: String,
    effective_at: DateTime<Utc>,
    description: Option<String>,
    metadata: serde_json::Value,
    reverses: Option<Uuid>,
    created_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = postings)]
struct PostingRow {
    id: i64,
    transaction_id: Uuid,
    account_id: Uuid,
    side: String,
    amount: Decimal,
    unit: String,
}

impl From<PostingRow> for PostingView {
    fn from(p: PostingRow) -> Self {
        let unit = parse_unit(&p.unit);
        PostingView {
            id: p.id,
            transaction_id: TransactionId(p.transaction_id),
            account_id: AccountId(p.account_id),
            side: parse_side(&p.side),
            amount: unit.show(p.amount),
            unit,
        }
    }
}

pub async fn get_transaction(
    conn: &mut AsyncPgConnection,
    id: TransactionId,
) -> Result<Option<TransactionView>, LedgerError> {
    let Some(t) = transactions::table
        .find(id.0)
        .select(TransactionRow::as_select())
        .first(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    let lines: Vec<PostingRow> = postings::table
        .filter(postings::transaction_id.eq(id.0))
        .order(postings::id)
        .select(PostingRow::as_select())
        .load(conn)
        .await?;
    let reversed_by: Option<Uuid> = transactions::table
        .filter(transactions::reverses.eq(id.0))
        .select(transactions::id)
        .first(conn)
        .await
        .optional()?;
    Ok(Some(TransactionView {
        id: TransactionId(t.id),
        kind: t.kind,
        idempotency_key: t.idempotency_key,
        effective_at: t.effective_at,
        description: t.description,
        metadata: t.metadata,
        reverses: t.reverses.map(TransactionId),
        reversed_by: reversed_by.map(TransactionId),
        postings: lines.into_iter().map(PostingView::from).collect(),
        created_at: t.created_at,
    }))
}

/// The transaction posted under `key`, if any.
pub async fn find_by_key(
    conn: &mut AsyncPgConnection,
    key: &str,
) -> Result<Option<TransactionView>, LedgerError> {
    let id: Option<Uuid> = transactions::table
        .filter(transactions::idempotency_key.eq(key))
        .select(transactions::id)
        .first(conn)
        .await
        .optional()?;
    match id {
        Some(id) => get_transaction(conn, TransactionId(id)).await,
        None => Ok(None),
    }
}

/// Posts the reversal of `id` (every posting on the other side), effective `at`. A
/// transaction is reversed at most once; asking again returns the same reversal.
pub async fn reverse(
    conn: &mut AsyncPgConnection,
    id: TransactionId,
    description: Option<String>,
    at: DateTime<Utc>,
) -> Result<Posted, LedgerError> {
    let original = get_transaction(conn, id)
        .await?
        .ok_or(LedgerError::UnknownTransaction(id))?;
    if let Some(existing) = original.reversed_by {
        return Ok(Posted {
            id: existing,
            replayed: true,
        });
    }
    let mut reversal = NewTransaction::reversal_of(&original, format!("reversal:{id}"), at)?;
    if let Some(d) = description {
        reversal = reversal.description(d);
    }
    match post(conn, &reversal).await {
        // a concurrent reversal won the race: that one is the reversal
        Err(LedgerError::AlreadyReversed(_)) | Err(LedgerError::IdempotencyConflict) => {
            let view = get_transaction(conn, id)
                .await?
                .ok_or(LedgerError::UnknownTransaction(id))?;
            view.reversed_by
                .map(|r| Posted {
                    id: r,
                    replayed: true,
                })
                .ok_or(LedgerError::AlreadyReversed(id))
        }
        other => other,
    }
}

/// Postings of one account in ledger order, after the posting `after`.
pub async fn account_postings(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<PostingView>, LedgerError> {
    let rows: Vec<PostingRow> = postings::table
        .filter(postings::account_id.eq(account.0))
        .filter(postings::id.gt(after.unwrap_or(0)))
        .order(postings::id)
        .limit(limit)
        .select(PostingRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(PostingView::from).collect())
}

#[derive(QueryableByName)]
struct Sums {
    #[diesel(sql_type = Numeric)]
    posted_debits: Decimal,
    #[diesel(sql_type = Numeric)]
    posted_credits: Decimal,
    #[diesel(sql_type = Numeric)]
    pending_debits: Decimal,
    #[diesel(sql_type = Numeric)]
    pending_credits: Decimal,
}

/// The balance of an account as it stood at `at`: postings effective by then, and holds
/// created by then and not yet resolved.
pub async fn balance_as_of(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    at: DateTime<Utc>,
) -> Result<Option<BalanceView>, LedgerError> {
    let Some(view) = get_account(conn, account).await? else {
        return Ok(None);
    };
    let sums: Sums = diesel::sql_query(
        "SELECT
           coalesce((SELECT sum(p.amount) FROM postings p JOIN transactions t ON t.id = p.transaction_id
                     WHERE p.account_id = $1 AND p.side = 'debit' AND t.effective_at <= $2), 0) AS posted_debits,
           coalesce((SELECT sum(p.amount) FROM postings p JOIN transactions t ON t.id = p.transaction_id
                     WHERE p.account_id = $1 AND p.side = 'credit' AND t.effective_at <= $2), 0) AS posted_credits,
           coalesce((SELECT sum(amount) FROM holds WHERE debit_account_id = $1 AND created_at <= $2
                     AND (resolved_at IS NULL OR resolved_at > $2)), 0) AS pending_debits,
           coalesce((SELECT sum(amount) FROM holds WHERE credit_account_id = $1 AND created_at <= $2
                     AND (resolved_at IS NULL OR resolved_at > $2)), 0) AS pending_credits",
    )
    .bind::<SqlUuid, _>(account.0)
    .bind::<Timestamptz, _>(at)
    .get_result(conn)
    .await?;
    Ok(Some(BalanceView::compute(
        view.normal_side,
        view.unit,
        [
            sums.posted_debits,
            sums.posted_credits,
            sums.pending_debits,
            sums.pending_credits,
        ],
        Some(at),
    )))
}

pub mod fec;
mod reservations;
mod verify;

pub use reservations::*;
pub use verify::verify;

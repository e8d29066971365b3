//! The invoice run engine: the one path that issues the invoices of a run, behind
//! `POST /v1/invoice-runs` (in the background) and the `invoicing` job (HTTP and CLI).
//!
//! Customers are taken in pages of [`BATCH`] (by id, never all loaded) by [`WORKERS`]
//! connections in parallel. A page is one transaction: the drafts of all its customers
//! (customer rows then charges locked, amounts computed; sent at once), then their
//! invoices written together ([`write_in_tx`]: accounts opened, lines, VAT, charge links
//! and ledger transactions sent at once, then the whole page numbered in one step of the
//! series' counter). Every row a page locks is its own customers', but for that counter
//! row, taken last and held to the commit: numbers stay gapless and in issue order, and
//! the other connections write their pages meanwhile. The run's figures and errors are
//! updated in the same transaction. A customer whose draft is refused is recorded as
//! failed; a page that fails as a whole is issued again customer by customer, so one
//! customer's failure rolls back nothing but its own invoice and number.
//!
//! A running run is leased: the process running it holds a PostgreSQL advisory lock keyed
//! on the run's id on a connection of its own. A `running` run whose lock nobody holds was
//! left by a process that stopped: [`mark_interrupted`] (at start-up, and before a run is
//! read) marks it `interrupted`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::runs::{error_text, InvoiceRunView, Progress, RunError, RunStatus};
use super::store::{draft_in_tx, write_in_tx, Selection};
use super::InvoicingError;
use crate::clock::ServiceClock;
use crate::db::DbPool;
use crate::money::Unit;
use crate::schema::{charges, invoice_run_errors, invoice_runs};

/// Connections a run issues on in parallel.
pub const WORKERS: usize = 3;
/// Customers per transaction.
pub const BATCH: i64 = 50;
/// Errors a run's view lists.
const ERRORS_SHOWN: i64 = 100;
/// The advisory lock namespace of run leases ("INVR").
const LEASE_SPACE: i32 = 0x494E_5652;

#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
    #[error("no database connection: {0}")]
    Pool(String),
    #[error("{0}")]
    Invoicing(#[from] InvoicingError),
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = invoice_runs)]
struct RunRow {
    id: Uuid,
    as_of: DateTime<Utc>,
    status: RunStatus,
    customers_total: i32,
    customers_done: i32,
    customers_failed: i32,
    invoices_issued: i32,
    total_ht: Decimal,
    total_vat: Decimal,
    total_ttc: Decimal,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

fn view(r: RunRow, errors: Vec<RunError>) -> InvoiceRunView {
    InvoiceRunView {
        id: r.id,
        as_of: r.as_of,
        status: r.status,
        customers_total: r.customers_total,
        customers_done: r.customers_done,
        customers_failed: r.customers_failed,
        invoices_issued: r.invoices_issued,
        total_ht: Unit::Eur.show(r.total_ht),
        total_vat: Unit::Eur.show(r.total_vat),
        total_ttc: Unit::Eur.show(r.total_ttc),
        errors,
        started_at: r.started_at,
        finished_at: r.finished_at,
    }
}

/// A run being executed: its row, and the connection that holds its lease.
pub struct Started {
    pub run: InvoiceRunView,
    lease: AsyncPgConnection,
}

/// Creates a run for `as_of` at `now` and takes its lease (before the row exists, so that
/// nobody sees it running unleased).
pub async fn start(
    pool: &DbPool,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Started, RunFailure> {
    let pooled = pool
        .get()
        .await
        .map_err(|e| RunFailure::Pool(e.to_string()))?;
    // off the pool: closing it (whatever ends the run) releases the lease
    let mut lease = deadpool::managed::Object::take(pooled);
    let id = Uuid::now_v7();
    diesel::sql_query("SELECT pg_advisory_lock($1, hashtext($2::text) & 2147483647)")
        .bind::<diesel::sql_types::Integer, _>(LEASE_SPACE)
        .bind::<diesel::sql_types::Uuid, _>(id)
        .execute(&mut lease)
        .await?;
    let total: i64 = charges::table
        .filter(charges::invoice_id.is_null())
        .filter(charges::created_at.le(as_of))
        .select(diesel::dsl::count(charges::customer_id).aggregate_distinct())
        .first(&mut lease)
        .await?;
    let row: RunRow = diesel::insert_into(invoice_runs::table)
        .values((
            invoice_runs::id.eq(id),
            invoice_runs::as_of.eq(as_of),
            invoice_runs::status.eq(RunStatus::Running.as_str()),
            invoice_runs::customers_total.eq(i32::try_from(total).unwrap_or(i32::MAX)),
            invoice_runs::started_at.eq(now),
        ))
        .returning(RunRow::as_returning())
        .get_result(&mut lease)
        .await?;
    Ok(Started {
        run: view(row, Vec::new()),
        lease,
    })
}

/// Issues the invoices of a started run to the end on [`WORKERS`] connections of `pool`,
/// each page dated by `clock` when it starts, calling `progress` after each page; then
/// marks it `completed` (or `interrupted` when it could not go on) and releases its lease.
pub async fn execute(
    pool: &DbPool,
    started: Started,
    clock: &ServiceClock,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<InvoiceRunView, RunFailure> {
    let Started { run, mut lease } = started;
    let cursor = tokio::sync::Mutex::new(Some(Uuid::nil()));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let workers = (0..WORKERS).map(|_| async {
        let mut conn = pool
            .get()
            .await
            .map_err(|e| RunFailure::Pool(e.to_string()))?;
        let done = work(&mut conn, &run, &cursor, &stop, clock, progress).await;
        if done.is_err() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        done
    });
    let outcome: Result<Vec<()>, RunFailure> = futures_util::future::join_all(workers)
        .await
        .into_iter()
        .collect();
    let status = match &outcome {
        Ok(_) => RunStatus::Completed,
        Err(e) => {
            tracing::error!(run = %run.id, error = %e, "invoice run interrupted");
            RunStatus::Interrupted
        }
    };
    diesel::update(invoice_runs::table.find(run.id))
        .filter(invoice_runs::status.eq(RunStatus::Running.as_str()))
        .set((
            invoice_runs::status.eq(status.as_str()),
            invoice_runs::finished_at.eq(clock.now()),
        ))
        .execute(&mut lease)
        .await?;
    outcome?;
    let finished = get_raw(&mut lease, run.id).await?;
    finished.ok_or_else(|| RunFailure::Pool("the run disappeared".into()))
}

/// Starts a run and executes it to the end (the `invoicing` job).
pub async fn run_to_end(
    pool: &DbPool,
    as_of: DateTime<Utc>,
    clock: &ServiceClock,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<InvoiceRunView, RunFailure> {
    let started = start(pool, as_of, clock.now()).await?;
    execute(pool, started, clock, progress).await
}

/// One worker: takes the next page of customers until none is left.
async fn work(
    conn: &mut AsyncPgConnection,
    run: &InvoiceRunView,
    cursor: &tokio::sync::Mutex<Option<Uuid>>,
    stop: &std::sync::atomic::AtomicBool,
    clock: &ServiceClock,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<(), RunFailure> {
    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let page = {
            let mut after = cursor.lock().await;
            let Some(from) = *after else {
                return Ok(());
            };
            let page = next_page(conn, run.as_of, from).await?;
            *after = match page.last() {
                Some(last) if page.len() as i64 == BATCH => Some(*last),
                _ => None,
            };
            page
        };
        if page.is_empty() {
            return Ok(());
        }
        let now = clock.now();
        let p = issue_page(conn, run.id, &page, run.as_of, now).await?;
        progress(&p);
    }
}

/// Customers with charges to invoice up to `as_of`, after `after` in id order.
async fn next_page(
    conn: &mut AsyncPgConnection,
    as_of: DateTime<Utc>,
    after: Uuid,
) -> Result<Vec<Uuid>, diesel::result::Error> {
    charges::table
        .filter(charges::invoice_id.is_null())
        .filter(charges::created_at.le(as_of))
        .filter(charges::customer_id.gt(after))
        .select(charges::customer_id)
        .distinct()
        .order(charges::customer_id)
        .limit(BATCH)
        .load(conn)
        .await
}

/// What a page did, to add to its run.
#[derive(Default)]
struct PageOutcome {
    issued: i32,
    ht: Decimal,
    vat: Decimal,
    ttc: Decimal,
    failed: Vec<(Uuid, String)>,
}

/// Issues one page in one transaction; when it fails as a whole, customer by customer.
async fn issue_page(
    conn: &mut AsyncPgConnection,
    run: Uuid,
    customers: &[Uuid],
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Progress, RunFailure> {
    let whole = crate::retry_transaction!(conn, InvoicingError, |c| {
        let outcome = issue_in_page(c, customers, as_of, now).await?;
        Ok(record(c, run, customers.len(), &outcome).await?)
    });
    let error = match whole {
        Ok(p) => return Ok(p),
        Err(e) if customers.len() == 1 => e,
        Err(e) => {
            tracing::warn!(%run, error = %e, "a page failed; issuing its customers one by one");
            let mut last = None;
            for customer in customers {
                last = Some(Box::pin(issue_page(conn, run, &[*customer], as_of, now)).await?);
            }
            return last.ok_or_else(|| RunFailure::Pool("empty page".into()));
        }
    };
    // one customer that fails outside a savepoint: recorded on its own
    let customer = customers[0];
    tracing::warn!(%run, %customer, error = %error, "invoice not issued");
    let outcome = PageOutcome {
        failed: vec![(customer, error.to_string())],
        ..Default::default()
    };
    let p = crate::retry_transaction!(conn, InvoicingError, |c| {
        Ok(record(c, run, 1, &outcome).await?)
    })?;
    Ok(p)
}

/// Drafts every customer of the page (sent at once), writes and numbers their invoices
/// together, then lets the credit balance of those who have one pay theirs. A customer
/// whose draft is refused is recorded as failed; any other error fails the whole page,
/// which [`issue_page`] then issues customer by customer.
async fn issue_in_page(
    c: &mut AsyncPgConnection,
    customers: &[Uuid],
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<PageOutcome, InvoicingError> {
    let selection = Selection::UpTo(as_of);
    let drafted = {
        let shared: &AsyncPgConnection = c;
        futures_util::future::join_all(
            customers
                .iter()
                .map(|&customer| draft_in_tx(shared, customer, &selection)),
        )
        .await
    };
    let mut outcome = PageOutcome::default();
    let mut drafts = Vec::with_capacity(customers.len());
    for (customer, drafted) in customers.iter().zip(drafted) {
        match drafted {
            Ok(Some(d)) => drafts.push(d),
            Ok(None) => {}
            Err(e @ (InvoicingError::Database(_) | InvoicingError::Ledger(_))) => return Err(e),
            Err(e) => outcome.failed.push((*customer, e.to_string())),
        }
    }
    let in_credit = crate::payments::store::customers_in_credit(c, customers).await?;
    let mut issued = Vec::with_capacity(drafts.len());
    for invoice in write_in_tx(c, drafts, now).await? {
        issued.push(match in_credit.contains(&invoice.customer_id) {
            true => super::store::apply_credit_balance_in_tx(c, invoice, now).await?,
            false => invoice,
        });
    }
    super::store::announce_direct_debits(c, &mut issued).await?;
    for invoice in issued {
        outcome.issued += 1;
        outcome.ht += invoice.totals.total_ht.0;
        outcome.vat += invoice.totals.total_vat.0;
        outcome.ttc += invoice.totals.total_ttc.0;
    }
    Ok(outcome)
}

/// Adds a page's figures and errors to its run, in the page's transaction.
async fn record(
    c: &mut AsyncPgConnection,
    run: Uuid,
    customers: usize,
    outcome: &PageOutcome,
) -> Result<Progress, diesel::result::Error> {
    use invoice_runs::dsl as r;
    let failed = outcome.failed.len() as i32;
    let (done, total, issued): (i32, i32, i32) = diesel::update(r::invoice_runs.find(run))
        .set((
            r::customers_done.eq(r::customers_done + customers as i32),
            r::customers_failed.eq(r::customers_failed + failed),
            r::invoices_issued.eq(r::invoices_issued + outcome.issued),
            r::total_ht.eq(r::total_ht + outcome.ht),
            r::total_vat.eq(r::total_vat + outcome.vat),
            r::total_ttc.eq(r::total_ttc + outcome.ttc),
        ))
        .returning((r::customers_done, r::customers_total, r::invoices_issued))
        .get_result(c)
        .await?;
    if !outcome.failed.is_empty() {
        let rows: Vec<_> = outcome
            .failed
            .iter()
            .map(|(customer, error)| {
                (
                    invoice_run_errors::run_id.eq(run),
                    invoice_run_errors::customer_id.eq(*customer),
                    invoice_run_errors::error.eq(error_text(error)),
                )
            })
            .collect();
        diesel::insert_into(invoice_run_errors::table)
            .values(rows)
            .on_conflict((invoice_run_errors::run_id, invoice_run_errors::customer_id))
            .do_update()
            .set(invoice_run_errors::error.eq(diesel::upsert::excluded(invoice_run_errors::error)))
            .execute(c)
            .await?;
    }
    Ok(Progress {
        customers_done: done,
        customers_total: total.max(done),
        invoices_issued: issued,
    })
}

/// Marks `interrupted` (at `now`) every `running` run whose lease nobody holds: its
/// process stopped. How many.
pub async fn mark_interrupted(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<usize, diesel::result::Error> {
    diesel::sql_query(
        "UPDATE invoice_runs r SET status = 'interrupted', finished_at = $2
          WHERE r.status = 'running'
            AND NOT EXISTS (
                SELECT 1 FROM pg_locks l
                 WHERE l.locktype = 'advisory' AND l.granted
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.classid::bigint = $1
                   AND l.objid::bigint = (hashtext(r.id::text) & 2147483647))",
    )
    .bind::<diesel::sql_types::Integer, _>(LEASE_SPACE)
    .bind::<diesel::sql_types::Timestamptz, _>(now)
    .execute(conn)
    .await
}

async fn errors_of(
    conn: &mut AsyncPgConnection,
    run: Uuid,
) -> Result<Vec<RunError>, diesel::result::Error> {
    let rows: Vec<(Uuid, String)> = invoice_run_errors::table
        .filter(invoice_run_errors::run_id.eq(run))
        .order(invoice_run_errors::customer_id)
        .limit(ERRORS_SHOWN)
        .select((invoice_run_errors::customer_id, invoice_run_errors::error))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(customer_id, error)| RunError { customer_id, error })
        .collect())
}

async fn get_raw(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<InvoiceRunView>, diesel::result::Error> {
    let row: Option<RunRow> = invoice_runs::table
        .find(id)
        .select(RunRow::as_select())
        .first(conn)
        .await
        .optional()?;
    match row {
        Some(r) => {
            let errors = errors_of(conn, r.id).await?;
            Ok(Some(view(r, errors)))
        }
        None => Ok(None),
    }
}

/// A run, as it is now (a run whose process stopped shows `interrupted`).
pub async fn get(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<InvoiceRunView>, diesel::result::Error> {
    mark_interrupted(conn, now).await?;
    get_raw(conn, id).await
}

/// Runs in id order (oldest first) after `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    after: Option<Uuid>,
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Vec<InvoiceRunView>, diesel::result::Error> {
    mark_interrupted(conn, now).await?;
    let mut q = invoice_runs::table
        .order(invoice_runs::id)
        .limit(limit)
        .select(RunRow::as_select())
        .into_boxed();
    if let Some(a) = after {
        q = q.filter(invoice_runs::id.gt(a));
    }
    let rows: Vec<RunRow> = q.load(conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let errors = errors_of(conn, r.id).await?;
        out.push(view(r, errors));
    }
    Ok(out)
}

//! Payments and refunds in the database. Receiving a payment is one transaction, in the
//! lock order of `docs/ARCHITECTURE.md`: the customer's row (`FOR NO KEY UPDATE`, so that
//! two payments of one customer allocate one after the other), then each invoice it pays
//! (`settle_in_tx`), then what a paid invoice releases (ticket purchases, a subscription
//! waiting for its first payment, a suspension), then the ledger: bank 512 / receivable
//! 411 for what invoices took, customer credit balance 4191 for the rest, at the value
//! date. The platform's bank balance row, which every customer's payment shares, is locked
//! last and held only to the commit.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::calendar::{paris_date, paris_midnight};
use crate::customers::CustomerStatus;
use crate::idempotency::{self, IdempotencyKey};
use crate::invoicing::store_settlements::{open_invoices, settle_in_tx, Settled, Settlement};
use crate::invoicing::{InvoiceStatus, SettlementKind};
use crate::ledger::chart::{CustomerAccount, Platform};
use crate::ledger::store as ledger;
use crate::ledger::{NewTransaction, Posting};
use crate::money::round_cents;
use crate::schema::{
    accounts, balances, customers, invoice_settlements, invoices, payments, refunds,
};

#[derive(Queryable, Selectable)]
#[diesel(table_name = payments)]
struct PaymentRow {
    id: Uuid,
    customer_id: Uuid,
    reference: String,
    method: PaymentMethod,
    amount: Decimal,
    value_date: NaiveDate,
    received_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

fn eur(value: Decimal) -> Result<crate::money::Amount, PaymentError> {
    eur_amount(value, "amount")
}

/// The customer's credit balance (4191), zero while it has no such account. The caller
/// that acts on it holds the customer's row: every writer of 4191 takes it first.
pub async fn credit_balance(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
) -> Result<Decimal, diesel::result::Error> {
    let found: Option<(Decimal, Decimal)> = accounts::table
        .inner_join(balances::table)
        .filter(accounts::customer_id.eq(customer))
        .filter(accounts::code.eq(CustomerAccount::CreditBalance.code()))
        .select((balances::posted_credits, balances::posted_debits))
        .first(conn)
        .await
        .optional()?;
    Ok(found.map_or(Decimal::ZERO, |(credits, debits)| credits - debits))
}

/// Which of `customers` hold a positive credit balance (4191), in one statement.
pub async fn customers_in_credit(
    conn: &mut AsyncPgConnection,
    customers: &[Uuid],
) -> Result<std::collections::HashSet<Uuid>, diesel::result::Error> {
    let rows: Vec<(Option<Uuid>, Decimal, Decimal)> = accounts::table
        .inner_join(balances::table)
        .filter(accounts::customer_id.eq_any(customers))
        .filter(accounts::code.eq(CustomerAccount::CreditBalance.code()))
        .select((
            accounts::customer_id,
            balances::posted_credits,
            balances::posted_debits,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, credits, debits)| credits > debits)
        .filter_map(|(customer, _, _)| customer)
        .collect())
}

/// Locks the customer's row for a movement of its money (`FOR NO KEY UPDATE`): payments,
/// refunds and the issue of its invoices take it one after the other.
async fn lock_customer(
    c: &mut AsyncPgConnection,
    customer: Uuid,
) -> Result<Option<CustomerStatus>, diesel::result::Error> {
    customers::table
        .find(customer)
        .select(customers::status)
        .for_no_key_update()
        .first(c)
        .await
        .optional()
}

/// What the payment `request` asks, as compared for a replay: the amount to the cent.
#[derive(serde::Serialize)]
struct Asked<'a> {
    customer_id: Uuid,
    amount: Decimal,
    method: PaymentMethod,
    value_date: NaiveDate,
    invoice_ids: &'a Option<Vec<Uuid>>,
}

/// Receives a payment at `now`: allocates it to the invoices it names (in that order) or
/// else to the customer's oldest open invoices, the rest to the customer's credit balance,
/// and releases what each invoice it pays in full was waiting for. Its reference is its
/// idempotency key: the same reference with the same request answers the first payment
/// (`true`), with another request [`PaymentError::IdempotencyConflict`].
pub async fn receive(
    conn: &mut AsyncPgConnection,
    req: &NewPayment,
    now: DateTime<Utc>,
) -> Result<(PaymentView, bool), PaymentError> {
    let amount = eur(req.amount.0)?.value();
    check_reference(&req.reference)?;
    check_value_date(req.value_date, paris_date(now))?;
    if req.method == PaymentMethod::DirectDebit {
        return Err(PaymentError::Invalid {
            field: "method",
            message: "a direct debit is recorded by settling its SEPA batch".into(),
        });
    }
    if let Some(ids) = &req.invoice_ids {
        check_named(ids)?;
    }
    let key = IdempotencyKey::of_reference("payment", req.reference.clone());
    let asked = Asked {
        customer_id: req.customer_id,
        amount: round_cents(amount),
        method: req.method,
        value_date: req.value_date,
        invoice_ids: &req.invoice_ids,
    };
    crate::retry_transaction!(conn, PaymentError, |c| {
        let first =
            idempotency::replay::<_, PaymentError>(c, Some(&key), "payments.create", &asked, now);
        if let Some(first) = first.await? {
            return Ok((first, true));
        }
        lock_customer(c, req.customer_id)
            .await?
            .ok_or(PaymentError::UnknownCustomer(req.customer_id))?;
        let open = open_invoices(c, req.customer_id).await?;
        let targets: Vec<(Uuid, Decimal)> = match &req.invoice_ids {
            None => open.iter().map(|o| (o.id, o.due)).collect(),
            Some(ids) => ids
                .iter()
                .map(|id| {
                    open.iter()
                        .find(|o| o.id == *id)
                        .map(|o| (o.id, o.due))
                        .ok_or(PaymentError::InvoiceNotOpen(*id))
                })
                .collect::<Result<_, _>>()?,
        };
        let (taken, _) = allocate(amount, &targets);
        let taken: Vec<Taken> = taken
            .into_iter()
            .map(|(invoice, amount)| Taken {
                invoice,
                amount,
                was_overdue: open
                    .iter()
                    .any(|o| o.id == invoice && o.status == InvoiceStatus::Overdue),
            })
            .collect();
        let id = Uuid::now_v7();
        let received = Received {
            id,
            customer: req.customer_id,
            reference: &req.reference,
            method: req.method,
            amount,
            value_date: req.value_date,
        };
        record_in_tx(c, &received, &taken, OwedOn::Receivable, now).await?;
        let created = row(c, id).await?;
        let view = with_allocations(c, vec![created])
            .await?
            .pop()
            .ok_or(PaymentError::NotFound(id))?;
        idempotency::record(c, Some(&key), &view).await?;
        Ok((view, false))
    })
}

/// Where the money a payment brings was owed: what the ledger credits against bank 512.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwedOn {
    /// Receivable 411 for what invoices take, the customer's credit balance 4191 for the
    /// rest: a transfer or a card payment.
    Receivable,
    /// Direct debits in transit 5112: a SEPA collection, whose receivable moved there when
    /// its batch was submitted. It pays exactly what its invoices take.
    DirectDebitsInTransit,
}

/// A payment to record.
#[derive(Debug, Clone)]
pub struct Received<'a> {
    pub id: Uuid,
    pub customer: Uuid,
    pub reference: &'a str,
    pub method: PaymentMethod,
    pub amount: Decimal,
    pub value_date: NaiveDate,
}

/// What a payment pays of one invoice.
#[derive(Debug, Clone)]
pub struct Taken {
    pub invoice: Uuid,
    pub amount: Decimal,
    /// Whether the invoice was overdue before (paid in full, it may lift the dunning).
    pub was_overdue: bool,
}

/// Records the payment `p` inside the caller's transaction, which holds the customer's row:
/// the payment's row, each invoice of `taken` settled in that order (`settle_in_tx`), what
/// an invoice paid in full was waiting for released, the customer's dunning lifted when it
/// paid an overdue invoice, then the ledger: bank 512 against `owed_on` at the value date.
/// The one path of every payment: `POST /v1/payments` and a settled SEPA collection.
pub async fn record_in_tx(
    c: &mut AsyncPgConnection,
    p: &Received<'_>,
    taken: &[Taken],
    owed_on: OwedOn,
    now: DateTime<Utc>,
) -> Result<(), PaymentError> {
    let allocated: Decimal = taken.iter().map(|t| t.amount).sum();
    let rest = p.amount - allocated;
    if rest < Decimal::ZERO || (owed_on == OwedOn::DirectDebitsInTransit && !rest.is_zero()) {
        return Err(PaymentError::Invalid {
            field: "amount",
            message: format!("{} cannot pay {allocated} of invoices", p.amount),
        });
    }
    diesel::insert_into(payments::table)
        .values((
            payments::id.eq(p.id),
            payments::customer_id.eq(p.customer),
            payments::reference.eq(p.reference),
            payments::method.eq(p.method),
            payments::amount.eq(p.amount),
            payments::value_date.eq(p.value_date),
            payments::received_at.eq(now),
            payments::created_at.eq(now),
        ))
        .execute(c)
        .await
        .map_err(|e| match e {
            // a reference is one payment's, whichever path recorded it first (a transfer
            // reported under a collection's end-to-end id, or the other way round)
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                ref info,
            ) if info.constraint_name() == Some("payments_reference_key") => {
                PaymentError::IdempotencyConflict
            }
            e => e.into(),
        })?;
    let mut cleared_overdue = false;
    for t in taken {
        let settlement = Settlement {
            invoice_id: t.invoice,
            kind: SettlementKind::Payment,
            source_id: p.id,
            amount: t.amount,
            settled_on: p.value_date,
        };
        let settled = settle_in_tx(c, &settlement, now).await?;
        release_if_paid_in_tx(c, t.invoice, &settled, p.value_date, now).await?;
        cleared_overdue |= t.was_overdue && !settled.status.is_open();
    }
    if cleared_overdue {
        crate::dunning::store::lift_if_cleared_in_tx(c, p.customer, p.value_date, now).await?;
    }
    let mut postings = vec![Posting::debit(Platform::Bank.id(), eur(p.amount)?)];
    match owed_on {
        OwedOn::DirectDebitsInTransit => {
            postings.push(Posting::credit(
                Platform::DirectDebitsInTransit.id(),
                eur(p.amount)?,
            ));
        }
        OwedOn::Receivable => {
            if allocated > Decimal::ZERO {
                let receivable = account(c, p.customer, CustomerAccount::Receivable).await?;
                postings.push(Posting::credit(receivable, eur(allocated)?));
            }
            if rest > Decimal::ZERO {
                let credit = account(c, p.customer, CustomerAccount::CreditBalance).await?;
                postings.push(Posting::credit(credit, eur(rest)?));
            }
        }
    }
    let tx = NewTransaction::new(format!("payment:{}", p.id), "payment", postings)?
        .effective_at(paris_midnight(p.value_date))
        .posted_at(now)
        .description(format!("payment {}", p.reference));
    ledger::post_in_tx(c, &tx).await?;
    Ok(())
}

async fn account(
    c: &AsyncPgConnection,
    customer: Uuid,
    which: CustomerAccount,
) -> Result<crate::ledger::AccountId, PaymentError> {
    Ok(ledger::ensure_account(c, &which.new_account(customer))
        .await?
        .id)
}

async fn row(c: &mut AsyncPgConnection, id: Uuid) -> Result<PaymentRow, diesel::result::Error> {
    payments::table
        .find(id)
        .select(PaymentRow::as_select())
        .first(c)
        .await
}

/// What a paid invoice was waiting for, inside the caller's transaction (which holds the
/// customer's row): the ticket purchases it invoices become usable, a subscription whose
/// first charge it carries starts on `value_date`. Nothing while the invoice is still open.
pub async fn release_if_paid_in_tx(
    c: &mut AsyncPgConnection,
    invoice: Uuid,
    settled: &Settled,
    value_date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<(), PaymentError> {
    if settled.status != InvoiceStatus::Paid {
        return Ok(());
    }
    for purchase in crate::wallets::store::purchases_invoiced_on(c, invoice, false).await? {
        crate::wallets::store::ticket_purchase_paid_in_tx(c, purchase, now).await?;
    }
    for sub in crate::subscriptions::store::pending_first_charged_on(c, invoice).await? {
        crate::subscriptions::store::activate_on_payment_in_tx(c, sub, value_date, now).await?;
    }
    Ok(())
}

/// A payment of `invoice` came back (`settled`: the invoice's state after): what its payment
/// released waits for payment again, inside the caller's transaction (which locked the
/// customer's row first): a ticket purchase's unused tickets, a subscription its first
/// payment activated ([`crate::wallets::store::ticket_purchase_unpaid_in_tx`],
/// [`crate::subscriptions::store::reverse_activation_in_tx`]). Nothing while the invoice
/// is still paid.
pub async fn withdraw_if_unpaid_in_tx(
    c: &mut AsyncPgConnection,
    invoice: Uuid,
    settled: &Settled,
    now: DateTime<Utc>,
) -> Result<(), PaymentError> {
    if matches!(
        settled.status,
        InvoiceStatus::Paid | InvoiceStatus::Credited
    ) {
        return Ok(());
    }
    for purchase in crate::wallets::store::purchases_invoiced_on(c, invoice, true).await? {
        crate::wallets::store::ticket_purchase_unpaid_in_tx(c, purchase, now).await?;
    }
    for sub in crate::subscriptions::store::activated_by_payment_of(c, invoice).await? {
        crate::subscriptions::store::reverse_activation_in_tx(c, sub, now).await?;
    }
    Ok(())
}

/// The customer's credit balance (4191) pays its new invoice `invoice`, of `total_ttc`,
/// inside the issuing transaction (which holds the customer's row): min(balance, total),
/// settled as `credit_balance` on `on` and posted 4191 / 411, and what the invoice releases
/// once paid. `None` when there is no credit balance.
pub async fn apply_credit_balance_in_tx(
    c: &mut AsyncPgConnection,
    customer: Uuid,
    invoice: Uuid,
    total_ttc: Decimal,
    on: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Option<(Decimal, Settled)>, PaymentError> {
    let balance = credit_balance(c, customer).await?;
    let applied = balance.min(total_ttc);
    if applied <= Decimal::ZERO {
        return Ok(None);
    }
    let (credit, receivable) = (
        account(c, customer, CustomerAccount::CreditBalance).await?,
        account(c, customer, CustomerAccount::Receivable).await?,
    );
    let tx = NewTransaction::new(
        format!("credit-balance:{invoice}"),
        "invoice.credit_balance",
        vec![
            Posting::debit(credit, eur(applied)?),
            Posting::credit(receivable, eur(applied)?),
        ],
    )?
    .effective_at(now)
    .posted_at(now)
    .description("credit balance applied to an invoice");
    let posted = ledger::post_in_tx(c, &tx).await?;
    let settlement = Settlement {
        invoice_id: invoice,
        kind: SettlementKind::CreditBalance,
        source_id: posted.id.0,
        amount: applied,
        settled_on: on,
    };
    let settled = settle_in_tx(c, &settlement, now).await?;
    release_if_paid_in_tx(c, invoice, &settled, on, now).await?;
    Ok(Some((applied, settled)))
}

async fn with_allocations(
    c: &mut AsyncPgConnection,
    rows: Vec<PaymentRow>,
) -> Result<Vec<PaymentView>, diesel::result::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let parts: Vec<(Uuid, Uuid, String, Decimal)> = invoice_settlements::table
        .inner_join(invoices::table)
        .filter(invoice_settlements::kind.eq(SettlementKind::Payment.as_str()))
        .filter(invoice_settlements::source_id.eq_any(&ids))
        .order(invoice_settlements::id)
        .select((
            invoice_settlements::source_id,
            invoice_settlements::invoice_id,
            invoices::number,
            invoice_settlements::amount,
        ))
        .load(c)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let allocations: Vec<Allocation> = parts
                .iter()
                .filter(|p| p.0 == r.id)
                .map(|(_, invoice_id, number, amount)| Allocation {
                    invoice_id: *invoice_id,
                    invoice_number: number.clone(),
                    amount: DecimalString(round_cents(*amount)),
                })
                .collect();
            let allocated: Decimal = allocations.iter().map(|a| a.amount.0).sum();
            PaymentView {
                id: r.id,
                customer_id: r.customer_id,
                reference: r.reference,
                method: r.method,
                amount: DecimalString(round_cents(r.amount)),
                value_date: r.value_date,
                to_credit_balance: DecimalString(round_cents(r.amount - allocated)),
                allocations,
                received_at: r.received_at,
                created_at: r.created_at,
            }
        })
        .collect())
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<PaymentView>, diesel::result::Error> {
    let rows: Vec<PaymentRow> = payments::table
        .filter(payments::id.eq(id))
        .select(PaymentRow::as_select())
        .load(conn)
        .await?;
    Ok(with_allocations(conn, rows).await?.pop())
}

/// Payments in id order (the order received) after `after`, of one customer when given.
pub async fn list(
    conn: &mut AsyncPgConnection,
    customer: Option<Uuid>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<PaymentView>, diesel::result::Error> {
    let mut q = payments::table
        .order(payments::id)
        .limit(limit)
        .select(PaymentRow::as_select())
        .into_boxed();
    if let Some(c) = customer {
        q = q.filter(payments::customer_id.eq(c));
    }
    if let Some(a) = after {
        q = q.filter(payments::id.gt(a));
    }
    let rows = q.load(conn).await?;
    with_allocations(conn, rows).await
}

/// Pays back `req.amount` of the customer's credit balance by bank transfer at `now`:
/// 4191 / bank 512 at the value date, never more than the balance. Its reference is its
/// idempotency key, as a payment's.
pub async fn refund(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    req: &RefundRequest,
    now: DateTime<Utc>,
) -> Result<(RefundView, bool), PaymentError> {
    let amount = eur(req.amount.0)?.value();
    check_reference(&req.reference)?;
    check_value_date(req.value_date, paris_date(now))?;
    let key = IdempotencyKey::of_reference("refund", req.reference.clone());
    #[derive(serde::Serialize)]
    struct Asked {
        customer_id: Uuid,
        amount: Decimal,
        value_date: NaiveDate,
    }
    let asked = Asked {
        customer_id: customer,
        amount: round_cents(amount),
        value_date: req.value_date,
    };
    crate::retry_transaction!(conn, PaymentError, |c| {
        let first =
            idempotency::replay::<_, PaymentError>(c, Some(&key), "refunds.create", &asked, now);
        if let Some(first) = first.await? {
            return Ok((first, true));
        }
        lock_customer(c, customer)
            .await?
            .ok_or(PaymentError::UnknownCustomer(customer))?;
        let balance = credit_balance(c, customer).await?;
        if amount > balance {
            return Err(PaymentError::BeyondCreditBalance {
                asked: round_cents(amount),
                balance: round_cents(balance),
            });
        }
        let id = Uuid::now_v7();
        diesel::insert_into(refunds::table)
            .values((
                refunds::id.eq(id),
                refunds::customer_id.eq(customer),
                refunds::reference.eq(&req.reference),
                refunds::amount.eq(amount),
                refunds::value_date.eq(req.value_date),
                refunds::created_at.eq(now),
            ))
            .execute(c)
            .await?;
        let credit = account(c, customer, CustomerAccount::CreditBalance).await?;
        let tx = NewTransaction::new(
            format!("refund:{id}"),
            "refund",
            vec![
                Posting::debit(credit, eur(amount)?),
                Posting::credit(Platform::Bank.id(), eur(amount)?),
            ],
        )?
        .effective_at(paris_midnight(req.value_date))
        .posted_at(now)
        .description(format!("refund {}", req.reference));
        ledger::post_in_tx(c, &tx).await?;
        let view = RefundView {
            id,
            customer_id: customer,
            reference: req.reference.clone(),
            amount: DecimalString(round_cents(amount)),
            value_date: req.value_date,
            credit_balance: DecimalString(round_cents(balance - amount)),
            created_at: now,
        };
        idempotency::record(c, Some(&key), &view).await?;
        Ok((view, false))
    })
}

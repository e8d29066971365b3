//! Credit notes in the database. Issuing one is a single transaction, in the lock order of
//! every write: the customer's row, then the invoice, the ticket purchases and credit lots
//! it takes back, then the series' counter row (so that a rolled-back note gives its number
//! back), then the ledger's balance rows.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use super::credit_notes::{
    credit, split, Ask, CreditAmounts, CreditNoteError, CreditNoteLine, CreditNoteRef,
    CreditNoteView, CreditableLine, CreditableRate, LineAsk, LineKind,
};
use super::store::take_numbers;
use super::store_settlements::{settle_in_tx, settled_amounts, Settlement};
use super::{DocumentKind, InvoiceStatus, InvoicingError, SettlementKind, Totals, VatSubtotal};
use crate::calendar::paris_date;
use crate::catalog::PriceBasis;
use crate::charges::ChargeSource;
use crate::idempotency::{self, IdempotencyKey};
use crate::ledger::chart::CustomerAccount;
use crate::ledger::store as ledger;
use crate::ledger::{AccountId, NewTransaction, Posting};
use crate::money::{price, round_cents, Amount, DecimalString, Unit};
use crate::schema::{
    balances, charges, credit_lots, credit_note_lines, credit_note_vat, credit_notes, customers,
    invoice_lines, invoice_vat, invoices, ticket_purchases,
};
use crate::wallets::store::account;

/// What to credit: all that remains of the invoice (`lines` none), or these lines.
#[derive(Debug, Clone, Serialize)]
pub struct NewCreditNote {
    pub reason: String,
    pub lines: Option<Vec<(Uuid, AskSpec)>>,
}

/// One line's ask as the request put it (kept for the idempotency hash).
#[derive(Debug, Clone, Copy, Serialize)]
pub enum AskSpec {
    Rest,
    Quantity(Decimal),
    Amount(Decimal),
}

fn units(value: Decimal, unit: Unit) -> Result<Amount, CreditNoteError> {
    Amount::new(value, unit).map_err(|e| InvoicingError::Invalid(e.to_string()).into())
}

fn eur(value: Decimal) -> Result<Amount, CreditNoteError> {
    units(value, Unit::Eur)
}

#[derive(Queryable)]
struct InvoiceLineRow {
    charge_id: Uuid,
    description: String,
    quantity: Decimal,
    unit_price: Decimal,
    price_basis: PriceBasis,
    vat_rate: Decimal,
    net_ht: Decimal,
    source: ChargeSource,
    charge_key: Option<String>,
}

fn kind_of(source: ChargeSource) -> LineKind {
    match source {
        ChargeSource::TicketPurchase => LineKind::Tickets,
        ChargeSource::CreditPurchase => LineKind::Credits,
        _ => LineKind::Service,
    }
}

/// The id a purchase charge's key names (`tickets:<purchase>`, `credits:<lot>`).
fn purchase_of(key: Option<&str>, prefix: &str) -> Result<Uuid, CreditNoteError> {
    key.and_then(|k| k.strip_prefix(prefix))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| CreditNoteError::NotFound(format!("the purchase of a `{prefix}` line")))
}

/// The invoice's lines and rates, with what earlier credit notes took of each.
async fn creditable(
    c: &mut AsyncPgConnection,
    invoice: Uuid,
) -> Result<(Vec<(CreditableLine, Option<String>)>, Vec<CreditableRate>), CreditNoteError> {
    let rows: Vec<InvoiceLineRow> = invoice_lines::table
        .inner_join(charges::table)
        .filter(invoice_lines::invoice_id.eq(invoice))
        .order(invoice_lines::position)
        .select((
            invoice_lines::charge_id,
            invoice_lines::description,
            invoice_lines::quantity,
            invoice_lines::unit_price,
            invoice_lines::price_basis,
            invoice_lines::vat_rate,
            invoice_lines::net_ht,
            charges::source,
            charges::idempotency_key,
        ))
        .load(c)
        .await?;
    let notes = credit_notes::table
        .filter(credit_notes::invoice_id.eq(invoice))
        .select(credit_notes::id);
    let earlier: Vec<(Uuid, Option<Decimal>, Decimal)> = credit_note_lines::table
        .filter(credit_note_lines::credit_note_id.eq_any(notes))
        .select((
            credit_note_lines::charge_id,
            credit_note_lines::quantity,
            credit_note_lines::net_ht,
        ))
        .load(c)
        .await?;
    let earlier_vat: Vec<(Decimal, Decimal, Decimal)> = credit_note_vat::table
        .filter(credit_note_vat::credit_note_id.eq_any(notes))
        .select((
            credit_note_vat::vat_rate,
            credit_note_vat::base_ht,
            credit_note_vat::vat,
        ))
        .load(c)
        .await?;
    let rates: Vec<(Decimal, Decimal, Decimal)> = invoice_vat::table
        .filter(invoice_vat::invoice_id.eq(invoice))
        .select((
            invoice_vat::vat_rate,
            invoice_vat::base_ht,
            invoice_vat::vat,
        ))
        .load(c)
        .await?;
    let lines = rows
        .into_iter()
        .map(|r| {
            let of_line = earlier.iter().filter(|e| e.0 == r.charge_id);
            let (q, net) = of_line.fold((Decimal::ZERO, Decimal::ZERO), |(q, n), e| {
                (q + e.1.unwrap_or_default(), n + e.2)
            });
            let line = CreditableLine {
                charge_id: r.charge_id,
                kind: kind_of(r.source),
                description: r.description,
                quantity: r.quantity,
                unit_price: r.unit_price,
                price_basis: r.price_basis,
                vat_rate: r.vat_rate,
                net_ht: r.net_ht,
                credited_quantity: q,
                credited_net: net,
            };
            (line, r.charge_key)
        })
        .collect();
    let rates = rates
        .into_iter()
        .map(|(rate, base, vat)| {
            let of_rate = earlier_vat.iter().filter(|e| e.0 == rate);
            let (credited_base, credited_vat) = of_rate
                .fold((Decimal::ZERO, Decimal::ZERO), |(b, v), e| {
                    (b + e.1, v + e.2)
                });
            CreditableRate {
                vat_rate: rate,
                base_ht: base,
                vat,
                credited_base,
                credited_vat,
            }
        })
        .collect();
    Ok((lines, rates))
}

/// Takes `quantity` tickets of ticket purchase `purchase` (its credit notes having reversed
/// `credited_net` of its net with this one) to the customer's issuer
/// account: from TICKET-PENDING while its invoice is unpaid, else from TICKET-WALLET, as
/// long as they were not used. Tickets are used oldest purchase first: those of newer
/// purchases are taken to be the ones still in the wallet.
async fn take_back_tickets(
    c: &mut AsyncPgConnection,
    customer: Uuid,
    purchase: Uuid,
    (quantity, credited_net): (Decimal, Decimal),
    note: Uuid,
    now: DateTime<Utc>,
) -> Result<(), CreditNoteError> {
    type Row = (
        String,
        i32,
        i32,
        i32,
        DateTime<Utc>,
        Option<Decimal>,
        Decimal,
    );
    let (status, bought, credited, used, created_at, net, recognized): Row =
        ticket_purchases::table
            .find(purchase)
            .select((
                ticket_purchases::status,
                ticket_purchases::quantity,
                ticket_purchases::credited,
                ticket_purchases::tickets_used,
                ticket_purchases::created_at,
                ticket_purchases::net_ht,
                ticket_purchases::recognized,
            ))
            .for_update()
            .first(c)
            .await
            .optional()?
            .ok_or_else(|| CreditNoteError::NotFound(format!("ticket purchase {purchase}")))?;
    let n = i32::try_from(quantity.trunc().mantissa())
        .ok()
        .filter(|n| *n >= 1 && credited + n <= bought)
        .ok_or_else(|| CreditNoteError::AlreadyUsed(format!("{quantity} tickets")))?;
    let from = if status == "available" {
        let wallet = account(c, customer, CustomerAccount::TicketWallet).await?;
        let in_wallet = ledger::get_account(c, wallet)
            .await?
            .map_or(Decimal::ZERO, |a| a.balance.available.0);
        let newer: Vec<(i32, i32)> = ticket_purchases::table
            .filter(ticket_purchases::customer_id.eq(customer))
            .filter(ticket_purchases::status.eq("available"))
            .filter(
                ticket_purchases::created_at
                    .gt(created_at)
                    .or(ticket_purchases::created_at
                        .eq(created_at)
                        .and(ticket_purchases::id.gt(purchase))),
            )
            .select((ticket_purchases::quantity, ticket_purchases::credited))
            .load(c)
            .await?;
        let kept_for_newer: i64 = newer.iter().map(|(q, cr)| i64::from(q - cr)).sum();
        let unused = (in_wallet - Decimal::from(kept_for_newer))
            .min(Decimal::from(bought - credited - used))
            .max(Decimal::ZERO);
        if Decimal::from(n) > unused {
            return Err(CreditNoteError::AlreadyUsed(format!(
                "ticket purchase {purchase}: {unused} of its tickets remain unused, {n} cannot be taken back"
            )));
        }
        wallet
    } else {
        // unpaid again after a payment came back: the tickets used before stay used
        if credited + used + n > bought {
            return Err(CreditNoteError::AlreadyUsed(format!(
                "ticket purchase {purchase}: {} of its tickets remain unused, {n} cannot be taken back",
                bought - credited - used
            )));
        }
        account(c, customer, CustomerAccount::TicketPending).await?
    };
    let issued = account(c, customer, CustomerAccount::TicketIssued).await?;
    let moved = units(Decimal::from(n), Unit::Ticket)?;
    let tx = NewTransaction::new(
        format!("credit_note:{note}:tickets:{purchase}"),
        "tickets.credited",
        vec![Posting::debit(from, moved), Posting::credit(issued, moved)],
    )?
    .effective_at(now)
    .posted_at(now);
    ledger::post_in_tx(c, &tx).await?;
    // the note that takes a purchase's last unused tickets leaves nothing deferred: the
    // cents its used tickets and its notes rounded away are earned (487 → 706)
    let rest = match bought - credited - n - used {
        0 => (net.unwrap_or_default() - recognized - credited_net).max(Decimal::ZERO),
        _ => Decimal::ZERO,
    };
    if rest > Decimal::ZERO {
        let deferred = account(c, customer, CustomerAccount::DeferredRevenue).await?;
        let revenue = account(c, customer, CustomerAccount::Revenue).await?;
        let tx = NewTransaction::new(
            format!("credit_note:{note}:rest:{purchase}"),
            "tickets.recognized",
            vec![
                Posting::debit(deferred, eur(rest)?),
                Posting::credit(revenue, eur(rest)?),
            ],
        )?
        .effective_at(now)
        .posted_at(now)
        .description("the rest of a ticket purchase whose last tickets were credited");
        ledger::post_in_tx(c, &tx).await?;
    }
    diesel::update(ticket_purchases::table.find(purchase))
        .set((
            ticket_purchases::credited.eq(credited + n),
            ticket_purchases::recognized.eq(recognized + rest),
        ))
        .execute(c)
        .await?;
    Ok(())
}

/// Takes the whole of credit lot `lot` back to the customer's issuer account, refused once
/// any of it was used, held or expired.
async fn take_back_lot(
    c: &mut AsyncPgConnection,
    customer: Uuid,
    lot: Uuid,
    note: Uuid,
    now: DateTime<Utc>,
) -> Result<(), CreditNoteError> {
    let (account_id, granted, expired_at, expires_at): (
        Uuid,
        Decimal,
        Option<DateTime<Utc>>,
        DateTime<Utc>,
    ) = credit_lots::table
        .find(lot)
        .select((
            credit_lots::account_id,
            credit_lots::granted,
            credit_lots::expired_at,
            credit_lots::expires_at,
        ))
        .for_update()
        .first(c)
        .await
        .optional()?
        .ok_or_else(|| CreditNoteError::NotFound(format!("credit lot {lot}")))?;
    // in a statement of its own, which sees what the holder of the lock before us posted
    let on_lot: Decimal = balances::table
        .find(account_id)
        .select(balances::posted_credits - balances::posted_debits - balances::pending_debits)
        .first(c)
        .await?;
    if on_lot != granted || expired_at.is_some() || expires_at <= now {
        return Err(CreditNoteError::AlreadyUsed(format!(
            "credit lot {lot}: {} of its {} credits remain unused, it is credited whole only",
            on_lot.normalize(),
            granted.normalize()
        )));
    }
    let issued = account(c, customer, CustomerAccount::CreditIssued).await?;
    let moved = units(granted, Unit::Credit)?;
    let tx = NewTransaction::new(
        format!("credit_note:{note}:credits:{lot}"),
        "credits.credited",
        vec![
            Posting::debit(AccountId(account_id), moved),
            Posting::credit(issued, moved),
        ],
    )?
    .effective_at(now)
    .posted_at(now);
    ledger::post_in_tx(c, &tx).await?;
    Ok(())
}

/// The note's money: revenue (706) and deferred revenue (487) debited with the nets they
/// had at issue, VAT (44571) with the note's VAT; receivable (411) credited with what the
/// invoice still asked, the customer's credit balance (4191) with the rest.
async fn post_reversal(
    c: &mut AsyncPgConnection,
    customer: Uuid,
    note: Uuid,
    number: &str,
    amounts: &CreditAmounts,
    (applied, to_balance): (Decimal, Decimal),
    now: DateTime<Utc>,
) -> Result<(), CreditNoteError> {
    let (mut earned, mut deferred) = (Decimal::ZERO, Decimal::ZERO);
    for (l, kind) in &amounts.lines {
        match kind.deferred() {
            true => deferred += l.net_ht.0,
            false => earned += l.net_ht.0,
        }
    }
    let mut postings = Vec::new();
    for (which, value, debit) in [
        (CustomerAccount::Revenue, earned, true),
        (CustomerAccount::DeferredRevenue, deferred, true),
        (CustomerAccount::Receivable, applied, false),
        (CustomerAccount::CreditBalance, to_balance, false),
        (
            CustomerAccount::VatCollected,
            amounts.totals.total_vat.0,
            true,
        ),
    ] {
        if value > Decimal::ZERO {
            let id = account(c, customer, which).await?;
            postings.push(match debit {
                true => Posting::debit(id, eur(value)?),
                false => Posting::credit(id, eur(value)?),
            });
        }
    }
    if postings.is_empty() {
        return Ok(());
    }
    let tx = NewTransaction::new(format!("credit_note:{note}"), "credit_note", postings)?
        .effective_at(now)
        .posted_at(now)
        .description(format!("credit note {number}"));
    ledger::post_in_tx(c, &tx).await?;
    Ok(())
}

/// Issues a credit note on `invoice` at `now` (dated its Paris date), in one transaction:
/// its number from the locked counter row, its lines and VAT, the settlement of the invoice
/// (what it still asked falls), the ledger's reversal, and the tickets or credits it takes
/// back. A retry with the same key returns the first note (`true`).
pub async fn create(
    conn: &mut AsyncPgConnection,
    invoice: Uuid,
    request: &NewCreditNote,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<(CreditNoteView, bool), CreditNoteError> {
    #[derive(Serialize)]
    struct Hashed<'a> {
        invoice: Uuid,
        request: &'a NewCreditNote,
    }
    let hashed = Hashed { invoice, request };
    crate::retry_transaction!(conn, CreditNoteError, |c| {
        let first = idempotency::replay::<_, CreditNoteError>(
            c,
            Some(key),
            "credit_notes.create",
            &hashed,
            now,
        );
        if let Some(first) = first.await? {
            return Ok((first, true));
        }
        let not_found = || CreditNoteError::NotFound(format!("invoice {invoice}"));
        let (customer, invoice_number): (Uuid, String) = invoices::table
            .find(invoice)
            .select((invoices::customer_id, invoices::number))
            .first(c)
            .await
            .optional()?
            .ok_or_else(not_found)?;
        customers::table
            .find(customer)
            .select(customers::id)
            .for_no_key_update()
            .first::<Uuid>(c)
            .await?;
        let (total_ttc, status): (Decimal, InvoiceStatus) = invoices::table
            .find(invoice)
            .select((invoices::total_ttc, invoices::status))
            .for_update()
            .first(c)
            .await?;
        if status == InvoiceStatus::CollectionPending {
            return Err(CreditNoteError::BeingCollected(invoice_number));
        }
        let (lines, rates) = creditable(c, invoice).await?;
        let asked: Option<Vec<LineAsk>> = request.lines.as_ref().map(|ls| {
            ls.iter()
                .map(|(charge_id, a)| LineAsk {
                    charge_id: *charge_id,
                    ask: match a {
                        AskSpec::Rest => Ask::Rest,
                        AskSpec::Quantity(q) => Ask::Quantity(*q),
                        AskSpec::Amount(a) => Ask::Amount(*a),
                    },
                })
                .collect()
        });
        let plain: Vec<CreditableLine> = lines.iter().map(|(l, _)| l.clone()).collect();
        let amounts = credit(&plain, &rates, asked.as_deref())?;

        let id = Uuid::now_v7();
        for (l, kind) in &amounts.lines {
            let of_line = lines.iter().find(|(x, _)| x.charge_id == l.charge_id);
            let charge_key = of_line.and_then(|(_, k)| k.as_deref());
            let credited_net = of_line.map_or(Decimal::ZERO, |(x, _)| x.credited_net) + l.net_ht.0;
            match kind {
                LineKind::Service => {}
                LineKind::Tickets => {
                    let purchase = purchase_of(charge_key, "tickets:")?;
                    let q = l.quantity.map(|q| q.0).unwrap_or_default();
                    take_back_tickets(c, customer, purchase, (q, credited_net), id, now).await?;
                }
                LineKind::Credits => {
                    let lot = purchase_of(charge_key, "credits:")?;
                    take_back_lot(c, customer, lot, id, now).await?;
                }
            }
        }

        let (number, issued_on) =
            take_numbers(c, DocumentKind::CreditNote, paris_date(now), 1).await?;
        let (paid, credited) = settled_amounts(c, &[invoice])
            .await?
            .remove(&invoice)
            .unwrap_or_default();
        let totals = &amounts.totals;
        let (applied, to_balance) = split(totals.total_ttc.0, total_ttc - paid - credited);
        diesel::insert_into(credit_notes::table)
            .values((
                credit_notes::id.eq(id),
                credit_notes::number.eq(number.to_string()),
                credit_notes::series.eq(DocumentKind::CreditNote.prefix().to_string()),
                credit_notes::year.eq(number.year()),
                credit_notes::seq.eq(number.seq() as i64),
                credit_notes::invoice_id.eq(invoice),
                credit_notes::customer_id.eq(customer),
                credit_notes::issued_on.eq(issued_on),
                credit_notes::reason.eq(&request.reason),
                credit_notes::total_ht.eq(totals.total_ht.0),
                credit_notes::total_vat.eq(totals.total_vat.0),
                credit_notes::total_ttc.eq(totals.total_ttc.0),
                credit_notes::applied_to_invoice.eq(applied),
                credit_notes::to_credit_balance.eq(to_balance),
                credit_notes::created_at.eq(now),
            ))
            .execute(c)
            .await?;
        let line_rows: Vec<_> = amounts
            .lines
            .iter()
            .enumerate()
            .map(|(i, (l, _))| {
                (
                    credit_note_lines::credit_note_id.eq(id),
                    credit_note_lines::position.eq(i as i32),
                    credit_note_lines::charge_id.eq(l.charge_id),
                    credit_note_lines::description.eq(l.description.clone()),
                    credit_note_lines::quantity.eq(l.quantity.map(|q| q.0)),
                    credit_note_lines::unit_price.eq(l.unit_price.0),
                    credit_note_lines::price_basis.eq(l.price_basis.as_str()),
                    credit_note_lines::vat_rate.eq(l.vat_rate.0),
                    credit_note_lines::net_ht.eq(l.net_ht.0),
                )
            })
            .collect();
        diesel::insert_into(credit_note_lines::table)
            .values(line_rows)
            .execute(c)
            .await?;
        let vat_rows: Vec<_> = totals
            .vat_breakdown
            .iter()
            .map(|v| {
                (
                    credit_note_vat::credit_note_id.eq(id),
                    credit_note_vat::vat_rate.eq(v.vat_rate.0),
                    credit_note_vat::base_ht.eq(v.base_ht.0),
                    credit_note_vat::vat.eq(v.vat.0),
                )
            })
            .collect();
        diesel::insert_into(credit_note_vat::table)
            .values(vat_rows)
            .execute(c)
            .await?;
        if applied > Decimal::ZERO {
            let settlement = Settlement {
                invoice_id: invoice,
                kind: SettlementKind::CreditNote,
                source_id: id,
                amount: applied,
                settled_on: issued_on,
            };
            let settled = settle_in_tx(c, &settlement, now).await?;
            if !settled.status.is_open() {
                // an overdue invoice credited in full may end a formal notice
                crate::dunning::store::lift_if_cleared_in_tx(c, customer, issued_on, now).await?;
            }
        }
        let number = number.to_string();
        post_reversal(
            c,
            customer,
            id,
            &number,
            &amounts,
            (applied, to_balance),
            now,
        )
        .await?;
        let view = CreditNoteView {
            id,
            number,
            invoice_id: invoice,
            invoice_number,
            customer_id: customer,
            issued_on,
            reason: request.reason.clone(),
            lines: amounts.lines.into_iter().map(|(l, _)| l).collect(),
            totals: amounts.totals,
            applied_to_invoice: DecimalString(round_cents(applied)),
            to_credit_balance: DecimalString(round_cents(to_balance)),
            created_at: now,
        };
        idempotency::record(c, Some(key), &view).await?;
        Ok((view, false))
    })
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = credit_notes)]
struct NoteRow {
    id: Uuid,
    number: String,
    invoice_id: Uuid,
    customer_id: Uuid,
    issued_on: NaiveDate,
    reason: String,
    total_ht: Decimal,
    total_vat: Decimal,
    total_ttc: Decimal,
    applied_to_invoice: Decimal,
    to_credit_balance: Decimal,
    created_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = credit_note_lines)]
struct NoteLineRow {
    credit_note_id: Uuid,
    charge_id: Uuid,
    description: String,
    quantity: Option<Decimal>,
    unit_price: Decimal,
    price_basis: PriceBasis,
    vat_rate: Decimal,
    net_ht: Decimal,
}

async fn with_details(
    c: &mut AsyncPgConnection,
    rows: Vec<NoteRow>,
) -> Result<Vec<CreditNoteView>, diesel::result::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let invoice_ids: Vec<Uuid> = rows.iter().map(|r| r.invoice_id).collect();
    let numbers: HashMap<Uuid, String> = invoices::table
        .filter(invoices::id.eq_any(&invoice_ids))
        .select((invoices::id, invoices::number))
        .load(c)
        .await?
        .into_iter()
        .collect();
    let lines: Vec<NoteLineRow> = credit_note_lines::table
        .filter(credit_note_lines::credit_note_id.eq_any(&ids))
        .order((
            credit_note_lines::credit_note_id,
            credit_note_lines::position,
        ))
        .select(NoteLineRow::as_select())
        .load(c)
        .await?;
    let vat: Vec<(Uuid, Decimal, Decimal, Decimal)> = credit_note_vat::table
        .filter(credit_note_vat::credit_note_id.eq_any(&ids))
        .order((credit_note_vat::credit_note_id, credit_note_vat::vat_rate))
        .select((
            credit_note_vat::credit_note_id,
            credit_note_vat::vat_rate,
            credit_note_vat::base_ht,
            credit_note_vat::vat,
        ))
        .load(c)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| CreditNoteView {
            invoice_number: numbers.get(&r.invoice_id).cloned().unwrap_or_default(),
            lines: lines
                .iter()
                .filter(|l| l.credit_note_id == r.id)
                .map(|l| CreditNoteLine {
                    charge_id: l.charge_id,
                    description: l.description.clone(),
                    quantity: l.quantity.map(|q| DecimalString(q.normalize())),
                    unit_price: price(l.unit_price),
                    price_basis: l.price_basis,
                    vat_rate: DecimalString(l.vat_rate.normalize()),
                    net_ht: DecimalString(l.net_ht),
                })
                .collect(),
            totals: Totals {
                vat_breakdown: vat
                    .iter()
                    .filter(|v| v.0 == r.id)
                    .map(|v| VatSubtotal {
                        vat_rate: DecimalString(v.1.normalize()),
                        base_ht: DecimalString(v.2),
                        vat: DecimalString(v.3),
                    })
                    .collect(),
                total_ht: DecimalString(r.total_ht),
                total_vat: DecimalString(r.total_vat),
                total_ttc: DecimalString(r.total_ttc),
            },
            id: r.id,
            number: r.number,
            invoice_id: r.invoice_id,
            customer_id: r.customer_id,
            issued_on: r.issued_on,
            reason: r.reason,
            applied_to_invoice: DecimalString(r.applied_to_invoice),
            to_credit_balance: DecimalString(r.to_credit_balance),
            created_at: r.created_at,
        })
        .collect())
}

pub async fn get(
    c: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<CreditNoteView>, diesel::result::Error> {
    let rows: Vec<NoteRow> = credit_notes::table
        .filter(credit_notes::id.eq(id))
        .select(NoteRow::as_select())
        .load(c)
        .await?;
    Ok(with_details(c, rows).await?.pop())
}

/// Credit notes in id order after `after`, of one customer and one invoice when given.
pub async fn list(
    c: &mut AsyncPgConnection,
    customer: Option<Uuid>,
    invoice: Option<Uuid>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<CreditNoteView>, diesel::result::Error> {
    let mut q = credit_notes::table
        .order(credit_notes::id)
        .limit(limit)
        .select(NoteRow::as_select())
        .into_boxed();
    if let Some(customer) = customer {
        q = q.filter(credit_notes::customer_id.eq(customer));
    }
    if let Some(invoice) = invoice {
        q = q.filter(credit_notes::invoice_id.eq(invoice));
    }
    if let Some(after) = after {
        q = q.filter(credit_notes::id.gt(after));
    }
    let rows = q.load(c).await?;
    with_details(c, rows).await
}

/// The credit notes of each of `invoices`, in number order, as an invoice lists them.
pub async fn of_invoices(
    c: &mut AsyncPgConnection,
    invoices: &[Uuid],
) -> Result<HashMap<Uuid, Vec<CreditNoteRef>>, diesel::result::Error> {
    let rows: Vec<(Uuid, Uuid, String, NaiveDate, Decimal)> = credit_notes::table
        .filter(credit_notes::invoice_id.eq_any(invoices))
        .order((credit_notes::year, credit_notes::seq))
        .select((
            credit_notes::invoice_id,
            credit_notes::id,
            credit_notes::number,
            credit_notes::issued_on,
            credit_notes::total_ttc,
        ))
        .load(c)
        .await?;
    let mut of: HashMap<Uuid, Vec<CreditNoteRef>> = HashMap::new();
    for (invoice, id, number, issued_on, total_ttc) in rows {
        of.entry(invoice).or_default().push(CreditNoteRef {
            id,
            number,
            issued_on,
            total_ttc: DecimalString(total_ttc),
        });
    }
    Ok(of)
}

//! Invoices in the database (what settles them: `store_settlements`). Issuing one is a
//! single transaction: the customer's row is locked first, then its uninvoiced charges,
//! then the series' counter row (so that a rolled-back issue gives its number back and
//! numbers follow issue order), then the ledger's balance rows.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::credit_notes::CreditNoteRef;
use super::legal::{self, LegalMentions, Party};
use super::store_settlements::settled_amounts;
use super::{
    compute, due_date, settled_status, ChargeLine, DocumentKind, DocumentNumber, InvoiceLine,
    InvoiceStatus, InvoiceView, InvoicingError, Totals, VatSubtotal, DEFAULT_PAYMENT_DAYS,
};
use crate::calendar::paris_date;
use crate::catalog::PriceBasis;
use crate::charges::ChargeSource;
use crate::customers::Address;
use crate::ledger::chart::{CustomerAccount, Platform};
use crate::ledger::store as ledger;
use crate::ledger::{AccountId, NewTransaction, Posting};
use crate::money::{price, Amount, DecimalString, Unit};
use crate::schema::{charges, customers, document_counters, invoice_lines, invoice_vat, invoices};

#[derive(Queryable, Selectable)]
#[diesel(table_name = charges)]
struct Uninvoiced {
    id: Uuid,
    source: ChargeSource,
    description: String,
    quantity: Decimal,
    unit_price: Decimal,
    price_basis: PriceBasis,
    vat_rate: Decimal,
    service_start: Option<NaiveDate>,
    service_end: Option<NaiveDate>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = invoices)]
struct InvoiceRow {
    id: Uuid,
    number: String,
    customer_id: Uuid,
    issued_on: NaiveDate,
    due_on: NaiveDate,
    status: InvoiceStatus,
    total_ht: Decimal,
    total_vat: Decimal,
    total_ttc: Decimal,
    mentions: Option<serde_json::Value>,
    created_at: DateTime<Utc>,
}

/// The buyer's identity, read where its row is locked.
#[derive(Queryable, Selectable)]
#[diesel(table_name = customers)]
struct BuyerRow {
    legal_name: String,
    siren: String,
    vat_number: Option<String>,
    street_number: Option<String>,
    street: String,
    postcode: String,
    town: String,
    country: String,
}

impl From<BuyerRow> for Party {
    fn from(b: BuyerRow) -> Party {
        Party {
            legal_name: b.legal_name,
            siren: b.siren,
            vat_number: b.vat_number,
            address: Address {
                street_number: b.street_number,
                street: b.street,
                postcode: b.postcode,
                town: b.town,
                country: b.country,
            },
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = invoice_lines)]
struct LineRow {
    charge_id: Uuid,
    description: String,
    quantity: Decimal,
    unit_price: Decimal,
    price_basis: PriceBasis,
    unit_price_ht: Decimal,
    vat_rate: Decimal,
    net_ht: Decimal,
    service_start: Option<NaiveDate>,
    service_end: Option<NaiveDate>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = invoice_vat)]
struct VatRow {
    vat_rate: Decimal,
    base_ht: Decimal,
    vat: Decimal,
}

/// Whether a charge's net is earned when invoiced (706) or deferred until used (487).
fn deferred(source: ChargeSource) -> bool {
    matches!(
        source,
        ChargeSource::TicketPurchase | ChargeSource::CreditPurchase
    )
}

pub(super) fn eur(value: Decimal) -> Result<Amount, InvoicingError> {
    Amount::new(value, Unit::Eur).map_err(|e| InvoicingError::Invalid(e.to_string()))
}

/// Takes the next number of `kind`'s series for `year` from its counter row (created on
/// first use), in one statement: the row stays locked until the caller's transaction ends,
/// so a concurrent issue waits and a rollback (or a rolled-back savepoint) gives it back.
pub(super) async fn next_number(
    mut conn: &AsyncPgConnection,
    kind: DocumentKind,
    year: i32,
) -> Result<DocumentNumber, InvoicingError> {
    let seq: i64 = diesel::insert_into(document_counters::table)
        .values((
            document_counters::kind.eq(kind.as_str()),
            document_counters::year.eq(year),
            document_counters::last_seq.eq(1i64),
        ))
        .on_conflict((document_counters::kind, document_counters::year))
        .do_update()
        .set(document_counters::last_seq.eq(document_counters::last_seq + 1))
        .returning(document_counters::last_seq)
        .get_result(&mut conn)
        .await?;
    let last = u64::try_from(seq - 1).map_err(|_| InvoicingError::Invalid("counter".into()))?;
    Ok(DocumentNumber::next_after(kind, year, last)?)
}

/// Which of a customer's uninvoiced charges an invoice takes.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every one created up to this instant (the invoicing run).
    UpTo(DateTime<Utc>),
    /// These (a purchase, invoiced at once); those already invoiced are skipped.
    Charges(Vec<Uuid>),
}

/// Issues the customer's invoice for its uninvoiced charges created up to `as_of`, in a
/// transaction of its own: see [`issue_in_tx`].
pub async fn issue_for_customer(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<InvoiceView>, InvoicingError> {
    crate::retry_transaction!(conn, InvoicingError, |c| {
        issue_in_tx(c, customer, &Selection::UpTo(as_of), now).await
    })
}

/// Issues, inside the caller's transaction, the customer's invoice for the uninvoiced
/// charges `selection` names, dated the Paris date of `now` and due 30 days later, with
/// its ledger transaction (receivable 411 / revenue 706 for services, deferred revenue 487
/// for tickets and credits bought / VAT 44571). `None` when nothing is left to invoice (a
/// second run issues nothing). Locks the customer's row: a caller that holds other rows of
/// the customer must have locked the customer first.
///
/// Two steps, which an invoice run calls apart (the drafts of a batch of customers first,
/// then each one numbered and written in a savepoint): [`draft_in_tx`] then
/// [`write_in_tx`].
pub async fn issue_in_tx(
    c: &mut AsyncPgConnection,
    customer: Uuid,
    selection: &Selection,
    now: DateTime<Utc>,
) -> Result<Option<InvoiceView>, InvoicingError> {
    let Some(draft) = draft_in_tx(c, customer, selection, now).await? else {
        return Ok(None);
    };
    let mut accounts = InvoiceAccounts::default();
    let written = write_in_tx(c, draft, &mut accounts, Numbering::Take, now).await?;
    Ok(Some(apply_credit_balance_in_tx(c, written, now).await?))
}

/// An invoice before its number: its customer's row and charges locked, its amounts
/// computed. Nothing of it is written yet.
#[derive(Debug)]
pub struct Draft {
    pub customer: Uuid,
    /// The buyer's identity as the invoice freezes it.
    buyer: Party,
    charges: Vec<Uuid>,
    amounts: super::DocumentAmounts,
    /// Nets earned at issue (706) and deferred until used (487).
    earned: Decimal,
    deferred: Decimal,
    issued_on: NaiveDate,
    due_on: NaiveDate,
    status: InvoiceStatus,
}

impl Draft {
    /// The customer's accounts its ledger transaction posts to.
    fn accounts(&self) -> Vec<CustomerAccount> {
        let mut out = Vec::new();
        if self.amounts.totals.total_ttc.0 > Decimal::ZERO {
            out.push(CustomerAccount::Receivable);
        }
        if self.earned > Decimal::ZERO {
            out.push(CustomerAccount::Revenue);
        }
        if self.deferred > Decimal::ZERO {
            out.push(CustomerAccount::DeferredRevenue);
        }
        out
    }
}

/// The first step of [`issue_in_tx`]: locks the customer's row, then the uninvoiced
/// charges `selection` names, and computes the invoice's amounts. Takes a shared
/// connection so that a run sends the drafts of a batch of customers at once (pipelined,
/// each customer's statements in order).
pub async fn draft_in_tx(
    mut c: &AsyncPgConnection,
    customer: Uuid,
    selection: &Selection,
    now: DateTime<Utc>,
) -> Result<Option<Draft>, InvoicingError> {
    let lock = customers::table
        .find(customer)
        .select(BuyerRow::as_select())
        .for_no_key_update()
        .first::<BuyerRow>(&mut c);
    let uninvoiced = charges::table
        .filter(charges::customer_id.eq(customer))
        .filter(charges::invoice_id.is_null())
        .order((charges::created_at, charges::id))
        .select(Uninvoiced::as_select());
    let mut c2 = c;
    let load = async {
        match selection {
            Selection::UpTo(as_of) => {
                let due = uninvoiced.filter(charges::created_at.le(*as_of));
                due.for_update().load::<Uninvoiced>(&mut c2).await
            }
            Selection::Charges(ids) => {
                let named = uninvoiced.filter(charges::id.eq_any(ids));
                named.for_update().load::<Uninvoiced>(&mut c2).await
            }
        }
    };
    // both sent at once; the customer's lock is taken first
    let (locked, found) = futures_util::future::join(lock, load).await;
    let buyer: Party = locked
        .optional()?
        .ok_or(InvoicingError::UnknownCustomer(customer))?
        .into();
    let found = found?;
    if found.is_empty() {
        return Ok(None);
    }
    let lines: Vec<ChargeLine> = found
        .iter()
        .map(|ch| ChargeLine {
            charge_id: ch.id,
            description: ch.description.clone(),
            quantity: ch.quantity,
            unit_price: ch.unit_price,
            price_basis: ch.price_basis,
            vat_rate: ch.vat_rate,
            service_start: ch.service_start,
            service_end: ch.service_end,
        })
        .collect();
    let amounts = compute(DocumentKind::Invoice, &lines)?;
    let issued_on = paris_date(now);
    let due_on = due_date(issued_on, DEFAULT_PAYMENT_DAYS)
        .ok_or_else(|| InvoicingError::Invalid("no due date".into()))?;
    let (mut earned, mut deferred_net) = (Decimal::ZERO, Decimal::ZERO);
    for (ch, l) in found.iter().zip(&amounts.lines) {
        if deferred(ch.source) {
            deferred_net += l.net_ht.0;
        } else {
            earned += l.net_ht.0;
        }
    }
    let (_, status) = settled_status(
        amounts.totals.total_ttc.0,
        Decimal::ZERO,
        Decimal::ZERO,
        false,
    );
    Ok(Some(Draft {
        customer,
        buyer,
        charges: found.iter().map(|ch| ch.id).collect(),
        amounts,
        earned,
        deferred: deferred_net,
        issued_on,
        due_on,
        status,
    }))
}

/// The customer accounts invoices post to, found or opened once: a run opens those of a
/// whole batch of drafts in two statements ([`InvoiceAccounts::open_for`]); otherwise each
/// is found (or opened) on first use.
#[derive(Debug, Default)]
pub struct InvoiceAccounts(HashMap<(Uuid, CustomerAccount), AccountId>);

impl InvoiceAccounts {
    /// Finds the accounts the invoices of `drafts` post to and opens those missing, in two
    /// statements for the whole batch.
    pub async fn open_for(
        &mut self,
        conn: &AsyncPgConnection,
        drafts: &[Draft],
    ) -> Result<(), InvoicingError> {
        let wanted: Vec<(Uuid, CustomerAccount)> = drafts
            .iter()
            .flat_map(|d| d.accounts().into_iter().map(move |w| (d.customer, w)))
            .filter(|key| !self.0.contains_key(key))
            .collect();
        let new: Vec<_> = wanted.iter().map(|(c, w)| w.new_account(*c)).collect();
        for (key, id) in wanted
            .into_iter()
            .zip(ledger::ensure_accounts(conn, &new).await?)
        {
            self.0.insert(key, id);
        }
        Ok(())
    }

    async fn id(
        &mut self,
        conn: &AsyncPgConnection,
        customer: Uuid,
        which: CustomerAccount,
    ) -> Result<AccountId, InvoicingError> {
        if let Some(id) = self.0.get(&(customer, which)) {
            return Ok(*id);
        }
        let id = ledger::ensure_account(conn, &which.new_account(customer))
            .await?
            .id;
        self.0.insert((customer, which), id);
        Ok(id)
    }

    /// Forgets `customer`'s accounts (a rolled-back savepoint may have opened them).
    pub fn forget(&mut self, customer: Uuid) {
        self.0.retain(|(c, _), _| *c != customer);
    }
}

/// How [`write_in_tx`] numbers its invoice.
#[derive(Debug, Clone, Copy)]
pub enum Numbering {
    /// Take the next number from the series' counter, then write.
    Take,
    /// A caller that holds the series' counter (it took the previous number in this
    /// transaction) knows the next one: the counter's step is sent with the writes, in one
    /// round trip, and checked to give this number.
    Expect(DocumentNumber),
}

/// The second step of [`issue_in_tx`]: takes the number (as late as possible: the series'
/// counter row stays locked until the transaction ends), then writes the invoice, its
/// lines, its VAT, the charges' link and the ledger transaction, sent at once.
pub async fn write_in_tx(
    c: &AsyncPgConnection,
    draft: Draft,
    accounts: &mut InvoiceAccounts,
    numbering: Numbering,
    now: DateTime<Utc>,
) -> Result<InvoiceView, InvoicingError> {
    let Draft {
        customer,
        buyer,
        charges: charge_ids,
        amounts,
        earned,
        deferred: deferred_net,
        issued_on,
        due_on,
        status,
    } = draft;
    let totals = &amounts.totals;
    let id = Uuid::now_v7();
    let mentions = legal::seller().mentions(buyer, DEFAULT_PAYMENT_DAYS);
    let mentions_json =
        serde_json::to_value(&mentions).map_err(|e| InvoicingError::Invalid(e.to_string()))?;
    let postings = if totals.total_ttc.0 > Decimal::ZERO {
        let shared = c;
        let mut postings = vec![Posting::debit(
            accounts
                .id(shared, customer, CustomerAccount::Receivable)
                .await?,
            eur(totals.total_ttc.0)?,
        )];
        if earned > Decimal::ZERO {
            let revenue = accounts
                .id(shared, customer, CustomerAccount::Revenue)
                .await?;
            postings.push(Posting::credit(revenue, eur(earned)?));
        }
        if deferred_net > Decimal::ZERO {
            let deferred = accounts
                .id(shared, customer, CustomerAccount::DeferredRevenue)
                .await?;
            postings.push(Posting::credit(deferred, eur(deferred_net)?));
        }
        if totals.total_vat.0 > Decimal::ZERO {
            postings.push(Posting::credit(
                Platform::VatCollected.id(),
                eur(totals.total_vat.0)?,
            ));
        }
        Some(postings)
    } else {
        None
    };

    let year = chrono::Datelike::year(&issued_on);
    let (number, counter) = match numbering {
        Numbering::Expect(n) if n.year() == year => {
            (n, Some(next_number(c, DocumentKind::Invoice, year)))
        }
        _ => (next_number(c, DocumentKind::Invoice, year).await?, None),
    };
    let ledger_tx = postings
        .map(|postings| {
            NewTransaction::new(format!("invoice:{id}"), "invoice", postings).map(|tx| {
                tx.effective_at(now)
                    .posted_at(now)
                    .description(format!("invoice {number}"))
            })
        })
        .transpose()?;
    let line_rows: Vec<_> = amounts
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                invoice_lines::invoice_id.eq(id),
                invoice_lines::position.eq(i as i32),
                invoice_lines::charge_id.eq(l.charge_id),
                invoice_lines::description.eq(l.description.clone()),
                invoice_lines::quantity.eq(l.quantity.0),
                invoice_lines::unit_price.eq(l.unit_price.0),
                invoice_lines::price_basis.eq(l.price_basis.as_str()),
                invoice_lines::unit_price_ht.eq(l.unit_price_ht.0),
                invoice_lines::vat_rate.eq(l.vat_rate.0),
                invoice_lines::net_ht.eq(l.net_ht.0),
                invoice_lines::service_start.eq(l.service_start),
                invoice_lines::service_end.eq(l.service_end),
            )
        })
        .collect();
    let vat_rows: Vec<_> = totals
        .vat_breakdown
        .iter()
        .map(|v| {
            (
                invoice_vat::invoice_id.eq(id),
                invoice_vat::vat_rate.eq(v.vat_rate.0),
                invoice_vat::base_ht.eq(v.base_ht.0),
                invoice_vat::vat.eq(v.vat.0),
            )
        })
        .collect();
    let shared = c;
    let (mut c1, mut c2, mut c3, mut c4) = (shared, shared, shared, shared);
    let counted = async {
        match counter {
            Some(step) => step.await.map(Some),
            None => Ok(None),
        }
    };
    // sent at once, run in this order: the invoice before what refers to it
    let invoice = diesel::insert_into(invoices::table)
        .values((
            invoices::id.eq(id),
            invoices::number.eq(number.to_string()),
            invoices::series.eq(DocumentKind::Invoice.prefix().to_string()),
            invoices::year.eq(number.year()),
            invoices::seq.eq(number.seq() as i64),
            invoices::customer_id.eq(customer),
            invoices::issued_on.eq(issued_on),
            invoices::due_on.eq(due_on),
            invoices::status.eq(status.as_str()),
            invoices::total_ht.eq(totals.total_ht.0),
            invoices::total_vat.eq(totals.total_vat.0),
            invoices::total_ttc.eq(totals.total_ttc.0),
            invoices::created_at.eq(now),
            invoices::mentions.eq(&mentions_json),
        ))
        .execute(&mut c1);
    let lines = diesel::insert_into(invoice_lines::table)
        .values(line_rows)
        .execute(&mut c2);
    let vat = diesel::insert_into(invoice_vat::table)
        .values(vat_rows)
        .execute(&mut c3);
    let linked = diesel::update(charges::table.filter(charges::id.eq_any(&charge_ids)))
        .set(charges::invoice_id.eq(id))
        .execute(&mut c4);
    let posted = async {
        match &ledger_tx {
            Some(tx) => ledger::post_in_tx(shared, tx).await.map(Some),
            None => Ok(None),
        }
    };
    let (counted, invoice, lines, vat, linked, posted) =
        futures_util::join!(counted, invoice, lines, vat, linked, posted);
    // the first failure is the cause; the statements after it only saw an aborted transaction
    if let Some(got) = counted? {
        if got != number {
            return Err(InvoicingError::Invalid(format!(
                "the series gave {got}, {number} was expected"
            )));
        }
    }
    invoice?;
    lines?;
    vat?;
    linked?;
    posted?;
    Ok(InvoiceView {
        id,
        number: number.to_string(),
        customer_id: customer,
        issued_on,
        due_on,
        status,
        amount_paid: Unit::Eur.show(Decimal::ZERO),
        amount_credited: Unit::Eur.show(Decimal::ZERO),
        amount_due: Unit::Eur.show(amounts.totals.total_ttc.0),
        lines: amounts.lines,
        totals: amounts.totals,
        credit_notes: Vec::new(),
        seller: Some(mentions.seller),
        buyer: Some(mentions.buyer),
        legal: Some(mentions.legal),
        created_at: now,
    })
}

/// The customer's credit balance (4191) pays what it can of `invoice`, just issued in the
/// caller's transaction (which holds the customer's row), and releases what waits on it
/// when that pays it in full: the last step of issuing.
pub async fn apply_credit_balance_in_tx(
    c: &mut AsyncPgConnection,
    mut invoice: InvoiceView,
    now: DateTime<Utc>,
) -> Result<InvoiceView, InvoicingError> {
    let applied = crate::payments::store::apply_credit_balance_in_tx(
        c,
        invoice.customer_id,
        invoice.id,
        invoice.totals.total_ttc.0,
        invoice.issued_on,
        now,
    )
    .await
    .map_err(|e| InvoicingError::CreditBalance(Box::new(e)))?;
    if let Some((paid, settled)) = applied {
        invoice.amount_paid = Unit::Eur.show(paid);
        invoice.amount_due = Unit::Eur.show(settled.due);
        invoice.status = settled.status;
    }
    Ok(invoice)
}

/// Customers with charges not yet invoiced created up to `as_of`, in id order.
pub async fn customers_to_invoice(
    conn: &mut AsyncPgConnection,
    as_of: DateTime<Utc>,
) -> Result<Vec<Uuid>, diesel::result::Error> {
    charges::table
        .filter(charges::invoice_id.is_null())
        .filter(charges::created_at.le(as_of))
        .select(charges::customer_id)
        .distinct()
        .order(charges::customer_id)
        .load(conn)
        .await
}

fn view(
    row: InvoiceRow,
    lines: Vec<LineRow>,
    vat: Vec<VatRow>,
    (paid, credited): (Decimal, Decimal),
    credit_notes: Vec<CreditNoteRef>,
) -> Result<InvoiceView, InvoicingError> {
    // written by `issue_in_tx` from this type: one that no longer reads is a defect
    let mentions: Option<LegalMentions> = row
        .mentions
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| InvoicingError::Invalid(format!("invoice {}: mentions: {e}", row.id)))?;
    let (seller, buyer, legal) = match mentions {
        Some(m) => (Some(m.seller), Some(m.buyer), Some(m.legal)),
        None => (None, None, None),
    };
    Ok(InvoiceView {
        id: row.id,
        number: row.number,
        customer_id: row.customer_id,
        issued_on: row.issued_on,
        due_on: row.due_on,
        status: row.status,
        lines: lines
            .into_iter()
            .map(|l| InvoiceLine {
                charge_id: l.charge_id,
                description: l.description,
                quantity: DecimalString(l.quantity.normalize()),
                unit_price: price(l.unit_price),
                price_basis: l.price_basis,
                unit_price_ht: price(l.unit_price_ht),
                vat_rate: DecimalString(l.vat_rate.normalize()),
                service_start: l.service_start,
                service_end: l.service_end,
                net_ht: DecimalString(l.net_ht),
            })
            .collect(),
        totals: Totals {
            vat_breakdown: vat
                .into_iter()
                .map(|v| VatSubtotal {
                    vat_rate: DecimalString(v.vat_rate.normalize()),
                    base_ht: DecimalString(v.base_ht),
                    vat: DecimalString(v.vat),
                })
                .collect(),
            total_ht: DecimalString(row.total_ht),
            total_vat: DecimalString(row.total_vat),
            total_ttc: DecimalString(row.total_ttc),
        },
        amount_paid: Unit::Eur.show(paid),
        amount_credited: Unit::Eur.show(credited),
        amount_due: Unit::Eur.show(row.total_ttc - paid - credited),
        credit_notes,
        seller,
        buyer,
        legal,
        created_at: row.created_at,
    })
}

async fn with_details(
    conn: &mut AsyncPgConnection,
    rows: Vec<InvoiceRow>,
) -> Result<Vec<InvoiceView>, InvoicingError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let lines: Vec<(Uuid, LineRow)> = invoice_lines::table
        .filter(invoice_lines::invoice_id.eq_any(&ids))
        .order((invoice_lines::invoice_id, invoice_lines::position))
        .select((invoice_lines::invoice_id, LineRow::as_select()))
        .load(conn)
        .await?;
    let vat: Vec<(Uuid, VatRow)> = invoice_vat::table
        .filter(invoice_vat::invoice_id.eq_any(&ids))
        .order((invoice_vat::invoice_id, invoice_vat::vat_rate))
        .select((invoice_vat::invoice_id, VatRow::as_select()))
        .load(conn)
        .await?;
    let mut settled = settled_amounts(conn, &ids).await?;
    let mut notes = super::store_credit_notes::of_invoices(conn, &ids).await?;
    let mut lines_of: HashMap<Uuid, Vec<LineRow>> = Default::default();
    for (id, l) in lines {
        lines_of.entry(id).or_default().push(l);
    }
    let mut vat_of: HashMap<Uuid, Vec<VatRow>> = Default::default();
    for (id, v) in vat {
        vat_of.entry(id).or_default().push(v);
    }
    rows.into_iter()
        .map(|r| {
            let (l, v) = (
                lines_of.remove(&r.id).unwrap_or_default(),
                vat_of.remove(&r.id).unwrap_or_default(),
            );
            let amounts = settled.remove(&r.id).unwrap_or_default();
            let n = notes.remove(&r.id).unwrap_or_default();
            view(r, l, v, amounts, n)
        })
        .collect()
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<InvoiceView>, InvoicingError> {
    let rows: Vec<InvoiceRow> = invoices::table
        .filter(invoices::id.eq(id))
        .select(InvoiceRow::as_select())
        .load(conn)
        .await?;
    Ok(with_details(conn, rows).await?.pop())
}

/// Which invoices a list shows; every filter given applies.
#[derive(Debug, Clone, Copy, Default)]
pub struct InvoiceFilter {
    pub customer: Option<Uuid>,
    pub status: Option<InvoiceStatus>,
    /// Issued on or after this (Paris) date.
    pub issued_from: Option<NaiveDate>,
    /// Issued on or before this (Paris) date.
    pub issued_to: Option<NaiveDate>,
}

/// Invoices in id order after `after`, as `filter` asks.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: InvoiceFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<InvoiceView>, InvoicingError> {
    let InvoiceFilter {
        customer,
        status,
        issued_from,
        issued_to,
    } = filter;
    let mut q = invoices::table
        .order(invoices::id)
        .limit(limit)
        .select(InvoiceRow::as_select())
        .into_boxed();
    if let Some(c) = customer {
        q = q.filter(invoices::customer_id.eq(c));
    }
    if let Some(s) = status {
        q = q.filter(invoices::status.eq(s.as_str()));
    }
    if let Some(from) = issued_from {
        q = q.filter(invoices::issued_on.ge(from));
    }
    if let Some(to) = issued_to {
        q = q.filter(invoices::issued_on.le(to));
    }
    if let Some(a) = after {
        q = q.filter(invoices::id.gt(a));
    }
    let rows = q.load(conn).await?;
    with_details(conn, rows).await
}

//! Invoices in the database (what settles them: `store_settlements`). Issuing one is a
//! single transaction: the customer's row is locked first, then its uninvoiced charges,
//! then the series' counter row (so that a rolled-back issue gives its number back and
//! numbers follow issue order), then the ledger's balance rows.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Uuid as SqlUuid};
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
use crate::ledger::chart::CustomerAccount;
use crate::ledger::store as ledger;
use crate::ledger::{AccountId, NewTransaction, Posting};
use crate::money::{price, Amount, DecimalString, Unit};
use crate::schema::{charges, customers, document_counters, invoice_lines, invoice_vat, invoices};
use crate::sepa::prenotice::{self, DirectDebitNotice};

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

/// Takes the next `count` numbers of `kind`'s series for `year` from its counter row
/// (created on first use), in one statement, and the date they are issued on: `on`, or
/// the series' last issue date when another transaction issued later (so that dates never
/// go backwards as numbers go forwards). The row stays locked until the caller's
/// transaction ends, so a concurrent issue waits and a rollback gives the numbers back.
pub(super) async fn take_numbers(
    mut conn: &AsyncPgConnection,
    kind: DocumentKind,
    on: NaiveDate,
    count: usize,
) -> Result<(DocumentNumber, NaiveDate), InvoicingError> {
    use document_counters::dsl as d;
    let year = chrono::Datelike::year(&on);
    let count = i64::try_from(count).map_err(|_| InvoicingError::Invalid("count".into()))?;
    let (last, issued_on): (i64, Option<NaiveDate>) = diesel::insert_into(d::document_counters)
        .values((
            d::kind.eq(kind.as_str()),
            d::year.eq(year),
            d::last_seq.eq(count),
            d::last_issued_on.eq(on),
        ))
        .on_conflict((d::kind, d::year))
        .do_update()
        .set((
            d::last_seq.eq(d::last_seq + count),
            d::last_issued_on.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Date>,
            >(
                "greatest(document_counters.last_issued_on, excluded.last_issued_on)",
            )),
        ))
        .returning((d::last_seq, d::last_issued_on))
        .get_result(&mut conn)
        .await?;
    let before =
        u64::try_from(last - count).map_err(|_| InvoicingError::Invalid("counter".into()))?;
    let first = DocumentNumber::next_after(kind, year, before)?;
    Ok((first, issued_on.unwrap_or(on).max(on)))
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
/// for tickets and credits bought / VAT 44571, all the customer's sub-accounts), then lets
/// the customer's credit balance pay it and announces its SEPA collection, if any. `None` when nothing is left to invoice (a second
/// run issues nothing). Locks the customer's row: a caller that holds other rows of the
/// customer must have locked the customer first.
///
/// The same two steps as an invoice run's page of customers, for one: [`draft_in_tx`]
/// then [`write_in_tx`].
pub async fn issue_in_tx(
    c: &mut AsyncPgConnection,
    customer: Uuid,
    selection: &Selection,
    now: DateTime<Utc>,
) -> Result<Option<InvoiceView>, InvoicingError> {
    let Some(draft) = draft_in_tx(c, customer, selection).await? else {
        return Ok(None);
    };
    let written = write_in_tx(c, vec![draft], now).await?;
    let invoice = written
        .into_iter()
        .next()
        .ok_or_else(|| InvoicingError::Invalid("no invoice written".into()))?;
    let mut issued = [apply_credit_balance_in_tx(c, invoice, now).await?];
    announce_direct_debits(c, &mut issued).await?;
    let [invoice] = issued;
    Ok(Some(invoice))
}

/// The last step of issuing `invoices` (their credit balance applied): each announces its
/// collection when its customer pays by SEPA direct debit ([`prenotice::announce_in_tx`]).
pub async fn announce_direct_debits(
    c: &mut AsyncPgConnection,
    invoices: &mut [InvoiceView],
) -> Result<(), InvoicingError> {
    let issued: Vec<prenotice::Issued> = invoices
        .iter()
        .map(|i| prenotice::Issued {
            invoice: i.id,
            customer: i.customer_id,
            issued_on: i.issued_on,
            due_on: i.due_on,
            amount_due: i.amount_due.0,
        })
        .collect();
    let mut notices = prenotice::announce_in_tx(c, &issued).await?;
    for i in invoices {
        i.direct_debit = notices.remove(&i.id);
    }
    Ok(())
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
        if self.amounts.totals.total_vat.0 > Decimal::ZERO {
            out.push(CustomerAccount::VatCollected);
        }
        out
    }

    /// Its ledger transaction's postings: receivable 411 / revenue 706, deferred revenue
    /// 487, VAT 44571; none for an invoice of nothing.
    fn postings(&self, accounts: &InvoiceAccounts) -> Result<Option<Vec<Posting>>, InvoicingError> {
        let totals = &self.amounts.totals;
        if totals.total_ttc.0 <= Decimal::ZERO {
            return Ok(None);
        }
        let c = self.customer;
        let mut postings = vec![Posting::debit(
            accounts.id(c, CustomerAccount::Receivable)?,
            eur(totals.total_ttc.0)?,
        )];
        for (which, amount) in [
            (CustomerAccount::Revenue, self.earned),
            (CustomerAccount::DeferredRevenue, self.deferred),
            (CustomerAccount::VatCollected, totals.total_vat.0),
        ] {
            if amount > Decimal::ZERO {
                postings.push(Posting::credit(accounts.id(c, which)?, eur(amount)?));
            }
        }
        Ok(Some(postings))
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
        status,
    }))
}

/// The customer accounts a batch of invoices posts to, found or opened at once.
struct InvoiceAccounts(HashMap<(Uuid, CustomerAccount), AccountId>);

impl InvoiceAccounts {
    /// Finds the accounts the invoices of `drafts` post to and opens those missing, in two
    /// statements for the whole batch.
    async fn open_for(
        conn: &AsyncPgConnection,
        drafts: &[Draft],
    ) -> Result<InvoiceAccounts, InvoicingError> {
        let mut wanted: Vec<(Uuid, CustomerAccount)> = drafts
            .iter()
            .flat_map(|d| d.accounts().into_iter().map(move |w| (d.customer, w)))
            .collect();
        wanted.sort_by_key(|(c, w)| (*c, w.code()));
        wanted.dedup();
        let new: Vec<_> = wanted.iter().map(|(c, w)| w.new_account(*c)).collect();
        let ids = ledger::ensure_accounts(conn, &new).await?;
        Ok(InvoiceAccounts(wanted.into_iter().zip(ids).collect()))
    }

    fn id(&self, customer: Uuid, which: CustomerAccount) -> Result<AccountId, InvoicingError> {
        self.0.get(&(customer, which)).copied().ok_or_else(|| {
            InvoicingError::Invalid(format!("account {} of {customer} not opened", which.code()))
        })
    }
}

/// The second step of [`issue_in_tx`], for one customer's draft or a run's page of them:
/// writes the invoices' lines, VAT, the charges' link and ledger transactions (sent at
/// once), then numbers them all in one step of the series' counter and writes the invoice
/// rows (the lines' references to them are checked at commit). The counter row is taken
/// last, so that it stays locked (until the transaction ends) only for the invoice rows
/// and the commit: concurrent pages write everything else in parallel, and every other
/// row they lock is their own customers'.
pub async fn write_in_tx(
    c: &AsyncPgConnection,
    drafts: Vec<Draft>,
    now: DateTime<Utc>,
) -> Result<Vec<InvoiceView>, InvoicingError> {
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    let accounts = InvoiceAccounts::open_for(c, &drafts).await?;
    let ids: Vec<Uuid> = drafts.iter().map(|_| Uuid::now_v7()).collect();
    let mut ledger_txs = Vec::new();
    let (mut line_rows, mut vat_rows) = (Vec::new(), Vec::new());
    let (mut linked_charges, mut linked_to) = (Vec::new(), Vec::new());
    for (d, &id) in drafts.iter().zip(&ids) {
        if let Some(postings) = d.postings(&accounts)? {
            let tx = NewTransaction::new(format!("invoice:{id}"), "invoice", postings)?;
            ledger_txs.push(tx.effective_at(now).posted_at(now).description("invoice"));
        }
        line_rows.extend(d.amounts.lines.iter().enumerate().map(|(i, l)| {
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
        }));
        vat_rows.extend(d.amounts.totals.vat_breakdown.iter().map(|v| {
            (
                invoice_vat::invoice_id.eq(id),
                invoice_vat::vat_rate.eq(v.vat_rate.0),
                invoice_vat::base_ht.eq(v.base_ht.0),
                invoice_vat::vat.eq(v.vat.0),
            )
        }));
        linked_charges.extend(d.charges.iter().copied());
        linked_to.extend(d.charges.iter().map(|_| id));
    }

    let shared = c;
    let (mut c1, mut c2, mut c3) = (shared, shared, shared);
    // one statement each unless a page has more rows than a statement takes
    let lines = async {
        for rows in chunked(line_rows) {
            diesel::insert_into(invoice_lines::table)
                .values(rows)
                .execute(&mut c1)
                .await?;
        }
        Ok::<_, diesel::result::Error>(())
    };
    let vat = async {
        for rows in chunked(vat_rows) {
            diesel::insert_into(invoice_vat::table)
                .values(rows)
                .execute(&mut c2)
                .await?;
        }
        Ok::<_, diesel::result::Error>(())
    };
    let linked = diesel::sql_query(
        "UPDATE charges SET invoice_id = v.invoice_id \
           FROM unnest($1::uuid[], $2::uuid[]) AS v (charge_id, invoice_id) \
          WHERE charges.id = v.charge_id AND charges.invoice_id IS NULL",
    )
    .bind::<Array<SqlUuid>, _>(&linked_charges)
    .bind::<Array<SqlUuid>, _>(&linked_to)
    .execute(&mut c3);
    let posted = futures_util::future::try_join_all(
        ledger_txs.iter().map(|tx| ledger::post_in_tx(shared, tx)),
    );
    // sent at once; the first failure is the cause, the others saw an aborted transaction
    let (lines, vat, linked, posted) = futures_util::join!(lines, vat, linked, posted);
    lines?;
    vat?;
    if linked? != linked_charges.len() {
        return Err(InvoicingError::Invalid(
            "a charge was invoiced by another transaction".into(),
        ));
    }
    posted?;

    let (first, issued_on) =
        take_numbers(shared, DocumentKind::Invoice, paris_date(now), drafts.len()).await?;
    let due_on = due_date(issued_on, DEFAULT_PAYMENT_DAYS)
        .ok_or_else(|| InvoicingError::Invalid("no due date".into()))?;
    let seller = legal::seller();
    let mut views = Vec::with_capacity(drafts.len());
    let mut invoice_rows = Vec::with_capacity(drafts.len());
    for (i, (d, id)) in drafts.into_iter().zip(ids).enumerate() {
        let number =
            DocumentNumber::new(DocumentKind::Invoice, first.year(), first.seq() + i as u64)?;
        let mentions = seller.mentions(d.buyer, DEFAULT_PAYMENT_DAYS);
        let mentions_json =
            serde_json::to_value(&mentions).map_err(|e| InvoicingError::Invalid(e.to_string()))?;
        let totals = &d.amounts.totals;
        invoice_rows.push((
            invoices::id.eq(id),
            invoices::number.eq(number.to_string()),
            invoices::series.eq(DocumentKind::Invoice.prefix().to_string()),
            invoices::year.eq(number.year()),
            invoices::seq.eq(number.seq() as i64),
            invoices::customer_id.eq(d.customer),
            invoices::issued_on.eq(issued_on),
            invoices::due_on.eq(due_on),
            invoices::status.eq(d.status.as_str()),
            invoices::total_ht.eq(totals.total_ht.0),
            invoices::total_vat.eq(totals.total_vat.0),
            invoices::total_ttc.eq(totals.total_ttc.0),
            invoices::created_at.eq(now),
            invoices::mentions.eq(mentions_json),
        ));
        views.push(InvoiceView {
            id,
            number: number.to_string(),
            customer_id: d.customer,
            issued_on,
            due_on,
            status: d.status,
            amount_paid: Unit::Eur.show(Decimal::ZERO),
            amount_credited: Unit::Eur.show(Decimal::ZERO),
            amount_due: Unit::Eur.show(d.amounts.totals.total_ttc.0),
            lines: d.amounts.lines,
            totals: d.amounts.totals,
            credit_notes: Vec::new(),
            seller: Some(mentions.seller),
            buyer: Some(mentions.buyer),
            legal: Some(mentions.legal),
            direct_debit: None,
            created_at: now,
        });
    }
    let mut c4 = shared;
    for rows in chunked(invoice_rows) {
        diesel::insert_into(invoices::table)
            .values(rows)
            .execute(&mut c4)
            .await?;
    }
    Ok(views)
}

/// Rows per INSERT: a statement takes at most 65,535 parameters (an invoice line has 12).
const ROWS_PER_INSERT: usize = 2_000;

/// `rows` in INSERTs of at most [`ROWS_PER_INSERT`].
fn chunked<T>(rows: Vec<T>) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    for row in rows {
        match out.last_mut() {
            Some(last) if last.len() < ROWS_PER_INSERT => last.push(row),
            _ => out.push(vec![row]),
        }
    }
    out
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
    direct_debit: Option<DirectDebitNotice>,
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
        direct_debit,
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
    let mut debits = prenotice::of_invoices(conn, &ids).await?;
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
            let debit = debits.remove(&r.id);
            view(r, l, v, amounts, n, debit)
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

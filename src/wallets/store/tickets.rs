//! Tickets: bought (pending until paid), then paid. They are used through authorizations
//! (a hold on the wallet, captured: `authorizations::store`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::calendar::paris_date;
use crate::catalog::{self, CatalogRole};
use crate::charges::{self, ChargeSource, NewCharge};
use crate::idempotency::{self, IdempotencyKey};
use crate::invoicing::store::Selection;
use crate::invoicing::{self, InvoiceView};
use crate::ledger::store as ledger;
use crate::ledger::{NewTransaction, Posting};
use crate::money::Unit;
use crate::schema::ticket_purchases;

/// A purchase of tickets.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TicketPurchaseView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    pub quantity: i32,
    /// Taken back by credit notes on the purchase's invoice: never usable.
    #[serde(default)]
    pub credited: i32,
    /// `pending_payment` until the invoice is paid, then `available`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    /// The purchase's invoice, issued with it (null only for purchases made before
    /// purchases were invoiced at once, until the invoicing job invoiced them).
    #[schema(value_type = Option<String>, format = Uuid)]
    pub invoice_id: Option<Uuid>,
    #[schema(example = "F2026-000001")]
    pub invoice_number: Option<String>,
    /// Tickets of this purchase used so far (tickets are used oldest purchase first).
    pub tickets_used: i32,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = ticket_purchases)]
pub(super) struct PurchaseRow {
    id: Uuid,
    customer_id: Uuid,
    quantity: i32,
    credited: i32,
    status: String,
    created_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    invoice_id: Option<Uuid>,
    tickets_used: i32,
    returns: i32,
}

impl PurchaseRow {
    /// Its tickets neither credited nor used.
    fn unused(&self) -> i32 {
        self.quantity - self.credited - self.tickets_used
    }

    fn view(self, invoice_number: Option<String>) -> TicketPurchaseView {
        TicketPurchaseView {
            id: self.id,
            customer_id: self.customer_id,
            quantity: self.quantity,
            credited: self.credited,
            status: self.status,
            created_at: self.created_at,
            paid_at: self.paid_at,
            invoice_id: self.invoice_id,
            invoice_number,
            tickets_used: self.tickets_used,
        }
    }
}

/// Buys `quantity` tickets at `now`: a charge, invoiced at once in the same transaction
/// (the invoice posts the sale: receivable 411 / deferred revenue 487 / VAT), and the
/// tickets pending until that invoice is paid. Refused while a subscription includes
/// assistance. A replay answers the first purchase and its invoice, and issues nothing.
pub async fn buy_tickets(
    conn: &mut AsyncPgConnection,
    customer: Uuid,
    quantity: i32,
    key: Option<&IdempotencyKey>,
    now: DateTime<Utc>,
) -> Result<(TicketPurchaseView, bool), WalletError> {
    if !(1..=1000).contains(&quantity) {
        return Err(WalletError::Invalid("quantity: 1 to 1000 tickets".into()));
    }
    #[derive(serde::Serialize)]
    struct Request {
        customer: Uuid,
        quantity: i32,
    }
    let request = Request { customer, quantity };
    crate::retry_transaction!(conn, WalletError, |c| {
        let first = idempotency::replay::<_, WalletError>(c, key, "tickets.buy", &request, now);
        if let Some(first) = first.await? {
            return Ok((first, true));
        }
        require_open_customer(c, customer).await?;
        if active_offers(c, customer, now)
            .await?
            .iter()
            .any(|(_, o)| o.entitlements.assistance_included)
        {
            return Err(WalletError::AssistanceIncluded);
        }
        let ticket = catalog::store::with_role(c, CatalogRole::Ticket)
            .await?
            .ok_or_else(|| WalletError::NotFound("an offer with the role `ticket`".into()))?;
        let (offer, unit_price) = price_on(c, &ticket.code, paris_date(now)).await?;
        let id = Uuid::now_v7();
        let charge = charges::insert_returning_id(
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
        .await?
        .ok_or_else(|| WalletError::NotFound(format!("the charge of ticket purchase {id}")))?;
        // the purchase and its pending tickets first: the invoice, should the customer's
        // credit balance pay it at once, releases them (found by `charge_id`)
        diesel::insert_into(ticket_purchases::table)
            .values((
                ticket_purchases::id.eq(id),
                ticket_purchases::customer_id.eq(customer),
                ticket_purchases::quantity.eq(quantity),
                ticket_purchases::status.eq("pending_payment"),
                ticket_purchases::created_at.eq(now),
                ticket_purchases::charge_id.eq(charge),
            ))
            .execute(c)
            .await?;
        let issued = account(c, customer, CustomerAccount::TicketIssued).await?;
        let pending = account(c, customer, CustomerAccount::TicketPending).await?;
        // opened now, so that using a ticket finds both revenue accounts in one statement
        account(c, customer, CustomerAccount::Revenue).await?;
        let n = amount(Decimal::from(quantity), Unit::Ticket)?;
        let tx = NewTransaction::new(
            format!("tickets:buy:{id}"),
            "tickets.purchase",
            vec![Posting::debit(issued, n), Posting::credit(pending, n)],
        )?
        .effective_at(now);
        ledger::post_in_tx(c, &tx).await?;
        let (invoice, net) = invoice_at_once(c, customer, charge, now).await?;
        let row: PurchaseRow = diesel::update(ticket_purchases::table.find(id))
            .set((
                ticket_purchases::invoice_id.eq(invoice.id),
                ticket_purchases::net_ht.eq(net),
            ))
            .returning(PurchaseRow::as_returning())
            .get_result(c)
            .await?;
        let view = row.view(Some(invoice.number));
        idempotency::record(c, key, &view).await?;
        Ok((view, false))
    })
}

/// Issues, in the purchase's transaction, the invoice of its one charge; with the net
/// excl. VAT of that charge's line (what the purchase was sold for).
pub(super) async fn invoice_at_once(
    c: &mut AsyncPgConnection,
    customer: Uuid,
    charge: Uuid,
    now: DateTime<Utc>,
) -> Result<(InvoiceView, Decimal), WalletError> {
    let invoice =
        invoicing::store::issue_in_tx(c, customer, &Selection::Charges(vec![charge]), now)
            .await?
            .ok_or_else(|| WalletError::NotFound(format!("uninvoiced charge {charge}")))?;
    let net = invoice
        .lines
        .iter()
        .find(|l| l.charge_id == charge)
        .map(|l| l.net_ht.0)
        .ok_or_else(|| WalletError::NotFound(format!("the invoice line of charge {charge}")))?;
    Ok((invoice, net))
}

/// The ticket purchase `purchase`, its row locked for the rest of the transaction.
async fn locked_purchase(
    c: &mut AsyncPgConnection,
    purchase: Uuid,
) -> Result<PurchaseRow, WalletError> {
    ticket_purchases::table
        .find(purchase)
        .select(PurchaseRow::as_select())
        .for_update()
        .first(c)
        .await
        .optional()?
        .ok_or_else(|| WalletError::NotFound(format!("ticket purchase {purchase}")))
}

/// The invoice of a ticket purchase is paid: its tickets become usable, but for those a
/// credit note took back and those used before a payment came back, inside the caller's
/// transaction (the payment's, or the invoice's when the credit balance pays it, which
/// holds the customer's row). Idempotent.
pub async fn ticket_purchase_paid_in_tx(
    c: &mut AsyncPgConnection,
    purchase: Uuid,
    at: DateTime<Utc>,
) -> Result<(), WalletError> {
    let row = locked_purchase(c, purchase).await?;
    if row.status == "available" {
        return Ok(());
    }
    let unused = row.unused();
    if unused > 0 {
        let pending = account(c, row.customer_id, CustomerAccount::TicketPending).await?;
        let wallet = account(c, row.customer_id, CustomerAccount::TicketWallet).await?;
        let n = amount(Decimal::from(unused), Unit::Ticket)?;
        let key = match row.returns {
            0 => format!("tickets:paid:{purchase}"),
            r => format!("tickets:paid:{purchase}:{r}"),
        };
        let tx = NewTransaction::new(
            key,
            "tickets.paid",
            vec![Posting::debit(pending, n), Posting::credit(wallet, n)],
        )?
        .effective_at(at);
        ledger::post_in_tx(c, &tx).await?;
    }
    diesel::update(ticket_purchases::table.find(purchase))
        .set((
            ticket_purchases::status.eq("available"),
            ticket_purchases::paid_at.eq(at),
        ))
        .execute(c)
        .await?;
    Ok(())
}

/// The payment of a ticket purchase's invoice came back (a returned SEPA collection): its
/// unused tickets wait for payment again (TICKET-WALLET → TICKET-PENDING), inside the
/// caller's transaction (which holds the customer's row); those used stay used. Not when
/// some of them are held by authorizations under way: the wallet then keeps them, and the
/// unpaid invoice is dunning's. Whether they were taken back.
pub async fn ticket_purchase_unpaid_in_tx(
    c: &mut AsyncPgConnection,
    purchase: Uuid,
    at: DateTime<Utc>,
) -> Result<bool, WalletError> {
    let row = locked_purchase(c, purchase).await?;
    if row.status != "available" {
        return Ok(false);
    }
    let unused = row.unused();
    if unused > 0 {
        let wallet = account(c, row.customer_id, CustomerAccount::TicketWallet).await?;
        let free = ledger::get_account(c, wallet)
            .await?
            .map_or(Decimal::ZERO, |a| a.balance.available.0);
        if Decimal::from(unused) > free {
            return Ok(false);
        }
        let pending = account(c, row.customer_id, CustomerAccount::TicketPending).await?;
        let n = amount(Decimal::from(unused), Unit::Ticket)?;
        let tx = NewTransaction::new(
            format!("tickets:unpaid:{purchase}:{}", row.returns + 1),
            "tickets.unpaid",
            vec![Posting::debit(wallet, n), Posting::credit(pending, n)],
        )?
        .effective_at(at)
        .description("the payment of the purchase came back: its unused tickets wait for it");
        ledger::post_in_tx(c, &tx).await?;
    }
    diesel::update(ticket_purchases::table.find(purchase))
        .set((
            ticket_purchases::status.eq("pending_payment"),
            ticket_purchases::paid_at.eq(None::<DateTime<Utc>>),
            ticket_purchases::returns.eq(row.returns + 1),
        ))
        .execute(c)
        .await?;
    Ok(true)
}

/// The ticket purchases whose charges invoice `invoice` lists: still pending payment
/// (`paid` false), or paid.
pub async fn purchases_invoiced_on(
    c: &mut AsyncPgConnection,
    invoice: Uuid,
    paid: bool,
) -> Result<Vec<Uuid>, diesel::result::Error> {
    let status = if paid { "available" } else { "pending_payment" };
    ticket_purchases::table
        .inner_join(crate::schema::charges::table)
        .filter(crate::schema::charges::invoice_id.eq(invoice))
        .filter(ticket_purchases::status.eq(status))
        .order(ticket_purchases::id)
        .select(ticket_purchases::id)
        .load(c)
        .await
}

/// Uses one of the customer's paid tickets, inside a capture's transaction: the oldest
/// paid purchase with a ticket left counts it used, and the ticket's share of the
/// purchase's net ([`crate::wallets::tickets::TicketSale`]) is recognised, as the postings
/// returned: deferred revenue 487 to the customer's revenue 706 (none when it comes to
/// zero). One statement, which also finds both accounts (opened by the purchase); it locks
/// that purchase's row, after the authorization's and before any balance.
pub(crate) async fn use_ticket(
    mut conn: &AsyncPgConnection,
    customer: Uuid,
) -> Result<Vec<Posting>, WalletError> {
    #[derive(QueryableByName)]
    struct Used {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        quantity: i32,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        credited: i32,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        tickets_used: i32,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Numeric>)]
        net_ht: Option<Decimal>,
        #[diesel(sql_type = diesel::sql_types::Numeric)]
        recognized: Decimal,
        #[diesel(sql_type = diesel::sql_types::Numeric)]
        credited_net: Decimal,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Uuid>)]
        deferred: Option<Uuid>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Uuid>)]
        revenue: Option<Uuid>,
    }
    // FOR UPDATE under the LIMIT: a purchase whose last ticket a concurrent capture took
    // is skipped once that one commits, for the next purchase, never for no row at all
    let used: Option<Used> = diesel::sql_query(
        "WITH next AS (
             SELECT id FROM ticket_purchases
             WHERE customer_id = $1 AND status = 'available'
               AND tickets_used + credited < quantity
             ORDER BY created_at, id LIMIT 1 FOR UPDATE
         ), used AS (
             UPDATE ticket_purchases p SET tickets_used = p.tickets_used + 1
             FROM next WHERE p.id = next.id
             RETURNING p.id, p.quantity, p.credited, p.tickets_used, p.net_ht, p.recognized,
                       p.charge_id
         )
         SELECT used.id, used.quantity, used.credited, used.tickets_used, used.net_ht,
                used.recognized,
                (SELECT COALESCE(sum(l.net_ht), 0) FROM credit_note_lines l
                  WHERE l.charge_id = used.charge_id) AS credited_net,
                (SELECT id FROM accounts WHERE customer_id = $1 AND code = $2) AS deferred,
                (SELECT id FROM accounts WHERE customer_id = $1 AND code = $3) AS revenue
         FROM used",
    )
    .bind::<diesel::sql_types::Uuid, _>(customer)
    .bind::<diesel::sql_types::Text, _>(CustomerAccount::DeferredRevenue.code())
    .bind::<diesel::sql_types::Text, _>(CustomerAccount::Revenue.code())
    .get_result(&mut conn)
    .await
    .optional()?;
    // a ticket held in the wallet comes from a paid purchase with a ticket left
    let used = used.ok_or_else(|| {
        WalletError::NotFound(format!("a paid ticket purchase of customer {customer}"))
    })?;
    let Some(net) = used.net_ht else {
        // bought before purchases were invoiced at once: its sale is posted by the invoicing
        // job, whose 487 is not this ticket's to take
        return Ok(Vec::new());
    };
    let sale = crate::wallets::tickets::TicketSale {
        quantity: used.quantity,
        net,
        credited: used.credited,
        credited_net: used.credited_net,
    };
    let eur = sale.use_eur(used.tickets_used, used.recognized);
    if eur <= Decimal::ZERO {
        return Ok(Vec::new());
    }
    diesel::update(ticket_purchases::table.find(used.id))
        .set(ticket_purchases::recognized.eq(used.recognized + eur))
        .execute(&mut conn)
        .await?;
    let (deferred, revenue) = match (used.deferred, used.revenue) {
        (Some(d), Some(r)) => (AccountId(d), AccountId(r)),
        _ => futures_util::try_join!(
            account(conn, customer, CustomerAccount::DeferredRevenue),
            account(conn, customer, CustomerAccount::Revenue),
        )?,
    };
    let eur = amount(eur, Unit::Eur)?;
    Ok(vec![
        Posting::debit(deferred, eur),
        Posting::credit(revenue, eur),
    ])
}

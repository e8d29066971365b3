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
}

impl From<PurchaseRow> for TicketPurchaseView {
    fn from(r: PurchaseRow) -> Self {
        TicketPurchaseView {
            id: r.id,
            customer_id: r.customer_id,
            quantity: r.quantity,
            credited: r.credited,
            status: r.status,
            created_at: r.created_at,
            paid_at: r.paid_at,
        }
    }
}

/// Buys `quantity` tickets at `now`: a charge for immediate invoicing, and the tickets
/// pending until that invoice is paid. Refused while a subscription includes assistance.
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
        diesel::insert_into(ticket_purchases::table)
            .values((
                ticket_purchases::id.eq(id),
                ticket_purchases::customer_id.eq(customer),
                ticket_purchases::quantity.eq(quantity),
                ticket_purchases::status.eq("pending_payment"),
                ticket_purchases::created_at.eq(now),
            ))
            .execute(c)
            .await?;
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
        .await?;
        // the charge is new with the purchase: its invoice, once paid, releases the tickets
        diesel::update(ticket_purchases::table.find(id))
            .set(ticket_purchases::charge_id.eq(charge))
            .execute(c)
            .await?;
        let issued = account(c, customer, CustomerAccount::TicketIssued).await?;
        let pending = account(c, customer, CustomerAccount::TicketPending).await?;
        let n = amount(Decimal::from(quantity), Unit::Ticket)?;
        let tx = NewTransaction::new(
            format!("tickets:buy:{id}"),
            "tickets.purchase",
            vec![Posting::debit(issued, n), Posting::credit(pending, n)],
        )?
        .effective_at(now);
        ledger::post_in_tx(c, &tx).await?;
        let row: PurchaseRow = ticket_purchases::table
            .find(id)
            .select(PurchaseRow::as_select())
            .first(c)
            .await?;
        let view = TicketPurchaseView::from(row);
        idempotency::record(c, key, &view).await?;
        Ok((view, false))
    })
}

/// The invoice of a ticket purchase is paid: its tickets become usable, but for those a
/// credit note took back, inside the caller's transaction (the payment's, which holds the
/// customer's row). Idempotent.
pub async fn ticket_purchase_paid_in_tx(
    c: &mut AsyncPgConnection,
    purchase: Uuid,
    at: DateTime<Utc>,
) -> Result<TicketPurchaseView, WalletError> {
    let row: PurchaseRow = ticket_purchases::table
        .find(purchase)
        .select(PurchaseRow::as_select())
        .for_update()
        .first(c)
        .await
        .optional()?
        .ok_or_else(|| WalletError::NotFound(format!("ticket purchase {purchase}")))?;
    if row.status == "available" {
        return Ok(row.into());
    }
    if row.quantity > row.credited {
        let pending = account(c, row.customer_id, CustomerAccount::TicketPending).await?;
        let wallet = account(c, row.customer_id, CustomerAccount::TicketWallet).await?;
        let n = amount(Decimal::from(row.quantity - row.credited), Unit::Ticket)?;
        let tx = NewTransaction::new(
            format!("tickets:paid:{purchase}"),
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
    Ok(TicketPurchaseView {
        status: "available".into(),
        paid_at: Some(at),
        ..row.into()
    })
}

/// The ticket purchases, still pending payment, whose charges invoice `invoice` lists.
pub async fn pending_purchases_invoiced_on(
    c: &mut AsyncPgConnection,
    invoice: Uuid,
) -> Result<Vec<Uuid>, diesel::result::Error> {
    ticket_purchases::table
        .inner_join(crate::schema::charges::table)
        .filter(crate::schema::charges::invoice_id.eq(invoice))
        .filter(ticket_purchases::status.eq("pending_payment"))
        .order(ticket_purchases::id)
        .select(ticket_purchases::id)
        .load(c)
        .await
}

//! Payments received and credit balances refunded (issue 12, DOMAIN.md "Prepaid tickets",
//! "Non-payment", "Invoices and credit notes"). The rules here take no database: how a
//! payment is spread over the invoices it pays, and what a request may hold. `store` runs
//! them in one transaction with the invoices' settlements, the ledger and what a paid
//! invoice releases.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::idempotency::KeyReused;
use crate::money::{fits_columns, Amount, DecimalString, Unit};

pub mod store;

/// Invoices a payment may name.
pub const MAX_NAMED_INVOICES: usize = 100;

crate::text_enum! {
    /// How the money came.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum PaymentMethod {
        /// A bank transfer (its reference: the bank's).
        Transfer = "transfer",
        /// A card settlement reported by the processor (its reference: the processor's).
        Card = "card",
        /// A SEPA direct debit collected (its reference: the collection's end-to-end id);
        /// recorded by settling its batch, never through `POST /v1/payments`.
        DirectDebit = "direct_debit",
    }
}

/// A payment received, as finance (or the processor's bridge) reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "customer_id": "0193e0a0-0000-7000-8000-000000000002",
    "amount": "100.00",
    "method": "transfer",
    "reference": "VIR-2026-11-20-000123",
    "value_date": "2026-11-20"
}))]
pub struct NewPayment {
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    /// EUR, greater than zero, at most 2 decimals, below 10,000,000,000.
    #[schema(example = "100.00")]
    pub amount: DecimalString,
    pub method: PaymentMethod,
    /// The bank's or the processor's reference: the payment's idempotency key (the same
    /// reference with the same body answers the first payment; with another, 409).
    #[schema(min_length = 1, max_length = 200, example = "VIR-2026-11-20-000123")]
    pub reference: String,
    /// The day the money was credited on the bank account (Paris), not after today. The
    /// ledger records the payment at that date; a subscription activated by it starts then.
    #[serde(deserialize_with = "crate::input::date")]
    pub value_date: NaiveDate,
    /// The invoices to pay, in this order (each the customer's and with something due);
    /// absent: the customer's oldest open invoices. What is left goes to the customer's
    /// credit balance.
    #[schema(min_items = 1, max_items = 100)]
    #[serde(default)]
    pub invoice_ids: Option<Vec<Uuid>>,
}

/// What a payment paid on one invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Allocation {
    #[schema(value_type = String, format = Uuid)]
    pub invoice_id: Uuid,
    #[schema(example = "F2026-000001")]
    pub invoice_number: String,
    #[schema(example = "100.00")]
    pub amount: DecimalString,
}

/// A payment and what it paid.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "0193e0a0-0000-7000-8000-0000000000a1",
    "customer_id": "0193e0a0-0000-7000-8000-000000000002",
    "reference": "VIR-2026-11-20-000123",
    "method": "transfer",
    "amount": "150.00",
    "value_date": "2026-11-20",
    "allocations": [{"invoice_id": "0193e0a0-0000-7000-8000-0000000000f1", "invoice_number": "F2026-000001", "amount": "100.00"}],
    "to_credit_balance": "50.00",
    "received_at": "2026-11-20T10:00:00Z",
    "created_at": "2026-11-20T10:00:00Z"
}))]
pub struct PaymentView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    pub reference: String,
    pub method: PaymentMethod,
    pub amount: DecimalString,
    pub value_date: NaiveDate,
    /// In the order paid.
    pub allocations: Vec<Allocation>,
    /// What no invoice took: added to the customer's credit balance (4191).
    pub to_credit_balance: DecimalString,
    /// When it was reported to the service.
    pub received_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Paying back (part of) a customer's credit balance by bank transfer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": "50.00", "reference": "RBT-2026-11-25-0001", "value_date": "2026-11-25"}))]
pub struct RefundRequest {
    /// EUR, greater than zero, at most 2 decimals, never more than the credit balance.
    #[schema(example = "50.00")]
    pub amount: DecimalString,
    /// The outgoing transfer's reference: the refund's idempotency key.
    #[schema(min_length = 1, max_length = 200, example = "RBT-2026-11-25-0001")]
    pub reference: String,
    /// The day the transfer leaves the bank account (Paris), not after today.
    #[serde(deserialize_with = "crate::input::date")]
    pub value_date: NaiveDate,
}

/// A refund of a credit balance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "0193e0a0-0000-7000-8000-0000000000b1",
    "customer_id": "0193e0a0-0000-7000-8000-000000000002",
    "reference": "RBT-2026-11-25-0001",
    "amount": "50.00",
    "value_date": "2026-11-25",
    "credit_balance": "0.00",
    "created_at": "2026-11-25T10:00:00Z"
}))]
pub struct RefundView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    pub reference: String,
    pub amount: DecimalString,
    pub value_date: NaiveDate,
    /// The customer's credit balance (4191) once refunded.
    pub credit_balance: DecimalString,
    pub created_at: DateTime<Utc>,
}

/// Why a payment or a refund was refused.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("customer {0} does not exist")]
    UnknownCustomer(Uuid),
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("invoice {0} is not an open invoice of this customer")]
    InvoiceNotOpen(Uuid),
    #[error("the credit balance is {balance}: {asked} cannot be refunded")]
    BeyondCreditBalance { asked: Decimal, balance: Decimal },
    #[error("this reference was already used for a different request")]
    IdempotencyConflict,
    #[error("payment {0} does not exist")]
    NotFound(Uuid),
    #[error(transparent)]
    Invoicing(#[from] crate::invoicing::InvoicingError),
    #[error(transparent)]
    Wallet(#[from] crate::wallets::WalletError),
    #[error(transparent)]
    Subscription(#[from] crate::subscriptions::SubscriptionError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl From<KeyReused> for PaymentError {
    fn from(_: KeyReused) -> Self {
        PaymentError::IdempotencyConflict
    }
}

impl crate::db::Retryable for PaymentError {
    fn is_retryable(&self) -> bool {
        match self {
            PaymentError::Invoicing(e) => e.is_retryable(),
            PaymentError::Wallet(e) => e.is_retryable(),
            PaymentError::Subscription(e) => e.is_retryable(),
            PaymentError::Ledger(e) => e.is_retryable(),
            PaymentError::Database(e) => crate::db::is_retryable(e),
            _ => false,
        }
    }
}

/// An EUR amount of a request: positive, 2 decimals at most, within the columns.
pub fn eur_amount(value: Decimal, field: &'static str) -> Result<Amount, PaymentError> {
    let invalid = |message: String| PaymentError::Invalid { field, message };
    let amount = Amount::new(value, Unit::Eur).map_err(|e| invalid(e.to_string()))?;
    if !fits_columns(amount.value()) {
        return Err(invalid("must be below 10,000,000,000".into()));
    }
    Ok(amount)
}

/// A value date may not lie after `today` (money not yet on the account).
pub fn check_value_date(value_date: NaiveDate, today: NaiveDate) -> Result<(), PaymentError> {
    if value_date > today {
        return Err(PaymentError::Invalid {
            field: "value_date",
            message: format!("{value_date} is after today ({today}): not received yet"),
        });
    }
    Ok(())
}

/// A bank's or processor's reference: not blank (its length and characters are checked
/// with the body, against the contract).
pub fn check_reference(reference: &str) -> Result<(), PaymentError> {
    if reference.trim().is_empty() {
        return Err(PaymentError::Invalid {
            field: "reference",
            message: "a reference may not be blank".into(),
        });
    }
    Ok(())
}

/// Invoice ids named by a payment: 1 to [`MAX_NAMED_INVOICES`], each once.
pub fn check_named(ids: &[Uuid]) -> Result<(), PaymentError> {
    let invalid = |message: String| PaymentError::Invalid {
        field: "invoice_ids",
        message,
    };
    if ids.is_empty() || ids.len() > MAX_NAMED_INVOICES {
        return Err(invalid(format!(
            "name 1 to {MAX_NAMED_INVOICES} invoices, or leave it out"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = ids.iter().find(|id| !seen.insert(**id)) {
        return Err(invalid(format!("invoice {twice} is named twice")));
    }
    Ok(())
}

/// Spreads `amount` over invoices, in the order given, each taking at most what it still
/// asks (`due`): what each takes (only those that take something), and what is left over.
pub fn allocate(amount: Decimal, invoices: &[(Uuid, Decimal)]) -> (Vec<(Uuid, Decimal)>, Decimal) {
    let mut left = amount;
    let mut taken = Vec::new();
    for &(id, due) in invoices {
        if left <= Decimal::ZERO {
            break;
        }
        let take = left.min(due);
        if take > Decimal::ZERO {
            taken.push((id, take));
            left -= take;
        }
    }
    (taken, left)
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn a_payment_pays_the_invoices_in_order_and_keeps_the_rest() {
        let open = [(id(1), dec!(100.00)), (id(2), dec!(60.00))];
        assert_eq!(
            allocate(dec!(130.00), &open),
            (
                vec![(id(1), dec!(100.00)), (id(2), dec!(30.00))],
                dec!(0.00)
            )
        );
        assert_eq!(
            allocate(dec!(40.00), &open),
            (vec![(id(1), dec!(40.00))], dec!(0.00))
        );
        assert_eq!(
            allocate(dec!(200.00), &open),
            (
                vec![(id(1), dec!(100.00)), (id(2), dec!(60.00))],
                dec!(40.00)
            )
        );
        assert_eq!(allocate(dec!(5.00), &[]), (vec![], dec!(5.00)));
    }

    #[test]
    fn an_invoice_with_nothing_due_takes_nothing() {
        let open = [(id(1), dec!(0.00)), (id(2), dec!(10.00))];
        assert_eq!(
            allocate(dec!(10.00), &open),
            (vec![(id(2), dec!(10.00))], dec!(0.00))
        );
    }

    #[test]
    fn requests_are_bounded() {
        assert!(eur_amount(dec!(0.001), "amount").is_err());
        assert!(eur_amount(dec!(0), "amount").is_err());
        assert!(eur_amount(dec!(10000000000), "amount").is_err());
        assert!(eur_amount(dec!(9999999999.99), "amount").is_ok());
        let today: NaiveDate = "2026-11-20".parse().unwrap();
        assert!(check_value_date(today, today).is_ok());
        assert!(check_value_date("2026-11-21".parse().unwrap(), today).is_err());
        assert!(check_reference(" \u{a0}").is_err());
        assert!(check_reference("VIR 1").is_ok());
        assert!(check_named(&[]).is_err());
        assert!(check_named(&[id(1), id(1)]).is_err());
        assert!(check_named(&[id(1), id(2)]).is_ok());
        assert!(check_named(&vec![id(1); 101]).is_err());
    }
}

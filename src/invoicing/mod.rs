//! The amounts, numbers and due date of an invoice or a credit note, without a database
//! (DOMAIN.md, "Money, units, rounding" and "Invoices and credit notes"). Each line's net
//! excl. VAT is rounded to the cent, half away from zero; VAT is computed per rate on the
//! sum of that rate's nets (EN 16931 BR-CO-17), never as a sum of per-line VAT. A credit
//! note is computed exactly like an invoice, over positive amounts: only its kind, and so
//! its series of numbers, differ. Nothing here allocates a number: the caller holds the
//! series' counter.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{Days, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::catalog::PriceBasis;
use crate::charges::ChargeView;
use crate::money::{fits_columns, price, round_cents, DecimalString};

pub mod cii;
pub mod credit_notes;
pub mod legal;
pub mod pdf;
pub mod runs;
pub mod store;
pub mod store_credit_notes;
pub mod store_runs;
pub mod store_settlements;

pub use credit_notes::{CreditNoteError, CreditNoteRef, CreditNoteView};

pub use legal::{LegalMentions, LegalTerms, Party};

/// Days from issue to due date unless configured otherwise (DOMAIN.md).
pub const DEFAULT_PAYMENT_DAYS: u32 = 30;

/// Decimals a quantity, a unit price or a VAT rate may carry (the `charges` columns).
const PRICE_SCALE: u32 = 4;

crate::text_enum! {
    /// What a document is; each kind has its own series of numbers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum DocumentKind {
        Invoice = "invoice",
        /// Corrects an invoice; its amounts are positive, what it credits.
        CreditNote = "credit_note",
    }
}

impl DocumentKind {
    /// The letter that starts the numbers of the kind's series.
    pub fn prefix(self) -> char {
        match self {
            DocumentKind::Invoice => 'F',
            DocumentKind::CreditNote => 'A',
        }
    }

    fn of_prefix(c: char) -> Option<Self> {
        DocumentKind::ALL.iter().copied().find(|k| k.prefix() == c)
    }
}

/// A charge as a document line takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeLine {
    pub charge_id: Uuid,
    pub description: String,
    pub quantity: Decimal,
    /// Excl. or incl. VAT as `price_basis` says, up to 4 decimals.
    pub unit_price: Decimal,
    pub price_basis: PriceBasis,
    pub vat_rate: Decimal,
    pub service_start: Option<NaiveDate>,
    pub service_end: Option<NaiveDate>,
}

impl From<&ChargeView> for ChargeLine {
    fn from(c: &ChargeView) -> Self {
        ChargeLine {
            charge_id: c.id,
            description: c.description.clone(),
            quantity: c.quantity.0,
            unit_price: c.unit_price.0,
            price_basis: c.price_basis,
            vat_rate: c.vat_rate.0,
            service_start: c.service_start,
            service_end: c.service_end,
        }
    }
}

/// Why a line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("the quantity must be greater than zero")]
    QuantityNotPositive,
    #[error("the unit price must not be negative")]
    NegativeUnitPrice,
    #[error("quantity and unit price take at most 4 decimals and stay below 10^10")]
    OutOfRange,
    #[error("the VAT rate must be a fraction from 0 to below 1 with at most 4 decimals")]
    VatRate,
    #[error("the service period ends before it starts")]
    ServicePeriod,
}

/// Why a document's amounts could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    #[error("a document has at least one line")]
    NoLines,
    #[error("line {index} (charge {charge_id}): {problem}")]
    Line {
        index: usize,
        charge_id: Uuid,
        problem: LineProblem,
    },
    #[error("the document's totals are too large")]
    TooLarge,
}

/// One line of an invoice or a credit note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct InvoiceLine {
    #[schema(value_type = String, format = Uuid)]
    pub charge_id: Uuid,
    pub description: String,
    pub quantity: DecimalString,
    /// The unit price as charged, excl. or incl. VAT as `price_basis` says.
    #[schema(example = "100.00")]
    pub unit_price: DecimalString,
    pub price_basis: PriceBasis,
    /// The unit price excl. VAT (a legal mention), to 4 decimals, half away from zero. For
    /// a price incl. VAT it is shown only: the net is computed from the line's total.
    #[schema(example = "83.3333")]
    pub unit_price_ht: DecimalString,
    #[schema(example = "0.2")]
    pub vat_rate: DecimalString,
    pub service_start: Option<NaiveDate>,
    pub service_end: Option<NaiveDate>,
    /// The line's net excl. VAT, to the cent: `quantity × unit_price`, or for a price incl.
    /// VAT `quantity × unit_price ÷ (1 + vat_rate)`, rounded half away from zero.
    #[schema(example = "83.33")]
    pub net_ht: DecimalString,
}

/// The VAT of one rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VatSubtotal {
    #[schema(example = "0.2")]
    pub vat_rate: DecimalString,
    /// The sum of the nets of the lines at this rate.
    #[schema(example = "83.33")]
    pub base_ht: DecimalString,
    /// `base_ht × vat_rate`, to the cent, half away from zero.
    #[schema(example = "16.67")]
    pub vat: DecimalString,
}

/// A document's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Totals {
    /// One entry per VAT rate of the lines, by increasing rate.
    pub vat_breakdown: Vec<VatSubtotal>,
    #[schema(example = "83.33")]
    pub total_ht: DecimalString,
    #[schema(example = "16.67")]
    pub total_vat: DecimalString,
    /// `total_ht + total_vat`.
    #[schema(example = "100.00")]
    pub total_ttc: DecimalString,
}

/// The lines and totals of an invoice or a credit note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DocumentAmounts {
    pub kind: DocumentKind,
    /// In the order of the charges given.
    pub lines: Vec<InvoiceLine>,
    pub totals: Totals,
}

fn checked_line(c: &ChargeLine) -> Result<(), LineProblem> {
    let fits = |d: Decimal| fits_columns(d) && d.normalize().scale() <= PRICE_SCALE;
    if c.quantity <= Decimal::ZERO {
        Err(LineProblem::QuantityNotPositive)
    } else if c.unit_price < Decimal::ZERO {
        Err(LineProblem::NegativeUnitPrice)
    } else if !fits(c.quantity) || !fits(c.unit_price) {
        Err(LineProblem::OutOfRange)
    } else if c.vat_rate < Decimal::ZERO
        || c.vat_rate >= Decimal::ONE
        || c.vat_rate.normalize().scale() > PRICE_SCALE
    {
        Err(LineProblem::VatRate)
    } else if matches!((c.service_start, c.service_end), (Some(s), Some(e)) if e < s) {
        Err(LineProblem::ServicePeriod)
    } else {
        Ok(())
    }
}

/// `value ÷ (1 + rate)`: a price or total incl. VAT without its VAT, unrounded.
fn without_vat(value: Decimal, rate: Decimal) -> Option<Decimal> {
    value.checked_div(Decimal::ONE.checked_add(rate)?)
}

/// The document line of a charge: its net excl. VAT to the cent (DOMAIN.md: a price incl.
/// VAT converts the line's total, so 3 tickets at 100.00 incl. 20 % VAT are 250.00 net).
pub fn line(c: &ChargeLine) -> Result<InvoiceLine, LineProblem> {
    checked_line(c)?;
    let total = c
        .quantity
        .checked_mul(c.unit_price)
        .ok_or(LineProblem::OutOfRange)?;
    let (net, unit_price_ht) = match c.price_basis {
        PriceBasis::Ht => (total, c.unit_price),
        PriceBasis::Ttc => (
            without_vat(total, c.vat_rate).ok_or(LineProblem::OutOfRange)?,
            without_vat(c.unit_price, c.vat_rate)
                .ok_or(LineProblem::OutOfRange)?
                .round_dp_with_strategy(PRICE_SCALE, RoundingStrategy::MidpointAwayFromZero),
        ),
    };
    Ok(InvoiceLine {
        charge_id: c.charge_id,
        description: c.description.clone(),
        quantity: DecimalString(c.quantity.normalize()),
        unit_price: price(c.unit_price),
        price_basis: c.price_basis,
        unit_price_ht: price(unit_price_ht),
        vat_rate: DecimalString(c.vat_rate.normalize()),
        service_start: c.service_start,
        service_end: c.service_end,
        net_ht: DecimalString(round_cents(net)),
    })
}

fn sum(values: impl IntoIterator<Item = Decimal>) -> Result<Decimal, InvoiceError> {
    values.into_iter().try_fold(Decimal::ZERO, |acc, v| {
        acc.checked_add(v).ok_or(InvoiceError::TooLarge)
    })
}

/// The totals of `lines`: per rate, `round(base × rate)` on the sum of the rate's nets
/// (EN 16931 BR-CO-17); total TTC is the nets plus the VAT. The order of the lines does
/// not matter.
pub fn totals(lines: &[InvoiceLine]) -> Result<Totals, InvoiceError> {
    // Decimal orders by value: 0.2 and 0.20 are one rate.
    let mut bases: BTreeMap<Decimal, Decimal> = BTreeMap::new();
    for l in lines {
        let base = bases.entry(l.vat_rate.0).or_default();
        *base = sum([*base, l.net_ht.0])?;
    }
    let mut breakdown = Vec::with_capacity(bases.len());
    for (rate, base) in bases {
        let vat = base.checked_mul(rate).ok_or(InvoiceError::TooLarge)?;
        breakdown.push(VatSubtotal {
            vat_rate: DecimalString(rate.normalize()),
            base_ht: DecimalString(round_cents(base)),
            vat: DecimalString(round_cents(vat)),
        });
    }
    let total_ht = round_cents(sum(breakdown.iter().map(|s| s.base_ht.0))?);
    let total_vat = round_cents(sum(breakdown.iter().map(|s| s.vat.0))?);
    let total_ttc = round_cents(sum([total_ht, total_vat])?);
    Ok(Totals {
        vat_breakdown: breakdown,
        total_ht: DecimalString(total_ht),
        total_vat: DecimalString(total_vat),
        total_ttc: DecimalString(total_ttc),
    })
}

/// The lines and totals of a document of `kind` over `charges`, all amounts positive (a
/// credit note lists what it credits, not negative amounts). Refuses an empty document and
/// names the first refused line.
pub fn compute(
    kind: DocumentKind,
    charges: &[ChargeLine],
) -> Result<DocumentAmounts, InvoiceError> {
    if charges.is_empty() {
        return Err(InvoiceError::NoLines);
    }
    let lines = charges
        .iter()
        .enumerate()
        .map(|(index, c)| {
            line(c).map_err(|problem| InvoiceError::Line {
                index,
                charge_id: c.charge_id,
                problem,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let totals = totals(&lines)?;
    Ok(DocumentAmounts {
        kind,
        lines,
        totals,
    })
}

/// The due date of a document issued on `issued_on`, payable in `payment_days` days
/// ([`DEFAULT_PAYMENT_DAYS`] unless configured); `None` past chrono's last date.
pub fn due_date(issued_on: NaiveDate, payment_days: u32) -> Option<NaiveDate> {
    issued_on.checked_add_days(Days::new(u64::from(payment_days)))
}

/// Why a document number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("`{0}` is not a document number such as F2026-000001 or A2026-000001")]
    Syntax(String),
    #[error("a document number has a four-digit year and a sequence from 1")]
    OutOfRange,
}

/// A document's number in its kind's series for a year: `F2026-000001` for the first
/// invoice of 2026, `A2026-000001` for the first credit note; the sequence takes six
/// digits, more once it passes 999999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentNumber {
    kind: DocumentKind,
    year: i32,
    seq: u64,
}

impl DocumentNumber {
    pub fn new(kind: DocumentKind, year: i32, seq: u64) -> Result<Self, NumberError> {
        if !(1000..=9999).contains(&year) || seq == 0 {
            return Err(NumberError::OutOfRange);
        }
        Ok(DocumentNumber { kind, year, seq })
    }

    /// The number after a series whose counter stands at `counter` (numbers issued so
    /// far): the first is `counter = 0`.
    pub fn next_after(kind: DocumentKind, year: i32, counter: u64) -> Result<Self, NumberError> {
        let seq = counter.checked_add(1).ok_or(NumberError::OutOfRange)?;
        DocumentNumber::new(kind, year, seq)
    }

    pub fn kind(self) -> DocumentKind {
        self.kind
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn seq(self) -> u64 {
        self.seq
    }
}

impl fmt::Display for DocumentNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}-{:06}", self.kind.prefix(), self.year, self.seq)
    }
}

impl FromStr for DocumentNumber {
    type Err = NumberError;

    /// Only the form [`Display`](fmt::Display) writes: no spaces, signs, lower case, or
    /// leading zero beyond the six digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || NumberError::Syntax(s.chars().take(40).collect());
        let mut chars = s.chars();
        let kind = chars
            .next()
            .and_then(DocumentKind::of_prefix)
            .ok_or_else(syntax)?;
        let (year, seq) = chars.as_str().split_once('-').ok_or_else(syntax)?;
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if year.len() != 4 || !digits(year) || !(6..=20).contains(&seq.len()) || !digits(seq) {
            return Err(syntax());
        }
        let year = year.parse().map_err(|_| syntax())?;
        let seq = seq.parse().map_err(|_| syntax())?;
        let number = DocumentNumber::new(kind, year, seq)?;
        if number.to_string() != s {
            return Err(syntax());
        }
        Ok(number)
    }
}

crate::text_enum! {
    /// Where an invoice stands: `issued` (something is due), `overdue` (past its due date
    /// with something still due), `paid` (nothing due, some of it paid) or `credited`
    /// (nothing due, all of it credited).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum InvoiceStatus {
        Issued = "issued",
        Overdue = "overdue",
        /// In a submitted SEPA collection batch: the bank collects it, no other payment
        /// takes it meanwhile.
        CollectionPending = "collection_pending",
        Paid = "paid",
        Credited = "credited",
    }
}

impl InvoiceStatus {
    /// Whether something is still due on it.
    pub fn is_open(self) -> bool {
        matches!(self, InvoiceStatus::Issued | InvoiceStatus::Overdue)
    }
}

crate::text_enum! {
    /// What settled (part of) an invoice.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum SettlementKind {
        /// A payment received (bank transfer, card, direct debit).
        Payment = "payment",
        /// A credit note on the invoice, while something was still due.
        CreditNote = "credit_note",
        /// The customer's credit balance (4191) applied to it.
        CreditBalance = "credit_balance",
        /// A payment given back: its SEPA collection was returned (it counts against what
        /// was paid).
        PaymentReturn = "payment_return",
    }
}

/// What an invoice of total `total_ttc` asks once `settled` of it is settled, and its
/// status then: `paid`/`credited` when nothing remains (`credited` when credit notes alone
/// settled it), else `overdue` past its due date and `issued` before.
pub fn settled_status(
    total_ttc: Decimal,
    paid: Decimal,
    credited: Decimal,
    overdue: bool,
) -> (Decimal, InvoiceStatus) {
    let due = total_ttc - paid - credited;
    let status = match (due > Decimal::ZERO, overdue) {
        (false, _) if paid.is_zero() && !credited.is_zero() => InvoiceStatus::Credited,
        (false, _) => InvoiceStatus::Paid,
        (true, true) => InvoiceStatus::Overdue,
        (true, false) => InvoiceStatus::Issued,
    };
    (due, status)
}

/// An issued invoice: its number, dates, lines and totals.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvoiceView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Chronological and continuous per series and year.
    #[schema(example = "F2026-000001")]
    pub number: String,
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    /// The Paris date of issue.
    pub issued_on: NaiveDate,
    /// Issue date + 30 days.
    pub due_on: NaiveDate,
    pub status: InvoiceStatus,
    /// In the order of the charges invoiced (oldest first).
    pub lines: Vec<InvoiceLine>,
    pub totals: Totals,
    /// Settled by payments and the customer's credit balance.
    #[schema(example = "0.00")]
    pub amount_paid: DecimalString,
    /// Settled by credit notes.
    #[schema(example = "0.00")]
    pub amount_credited: DecimalString,
    /// What the customer still owes on it: total incl. VAT less paid and credited.
    #[schema(example = "100.00")]
    pub amount_due: DecimalString,
    /// Its credit notes, in number order.
    pub credit_notes: Vec<CreditNoteRef>,
    /// The seller's identity as issued (null only on invoices issued before legal mentions
    /// were recorded).
    pub seller: Option<Party>,
    /// The buyer's identity as issued: a later change of the customer leaves it as it was.
    pub buyer: Option<Party>,
    /// The terms as issued: late-payment penalty rate, the 40 € recovery indemnity, the
    /// operation category, the payment days.
    pub legal: Option<LegalTerms>,
    /// The collection by SEPA direct debit the invoice announces (its pre-notification):
    /// present when, at issue, its customer held an active mandate and something was due.
    pub direct_debit: Option<crate::sepa::prenotice::DirectDebitNotice>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl InvoiceView {
    /// Its seller, buyer and terms as issued; none for an invoice issued before invoices
    /// froze them.
    pub fn mentions(&self) -> Option<legal::LegalMentions> {
        Some(legal::LegalMentions {
            seller: self.seller.clone()?,
            buyer: self.buyer.clone()?,
            legal: self.legal.clone()?,
        })
    }
}

/// Why an invoice could not be issued or read.
#[derive(Debug, thiserror::Error)]
pub enum InvoicingError {
    #[error("invoice {0} does not exist")]
    NotFound(Uuid),
    #[error("customer {0} does not exist")]
    UnknownCustomer(Uuid),
    #[error(transparent)]
    Amounts(#[from] InvoiceError),
    #[error(transparent)]
    Number(#[from] NumberError),
    #[error("{0}")]
    Invalid(String),
    #[error("invoice {invoice} asks {due}, less than that")]
    BeyondDue { invoice: Uuid, due: Decimal },
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// Applying the customer's credit balance to a new invoice failed.
    #[error(transparent)]
    CreditBalance(Box<crate::payments::PaymentError>),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl crate::db::Retryable for InvoicingError {
    fn is_retryable(&self) -> bool {
        match self {
            InvoicingError::CreditBalance(e) => crate::db::Retryable::is_retryable(&**e),
            InvoicingError::Database(e) => crate::db::is_retryable(e),
            InvoicingError::Ledger(e) => crate::db::Retryable::is_retryable(e),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    use super::*;

    fn charge(
        quantity: Decimal,
        unit_price: Decimal,
        basis: PriceBasis,
        rate: Decimal,
    ) -> ChargeLine {
        ChargeLine {
            charge_id: Uuid::nil(),
            description: "item".into(),
            quantity,
            unit_price,
            price_basis: basis,
            vat_rate: rate,
            service_start: None,
            service_end: None,
        }
    }

    fn ttc(quantity: Decimal, unit_price: Decimal) -> ChargeLine {
        charge(quantity, unit_price, PriceBasis::Ttc, dec!(0.20))
    }

    fn ht(unit_price: Decimal, rate: Decimal) -> ChargeLine {
        charge(dec!(1), unit_price, PriceBasis::Ht, rate)
    }

    /// (total HT, total VAT, total TTC) of an invoice over `charges`.
    fn sums(charges: &[ChargeLine]) -> (Decimal, Decimal, Decimal) {
        let t = compute(DocumentKind::Invoice, charges).unwrap().totals;
        (t.total_ht.0, t.total_vat.0, t.total_ttc.0)
    }

    /// (rate, base, VAT) of each entry of the breakdown.
    fn breakdown(charges: &[ChargeLine]) -> Vec<(Decimal, Decimal, Decimal)> {
        let t = compute(DocumentKind::Invoice, charges).unwrap().totals;
        t.vat_breakdown
            .iter()
            .map(|s| (s.vat_rate.0, s.base_ht.0, s.vat.0))
            .collect()
    }

    #[test]
    fn one_ticket_incl_vat_is_83_33_net() {
        let doc = compute(DocumentKind::Invoice, &[ttc(dec!(1), dec!(100.00))]).unwrap();
        assert_eq!(doc.lines[0].net_ht.0, dec!(83.33));
        assert_eq!(doc.lines[0].unit_price_ht.0, dec!(83.3333));
        assert_eq!(
            sums(&[ttc(dec!(1), dec!(100.00))]),
            (dec!(83.33), dec!(16.67), dec!(100.00))
        );
    }

    #[test]
    fn three_tickets_convert_the_line_total() {
        let doc = compute(DocumentKind::Invoice, &[ttc(dec!(3), dec!(100.00))]).unwrap();
        assert_eq!(doc.lines[0].net_ht.0, dec!(250.00));
        assert_eq!(
            sums(&[ttc(dec!(3), dec!(100.00))]),
            (dec!(250.00), dec!(50.00), dec!(300.00))
        );
    }

    #[test]
    fn vat_is_computed_on_the_rate_base_not_summed_per_line() {
        // Three one-ticket lines: nets 3 × 83.33; per-line VAT would be 3 × 16.67 = 50.01.
        let one = ttc(dec!(1), dec!(100.00));
        assert_eq!(
            sums(&[one.clone(), one.clone(), one]),
            (dec!(249.99), dec!(50.00), dec!(299.99))
        );
        // Three 0.03 lines: per-line VAT 3 × round(0.006) = 0.03; on the base, round(0.018).
        let small = ht(dec!(0.03), dec!(0.20));
        assert_eq!(
            sums(&[small.clone(), small.clone(), small]),
            (dec!(0.09), dec!(0.02), dec!(0.11))
        );
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        // Net 0.125 → 0.13 (half to even would give 0.12).
        let doc = compute(DocumentKind::Invoice, &[ht(dec!(0.125), dec!(0.20))]).unwrap();
        assert_eq!(doc.lines[0].net_ht.0, dec!(0.13));
        // VAT 3.00 × 0.055 = 0.165 → 0.17 (half to even would give 0.16).
        assert_eq!(
            sums(&[ht(dec!(3.00), dec!(0.055))]),
            (dec!(3.00), dec!(0.17), dec!(3.17))
        );
        // Quantities and prices with decimals: 1.5 × 12.3456 = 18.5184.
        let hours = charge(dec!(1.5), dec!(12.3456), PriceBasis::Ht, dec!(0.20));
        assert_eq!(line(&hours).unwrap().net_ht.0, dec!(18.52));
    }

    #[test]
    fn mixed_ht_and_ttc_lines_share_their_rate() {
        // 39.90 excl. VAT + one ticket at 100.00 incl. VAT: VAT round(123.23 × 0.2 = 24.646).
        let lines = [ht(dec!(39.90), dec!(0.20)), ttc(dec!(1), dec!(100.00))];
        assert_eq!(sums(&lines), (dec!(123.23), dec!(24.65), dec!(147.88)));
        assert_eq!(breakdown(&lines), [(dec!(0.2), dec!(123.23), dec!(24.65))]);
    }

    #[test]
    fn each_rate_has_its_subtotal_by_increasing_rate() {
        let reduced_ttc = charge(dec!(1), dec!(10.55), PriceBasis::Ttc, dec!(0.055));
        let lines = [
            ht(dec!(100.00), dec!(0.20)),
            ht(dec!(10.00), dec!(0.055)),
            reduced_ttc,
            // 0.20 written with another scale is the same rate
            ht(dec!(1.00), dec!(0.2000)),
        ];
        assert_eq!(
            breakdown(&lines),
            [
                (dec!(0.055), dec!(20.00), dec!(1.10)),
                (dec!(0.2), dec!(101.00), dec!(20.20)),
            ]
        );
        assert_eq!(sums(&lines), (dec!(121.00), dec!(21.30), dec!(142.30)));
    }

    #[test]
    fn a_zero_rate_line_has_no_vat() {
        let zero_ttc = charge(dec!(2), dec!(12.50), PriceBasis::Ttc, dec!(0));
        let lines = [
            ht(dec!(50.00), dec!(0)),
            zero_ttc,
            ht(dec!(10.00), dec!(0.20)),
        ];
        assert_eq!(
            breakdown(&lines),
            [
                (dec!(0), dec!(75.00), dec!(0.00)),
                (dec!(0.2), dec!(10.00), dec!(2.00)),
            ]
        );
        assert_eq!(sums(&lines), (dec!(85.00), dec!(2.00), dec!(87.00)));
    }

    #[test]
    fn a_credit_note_is_the_same_computation_over_positive_amounts() {
        let lines = [ttc(dec!(3), dec!(100.00)), ht(dec!(39.90), dec!(0.20))];
        let invoice = compute(DocumentKind::Invoice, &lines).unwrap();
        let credit = compute(DocumentKind::CreditNote, &lines).unwrap();
        assert_eq!(credit.kind, DocumentKind::CreditNote);
        assert_eq!(
            (credit.lines, credit.totals),
            (invoice.lines, invoice.totals)
        );
        assert_eq!(credit_total(&lines), dec!(347.88));
    }

    fn credit_total(lines: &[ChargeLine]) -> Decimal {
        compute(DocumentKind::CreditNote, lines)
            .unwrap()
            .totals
            .total_ttc
            .0
    }

    #[test]
    fn refuses_negative_and_impossible_lines() {
        let refused =
            |c: ChargeLine| compute(DocumentKind::CreditNote, &[ht(dec!(1), dec!(0.2)), c]);
        let problem = |p| {
            Err(InvoiceError::Line {
                index: 1,
                charge_id: Uuid::nil(),
                problem: p,
            })
        };
        let q = |quantity| charge(quantity, dec!(10), PriceBasis::Ht, dec!(0.20));
        assert_eq!(
            refused(q(dec!(-1))),
            problem(LineProblem::QuantityNotPositive)
        );
        assert_eq!(
            refused(q(dec!(0))),
            problem(LineProblem::QuantityNotPositive)
        );
        assert_eq!(
            refused(ht(dec!(-0.01), dec!(0.20))),
            problem(LineProblem::NegativeUnitPrice)
        );
        assert_eq!(
            refused(ht(dec!(0.00001), dec!(0.20))),
            problem(LineProblem::OutOfRange)
        );
        assert_eq!(
            refused(q(dec!(10000000000))),
            problem(LineProblem::OutOfRange)
        );
        assert_eq!(
            refused(ht(dec!(1), dec!(-0.2))),
            problem(LineProblem::VatRate)
        );
        assert_eq!(refused(ht(dec!(1), dec!(1))), problem(LineProblem::VatRate));
        assert_eq!(
            refused(ht(dec!(1), dec!(0.00001))),
            problem(LineProblem::VatRate)
        );
        let mut backwards = ht(dec!(1), dec!(0.20));
        backwards.service_start = Some(NaiveDate::from_ymd_opt(2026, 2, 1).unwrap());
        backwards.service_end = Some(NaiveDate::from_ymd_opt(2026, 1, 31).unwrap());
        assert_eq!(
            refused(backwards.clone()),
            problem(LineProblem::ServicePeriod)
        );
        backwards.service_end = backwards.service_start;
        assert!(refused(backwards).is_ok());
        assert_eq!(
            compute(DocumentKind::Invoice, &[]),
            Err(InvoiceError::NoLines)
        );
        // A free line is a line.
        assert_eq!(
            sums(&[ht(dec!(0), dec!(0.20))]),
            (dec!(0.00), dec!(0.00), dec!(0.00))
        );
    }

    #[test]
    fn amounts_are_strings_with_their_cents() {
        let doc = compute(DocumentKind::Invoice, &[ttc(dec!(3), dec!(100))]).unwrap();
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["kind"], "invoice");
        assert_eq!(json["lines"][0]["quantity"], "3");
        assert_eq!(json["lines"][0]["unit_price"], "100.00");
        assert_eq!(json["lines"][0]["unit_price_ht"], "83.3333");
        assert_eq!(json["lines"][0]["price_basis"], "ttc");
        assert_eq!(json["lines"][0]["vat_rate"], "0.2");
        assert_eq!(json["lines"][0]["net_ht"], "250.00");
        assert_eq!(
            json["totals"]["vat_breakdown"][0],
            serde_json::json!({"vat_rate": "0.2", "base_ht": "250.00", "vat": "50.00"})
        );
        assert_eq!(json["totals"]["total_ht"], "250.00");
        assert_eq!(json["totals"]["total_vat"], "50.00");
        assert_eq!(json["totals"]["total_ttc"], "300.00");
        let zero = compute(DocumentKind::CreditNote, &[ht(dec!(5), dec!(0))]).unwrap();
        let json = serde_json::to_value(&zero).unwrap();
        assert_eq!(json["kind"], "credit_note");
        assert_eq!(json["totals"]["total_vat"], "0.00");
        assert_eq!(json["totals"]["total_ttc"], "5.00");
    }

    #[test]
    fn kinds_are_stored_as_their_serde_names() {
        for k in DocumentKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
            assert_eq!(DocumentKind::parse(k.as_str()), Some(*k));
        }
    }

    #[test]
    fn numbers_have_six_digits_and_more_when_needed() {
        let n = |kind, seq| DocumentNumber::new(kind, 2026, seq).unwrap().to_string();
        assert_eq!(n(DocumentKind::Invoice, 1), "F2026-000001");
        assert_eq!(n(DocumentKind::CreditNote, 42), "A2026-000042");
        assert_eq!(n(DocumentKind::Invoice, 999_999), "F2026-999999");
        assert_eq!(n(DocumentKind::Invoice, 1_000_000), "F2026-1000000");
        assert_eq!(
            DocumentNumber::new(DocumentKind::Invoice, 2026, 0),
            Err(NumberError::OutOfRange)
        );
        assert_eq!(
            DocumentNumber::new(DocumentKind::Invoice, 20260, 1),
            Err(NumberError::OutOfRange)
        );
    }

    #[test]
    fn the_next_number_follows_the_counter() {
        let first = DocumentNumber::next_after(DocumentKind::Invoice, 2026, 0).unwrap();
        assert_eq!(first.to_string(), "F2026-000001");
        let next = DocumentNumber::next_after(DocumentKind::CreditNote, 2027, 41).unwrap();
        assert_eq!(
            (next.kind(), next.year(), next.seq()),
            (DocumentKind::CreditNote, 2027, 42)
        );
        assert_eq!(
            DocumentNumber::next_after(DocumentKind::Invoice, 2026, u64::MAX),
            Err(NumberError::OutOfRange)
        );
    }

    #[test]
    fn numbers_parse_back_and_nothing_else_does() {
        for s in [
            "F2026-000001",
            "A2026-000042",
            "F2026-1000000",
            "A1999-999999",
        ] {
            assert_eq!(s.parse::<DocumentNumber>().unwrap().to_string(), s);
        }
        let parsed: DocumentNumber = "A2026-000042".parse().unwrap();
        assert_eq!(
            parsed,
            DocumentNumber::new(DocumentKind::CreditNote, 2026, 42).unwrap()
        );
        for bad in [
            "",
            "F",
            "F2026",
            "F2026-",
            "F2026-00001",
            "F2026-0000001",
            "f2026-000001",
            "X2026-000001",
            "F26-000001",
            "F02026-000001",
            "F2026000001",
            " F2026-000001",
            "F2026-000001 ",
            "F2026-+00001",
            "F+026-000001",
            "F2026-00000a",
            "F2026_000001",
            "F2026-000001-1",
            "É2026-000001",
            "F2026-99999999999999999999",
        ] {
            assert!(bad.parse::<DocumentNumber>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            "F2026-000000".parse::<DocumentNumber>(),
            Err(NumberError::OutOfRange)
        );
    }

    #[test]
    fn due_thirty_days_after_issue_by_default() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(
            due_date(d("2026-01-31"), DEFAULT_PAYMENT_DAYS),
            Some(d("2026-03-02"))
        );
        assert_eq!(
            due_date(d("2028-02-01"), DEFAULT_PAYMENT_DAYS),
            Some(d("2028-03-02"))
        );
        assert_eq!(due_date(d("2026-12-15"), 45), Some(d("2027-01-29")));
        assert_eq!(due_date(d("2026-05-04"), 0), Some(d("2026-05-04")));
        assert_eq!(due_date(NaiveDate::MAX, 1), None);
    }

    fn any_line() -> impl Strategy<Value = ChargeLine> {
        let rates = prop::sample::select(vec![
            dec!(0),
            dec!(0.021),
            dec!(0.055),
            dec!(0.10),
            dec!(0.20),
        ]);
        (
            1i64..=40_000,
            0u32..=2,
            0i64..=100_000_000,
            prop::bool::ANY,
            rates,
        )
            .prop_map(|(q, q_scale, p, is_ttc, rate)| {
                let basis = if is_ttc {
                    PriceBasis::Ttc
                } else {
                    PriceBasis::Ht
                };
                charge(Decimal::new(q, q_scale), Decimal::new(p, 4), basis, rate)
            })
    }

    #[test]
    fn an_invoice_is_open_until_nothing_is_due_then_paid_or_credited() {
        use InvoiceStatus::*;
        let ttc = dec!(100.00);
        assert_eq!(settled_status(ttc, dec!(0), dec!(0), false), (ttc, Issued));
        assert_eq!(
            settled_status(ttc, dec!(40), dec!(0), true),
            (dec!(60), Overdue)
        );
        assert_eq!(
            settled_status(ttc, dec!(40), dec!(60), true),
            (dec!(0), Paid)
        );
        assert_eq!(
            settled_status(ttc, dec!(0), dec!(100), false),
            (dec!(0), Credited)
        );
        assert_eq!(
            settled_status(dec!(0), dec!(0), dec!(0), false),
            (dec!(0), Paid)
        );
        assert!(Issued.is_open() && Overdue.is_open() && !Paid.is_open() && !Credited.is_open());
    }

    proptest! {
        #[test]
        fn totals_follow_the_rules_in_any_order(
            (lines, shuffled) in prop::collection::vec(any_line(), 1..24)
                .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
        ) {
            let doc = compute(DocumentKind::Invoice, &lines).unwrap();
            let t = &doc.totals;
            prop_assert_eq!(t.total_ttc.0, t.total_ht.0 + t.total_vat.0);
            let mut bases: BTreeMap<Decimal, Decimal> = BTreeMap::new();
            for (c, l) in lines.iter().zip(&doc.lines) {
                let total = c.quantity * c.unit_price;
                let net = match c.price_basis {
                    PriceBasis::Ht => total,
                    PriceBasis::Ttc => total / (Decimal::ONE + c.vat_rate),
                };
                prop_assert_eq!(l.net_ht.0, round_cents(net));
                *bases.entry(c.vat_rate).or_default() += l.net_ht.0;
            }
            prop_assert_eq!(t.vat_breakdown.len(), bases.len());
            for (s, (rate, base)) in t.vat_breakdown.iter().zip(&bases) {
                prop_assert_eq!((s.vat_rate.0, s.base_ht.0), (*rate, *base));
                prop_assert_eq!(s.vat.0, round_cents(base * rate));
            }
            prop_assert_eq!(t.total_ht.0, bases.values().sum::<Decimal>());
            prop_assert_eq!(t.total_vat.0, t.vat_breakdown.iter().map(|s| s.vat.0).sum::<Decimal>());
            let cents = doc.lines.iter().map(|l| l.net_ht)
                .chain(t.vat_breakdown.iter().flat_map(|s| [s.base_ht, s.vat]))
                .chain([t.total_ht, t.total_vat, t.total_ttc]);
            for amount in cents {
                prop_assert_eq!(amount.0.scale(), 2);
                let text = serde_json::to_value(amount).unwrap();
                let text = text.as_str().unwrap_or_default();
                prop_assert_eq!(text.split_once('.').map(|(_, c)| c.len()), Some(2));
            }
            let again = compute(DocumentKind::Invoice, &shuffled).unwrap();
            prop_assert_eq!(&again.totals, t);
        }
    }
}

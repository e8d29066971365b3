//! What a credit note credits, without a database (DOMAIN.md, "Invoices and credit notes"):
//! chosen lines of an invoice, by quantity or by amount, or all that remains. Each line's
//! net is rounded to the cent like an invoice line (a price incl. VAT converts the credited
//! total); VAT is computed per rate on the sum of the note's nets (BR-CO-17), half away
//! from zero. Earlier credit notes count: a line never gives back more than its net, a
//! rate more than its VAT. The note that credits the rest of a line takes the rest of its
//! net, and the one that credits the rest of a rate the rest of its VAT, so that notes
//! add up, to the cent, to at most the invoice.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Totals, VatSubtotal};
use crate::catalog::PriceBasis;
use crate::money::{round_cents, DecimalString};

/// Decimals a credited quantity may carry (the `charges` columns).
const QUANTITY_SCALE: u32 = 4;

/// What an invoice line sold: how crediting it reaches the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Services: revenue (706) was recognised at issue.
    Service,
    /// Tickets bought (deferred revenue, 487): crediting removes tickets, whole ones.
    Tickets,
    /// Service credits bought (487): a lot is credited whole and untouched only (its
    /// revenue is recognised at the lot's unit price as its credits are used).
    Credits,
}

impl LineKind {
    /// Whether the line's net sits in deferred revenue (487) rather than revenue (706).
    pub fn deferred(self) -> bool {
        !matches!(self, LineKind::Service)
    }
}

/// An invoice line, with what earlier credit notes credited of it.
#[derive(Debug, Clone, PartialEq)]
pub struct CreditableLine {
    pub charge_id: Uuid,
    pub kind: LineKind,
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub price_basis: PriceBasis,
    pub vat_rate: Decimal,
    pub net_ht: Decimal,
    pub credited_quantity: Decimal,
    pub credited_net: Decimal,
}

impl CreditableLine {
    fn quantity_left(&self) -> Decimal {
        self.quantity - self.credited_quantity
    }

    fn net_left(&self) -> Decimal {
        self.net_ht - self.credited_net
    }
}

/// One VAT rate of the invoice, with what earlier credit notes credited of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditableRate {
    pub vat_rate: Decimal,
    pub base_ht: Decimal,
    pub vat: Decimal,
    pub credited_base: Decimal,
    pub credited_vat: Decimal,
}

/// What to credit of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// All that remains of it.
    Rest,
    /// Part of its quantity.
    Quantity(Decimal),
    /// An amount excl. VAT, to the cent.
    Amount(Decimal),
}

/// A line asked for, by the invoice line's charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineAsk {
    pub charge_id: Uuid,
    pub ask: Ask,
}

/// A line of a credit note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreditNoteLine {
    /// The invoice line credited, by its charge.
    #[schema(value_type = String, format = Uuid)]
    pub charge_id: Uuid,
    pub description: String,
    /// How much of the line's quantity; absent when an amount was credited.
    #[schema(example = "1")]
    pub quantity: Option<DecimalString>,
    /// The invoice line's unit price, excl. or incl. VAT as `price_basis` says.
    #[schema(example = "100.00")]
    pub unit_price: DecimalString,
    pub price_basis: PriceBasis,
    #[schema(example = "0.2")]
    pub vat_rate: DecimalString,
    /// The net excl. VAT credited, to the cent.
    #[schema(example = "83.33")]
    pub net_ht: DecimalString,
}

/// A credit note's lines (each with the kind of what it credits) and totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditAmounts {
    pub lines: Vec<(CreditNoteLine, LineKind)>,
    pub totals: Totals,
}

/// Why a credit note was refused; `field` names the request's field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CreditProblem {
    pub field: String,
    pub message: String,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> CreditProblem {
    CreditProblem {
        field: field.into(),
        message: message.into(),
    }
}

/// The net excl. VAT of `quantity` of `line`, unrounded.
fn net_of(line: &CreditableLine, quantity: Decimal) -> Option<Decimal> {
    let total = quantity.checked_mul(line.unit_price)?;
    match line.price_basis {
        PriceBasis::Ht => Some(total),
        PriceBasis::Ttc => total.checked_div(Decimal::ONE.checked_add(line.vat_rate)?),
    }
}

/// (quantity, net) credited of `line` for `ask`; `at` is the request's path to the line
/// (`lines[0]`), or `lines` when the whole invoice is asked for.
fn credit_line(
    line: &CreditableLine,
    ask: Ask,
    at: &str,
) -> Result<(Option<Decimal>, Decimal), CreditProblem> {
    let (q_left, net_left) = (line.quantity_left(), line.net_left());
    if net_left <= Decimal::ZERO {
        return Err(problem(
            format!("{at}.charge_id"),
            "nothing remains to credit on this line",
        ));
    }
    match ask {
        Ask::Rest => Ok((Some(q_left).filter(|q| *q > Decimal::ZERO), net_left)),
        Ask::Quantity(q) => {
            let field = format!("{at}.quantity");
            let integer = matches!(line.kind, LineKind::Tickets);
            if q <= Decimal::ZERO || q.normalize().scale() > QUANTITY_SCALE {
                return Err(problem(field, "a quantity above 0, at most 4 decimals"));
            }
            if integer && !q.fract().is_zero() {
                return Err(problem(field, "tickets are credited whole"));
            }
            if q > q_left {
                return Err(problem(
                    field,
                    format!("at most {} remain", q_left.normalize()),
                ));
            }
            if q == q_left {
                return Ok((Some(q), net_left));
            }
            if line.kind == LineKind::Credits {
                return Err(problem(
                    field,
                    format!(
                        "bought credits are credited whole: {} or nothing",
                        q_left.normalize()
                    ),
                ));
            }
            let net = net_of(line, q)
                .map(round_cents)
                .ok_or_else(|| problem(&field, "too large"))?;
            if net <= Decimal::ZERO {
                return Err(problem(field, "credits less than a cent"));
            }
            if net > net_left {
                return Err(problem(
                    field,
                    format!("credits {net}, more than the {net_left} that remain"),
                ));
            }
            Ok((Some(q), net))
        }
        Ask::Amount(a) => {
            let field = format!("{at}.amount");
            if line.kind != LineKind::Service {
                return Err(problem(
                    field,
                    "tickets and credits bought are credited by quantity",
                ));
            }
            if a <= Decimal::ZERO || a.normalize().scale() > 2 {
                return Err(problem(field, "an amount above 0.00, to the cent"));
            }
            if a > net_left {
                return Err(problem(
                    field,
                    format!("at most {net_left} excl. VAT remain on this line"),
                ));
            }
            Ok((None, round_cents(a)))
        }
    }
}

/// The lines and totals of a credit note on an invoice whose lines and VAT rates are
/// `lines` and `rates` (with what earlier notes credited), for `asked` (none: all that
/// remains). Refuses, naming the field, a line that is not the invoice's or is asked twice,
/// and anything beyond what remains.
pub fn credit(
    lines: &[CreditableLine],
    rates: &[CreditableRate],
    asked: Option<&[LineAsk]>,
) -> Result<CreditAmounts, CreditProblem> {
    let mut out = Vec::new();
    match asked {
        None => {
            for line in lines.iter().filter(|l| l.net_left() > Decimal::ZERO) {
                out.push((line, credit_line(line, Ask::Rest, "lines")?));
            }
            if out.is_empty() {
                return Err(problem(
                    "lines",
                    "nothing remains to credit on this invoice",
                ));
            }
        }
        Some([]) => {
            return Err(problem(
                "lines",
                "name at least one line, or leave `lines` out",
            ))
        }
        Some(asked) => {
            for (i, a) in asked.iter().enumerate() {
                let at = format!("lines[{i}]");
                if asked[..i].iter().any(|b| b.charge_id == a.charge_id) {
                    return Err(problem(
                        format!("{at}.charge_id"),
                        "this line is asked twice",
                    ));
                }
                let line = lines
                    .iter()
                    .find(|l| l.charge_id == a.charge_id)
                    .ok_or_else(|| {
                        problem(format!("{at}.charge_id"), "not a line of this invoice")
                    })?;
                out.push((line, credit_line(line, a.ask, &at)?));
            }
        }
    }
    let mut bases: BTreeMap<Decimal, Decimal> = BTreeMap::new();
    for (line, (_, net)) in &out {
        *bases.entry(line.vat_rate).or_default() += *net;
    }
    let mut breakdown = Vec::with_capacity(bases.len());
    for (rate, base) in bases {
        let of_invoice = rates
            .iter()
            .find(|r| r.vat_rate == rate)
            .ok_or_else(|| problem("lines", format!("the invoice has no VAT rate {rate}")))?;
        let vat_left = of_invoice.vat - of_invoice.credited_vat;
        let vat = if base == of_invoice.base_ht - of_invoice.credited_base {
            vat_left
        } else {
            round_cents(base * rate).min(vat_left)
        };
        breakdown.push(VatSubtotal {
            vat_rate: DecimalString(rate.normalize()),
            base_ht: DecimalString(round_cents(base)),
            vat: DecimalString(round_cents(vat.max(Decimal::ZERO))),
        });
    }
    let total_ht = round_cents(breakdown.iter().map(|s| s.base_ht.0).sum());
    let total_vat = round_cents(breakdown.iter().map(|s| s.vat.0).sum());
    Ok(CreditAmounts {
        lines: out
            .into_iter()
            .map(|(l, (quantity, net))| {
                (
                    CreditNoteLine {
                        charge_id: l.charge_id,
                        description: l.description.clone(),
                        quantity: quantity.map(|q| DecimalString(q.normalize())),
                        unit_price: crate::money::price(l.unit_price),
                        price_basis: l.price_basis,
                        vat_rate: DecimalString(l.vat_rate.normalize()),
                        net_ht: DecimalString(round_cents(net)),
                    },
                    l.kind,
                )
            })
            .collect(),
        totals: Totals {
            vat_breakdown: breakdown,
            total_ht: DecimalString(total_ht),
            total_vat: DecimalString(total_vat),
            total_ttc: DecimalString(round_cents(total_ht + total_vat)),
        },
    })
}

/// How a credit note's total splits: what the invoice still asked (`due`) is taken off it
/// (receivable 411), the rest goes to the customer's credit balance (4191).
pub fn split(total_ttc: Decimal, due: Decimal) -> (Decimal, Decimal) {
    let applied = total_ttc.min(due.max(Decimal::ZERO));
    (applied, total_ttc - applied)
}

/// Why a credit note could not be issued or read.
#[derive(Debug, thiserror::Error)]
pub enum CreditNoteError {
    #[error("{0} does not exist")]
    NotFound(String),
    #[error(transparent)]
    Refused(#[from] CreditProblem),
    /// Tickets or credits the note would take back were used (or expired) already.
    #[error("{0}")]
    AlreadyUsed(String),
    #[error("the idempotency key was already used for a different request")]
    IdempotencyConflict,
    /// The invoice is in a submitted SEPA collection: the bank is collecting what it asks.
    #[error("invoice {0} is being collected by SEPA direct debit: credit it once its collection is settled")]
    BeingCollected(String),
    #[error(transparent)]
    Invoicing(#[from] super::InvoicingError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl From<crate::idempotency::KeyReused> for CreditNoteError {
    fn from(_: crate::idempotency::KeyReused) -> Self {
        CreditNoteError::IdempotencyConflict
    }
}

impl crate::db::Retryable for CreditNoteError {
    fn is_retryable(&self) -> bool {
        match self {
            CreditNoteError::Database(e) => crate::db::is_retryable(e),
            CreditNoteError::Ledger(e) => crate::db::Retryable::is_retryable(e),
            CreditNoteError::Invoicing(e) => crate::db::Retryable::is_retryable(e),
            _ => false,
        }
    }
}

/// A credit note as the invoice lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreditNoteRef {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    #[schema(example = "A2026-000001")]
    pub number: String,
    pub issued_on: NaiveDate,
    #[schema(example = "100.00")]
    pub total_ttc: DecimalString,
}

/// A credit note: it references its invoice, lists what it credits and how its total was
/// applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreditNoteView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Chronological and continuous per year in its own series.
    #[schema(example = "A2026-000001")]
    pub number: String,
    #[schema(value_type = String, format = Uuid)]
    pub invoice_id: Uuid,
    #[schema(example = "F2026-000001")]
    pub invoice_number: String,
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    /// The Paris date of issue.
    pub issued_on: NaiveDate,
    #[schema(example = "Ticket bought by mistake")]
    pub reason: String,
    pub lines: Vec<CreditNoteLine>,
    pub totals: Totals,
    /// Taken off what the invoice still asked (receivable 411).
    #[schema(example = "100.00")]
    pub applied_to_invoice: DecimalString,
    /// The rest, on the customer's credit balance (4191): the invoice was paid.
    #[schema(example = "0.00")]
    pub to_credit_balance: DecimalString,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    fn line(
        n: u128,
        kind: LineKind,
        q: Decimal,
        price: Decimal,
        basis: PriceBasis,
    ) -> CreditableLine {
        let doc = super::super::line(&super::super::ChargeLine {
            charge_id: Uuid::from_u128(n),
            description: format!("line {n}"),
            quantity: q,
            unit_price: price,
            price_basis: basis,
            vat_rate: dec!(0.2),
            service_start: None,
            service_end: None,
        })
        .unwrap();
        CreditableLine {
            charge_id: Uuid::from_u128(n),
            kind,
            description: doc.description,
            quantity: q,
            unit_price: price,
            price_basis: basis,
            vat_rate: dec!(0.2),
            net_ht: doc.net_ht.0,
            credited_quantity: Decimal::ZERO,
            credited_net: Decimal::ZERO,
        }
    }

    fn tickets(q: Decimal) -> CreditableLine {
        line(1, LineKind::Tickets, q, dec!(100.00), PriceBasis::Ttc)
    }

    fn rate_of(lines: &[CreditableLine]) -> CreditableRate {
        let base: Decimal = lines.iter().map(|l| l.net_ht).sum();
        CreditableRate {
            vat_rate: dec!(0.2),
            base_ht: base,
            vat: round_cents(base * dec!(0.2)),
            credited_base: Decimal::ZERO,
            credited_vat: Decimal::ZERO,
        }
    }

    /// Records `amounts` as credited, as the store does from earlier notes.
    fn credited(lines: &mut [CreditableLine], rate: &mut CreditableRate, amounts: &CreditAmounts) {
        for (l, _) in &amounts.lines {
            let line = lines
                .iter_mut()
                .find(|x| x.charge_id == l.charge_id)
                .unwrap();
            line.credited_quantity += l.quantity.map(|q| q.0).unwrap_or_default();
            line.credited_net += l.net_ht.0;
        }
        rate.credited_base += amounts.totals.total_ht.0;
        rate.credited_vat += amounts.totals.total_vat.0;
    }

    fn ttc(a: &CreditAmounts) -> (Decimal, Decimal, Decimal) {
        (
            a.totals.total_ht.0,
            a.totals.total_vat.0,
            a.totals.total_ttc.0,
        )
    }

    #[test]
    fn three_notes_of_one_ticket_give_back_exactly_the_invoice() {
        // invoice: 3 tickets at 100.00 TTC = 250.00 + 50.00; one ticket alone is 83.33 +
        // 16.67, three such would be 300.01: the last takes the rest
        let mut lines = vec![tickets(dec!(3))];
        let mut rate = rate_of(&lines);
        let one = [LineAsk {
            charge_id: Uuid::from_u128(1),
            ask: Ask::Quantity(dec!(1)),
        }];
        let mut seen = Vec::new();
        for _ in 0..3 {
            let a = credit(&lines, &[rate], Some(&one)).unwrap();
            seen.push(ttc(&a));
            credited(&mut lines, &mut rate, &a);
        }
        assert_eq!(
            seen,
            [
                (dec!(83.33), dec!(16.67), dec!(100.00)),
                (dec!(83.33), dec!(16.67), dec!(100.00)),
                (dec!(83.34), dec!(16.66), dec!(100.00)),
            ]
        );
        let beyond = credit(&lines, &[rate], Some(&one)).unwrap_err();
        assert_eq!(beyond.field, "lines[0].charge_id");
        assert_eq!(credit(&lines, &[rate], None).unwrap_err().field, "lines");
    }

    #[test]
    fn quantities_and_amounts_are_bounded_by_what_remains() {
        let service = line(2, LineKind::Service, dec!(2), dec!(39.90), PriceBasis::Ht);
        let lines = vec![tickets(dec!(3)), service];
        let rate = rate_of(&lines);
        let ask = |n, ask| LineAsk {
            charge_id: Uuid::from_u128(n),
            ask,
        };
        let field = |asked: &[LineAsk]| credit(&lines, &[rate], Some(asked)).unwrap_err().field;
        assert_eq!(
            field(&[ask(1, Ask::Quantity(dec!(4)))]),
            "lines[0].quantity"
        );
        assert_eq!(
            field(&[ask(1, Ask::Quantity(dec!(1.5)))]),
            "lines[0].quantity"
        );
        assert_eq!(field(&[ask(1, Ask::Amount(dec!(10)))]), "lines[0].amount");
        assert_eq!(
            field(&[ask(2, Ask::Amount(dec!(79.81)))]),
            "lines[0].amount"
        );
        assert_eq!(
            field(&[ask(2, Ask::Amount(dec!(1.001)))]),
            "lines[0].amount"
        );
        assert_eq!(
            field(&[ask(2, Ask::Quantity(dec!(0)))]),
            "lines[0].quantity"
        );
        assert_eq!(
            field(&[ask(2, Ask::Rest), ask(2, Ask::Rest)]),
            "lines[1].charge_id"
        );
        assert_eq!(field(&[ask(9, Ask::Rest)]), "lines[0].charge_id");
        assert_eq!(field(&[]), "lines");
        // part of a quantity: 0.5 × 39.90 = 19.95; VAT on the note's own base
        let half = credit(&lines, &[rate], Some(&[ask(2, Ask::Quantity(dec!(0.5)))])).unwrap();
        assert_eq!(ttc(&half), (dec!(19.95), dec!(3.99), dec!(23.94)));
        assert_eq!(half.lines[0].0.quantity, Some(DecimalString(dec!(0.5))));
        let amount = credit(&lines, &[rate], Some(&[ask(2, Ask::Amount(dec!(10)))])).unwrap();
        assert_eq!(ttc(&amount), (dec!(10.00), dec!(2.00), dec!(12.00)));
        assert_eq!(amount.lines[0].0.quantity, None);
        // everything: the invoice's own totals (250.00 + 79.80 = 329.80, VAT 65.96)
        let all = credit(&lines, &[rate], None).unwrap();
        assert_eq!(ttc(&all), (dec!(329.80), dec!(65.96), dec!(395.76)));
    }

    #[test]
    fn bought_credits_are_credited_whole() {
        let lot = line(3, LineKind::Credits, dec!(5), dec!(80.00), PriceBasis::Ht);
        let rate = rate_of(std::slice::from_ref(&lot));
        let ask = |a| {
            credit(
                std::slice::from_ref(&lot),
                &[rate],
                Some(&[LineAsk {
                    charge_id: Uuid::from_u128(3),
                    ask: a,
                }]),
            )
        };
        assert_eq!(
            ask(Ask::Quantity(dec!(2))).unwrap_err().field,
            "lines[0].quantity"
        );
        assert_eq!(
            ask(Ask::Amount(dec!(2))).unwrap_err().field,
            "lines[0].amount"
        );
        assert_eq!(ttc(&ask(Ask::Quantity(dec!(5))).unwrap()).2, dec!(480.00));
        assert_eq!(ttc(&ask(Ask::Rest).unwrap()).0, dec!(400.00));
    }

    #[test]
    fn a_paid_invoice_credits_the_customer_balance() {
        assert_eq!(split(dec!(100.00), dec!(100.00)), (dec!(100.00), dec!(0)));
        assert_eq!(split(dec!(100.00), dec!(40.00)), (dec!(40.00), dec!(60.00)));
        assert_eq!(split(dec!(100.00), dec!(0)), (dec!(0), dec!(100.00)));
        assert_eq!(split(dec!(30.00), dec!(100.00)), (dec!(30.00), dec!(0)));
    }
}

//! Invoices and credit notes as EN 16931 documents in UN/CEFACT CII D16B, the XML a
//! Factur-X PDF carries: the semantic model built from what the document froze at issue
//! (its lines, totals per VAT rate, seller, buyer and legal terms), checked against the
//! EN 16931 business rules by `en16931` (a document that fails them is never written),
//! and written by `en16931-formats`. Both crates are young and pinned; our tests judge
//! them (`tests/api/documents.rs`).

use chrono::{Datelike, NaiveDate};
use en16931::invoice::{
    DocumentTotals, InvoiceBuilder, InvoiceLine as CiiLine, Party as CiiParty, PaymentInstructions,
    Period, PostalAddress, PrecedingInvoice, PriceDetails, VatBreakdown,
};
use en16931::prelude::*;
use en16931::{
    Date, DocumentReference, Identifier, InvoiceAmount, Percentage, Quantity, UnitPriceAmount,
};
use rust_decimal::Decimal;

use super::credit_notes::CreditNoteView;
use super::legal::{LegalMentions, Party};
use super::{InvoiceView, Totals};

/// Why a document could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CiiError {
    /// Issued before invoices froze their seller, buyer and terms (migration 18).
    #[error("{0} was issued without its legal mentions: it has no EN 16931 form")]
    NoMentions(String),
    /// A value the model refuses (an address without a town, a date out of range).
    #[error("{0}")]
    Value(String),
    /// The EN 16931 rules refused the document: a defect of ours, never the caller's.
    #[error("{document} breaks EN 16931: {findings}")]
    Rules { document: String, findings: String },
}

fn value(e: impl std::fmt::Display) -> CiiError {
    CiiError::Value(e.to_string())
}

fn date(d: NaiveDate) -> Result<Date, CiiError> {
    let month = u8::try_from(d.month()).map_err(value)?;
    let day = u8::try_from(d.day()).map_err(value)?;
    Date::new(d.year(), month, day).map_err(value)
}

fn amount(d: Decimal) -> Result<InvoiceAmount, CiiError> {
    InvoiceAmount::from_decimal_exact(d.round_dp(2)).map_err(value)
}

/// A VAT rate of ours (a fraction, 0.20) as the per cent EN 16931 takes (20).
fn percent(rate: Decimal) -> Percentage {
    Percentage::new((rate * Decimal::ONE_HUNDRED).normalize())
}

/// A party: its legal name, address, SIREN as legal registration (scheme 0002) and VAT
/// number.
fn party(p: &Party) -> Result<CiiParty, CiiError> {
    let a = &p.address;
    let street = match &a.street_number {
        Some(n) => format!("{n} {}", a.street),
        None => a.street.clone(),
    };
    let address = PostalAddress::new(street, a.town.clone(), a.postcode.clone(), &a.country)
        .map_err(value)?;
    let mut out = CiiParty::new(p.legal_name.clone(), address);
    out.legal_registration = Some(Identifier::schemed(p.siren.clone(), "0002"));
    if let Some(vat) = &p.vat_number {
        out = out.with_vat_identifier(vat.clone());
    }
    Ok(out)
}

/// What every document says of its terms: the French mandatory mentions as notes with
/// their UNTDID 4451 subjects, and the operation category as the French "cadre de
/// facturation" (BT-23: S1, services).
fn terms(builder: InvoiceBuilder, mentions: &LegalMentions) -> InvoiceBuilder {
    let legal = &mentions.legal;
    let rate = legal.late_payment_penalty_rate.0 * Decimal::ONE_HUNDRED;
    builder
        .business_process("S1")
        .note(
            en16931::invoice::InvoiceNote::new(format!(
                "Pénalités de retard : taux annuel de {} % à compter du lendemain de l'échéance.",
                rate.normalize().to_string().replace('.', ",")
            ))
            .with_subject("PMD"),
        )
        .note(
            en16931::invoice::InvoiceNote::new(format!(
                "Indemnité forfaitaire pour frais de recouvrement : {} €.",
                legal.recovery_indemnity.0.to_string().replace('.', ",")
            ))
            .with_subject("PMT"),
        )
        .note(
            en16931::invoice::InvoiceNote::new("Pas d'escompte pour paiement anticipé.")
                .with_subject("AAB"),
        )
        .note(
            en16931::invoice::InvoiceNote::new(
                "Catégorie de l'opération : prestation de services.",
            )
            .with_subject("AAI"),
        )
}

/// The VAT breakdown and totals as issued.
fn totals(builder: InvoiceBuilder, t: &Totals) -> Result<InvoiceBuilder, CiiError> {
    let mut builder = builder;
    for v in &t.vat_breakdown {
        builder = builder.vat_breakdown(VatBreakdown {
            taxable_amount: amount(v.base_ht.0)?,
            tax_amount: amount(v.vat.0)?,
            category: "S".into(),
            rate: Some(percent(v.vat_rate.0)),
            exemption_reason: None,
            exemption_reason_code: None,
        });
    }
    Ok(builder.totals(DocumentTotals {
        line_total: amount(t.total_ht.0)?,
        taxable_total: amount(t.total_ht.0)?,
        vat_total: Some(amount(t.total_vat.0)?),
        gross_total: amount(t.total_ttc.0)?,
        due: amount(t.total_ttc.0)?,
        ..Default::default()
    }))
}

/// A line: its net, its unit price excl. VAT, its VAT rate and service period.
#[allow(clippy::too_many_arguments)]
fn line(
    position: usize,
    description: &str,
    quantity: Decimal,
    unit_price_ht: Decimal,
    net_ht: Decimal,
    vat_rate: Decimal,
    period: (Option<NaiveDate>, Option<NaiveDate>),
) -> Result<CiiLine, CiiError> {
    let mut out = CiiLine::new(
        (position + 1).to_string(),
        description,
        Quantity::new(quantity.normalize()),
        "C62",
        amount(net_ht)?,
        "S",
        Some(percent(vat_rate)),
    )
    .with_price(PriceDetails {
        net_price: UnitPriceAmount::new(unit_price_ht.normalize()),
        ..Default::default()
    });
    if let (Some(start), Some(end)) = period {
        out = out.with_period(Period {
            start: Some(date(start)?),
            end: Some(date(end)?),
        });
    }
    Ok(out)
}

/// The proof that `invoice` passes the EN 16931 rules, which is what is written (as CII,
/// or into a Factur-X PDF).
pub type Proof = Validated<en16931::profiles::En16931>;

/// Validates `invoice` against EN 16931.
fn validate(document: &str, invoice: Invoice) -> Result<Proof, CiiError> {
    Proof::new(invoice).map_err(|rejected| CiiError::Rules {
        document: document.to_string(),
        findings: rejected
            .report()
            .fatal()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    })
}

fn write(proof: &Proof) -> String {
    en16931_formats::write(proof, en16931_formats::Syntax::Cii).xml
}

/// The invoice as a CII document (type 380), as issued.
pub fn invoice(view: &InvoiceView) -> Result<String, CiiError> {
    Ok(write(&invoice_proof(view)?))
}

/// The credit note as a CII document (type 381).
pub fn credit_note(note: &CreditNoteView, invoice: &InvoiceView) -> Result<String, CiiError> {
    Ok(write(&credit_note_proof(note, invoice)?))
}

/// The invoice's EN 16931 model, as issued, validated.
pub fn invoice_proof(view: &InvoiceView) -> Result<Proof, CiiError> {
    let mentions = view
        .mentions()
        .ok_or_else(|| CiiError::NoMentions(view.number.clone()))?;
    let (seller, buyer) = (&mentions.seller, &mentions.buyer);
    let mut builder = Invoice::builder(
        "urn:cen.eu:en16931:2017",
        view.number.clone(),
        date(view.issued_on)?,
        "380",
        "EUR",
    )
    .seller(party(seller)?)
    .buyer(party(buyer)?);
    builder = terms(builder, &mentions);
    for (i, l) in view.lines.iter().enumerate() {
        builder = builder.line(line(
            i,
            &l.description,
            l.quantity.0,
            l.unit_price_ht.0,
            l.net_ht.0,
            l.vat_rate.0,
            (l.service_start, l.service_end),
        )?);
    }
    let mut invoice = totals(builder, &view.totals)?.build();
    invoice.due_date = Some(date(view.due_on)?);
    // BG-16/BG-19: paid by SEPA direct debit (means 59), the mandate, the creditor
    // identifier and the account debited, as the invoice's pre-notification states them
    if let Some(d) = &view.direct_debit {
        invoice.payment = Some(PaymentInstructions::sepa_direct_debit(
            d.mandate_reference.clone(),
            d.creditor_id.clone(),
            Some(&d.debtor_iban),
        ));
        invoice.payment_terms = Some(super::pdf::direct_debit_notice(d));
    }
    validate(&view.number, invoice)
}

/// The credit note's EN 16931 model (type 381) referring to its invoice, with the
/// invoice's parties and terms, validated.
pub fn credit_note_proof(note: &CreditNoteView, invoice: &InvoiceView) -> Result<Proof, CiiError> {
    let mentions = invoice
        .mentions()
        .ok_or_else(|| CiiError::NoMentions(invoice.number.clone()))?;
    let (seller, buyer) = (&mentions.seller, &mentions.buyer);
    let mut builder = Invoice::builder(
        "urn:cen.eu:en16931:2017",
        note.number.clone(),
        date(note.issued_on)?,
        "381",
        "EUR",
    )
    .credit_note()
    .seller(party(seller)?)
    .buyer(party(buyer)?)
    .payment_terms(format!(
        "Avoir sur la facture {} : {}",
        invoice.number, note.reason
    ));
    builder = terms(builder, &mentions);
    for (i, l) in note.lines.iter().enumerate() {
        let of_invoice = invoice.lines.iter().find(|x| x.charge_id == l.charge_id);
        let (quantity, unit_price_ht) = match (&l.quantity, of_invoice) {
            (Some(q), Some(x)) => (q.0, x.unit_price_ht.0),
            // credited by amount: one unit at that amount
            _ => (Decimal::ONE, l.net_ht.0),
        };
        let period = of_invoice.map_or((None, None), |x| (x.service_start, x.service_end));
        builder = builder.line(line(
            i,
            &l.description,
            quantity,
            unit_price_ht,
            l.net_ht.0,
            l.vat_rate.0,
            period,
        )?);
    }
    let mut document = totals(builder, &note.totals)?.build();
    document.preceding_invoices = vec![PrecedingInvoice {
        reference: DocumentReference::new(invoice.number.clone()),
        issue_date: Some(date(invoice.issued_on)?),
    }];
    validate(&note.number, document)
}

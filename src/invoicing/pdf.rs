//! Invoices and credit notes as Factur-X PDFs: the document rendered from its typst
//! template (`templates/document.typ`, French labels, A4) by `typst` as PDF/A-3b, then its
//! validated EN 16931 model ([`super::cii`]) embedded as `factur-x.xml` with the Factur-X
//! XMP and `/AF` by `en16931-formats` (its `zugferd` feature). typst's fonts are its own
//! (`typst-assets`), read once; nothing is looked up on the machine.

use std::sync::OnceLock;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use en16931::prelude::Validated;
use en16931::profiles::En16931;
use rust_decimal::Decimal;
use serde::Serialize;
use typst::diag::{FileError, FileResult};
use typst::foundations::{Bytes, Datetime, Smart};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};
use typst_layout::PagedDocument;

use super::credit_notes::CreditNoteView;
use super::legal::{LegalMentions, Party};
use super::{InvoiceView, Totals};
use crate::sepa::prenotice::DirectDebitNotice;

/// Why a PDF could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error(transparent)]
    Cii(#[from] super::cii::CiiError),
    #[error("the template did not render: {0}")]
    Render(String),
    #[error("factur-x.xml could not be embedded: {0}")]
    Embed(String),
}

/// What the template shows, every value already formatted in French.
#[derive(Debug, Serialize)]
struct Shown {
    title: &'static str,
    number: String,
    issued_on: String,
    due_on: Option<String>,
    reference: Option<String>,
    seller: ShownParty,
    buyer: ShownParty,
    lines: Vec<ShownLine>,
    vat: Vec<ShownVat>,
    total_ht: String,
    total_vat: String,
    total_ttc: String,
    due_label: &'static str,
    amount_due: String,
    /// The pre-notification of the SEPA collection that pays it, when there is one.
    payment: Option<String>,
    mentions: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ShownParty {
    name: String,
    address: Vec<String>,
    siren: String,
    vat: Option<String>,
}

#[derive(Debug, Serialize)]
struct ShownLine {
    description: String,
    period: Option<String>,
    quantity: String,
    unit_price: String,
    vat_rate: String,
    net: String,
}

#[derive(Debug, Serialize)]
struct ShownVat {
    rate: String,
    base: String,
    vat: String,
}

/// `1234.5` → `1 234,50 €` (a narrow no-break space between thousands).
fn euros(value: Decimal) -> String {
    let mut v = value.round_dp(2);
    v.rescale(2);
    let text = v.abs().to_string();
    let (whole, cents) = text.split_once('.').unwrap_or((&text, "00"));
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push('\u{202F}');
        }
        grouped.push(c);
    }
    let sign = if v.is_sign_negative() && !v.is_zero() {
        "-"
    } else {
        ""
    };
    format!("{sign}{grouped},{cents}\u{00A0}€")
}

/// A decimal with a comma, without trailing zeros: `0.055` → `0,055`.
fn number(value: Decimal) -> String {
    value.normalize().to_string().replace('.', ",")
}

fn percent(rate: Decimal) -> String {
    format!("{}\u{00A0}%", number(rate * Decimal::ONE_HUNDRED))
}

fn day(d: NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

fn party(p: &Party) -> ShownParty {
    let a = &p.address;
    let street = match &a.street_number {
        Some(n) => format!("{n} {}", a.street),
        None => a.street.clone(),
    };
    ShownParty {
        name: p.legal_name.clone(),
        address: vec![
            street,
            format!("{} {}", a.postcode, a.town),
            a.country.clone(),
        ],
        siren: p.siren.clone(),
        vat: p.vat_number.clone(),
    }
}

fn totals(t: &Totals) -> (Vec<ShownVat>, [String; 3]) {
    let vat = t
        .vat_breakdown
        .iter()
        .map(|v| ShownVat {
            rate: percent(v.vat_rate.0),
            base: euros(v.base_ht.0),
            vat: euros(v.vat.0),
        })
        .collect();
    (
        vat,
        [
            euros(t.total_ht.0),
            euros(t.total_vat.0),
            euros(t.total_ttc.0),
        ],
    )
}

/// The legal mentions at the foot of the document.
fn mentions(m: &LegalMentions, payment_days: bool) -> Vec<String> {
    let legal = &m.legal;
    let mut out = Vec::new();
    if payment_days {
        out.push(format!(
            "Paiement à {} jours de la date d'émission. Pas d'escompte pour paiement anticipé.",
            legal.payment_days
        ));
    }
    out.push(format!(
        "En cas de retard de paiement, pénalités au taux annuel de {} à compter du lendemain de l'échéance, et indemnité forfaitaire pour frais de recouvrement de {} (art. L441-10 du Code de commerce).",
        percent(legal.late_payment_penalty_rate.0),
        euros(legal.recovery_indemnity.0)
    ));
    out.push("Catégorie de l'opération : prestation de services.".into());
    out
}

/// The pre-notification, in the words the invoice prints (and its CII's payment terms): the
/// amount, the day, the account (masked but for its country, check digits and last four
/// characters), the mandate and the creditor identifier.
pub fn direct_debit_notice(d: &DirectDebitNotice) -> String {
    format!(
        "Prélèvement SEPA : {} seront débités le {} du compte {}, au titre du mandat {} (identifiant créancier SEPA {}).",
        euros(d.amount.0),
        day(d.collection_date),
        masked_iban(&d.debtor_iban),
        d.mandate_reference,
        d.creditor_id
    )
}

/// `FR76 **** 0189`: the IBAN's country and check digits, and its last four characters.
fn masked_iban(iban: &str) -> String {
    let chars: Vec<char> = iban.chars().collect();
    let head: String = chars.iter().take(4).collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("{head} **** {tail}")
}

fn period(start: Option<NaiveDate>, end: Option<NaiveDate>) -> Option<String> {
    match (start, end) {
        (Some(s), Some(e)) => Some(format!("du {} au {}", day(s), day(e))),
        _ => None,
    }
}

fn mentions_of(view: &InvoiceView) -> Result<LegalMentions, PdfError> {
    view.mentions()
        .ok_or_else(|| super::cii::CiiError::NoMentions(view.number.clone()).into())
}

/// The invoice as a Factur-X PDF (EN 16931 profile).
pub fn invoice(view: &InvoiceView) -> Result<Vec<u8>, PdfError> {
    let m = mentions_of(view)?;
    let (vat, [total_ht, total_vat, total_ttc]) = totals(&view.totals);
    let shown = Shown {
        title: "Facture",
        number: view.number.clone(),
        issued_on: day(view.issued_on),
        due_on: Some(day(view.due_on)),
        reference: None,
        seller: party(&m.seller),
        buyer: party(&m.buyer),
        lines: view
            .lines
            .iter()
            .map(|l| ShownLine {
                description: l.description.clone(),
                period: period(l.service_start, l.service_end),
                quantity: number(l.quantity.0),
                unit_price: euros(l.unit_price_ht.0),
                vat_rate: percent(l.vat_rate.0),
                net: euros(l.net_ht.0),
            })
            .collect(),
        vat,
        total_ht,
        total_vat,
        total_ttc: total_ttc.clone(),
        due_label: "Net à payer",
        amount_due: total_ttc,
        // a word joiner after each hyphen: the mandate reference is never broken at one
        payment: view
            .direct_debit
            .as_ref()
            .map(|d| direct_debit_notice(d).replace('-', "-\u{2060}")),
        mentions: mentions(&m, true),
    };
    render(&shown, &super::cii::invoice_proof(view)?, view.created_at)
}

/// The credit note as a Factur-X PDF, with its invoice's parties and terms.
pub fn credit_note(note: &CreditNoteView, invoice: &InvoiceView) -> Result<Vec<u8>, PdfError> {
    let m = mentions_of(invoice)?;
    let (vat, [total_ht, total_vat, total_ttc]) = totals(&note.totals);
    let shown = Shown {
        title: "Avoir",
        number: note.number.clone(),
        issued_on: day(note.issued_on),
        due_on: None,
        reference: Some(format!(
            "Sur la facture {} du {} — {}",
            invoice.number,
            day(invoice.issued_on),
            note.reason
        )),
        seller: party(&m.seller),
        buyer: party(&m.buyer),
        lines: note
            .lines
            .iter()
            .map(|l| {
                let of_invoice = invoice.lines.iter().find(|x| x.charge_id == l.charge_id);
                ShownLine {
                    description: l.description.clone(),
                    period: of_invoice.and_then(|x| period(x.service_start, x.service_end)),
                    quantity: l.quantity.as_ref().map_or("—".into(), |q| number(q.0)),
                    unit_price: of_invoice
                        .filter(|_| l.quantity.is_some())
                        .map_or("—".into(), |x| euros(x.unit_price_ht.0)),
                    vat_rate: percent(l.vat_rate.0),
                    net: euros(l.net_ht.0),
                }
            })
            .collect(),
        vat,
        total_ht,
        total_vat,
        total_ttc: total_ttc.clone(),
        due_label: "Montant de l'avoir",
        amount_due: total_ttc,
        payment: None,
        mentions: mentions(&m, false),
    };
    render(
        &shown,
        &super::cii::credit_note_proof(note, invoice)?,
        note.created_at,
    )
}

/// typst's fonts, read once.
struct Fonts {
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
}

fn fonts() -> &'static Fonts {
    static FONTS: OnceLock<Fonts> = OnceLock::new();
    FONTS.get_or_init(|| {
        let fonts: Vec<Font> = typst_assets::fonts()
            .flat_map(|data| Font::iter(Bytes::new(data)))
            .collect();
        Fonts {
            book: LazyHash::new(FontBook::from_fonts(&fonts)),
            fonts,
        }
    })
}

fn library() -> &'static LazyHash<Library> {
    static LIBRARY: OnceLock<LazyHash<Library>> = OnceLock::new();
    LIBRARY.get_or_init(|| LazyHash::new(<Library as LibraryExt>::default()))
}

const TEMPLATE: &str = include_str!("templates/document.typ");

fn file_id(path: &str) -> FileId {
    let vpath = VirtualPath::new(path).expect("a constant path");
    RootedPath::new(VirtualRoot::Project, vpath).intern()
}

/// What the template sees: itself and its data, nothing else.
struct DocumentWorld {
    main: Source,
    data_id: FileId,
    data: Bytes,
    today: Datetime,
}

impl World for DocumentWorld {
    fn library(&self) -> &LazyHash<Library> {
        library()
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &fonts().book
    }

    fn main(&self) -> FileId {
        self.main.id()
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        match id == self.main.id() {
            true => Ok(self.main.clone()),
            false => Err(FileError::AccessDenied),
        }
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        match id == self.data_id {
            true => Ok(self.data.clone()),
            false => Err(FileError::AccessDenied),
        }
    }

    fn font(&self, index: usize) -> Option<Font> {
        fonts().fonts.get(index).cloned()
    }

    fn today(&self, _offset: Option<typst::foundations::Duration>) -> Option<Datetime> {
        Some(self.today)
    }
}

fn datetime(at: DateTime<Utc>) -> Option<Datetime> {
    let byte = |n: u32| u8::try_from(n).ok();
    Datetime::from_ymd_hms(
        at.year(),
        byte(at.month())?,
        byte(at.day())?,
        byte(at.hour())?,
        byte(at.minute())?,
        byte(at.second())?,
    )
}

/// typst's diagnostics, as one error.
fn render_failed(errors: &[typst::diag::SourceDiagnostic]) -> PdfError {
    let messages: Vec<String> = errors.iter().map(|e| e.message.to_string()).collect();
    PdfError::Render(messages.join("; "))
}

/// Renders `shown` as PDF/A-3b, dated `at` (so the same document always gives the same
/// file), and embeds `proof` as its Factur-X XML.
fn render(
    shown: &Shown,
    proof: &Validated<En16931>,
    at: DateTime<Utc>,
) -> Result<Vec<u8>, PdfError> {
    let when = datetime(at).ok_or_else(|| PdfError::Render(format!("date {at}")))?;
    let data = serde_json::to_vec(shown).map_err(|e| PdfError::Render(e.to_string()))?;
    let world = DocumentWorld {
        main: Source::new(file_id("/document.typ"), TEMPLATE.to_string()),
        data_id: file_id("/document.json"),
        data: Bytes::new(data),
        today: when,
    };
    let compiled = typst::compile::<PagedDocument>(&world).output;
    // typst memoises across compilations: keep what the last few used, no more
    comemo::evict(10);
    let document = compiled.map_err(|e| render_failed(&e))?;
    let standards = typst_pdf::PdfStandards::new(&[typst_pdf::PdfStandard::A_3b])
        .map_err(|e| PdfError::Render(e.message().to_string()))?;
    let options = typst_pdf::PdfOptions {
        ident: Smart::Custom(shown.number.clone()),
        timestamp: Some(typst_pdf::Timestamp::new_utc(when)),
        standards,
        ..Default::default()
    };
    let pdf = typst_pdf::pdf(&document, &options).map_err(|e| render_failed(&e))?;
    let embedding = en16931_formats::zugferd::EmbedOptions {
        modified: Some(std::time::SystemTime::from(at)),
        ..Default::default()
    };
    en16931_formats::zugferd::embed(&pdf, proof, &embedding)
        .map_err(|e| PdfError::Embed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    #[test]
    fn amounts_are_written_the_french_way() {
        assert_eq!(euros(dec!(1234.5)), "1\u{202F}234,50\u{00A0}€");
        assert_eq!(euros(dec!(0)), "0,00\u{00A0}€");
        assert_eq!(euros(dec!(999)), "999,00\u{00A0}€");
        assert_eq!(euros(dec!(1000000)), "1\u{202F}000\u{202F}000,00\u{00A0}€");
        assert_eq!(percent(dec!(0.055)), "5,5\u{00A0}%");
        assert_eq!(number(dec!(3.0000)), "3");
    }
}

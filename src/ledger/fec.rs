//! The Fichier des Écritures Comptables (FEC, article A47 A-1 of the French tax
//! procedure book): the ledger's EUR postings as the 18 statutory columns, tab-separated,
//! one line per posting, in ISO 8859-15 (one of the encodings the article allows; the
//! others are ASCII and EBCDIC). The rules of the file; `store::fec` reads the ledger.

use chrono::NaiveDate;
use rust_decimal::Decimal;

/// The 18 columns, in the statutory order.
pub const COLUMNS: [&str; 18] = [
    "JournalCode",
    "JournalLib",
    "EcritureNum",
    "EcritureDate",
    "CompteNum",
    "CompteLib",
    "CompAuxNum",
    "CompAuxLib",
    "PieceRef",
    "PieceDate",
    "EcritureLib",
    "Debit",
    "Credit",
    "EcritureLet",
    "DateLet",
    "ValidDate",
    "Montantdevise",
    "Idevise",
];

/// The journal an entry goes to, by its transaction's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// Invoices and credit notes.
    Sales,
    /// Money in and out of the bank: payments, refunds, direct debits.
    Bank,
    /// Everything else: revenue recognised from tickets and credits, breakage, credit
    /// balances applied, manual adjustments, reversals.
    Miscellaneous,
}

impl Journal {
    pub fn of_kind(kind: &str) -> Journal {
        match kind {
            "invoice" | "credit_note" => Journal::Sales,
            "payment" | "refund" => Journal::Bank,
            k if k.starts_with("sepa.") => Journal::Bank,
            _ => Journal::Miscellaneous,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Journal::Sales => "VE",
            Journal::Bank => "BQ",
            Journal::Miscellaneous => "OD",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Journal::Sales => "Ventes",
            Journal::Bank => "Banque",
            Journal::Miscellaneous => "Opérations diverses",
        }
    }
}

/// The chart's label of an account code (French plan comptable général); `name`, the
/// account's own, for a code the chart does not name.
pub fn account_label<'a>(code: &str, name: &'a str) -> std::borrow::Cow<'a, str> {
    let label = match code {
        "411" => "Clients",
        "4191" => "Clients - avances et acomptes reçus",
        "44571" => "TVA collectée",
        "471" => "Compte d'attente",
        "487" => "Produits constatés d'avance",
        "512" => "Banque",
        "5112" => "Prélèvements à l'encaissement",
        "706" => "Prestations de services",
        "7088" => "Autres produits d'activités annexes",
        _ => return std::borrow::Cow::Borrowed(name),
    };
    std::borrow::Cow::Borrowed(label)
}

/// Whether postings to a customer's sub-account of `code` name the customer as an
/// auxiliary account (CompAuxNum): the customer accounts proper (411, and 4191, what a
/// customer paid ahead). Other customer sub-accounts (706, 487, 44571) are the general
/// account as a whole.
pub fn auxiliary(code: &str) -> bool {
    matches!(code, "411" | "4191")
}

/// One line of the file: one posting of an entry.
#[derive(Debug, Clone)]
pub struct FecLine<'a> {
    pub journal: Journal,
    /// The entry's number in the file, from 1, without gaps.
    pub entry: u64,
    pub entry_date: NaiveDate,
    pub account: &'a str,
    pub account_label: &'a str,
    /// The customer's auxiliary account and its name, for 411 and 4191.
    pub auxiliary: Option<(&'a str, &'a str)>,
    pub piece_ref: &'a str,
    pub piece_date: NaiveDate,
    pub label: &'a str,
    pub debit: Decimal,
    pub credit: Decimal,
    pub valid_date: NaiveDate,
}

impl FecLine<'_> {
    /// The line, tab-separated, ending with a newline (still UTF-8: see [`encode`]).
    pub fn render(&self, out: &mut String) {
        let (aux, aux_label) = self.auxiliary.unwrap_or(("", ""));
        let fields: [&str; 18] = [
            self.journal.code(),
            self.journal.label(),
            &self.entry.to_string(),
            &date(self.entry_date),
            &clean(self.account),
            &clean(self.account_label),
            &clean(aux),
            &clean(aux_label),
            &clean(self.piece_ref),
            &date(self.piece_date),
            &clean(self.label),
            &amount(self.debit),
            &amount(self.credit),
            "",
            "",
            &date(self.valid_date),
            "",
            "",
        ];
        out.push_str(&fields.join("\t"));
        out.push('\n');
    }
}

/// The header line.
pub fn header() -> String {
    let mut line = COLUMNS.join("\t");
    line.push('\n');
    line
}

/// `YYYYMMDD`.
pub fn date(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

/// An amount with a comma as decimal separator and two decimals, no thousands separator.
pub fn amount(value: Decimal) -> String {
    let mut v =
        value.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    v.rescale(2);
    v.to_string().replace('.', ",")
}

/// A text field: no tab, line break or other control character (each becomes a space),
/// no leading or trailing blanks.
pub fn clean(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cleaned.trim().to_string()
}

/// `text` in ISO 8859-15; a character that encoding lacks becomes `?`.
pub fn encode(text: &str) -> Vec<u8> {
    let mut encoder = encoding_rs::ISO_8859_15.new_encoder();
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        // one byte per character at most: the buffer never fills up
        let mut buf = vec![0u8; rest.len()];
        let (result, read, written) =
            encoder.encode_from_utf8_without_replacement(rest, &mut buf, true);
        out.extend_from_slice(&buf[..written]);
        rest = &rest[read..];
        if let encoding_rs::EncoderResult::Unmappable(_) = result {
            out.push(b'?');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    #[test]
    fn amounts_have_a_comma_and_two_decimals() {
        assert_eq!(amount(dec!(0)), "0,00");
        assert_eq!(amount(dec!(1234.5)), "1234,50");
        assert_eq!(amount(dec!(83.333)), "83,33");
        assert_eq!(amount(dec!(0.005)), "0,01");
    }

    #[test]
    fn text_loses_control_characters_and_accents_stay_in_latin_9() {
        assert_eq!(clean(" a\tb\r\nc "), "a b  c");
        assert_eq!(encode("Société €"), b"Soci\xe9t\xe9 \xa4".to_vec());
        // not in ISO 8859-15: replaced, the rest kept
        assert_eq!(encode("a→b"), b"a?b".to_vec());
    }

    #[test]
    fn a_line_has_the_eighteen_columns() {
        let mut out = String::new();
        let d = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        FecLine {
            journal: Journal::of_kind("invoice"),
            entry: 7,
            entry_date: d,
            account: "411",
            account_label: "Clients",
            auxiliary: Some(("C1", "Atelier\tDémo")),
            piece_ref: "F2026-000001",
            piece_date: d,
            label: "invoice",
            debit: dec!(120),
            credit: dec!(0),
            valid_date: d,
        }
        .render(&mut out);
        let fields: Vec<&str> = out.trim_end_matches('\n').split('\t').collect();
        assert_eq!(fields.len(), COLUMNS.len());
        assert_eq!(
            fields[..13],
            [
                "VE",
                "Ventes",
                "7",
                "20261120",
                "411",
                "Clients",
                "C1",
                "Atelier Démo",
                "F2026-000001",
                "20261120",
                "invoice",
                "120,00",
                "0,00"
            ]
        );
        assert_eq!(header().split('\t').count(), 18);
        assert_eq!(Journal::of_kind("refund"), Journal::Bank);
        assert_eq!(Journal::of_kind("credits.expire"), Journal::Miscellaneous);
    }
}

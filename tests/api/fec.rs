//! The FEC export (`GET /v1/ledger/fec`), read back as an accountant's tool would: the
//! statutory columns, entries numbered without gaps and balanced, and totals per account
//! equal to the ledger's.

use std::collections::BTreeMap;

use chrono::Duration;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use grandlivre::auth::Role;
use grandlivre::demo::{DEMO_CUSTOMER_1 as C1, DEMO_CUSTOMER_2 as C2};

use crate::helpers::{buy_tickets, paris, pay_invoice, seeded, TestApp};

/// The columns, in the order article A47 A-1 gives them.
const COLUMNS: &str = "JournalCode\tJournalLib\tEcritureNum\tEcritureDate\tCompteNum\tCompteLib\tCompAuxNum\tCompAuxLib\tPieceRef\tPieceDate\tEcritureLib\tDebit\tCredit\tEcritureLet\tDateLet\tValidDate\tMontantdevise\tIdevise";

/// A FEC amount: a comma, two decimals.
fn amount(field: &str) -> Decimal {
    assert!(
        field.len() >= 4 && field.as_bytes()[field.len() - 3] == b',',
        "amount {field:?}"
    );
    field.replace(',', ".").parse().unwrap()
}

/// The file of a period, decoded from ISO 8859-15, as lines of 18 fields (the header
/// checked and left out).
async fn fec(app: &TestApp, key: &str, from: &str, to: &str) -> Vec<Vec<String>> {
    let got = app
        .get(key, &format!("/v1/ledger/fec?from={from}&to={to}"))
        .await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(
        got.header("content-type"),
        Some("text/tab-separated-values; charset=ISO-8859-15")
    );
    let name = format!("FEC{}.txt\"", to.replace('-', ""));
    assert!(
        got.header("content-disposition").unwrap().ends_with(&name),
        "{:?}",
        got.header("content-disposition")
    );
    let (text, _, malformed) = encoding_rs::ISO_8859_15.decode(&got.bytes);
    assert!(!malformed);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(COLUMNS));
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    for row in &rows {
        assert_eq!(row.len(), 18, "{row:?}");
    }
    check_entries(&rows);
    rows
}

/// Entries numbered 1, 2, … without gaps, each on consecutive lines, in date order, each
/// balanced; every line a debit or a credit.
fn check_entries(rows: &[Vec<String>]) {
    let mut number = 0u64;
    let mut sums = (Decimal::ZERO, Decimal::ZERO);
    let mut last_date = String::new();
    for (i, row) in rows.iter().enumerate() {
        let n: u64 = row[2].parse().unwrap();
        if n != number {
            assert_eq!(n, number + 1, "entry numbers at line {i}");
            assert_eq!(sums.0, sums.1, "entry {number} does not balance");
            number = n;
            sums = (Decimal::ZERO, Decimal::ZERO);
        }
        assert!(row[3] >= last_date, "dates go back at line {i}");
        last_date = row[3].clone();
        for d in [&row[3], &row[9], &row[15]] {
            assert!(
                d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()),
                "{row:?}"
            );
        }
        let (debit, credit) = (amount(&row[11]), amount(&row[12]));
        assert!(
            (debit > Decimal::ZERO) != (credit > Decimal::ZERO),
            "{row:?}"
        );
        assert!(["VE", "BQ", "OD"].contains(&row[0].as_str()), "{row:?}");
        sums = (sums.0 + debit, sums.1 + credit);
    }
    assert_eq!(sums.0, sums.1, "entry {number} does not balance");
}

/// Debits and credits per account code, summed over the file.
fn per_account(rows: &[Vec<String>]) -> BTreeMap<String, (Decimal, Decimal)> {
    let mut out: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
    for row in rows {
        let e = out.entry(row[4].clone()).or_default();
        *e = (e.0 + amount(&row[11]), e.1 + amount(&row[12]));
    }
    out
}

/// Posted debits and credits per code over every EUR account of the ledger, through its
/// pages.
async fn ledger_per_account(app: &TestApp, key: &str) -> BTreeMap<String, (Decimal, Decimal)> {
    let mut out: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/ledger/accounts?limit=200&cursor={c}"),
            None => "/v1/ledger/accounts?limit=200".to_string(),
        };
        let page = app.get(key, &path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        for a in page.body["items"].as_array().unwrap() {
            let b = &a["balance"];
            let d: Decimal = b["posted_debits"].as_str().unwrap().parse().unwrap();
            let c: Decimal = b["posted_credits"].as_str().unwrap().parse().unwrap();
            if a["unit"] == "EUR" && !(d.is_zero() && c.is_zero()) {
                let e = out
                    .entry(a["code"].as_str().unwrap().to_string())
                    .or_default();
                *e = (e.0 + d, e.1 + c);
            }
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

#[actix_web::test]
async fn the_fec_has_the_statutory_columns_and_the_ledgers_totals() {
    let (app, _conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    // a purchase invoiced at once and paid the next day; another credited in full
    let three = buy_tickets(&app, &finance, C1, 3, Some("fec-three")).await;
    let invoice: Value = app
        .get(
            &finance,
            &format!("/v1/invoices/{}", three["invoice_id"].as_str().unwrap()),
        )
        .await
        .body;
    app.clock.set(paris("2026-11-21") + Duration::hours(10));
    pay_invoice(&app, &invoice, "300.00", "2026-11-21").await;
    let one = buy_tickets(&app, &finance, C2, 1, Some("fec-one")).await;
    app.clock.set(paris("2026-11-22") + Duration::hours(10));
    let noted = app
        .post_json(
            &finance,
            &format!(
                "/v1/invoices/{}/credit-notes",
                one["invoice_id"].as_str().unwrap()
            ),
            Some("fec-note"),
            &json!({"reason": "Bought by mistake"}),
        )
        .await;
    assert_eq!(noted.status, 201, "{}", noted.text);

    let rows = fec(&app, &finance, "2000-01-01", "2100-12-31").await;
    // the whole ledger: the file's totals per account are the ledger's
    assert_eq!(per_account(&rows), ledger_per_account(&app, &finance).await);
    // the invoice in the sales journal, the customer as auxiliary account of 411
    let receivable = rows
        .iter()
        .find(|r| r[8] == invoice["number"].as_str().unwrap() && r[4] == "411")
        .expect("the invoice's 411 line");
    assert_eq!(
        receivable[..4].to_vec(),
        ["VE", "Ventes", receivable[2].as_str(), "20261120"]
    );
    assert_eq!(receivable[6], C1.simple().to_string());
    assert_eq!(receivable[7], "Atelier Démo SARL");
    assert_eq!(receivable[11], "300,00");
    // the payment in the bank journal, at its value date, named by its reference
    let bank = rows
        .iter()
        .find(|r| r[4] == "512" && r[11] == "300,00")
        .expect("the payment's 512 line");
    assert_eq!(
        (&bank[0], &bank[3], &bank[8]),
        (
            &"BQ".to_string(),
            &"20261121".to_string(),
            &format!("VIR-{}-300.00", invoice["number"].as_str().unwrap())
        )
    );
    // the credit note in the sales journal, reversing VAT
    let note = noted.body["number"].as_str().unwrap();
    assert!(rows
        .iter()
        .any(|r| r[0] == "VE" && r[8] == note && r[4] == "44571" && r[11] == "16,67"));

    // one day: only its entries, numbered from 1
    let day = fec(&app, &finance, "2026-11-21", "2026-11-21").await;
    assert!(!day.is_empty());
    assert!(day.iter().all(|r| r[3] == "20261121"), "{day:?}");
    assert_eq!(day[0][2], "1");

    // bad periods
    app.get(&finance, "/v1/ledger/fec?from=2026-12-31&to=2026-01-01")
        .await
        .problem(400, "invalid_parameter");
    app.get(&finance, "/v1/ledger/fec?from=2026-01-01")
        .await
        .problem(400, "invalid_parameter");
    // finance's, not the customers'
    let customer = app.key(Role::Customer, Some(C1)).await;
    assert_eq!(
        app.get(&customer, "/v1/ledger/fec?from=2026-01-01&to=2026-12-31")
            .await
            .status,
        403
    );
}

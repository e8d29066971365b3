//! Invoices and credit notes as EN 16931 documents (`GET /v1/invoices/{id}/cii`,
//! `GET /v1/credit-notes/{id}/cii`): read back by an independent CII reader, checked
//! against the EN 16931 rules again, their totals the document's.

use chrono::Duration;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{json, Value};

use grandlivre::auth::Role;
use grandlivre::catalog::PriceBasis;
use grandlivre::charges::{self, ChargeSource, NewCharge};
use grandlivre::clock::Clock;
use grandlivre::demo::{DEMO_CUSTOMER_1 as C1, DEMO_CUSTOMER_2 as C2};

use crate::helpers::{paris, seeded, TestApp};

fn d(s: &str) -> chrono::NaiveDate {
    s.parse().unwrap()
}

/// Reads a CII answer back and checks it against the EN 16931 rules.
fn read_back(reply: &crate::helpers::Reply) -> en16931::Invoice {
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/xml"));
    let read = en16931_formats::read(&reply.bytes).expect("a CII document");
    assert_eq!(read.syntax, en16931_formats::Syntax::Cii);
    assert!(read.entries.is_empty(), "{:?}", read.entries);
    let report = en16931::profiles::EN16931.validate(&read.invoice);
    assert!(
        report.is_valid(),
        "{:?}",
        report.fatal().map(|f| f.to_string()).collect::<Vec<_>>()
    );
    read.invoice
}

fn amount(a: Option<en16931::InvoiceAmount>) -> String {
    a.map(|a| a.to_string()).unwrap_or_default()
}

/// The document's totals as (HT, VAT, TTC).
fn totals(i: &en16931::Invoice) -> [String; 3] {
    [
        i.totals.taxable_total.to_string(),
        amount(i.totals.vat_total),
        i.totals.gross_total.to_string(),
    ]
}

/// Compares `xml`, one element per line and its dates redacted, with
/// `tests/snapshots/<name>`; `UPDATE_SNAPSHOTS=1` writes it instead.
fn snapshot(name: &str, xml: &[u8]) {
    let text = std::str::from_utf8(xml).unwrap().replace("><", ">\n<");
    let mut redacted = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("format=\"102\">") {
        let (head, tail) = rest.split_at(at + "format=\"102\">".len());
        redacted.push_str(head);
        redacted.push_str("YYYYMMDD");
        rest = &tail[tail.find('<').unwrap()..];
    }
    redacted.push_str(rest);
    redacted.push('\n');
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &redacted).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_SNAPSHOTS=1 writes it)", path.display()));
    assert_eq!(redacted, expected, "{} changed", path.display());
}

async fn get(app: &TestApp, key: &str, path: &str) -> Value {
    let got = app.get(key, path).await;
    assert_eq!(got.status, 200, "{}", got.text);
    got.body
}

#[actix_web::test]
async fn invoices_and_credit_notes_are_en16931_documents_with_their_totals() {
    let (app, mut conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let now = app.clock.now();
    // two VAT rates, a TTC-priced line, service periods
    for (key, quantity, unit_price, basis, rate) in [
        ("usage", dec!(3), dec!(0.20), PriceBasis::Ht, dec!(0.20)),
        ("book", dec!(1), dec!(10.00), PriceBasis::Ht, dec!(0.055)),
        ("visit", dec!(1), dec!(100.00), PriceBasis::Ttc, dec!(0.20)),
    ] {
        let charge = NewCharge {
            customer_id: C1,
            subscription_id: None,
            offer_code: None,
            source: ChargeSource::OneOff,
            period_index: None,
            description: format!("Prestation « {key} »"),
            quantity,
            unit_price,
            price_basis: basis,
            vat_rate: rate,
            service_start: Some(d("2026-11-01")),
            service_end: Some(d("2026-11-30")),
            idempotency_key: Some(key.into()),
        };
        assert!(charges::insert(&mut conn, &charge, now).await.unwrap());
    }
    let ran = app.run_job("invoicing", now).await;
    assert_eq!(ran["invoices_issued"], 1, "{ran}");
    let list = get(&app, &finance, &format!("/v1/invoices?customer_id={C1}")).await;
    let invoice = &list["items"][0];
    let id = invoice["id"].as_str().unwrap();

    let reply = app.get(&finance, &format!("/v1/invoices/{id}/cii")).await;
    snapshot("invoice.cii.xml", &reply.bytes);
    let cii = read_back(&reply);
    assert_eq!(cii.number.as_deref(), invoice["number"].as_str());
    assert_eq!(cii.type_code.as_ref().map(|c| c.as_str()), Some("380"));
    assert_eq!(
        totals(&cii),
        [
            invoice["totals"]["total_ht"].as_str().unwrap(),
            invoice["totals"]["total_vat"].as_str().unwrap(),
            invoice["totals"]["total_ttc"].as_str().unwrap(),
        ]
    );
    assert_eq!(totals(&cii), ["93.93", "17.34", "111.27"]);
    assert_eq!(cii.vat_breakdown.len(), 2);
    assert_eq!(cii.lines.len(), 3);
    assert_eq!(cii.lines[2].net_amount.to_string(), "83.33");
    assert_eq!(
        cii.lines[0].item.name.as_deref(),
        Some("Prestation « usage »")
    );
    assert!(cii.lines.iter().all(|l| l.period.is_some()));
    assert_eq!(
        cii.due_date.map(|d| d.to_string()).as_deref(),
        Some("2026-12-20")
    );
    // the French mentions: the buyer's SIREN, the operation category, the penalties
    let buyer = get(&app, &finance, &format!("/v1/customers/{C1}")).await;
    let siren = cii
        .buyer
        .legal_registration
        .as_ref()
        .map(|i| (i.content().to_string(), i.scheme().map(str::to_string)));
    assert_eq!(
        siren,
        Some((buyer["siren"].as_str().unwrap().into(), Some("0002".into())))
    );
    assert_eq!(cii.business_process.as_deref(), Some("S1"));
    let subjects: Vec<&str> = cii
        .notes
        .iter()
        .filter_map(|n| n.subject_code.as_ref().map(|c| c.as_str()))
        .collect();
    assert_eq!(subjects, ["PMD", "PMT", "AAB", "AAI"]);

    // a credit note on one line: type 381, refers to its invoice, its own totals
    let charge = invoice["lines"][1]["charge_id"].clone();
    let noted = app
        .post_json(
            &finance,
            &format!("/v1/invoices/{id}/credit-notes"),
            Some("doc-note"),
            &json!({"reason": "Livre non livré", "lines": [{"charge_id": charge, "quantity": "1"}]}),
        )
        .await;
    assert_eq!(noted.status, 201, "{}", noted.text);
    let note_id = noted.body["id"].as_str().unwrap();
    let reply = app
        .get(&finance, &format!("/v1/credit-notes/{note_id}/cii"))
        .await;
    snapshot("credit_note.cii.xml", &reply.bytes);
    let note = read_back(&reply);
    assert_eq!(note.type_code.as_ref().map(|c| c.as_str()), Some("381"));
    assert_eq!(note.number.as_deref(), noted.body["number"].as_str());
    assert_eq!(
        note.preceding_invoices
            .iter()
            .map(|p| p.reference.as_str())
            .collect::<Vec<_>>(),
        [invoice["number"].as_str().unwrap()]
    );
    assert_eq!(totals(&note), ["10.00", "0.55", "10.55"]);
    let credited: Decimal = noted.body["totals"]["total_ttc"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(credited, dec!(10.55));

    // the customer's own key reads them; another customer's key finds nothing
    let own = app.key(Role::Customer, Some(C1)).await;
    read_back(&app.get(&own, &format!("/v1/invoices/{id}/cii")).await);
    let other = app.key(Role::Customer, Some(C2)).await;
    app.get(&other, &format!("/v1/invoices/{id}/cii"))
        .await
        .problem(404, "not_found");
    app.get(&other, &format!("/v1/credit-notes/{note_id}/cii"))
        .await
        .problem(404, "not_found");
}

/// Reads a PDF answer back as Factur-X: PDF/A-3b declared, `factur-x.xml` attached and
/// declared in the XMP (EN 16931 profile), nothing diverging, and the payload a valid
/// EN 16931 document, returned.
fn read_pdf(reply: &crate::helpers::Reply, number: &str) -> en16931::Invoice {
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/pdf"));
    assert_eq!(
        reply.header("content-disposition"),
        Some(format!("inline; filename=\"{number}.pdf\"").as_str())
    );
    assert!(reply.bytes.starts_with(b"%PDF-"));
    let read = en16931_formats::read(&reply.bytes).expect("a Factur-X PDF");
    let pdf = read.pdf.as_ref().expect("a hybrid PDF");
    assert_eq!(pdf.filename, "factur-x.xml");
    assert!(pdf.divergence.is_empty(), "{:?}", pdf.divergence);
    assert_eq!(
        (
            pdf.xmp.pdfa_part.as_deref(),
            pdf.xmp.pdfa_conformance.as_deref()
        ),
        (Some("3"), Some("B"))
    );
    assert_eq!(pdf.xmp.document_filename.as_deref(), Some("factur-x.xml"));
    assert_eq!(pdf.xmp.conformance_level.as_deref(), Some("EN 16931"));
    let report = en16931::profiles::EN16931.validate(&read.invoice);
    assert!(
        report.is_valid(),
        "{:?}",
        report.fatal().map(|f| f.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(read.invoice.number.as_deref(), Some(number));
    read.invoice
}

#[actix_web::test]
async fn invoices_and_credit_notes_are_factur_x_pdfs_carrying_their_totals() {
    let (app, _conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let bought = crate::helpers::buy_tickets(&app, &finance, C1, 3, Some("pdf-three")).await;
    let id = bought["invoice_id"].as_str().unwrap();
    let invoice = get(&app, &finance, &format!("/v1/invoices/{id}")).await;
    let number = invoice["number"].as_str().unwrap();

    let reply = app.get(&finance, &format!("/v1/invoices/{id}/pdf")).await;
    let inside = read_pdf(&reply, number);
    assert_eq!(totals(&inside), ["250.00", "50.00", "300.00"]);
    if let Some(dir) = std::env::var_os("GRANDLIVRE_SAMPLE_PDF_DIR") {
        std::fs::write(std::path::Path::new(&dir).join("invoice.pdf"), &reply.bytes).unwrap();
    }
    // the same document every time: rendered from what was issued, dated by it
    let again = app.get(&finance, &format!("/v1/invoices/{id}/pdf")).await;
    assert_eq!(again.bytes, reply.bytes);
    // the XML inside is the one /cii answers
    let cii = read_back(&app.get(&finance, &format!("/v1/invoices/{id}/cii")).await);
    assert_eq!(cii, inside);

    let noted = app
        .post_json(
            &finance,
            &format!("/v1/invoices/{id}/credit-notes"),
            Some("pdf-note"),
            &json!({"reason": "Un ticket de trop",
                    "lines": [{"charge_id": invoice["lines"][0]["charge_id"], "quantity": "1"}]}),
        )
        .await;
    assert_eq!(noted.status, 201, "{}", noted.text);
    let note_id = noted.body["id"].as_str().unwrap();
    let note = read_pdf(
        &app.get(&finance, &format!("/v1/credit-notes/{note_id}/pdf"))
            .await,
        noted.body["number"].as_str().unwrap(),
    );
    assert_eq!(note.type_code.as_ref().map(|c| c.as_str()), Some("381"));
    assert_eq!(totals(&note), ["83.33", "16.67", "100.00"]);

    let other = app.key(Role::Customer, Some(C2)).await;
    app.get(&other, &format!("/v1/invoices/{id}/pdf"))
        .await
        .problem(404, "not_found");
}

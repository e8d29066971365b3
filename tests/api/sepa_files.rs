//! What the SEPA tests share: customers and mandates through the API, platform balances,
//! and the checks of a pain.008 file (the XSD through xmllint, control sums, redaction).

use rust_decimal::Decimal;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::helpers::TestApp;

pub const XSD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/xsd/pain.008.001.08.xsd");
pub const XSD_SHA256: &str = "3b2efe2239fceea22b17eb980df58c8b80db7322cf7781f8fd64ee8d17696210";
pub const IN_TRANSIT: &str = "00000000-0000-4000-8000-000000005112";
pub const BANK: &str = "00000000-0000-4000-8000-000000000512";

pub async fn customer(app: &TestApp, key: &str, name: &str, street: &str, town: &str) -> Uuid {
    let created = app
        .post_json(
            key,
            "/v1/customers",
            None,
            &json!({
                "legal_name": name, "siren": "732829320", "billing_email": "compta@example.fr",
                "address": {"street_number": "3", "street": street, "postcode": "42000",
                            "town": town, "country": "FR"}
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body["id"].as_str().unwrap().parse().unwrap()
}

/// Makes the batch collecting on `date`; answers it.
pub async fn made_batch(app: &TestApp, key: &str, date: &str) -> Value {
    let made = app
        .post_json(
            key,
            "/v1/sepa/batches",
            None,
            &json!({"collection_date": date}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    made.body
}

/// Submits batch `id` (its file went to the bank); answers it.
pub async fn submitted(app: &TestApp, key: &str, id: &str) -> Value {
    let sent = app
        .post_json(
            key,
            &format!("/v1/sepa/batches/{id}/submit"),
            None,
            &json!(null),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    sent.body
}

/// Makes and submits the batch of `date`; answers it.
pub async fn submitted_batch(app: &TestApp, key: &str, date: &str) -> Value {
    let made = made_batch(app, key, date).await;
    submitted(app, key, made["id"].as_str().unwrap()).await
}

/// Settles batch `id` on `value_date`; answers it.
pub async fn settled(app: &TestApp, key: &str, id: &str, value_date: &str) -> Value {
    let settled = app
        .post_json(
            key,
            &format!("/v1/sepa/batches/{id}/settle"),
            None,
            &json!({ "value_date": value_date }),
        )
        .await;
    assert_eq!(settled.status, 200, "{}", settled.text);
    settled.body
}

pub async fn mandate(app: &TestApp, key: &str, customer: Uuid, body: Value) -> Value {
    let created = app
        .post_json(
            key,
            &format!("/v1/customers/{customer}/mandates"),
            None,
            &body,
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body
}

/// The posted balance of a platform account.
pub async fn platform(app: &TestApp, key: &str, account: &str) -> Decimal {
    let read = app
        .get(key, &format!("/v1/ledger/accounts/{account}"))
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    read.body["balance"]["posted"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// Every `<tag>…</tag>` text of `xml`, in order.
pub fn texts<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(gt) = after.find('>') else { break };
        let body = &after[gt + 1..];
        let Some(end) = body.find(&close) else { break };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

/// The file's counts and sums recomputed from its transactions, against what its group
/// header and each payment information group state.
pub fn check_control_sums(xml: &str) {
    let sum = |amounts: &[&str]| amounts.iter().map(|a| dec(a)).sum::<Decimal>();
    let header = texts(xml, "GrpHdr")[0];
    let all = texts(xml, "InstdAmt");
    assert_eq!(texts(header, "NbOfTxs"), [all.len().to_string()]);
    assert_eq!(dec(texts(header, "CtrlSum")[0]), sum(&all));
    for group in texts(xml, "PmtInf") {
        let amounts = texts(group, "InstdAmt");
        assert_eq!(texts(group, "NbOfTxs")[0], amounts.len().to_string());
        assert_eq!(dec(texts(group, "CtrlSum")[0]), sum(&amounts));
    }
}

/// Validates `xml` against the pain.008.001.08 XSD (whose hash is checked first).
pub fn xsd_valid(xml: &str) {
    let xsd = std::fs::read(XSD).expect("the XSD in tests/xsd");
    assert_eq!(
        hex::encode(Sha256::digest(&xsd)),
        XSD_SHA256,
        "the XSD changed"
    );
    let file = std::env::temp_dir().join(format!("pain008-{}.xml", Uuid::now_v7()));
    std::fs::write(&file, xml).unwrap();
    let out = std::process::Command::new("xmllint")
        .args(["--noout", "--schema", XSD])
        .arg(&file)
        .output()
        .expect("xmllint (apt-get install libxml2-utils)");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The file with what changes from run to run (ids, timestamps) replaced.
pub fn redacted(xml: &str) -> String {
    let mut out = xml.to_string();
    for tag in ["MsgId", "CreDtTm", "PmtInfId"] {
        for value in texts(xml, tag) {
            out = out.replace(
                &format!("<{tag}>{value}</{tag}>"),
                &format!("<{tag}>[{tag}]</{tag}>"),
            );
        }
    }
    out
}

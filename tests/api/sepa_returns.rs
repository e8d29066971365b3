//! SEPA rejects (pain.002) and returns (camt.054) through HTTP (issue 13): the ledger
//! reversed, the invoice reopened, the reason code acted on, a report applied whole or not
//! at all, and once.

use actix_web::test::TestRequest;
use chrono::Duration;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{balance, paris, seeded, Reply, TestApp};
use crate::sepa_files::{dec, platform, settled, submitted_batch, BANK, IN_TRANSIT};

/// A customer with a CORE mandate `reference` and a fibre subscription from 2026-11-24.
async fn collected_customer(app: &TestApp, key: &str, reference: &str) -> (Uuid, String) {
    let c = crate::helpers::new_customer(app, key, reference).await;
    let m = app
        .post_json(
            key,
            &format!("/v1/customers/{c}/mandates"),
            None,
            &json!({"reference": reference, "signed_on": "2026-11-02",
                    "debtor_name": "Atelier Dupont SARL", "iban": "FR7630006000011234567890189"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    let sub = app
        .post_json(
            key,
            "/v1/subscriptions",
            None,
            &json!({"customer_id": c, "offer_code": "ip_access_fibre", "start_date": "2026-11-24"}),
        )
        .await;
    assert_eq!(sub.status, 201, "{}", sub.text);
    (c, m.body["id"].as_str().unwrap().to_string())
}

fn e2e_of(batch: &Value, customer: Uuid) -> String {
    batch["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["customer_id"] == customer.to_string())
        .map(|c| c["end_to_end_id"].as_str().unwrap().to_string())
        .unwrap()
}

/// A pain.002.001.10 status report of `batch`'s file rejecting each `(end-to-end id, reason)`.
fn pain002(msg_id: &str, batch: &Value, rejects: &[(&str, &str)]) -> String {
    let txs: String = rejects
        .iter()
        .map(|(e2e, reason)| {
            format!(
                "<TxInfAndSts><OrgnlEndToEndId>{e2e}</OrgnlEndToEndId><TxSts>RJCT</TxSts>\
         <StsRsnInf><Rsn><Cd>{reason}</Cd></Rsn></StsRsnInf></TxInfAndSts>"
            )
        })
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10">
  <CstmrPmtStsRpt>
    <GrpHdr><MsgId>{msg_id}</MsgId><CreDtTm>2026-12-23T09:30:00Z</CreDtTm></GrpHdr>
    <OrgnlGrpInfAndSts><OrgnlMsgId>{}</OrgnlMsgId><OrgnlMsgNmId>pain.008.001.08</OrgnlMsgNmId><GrpSts>PART</GrpSts></OrgnlGrpInfAndSts>
    <OrgnlPmtInfAndSts><OrgnlPmtInfId>{}1</OrgnlPmtInfId><PmtInfSts>PART</PmtInfSts>{txs}</OrgnlPmtInfAndSts>
  </CstmrPmtStsRpt>
</Document>"#,
        batch["message_id"].as_str().unwrap(),
        batch["message_id"].as_str().unwrap()
    )
}

/// A camt.054.001.08 debit notification returning each `(end-to-end id, reason, amount)`.
fn camt054(msg_id: &str, returns: &[(&str, &str, &str)]) -> String {
    let entries: String = returns.iter().map(|(e2e, reason, amount)| format!(
        "<Ntry><Amt Ccy=\"EUR\">{amount}</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>\
         <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RDDT</Cd><SubFmlyCd>PMDD</SubFmlyCd></Fmly></Domn></BkTxCd>\
         <NtryDtls><TxDtls><Refs><EndToEndId>{e2e}</EndToEndId></Refs>\
         <RtrInf><Rsn><Cd>{reason}</Cd></Rsn></RtrInf></TxDtls></NtryDtls></Ntry>")).collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">
  <BkToCstmrDbtCdtNtfctn>
    <GrpHdr><MsgId>{msg_id}</MsgId><CreDtTm>2027-01-05T23:59:00</CreDtTm></GrpHdr>
    <Ntfctn><Id>N-{msg_id}</Id>{entries}</Ntfctn>
  </BkToCstmrDbtCdtNtfctn>
</Document>"#
    )
}

async fn import(app: &TestApp, key: &str, xml: &str) -> Reply {
    app.send(
        TestRequest::post()
            .uri("/v1/sepa/returns")
            .insert_header(("Authorization", format!("Bearer {key}")))
            .insert_header(("Content-Type", "application/xml"))
            .set_payload(xml.to_string()),
    )
    .await
}

#[actix_web::test]
async fn rejects_reverse_reopen_revoke_and_present_again_once() {
    let (app, _conn) = seeded().await;
    app.clock.set(paris("2026-11-24") + Duration::hours(10));
    let admin = app.admin().await;
    let (a, mandate_a) = collected_customer(&app, &admin, "GL-RJ-A").await;
    let (b, _) = collected_customer(&app, &admin, "GL-RJ-B").await;
    app.run_job("billing", paris("2026-11-24") + Duration::hours(12))
        .await;
    app.run_job("invoicing", paris("2026-11-24") + Duration::hours(12))
        .await;
    let batch = submitted_batch(&app, &admin, "2026-12-24").await;
    let (ea, eb) = (e2e_of(&batch, a), e2e_of(&batch, b));
    assert_eq!(platform(&app, &admin, IN_TRANSIT).await, dec("95.76"));

    // a report naming an unknown collection changes nothing, and says what it could not apply
    let unknown = pain002(
        "PSR-0",
        &batch,
        &[(&ea, "AC04"), ("F2099-000001-01", "AM04")],
    );
    let refused = import(&app, &admin, &unknown).await;
    let problem = refused.problem(422, "invalid_request");
    assert_eq!(
        problem["errors"],
        json!([{"field": "F2099-000001-01", "message": "no collection has this end-to-end id"}])
    );
    assert_eq!(
        platform(&app, &admin, IN_TRANSIT).await,
        dec("95.76"),
        "nothing half-applied"
    );
    for bad in [
        "<Document/>",
        "<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:pain.002.001.10\"><Cstmr",
    ] {
        import(&app, &admin, bad)
            .await
            .problem(422, "invalid_request");
    }
    let json_body = app
        .post_json(&admin, "/v1/sepa/returns", None, &json!({}))
        .await;
    json_body.problem(415, "unsupported_media_type");

    // AC04 (account closed): the mandate is revoked; AM04 (no funds): presented again
    let psr = pain002("PSR-1", &batch, &[(&ea, "AC04"), (&eb, "AM04")]);
    let applied = import(&app, &admin, &psr).await;
    assert_eq!(applied.status, 201, "{}", applied.text);
    let kinds: Vec<(&Value, &Value, &Value)> = applied.body["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (&r["reason"], &r["kind"], &r["action"]))
        .collect();
    assert_eq!(
        kinds,
        [
            (
                &json!("AC04"),
                &json!("rejected"),
                &json!("mandate_revoked")
            ),
            (
                &json!("AM04"),
                &json!("rejected"),
                &json!("presented_again")
            )
        ]
    );
    assert_eq!(platform(&app, &admin, IN_TRANSIT).await, Decimal::ZERO);
    assert_eq!(balance(&app, &admin, a, "411").await, dec("47.88"));
    assert_eq!(balance(&app, &admin, b, "411").await, dec("47.88"));
    let invoice_a = &batch["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["customer_id"] == a.to_string())
        .unwrap()["invoice_id"];
    let read = app
        .get(
            &admin,
            &format!("/v1/invoices/{}", invoice_a.as_str().unwrap()),
        )
        .await;
    assert_eq!(
        (&read.body["status"], &read.body["amount_due"]),
        (&json!("issued"), &json!("47.88"))
    );
    let m = app.get(&admin, &format!("/v1/mandates/{mandate_a}")).await;
    assert_eq!(m.body["status"], "revoked");
    assert!(
        m.body["status_reason"].as_str().unwrap().contains("AC04"),
        "{}",
        m.text
    );
    // the same report again: its first answer, nothing more
    let again = import(&app, &admin, &psr).await;
    assert_eq!((again.status, &again.body), (200, &applied.body));
    assert_eq!(balance(&app, &admin, b, "411").await, dec("47.88"));
    let view = app
        .get(
            &admin,
            &format!("/v1/sepa/batches/{}", batch["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(view.body["collections"][0]["status"], "rejected");
    assert_eq!(
        (
            &view.body["total"],
            &view.body["collected"],
            &view.body["came_back"]
        ),
        (&json!("95.76"), &json!("0.00"), &json!("95.76")),
        "the file's sum stays what was sent"
    );
    app.assert_ledger_verifies(&admin).await;

    // the next batch presents B's invoice again under a new end-to-end id; A's has no mandate
    app.clock.set(paris("2027-01-20") + Duration::hours(10));
    let next = submitted_batch(&app, &admin, "2027-01-25").await;
    assert_eq!(next["collections_count"], 1, "{next}");
    let eb2 = e2e_of(&next, b);
    assert_eq!(eb2, eb.replace("-01", "-02"));
    assert_eq!(next["groups"][0]["sequence_type"], "RCUR");
    let id = next["id"].as_str().unwrap();
    app.clock.set(paris("2027-01-25") + Duration::hours(16));
    settled(&app, &admin, id, "2027-01-25").await;
    let bank = platform(&app, &admin, BANK).await;

    // returned again after settlement (camt.054): 512 → 411, the payment given back, and a
    // second failure goes to the dunning job, never to a third presentation
    let ntf = camt054("NTF-1", &[(&eb2, "AM04", "47.88")]);
    let returned = import(&app, &admin, &ntf).await;
    assert_eq!(returned.status, 201, "{}", returned.text);
    assert_eq!(
        (
            &returned.body["applied"][0]["kind"],
            &returned.body["applied"][0]["action"]
        ),
        (&json!("returned"), &json!("dunning"))
    );
    assert_eq!(platform(&app, &admin, BANK).await, bank - dec("47.88"));
    assert_eq!(balance(&app, &admin, b, "411").await, dec("47.88"));
    let invoice_b = next["collections"][0]["invoice_id"].as_str().unwrap();
    let read = app.get(&admin, &format!("/v1/invoices/{invoice_b}")).await;
    assert_eq!(
        (&read.body["status"], &read.body["amount_due"]),
        (&json!("issued"), &json!("47.88")),
        "{}",
        read.text
    );
    import(&app, &admin, &camt054("NTF-2", &[(&eb2, "AM04", "47.88")]))
        .await
        .problem(422, "invalid_request");
    let view = app.get(&admin, &format!("/v1/sepa/batches/{id}")).await;
    assert_eq!(
        (
            &view.body["status"],
            &view.body["collected"],
            &view.body["came_back"]
        ),
        (&json!("settled"), &json!("0.00"), &json!("47.88"))
    );
    app.clock.set(paris("2027-02-01") + Duration::hours(10));
    let none = app
        .post_json(
            &admin,
            "/v1/sepa/batches",
            None,
            &json!({"collection_date": "2027-02-03"}),
        )
        .await;
    none.problem(422, "invalid_request");
    app.assert_ledger_verifies(&admin).await;
}

#[actix_web::test]
async fn a_return_md01_after_settlement_revokes_the_mandate() {
    let (app, _conn) = seeded().await;
    app.clock.set(paris("2026-11-24") + Duration::hours(10));
    let admin = app.admin().await;
    let (c, mandate) = collected_customer(&app, &admin, "GL-MD-1").await;
    app.run_job("billing", paris("2026-11-24") + Duration::hours(12))
        .await;
    app.run_job("invoicing", paris("2026-11-24") + Duration::hours(12))
        .await;
    let batch = submitted_batch(&app, &admin, "2026-12-24").await;
    let id = batch["id"].as_str().unwrap();
    app.clock.set(paris("2026-12-28") + Duration::hours(10));
    settled(&app, &admin, id, "2026-12-24").await;
    let bank = platform(&app, &admin, BANK).await;
    let e2e = e2e_of(&batch, c);
    let ntf = camt054("NTF-MD01", &[(&e2e, "MD01", "47.88")]);
    let returned = import(&app, &admin, &ntf).await;
    assert_eq!(returned.status, 201, "{}", returned.text);
    assert_eq!(returned.body["applied"][0]["action"], "mandate_revoked");
    assert_eq!(platform(&app, &admin, BANK).await, bank - dec("47.88"));
    assert_eq!(balance(&app, &admin, c, "411").await, dec("47.88"));
    let m = app.get(&admin, &format!("/v1/mandates/{mandate}")).await;
    assert_eq!(m.body["status"], "revoked");
    // the payment stays as received; its return is on the invoice
    let payments = app
        .get(&admin, &format!("/v1/payments?customer_id={c}"))
        .await;
    assert_eq!(payments.body["items"][0]["method"], "direct_debit");
    let again = import(&app, &admin, &ntf).await;
    assert_eq!((again.status, &again.body), (200, &returned.body));
    assert_eq!(
        platform(&app, &admin, BANK).await,
        bank - dec("47.88"),
        "imported once"
    );
    let fibre = json!({"customer_id": c, "offer_code": "ip_access_fibre"});
    app.post_json(&admin, "/v1/subscriptions", None, &fibre)
        .await
        .problem(422, "sepa_mandate_required");
    app.assert_ledger_verifies(&admin).await;
}

#[actix_web::test]
async fn a_returned_collection_takes_back_the_tickets_and_the_support_vip_it_paid_for() {
    let (app, _conn) = seeded().await;
    app.clock.set(paris("2026-11-24") + Duration::hours(10));
    let admin = app.admin().await;
    let (c, _) = collected_customer(&app, &admin, "GL-RT-1").await;
    let vip = app
        .post_json(
            &admin,
            "/v1/subscriptions",
            None,
            &json!({"customer_id": c, "offer_code": "support_vip_annual"}),
        )
        .await;
    assert_eq!(vip.status, 201, "{}", vip.text);
    let vip = vip.body["id"].as_str().unwrap().to_string();
    crate::helpers::buy_tickets(&app, &admin, c, 3, None).await;
    app.run_job("billing", paris("2026-11-24") + Duration::hours(12))
        .await;
    app.run_job("invoicing", paris("2026-11-24") + Duration::hours(12))
        .await;
    let batch = submitted_batch(&app, &admin, "2026-12-24").await;
    let e2e: Vec<String> = batch["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["end_to_end_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        e2e.len(),
        2,
        "the purchase's invoice and the run's: {batch}"
    );
    app.clock.set(paris("2026-12-28") + Duration::hours(10));
    settled(&app, &admin, batch["id"].as_str().unwrap(), "2026-12-24").await;
    let state = || {
        let (app, admin, vip) = (&app, admin.clone(), vip.clone());
        async move {
            let sub = app.get(&admin, &format!("/v1/subscriptions/{vip}")).await;
            let balances = app
                .get(&admin, &format!("/v1/customers/{c}/balances"))
                .await;
            let cap = app
                .get(
                    &admin,
                    &format!("/v1/customers/{c}/liability-cap?on=2027-06-30"),
                )
                .await;
            (
                sub.body["status"].as_str().unwrap().to_string(),
                sub.body["anchor_date"].clone(),
                balances.body["tickets"]["available"].clone(),
                balance(app, &admin, c, "TICKET-WALLET").await,
                balance(app, &admin, c, "TICKET-PENDING").await,
                cap.body["amount"].as_str().unwrap().to_string(),
            )
        }
    };
    let paid = state().await;
    assert_eq!(
        (&paid.0[..], &paid.1, &paid.2, paid.3, paid.4),
        (
            "active",
            &json!("2026-12-24"),
            &json!(3),
            dec("3"),
            dec("0")
        )
    );
    assert_ne!(
        paid.5, "0.00",
        "tickets and Support VIP are assistance fees"
    );

    // both collections come back for lack of funds (AM04): what they paid for waits again
    let returns: Vec<(&str, &str, &str)> = batch["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["end_to_end_id"].as_str().unwrap(),
                "AM04",
                x["amount"].as_str().unwrap(),
            )
        })
        .collect();
    app.clock.set(paris("2026-12-30") + Duration::hours(10));
    let returned = import(&app, &admin, &camt054("NTF-RT-1", &returns)).await;
    assert_eq!(returned.status, 201, "{}", returned.text);
    let unpaid = state().await;
    assert_eq!(
        (
            &unpaid.0[..],
            &unpaid.1,
            &unpaid.2,
            unpaid.3,
            unpaid.4,
            &unpaid.5[..]
        ),
        (
            "pending_payment",
            &Value::Null,
            &json!(0),
            dec("0"),
            dec("3"),
            "0.00"
        ),
        "the payments came back: nothing was paid"
    );
    let events = app.get(&admin, &format!("/v1/subscriptions/{vip}")).await;
    assert!(
        events.text.contains("activation_reversed"),
        "{}",
        events.text
    );

    // presented again and paid: the tickets and Support VIP come back, from the new date
    let again = submitted_batch(&app, &admin, "2027-01-08").await;
    app.clock.set(paris("2027-01-11") + Duration::hours(10));
    settled(&app, &admin, again["id"].as_str().unwrap(), "2027-01-08").await;
    let repaid = state().await;
    assert_eq!(
        (&repaid.0[..], &repaid.1, &repaid.2, repaid.3, repaid.4),
        (
            "active",
            &json!("2027-01-08"),
            &json!(3),
            dec("3"),
            dec("0")
        )
    );
    assert_eq!(repaid.5, paid.5, "counted once");
    app.assert_ledger_verifies(&admin).await;
}

use std::path::PathBuf;

use crate::helpers::TestApp;

/// The checked-in contract is what the code generates.
#[test]
fn checked_in_contract_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let generated = grandlivre::openapi::document_json();
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        panic!(
            "openapi/openapi.json differs from the contract the code generates.\n\
             Regenerate it with:\n\n    cargo run --quiet -- openapi > openapi/openapi.json\n\n\
             and review the diff."
        );
    }
}

#[test]
fn contract_documents_every_route_roles_and_problems() {
    let doc: serde_json::Value =
        serde_json::from_str(&grandlivre::openapi::document_json()).expect("json");
    assert!(doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1")));
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1/ledger/accounts",
        "/v1/ledger/accounts/{id}",
        "/v1/ledger/accounts/{id}/postings",
        "/v1/ledger/transactions",
        "/v1/ledger/transactions/{id}",
        "/v1/ledger/transactions/{id}/reverse",
        "/v1/ledger/verify",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the contract");
    }
    let post = &doc["paths"]["/v1/ledger/transactions"]["post"];
    assert_eq!(post["operationId"], "post_transaction");
    assert_eq!(
        post["security"][0]["bearer"],
        serde_json::json!(["admin", "finance"])
    );
    assert_eq!(
        post["responses"]["422"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[actix_web::test]
async fn served_contract_is_the_generated_one() {
    let app = TestApp::spawn().await;
    let reply = app
        .send(actix_web::test::TestRequest::get().uri("/openapi.json"))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text, grandlivre::openapi::document_json());
}

/// Every `$ref` of the contract names a component it defines (a tool reading the contract
/// stops at the first that does not).
#[test]
fn every_reference_resolves() {
    fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v.as_str()) {
                        ("$ref", Some(target)) => out.push(target),
                        _ => refs(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let doc: serde_json::Value =
        serde_json::from_str(&grandlivre::openapi::document_json()).expect("the contract");
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 50, "{}", found.len());
    for target in found {
        let pointer = target.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
    }
}

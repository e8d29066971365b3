use super::*;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn mandate() -> NewMandate {
    NewMandate {
        reference: "GL-2026-000123".into(),
        signed_on: d("2026-11-20"),
        debtor_name: " Atelier Dupont SARL ".into(),
        iban: "fr76 3000 6000 0112 3456 7890 189".into(),
        bic: Some("agrifrpp".into()),
        scheme: MandateScheme::B2b,
        payment_type: PaymentType::Recurrent,
    }
}

fn fields_of(e: SepaError) -> Vec<String> {
    match e {
        SepaError::Invalid(errors) => errors.into_iter().map(|e| e.field).collect(),
        other => panic!("not a field error: {other}"),
    }
}

#[test]
fn a_mandate_is_checked_and_normalised() {
    let fields = mandate().validate(d("2026-11-24")).unwrap();
    assert_eq!(fields.account.iban, "FR7630006000011234567890189");
    assert_eq!(fields.account.bic.as_deref(), Some("AGRIFRPP"));
    assert_eq!(fields.account.debtor_name, "Atelier Dupont SARL");
    assert_eq!(fields.scheme, MandateScheme::B2b);
    // signed today is fine, tomorrow is not
    assert!(mandate().validate(d("2026-11-20")).is_ok());
    let future = mandate().validate(d("2026-11-19")).unwrap_err();
    assert_eq!(fields_of(future), ["signed_on"]);
}

#[test]
fn ibans_are_checked_by_their_check_digits_and_their_countrys_structure() {
    for valid in [
        "FR7630006000011234567890189",
        "FR1420041010050500013M02606",
        "DE89370400440532013000",
        "BE68539007547034",
    ] {
        assert!(check_iban(valid).is_ok(), "{valid}");
    }
    for (invalid, why) in [
        ("FR7630006000011234567890188", "check digits"),
        ("FR763000600001123456789018", "length"),
        (
            "DE8937O400440532013000",
            "structure: a letter where the BBAN has digits",
        ),
        ("XX7630006000011234567890189", "no such country"),
        ("FR76 3000 6000 0112 3456 7890 18!", "character"),
    ] {
        assert!(check_iban(invalid).is_err(), "{invalid}: {why}");
    }
    // a valid IBAN outside the SEPA area
    assert!(check_iban("BR1800360305000010009795493C1")
        .unwrap_err()
        .contains("SEPA"));
}

#[test]
fn every_offending_field_is_named_at_once() {
    let bad = NewMandate {
        reference: "/GL-1".into(),
        signed_on: d("2030-01-01"),
        debtor_name: "   ".into(),
        iban: "FR7630006000011234567890188".into(),
        bic: Some("AGRI".into()),
        scheme: MandateScheme::Core,
        payment_type: PaymentType::OneOff,
    };
    assert_eq!(
        fields_of(bad.validate(d("2026-11-24")).unwrap_err()),
        ["reference", "signed_on", "debtor_name", "iban", "bic"]
    );
}

#[test]
fn references_hold_35_characters_of_the_sepa_set() {
    assert!(check_reference("GL-2026/000123 (renewal) +1").is_ok());
    assert!(check_reference(&"A".repeat(35)).is_ok());
    assert!(check_reference(&"A".repeat(36)).is_err());
    for bad in [
        "",
        "GL_2026",
        "GL-2026-é",
        "/GL",
        "GL/",
        "GL//1",
        " GL",
        "GL&1",
    ] {
        assert!(check_reference(bad).is_err(), "{bad:?}");
    }
    // counted in characters, never bytes: 35 accented letters are refused for their set,
    // not mis-measured
    assert!(check_reference(&"é".repeat(20))
        .unwrap_err()
        .contains("`é`"));
}

#[test]
fn an_amendment_names_what_it_replaces() {
    let current = DebtorAccount {
        debtor_name: "Atelier Dupont SARL".into(),
        iban: "FR7630006000011234567890189".into(),
        bic: Some("AGRIFRPP".into()),
    };
    let new_account = MandateAmendmentRequest {
        iban: Some("FR1420041010050500013M02606".into()),
        bic: None,
        debtor_name: None,
    };
    let a = new_account.amend(&current).unwrap();
    assert_eq!(a.new.iban, "FR1420041010050500013M02606");
    assert_eq!(a.new.bic, None, "the BIC follows the account");
    assert_eq!(
        a.previous_iban.as_deref(),
        Some("FR7630006000011234567890189")
    );
    assert!(a.bic_changed);
    assert_eq!(a.previous_bic.as_deref(), Some("AGRIFRPP"));
    assert_eq!(a.previous_debtor_name, None);

    let renamed = MandateAmendmentRequest {
        iban: None,
        bic: None,
        debtor_name: Some("Dupont et Fils SARL".into()),
    };
    let a = renamed.amend(&current).unwrap();
    assert_eq!(a.new.bic.as_deref(), Some("AGRIFRPP"), "kept");
    assert_eq!(a.previous_iban, None);
    assert!(!a.bic_changed);
    assert_eq!(
        a.previous_debtor_name.as_deref(),
        Some("Atelier Dupont SARL")
    );

    let nothing = MandateAmendmentRequest {
        iban: Some("FR76 3000 6000 0112 3456 7890 189".into()),
        bic: Some("AGRIFRPP".into()),
        debtor_name: None,
    };
    assert_eq!(fields_of(nothing.amend(&current).unwrap_err()), ["body"]);
    let empty = MandateAmendmentRequest {
        iban: None,
        bic: None,
        debtor_name: None,
    };
    assert_eq!(fields_of(empty.amend(&current).unwrap_err()), ["body"]);
    let bad = MandateAmendmentRequest {
        iban: Some("FR7630006000011234567890188".into()),
        bic: None,
        debtor_name: Some(String::new()),
    };
    assert_eq!(
        fields_of(bad.amend(&current).unwrap_err()),
        ["iban", "debtor_name"]
    );
}

#[test]
fn a_mandate_lapses_36_months_after_its_last_use() {
    assert_eq!(lapses_after(d("2023-11-24")), d("2026-11-23"));
    assert!(!has_lapsed(d("2023-11-24"), d("2026-11-23")));
    assert!(has_lapsed(d("2023-11-24"), d("2026-11-24")));
    // month ends clamp as PostgreSQL's `date + interval '36 months'` does
    assert_eq!(lapses_after(d("2024-02-29")), d("2027-02-27"));
    assert!(has_lapsed(d("2024-02-29"), d("2027-02-28")));
    assert_eq!(lapses_after(d("2023-05-31")), d("2026-05-30"));
}

#[test]
fn the_lapse_cutoff_says_what_has_lapsed_says() {
    for today in [
        "2026-11-24",
        "2027-02-28",
        "2027-03-01",
        "2028-02-29",
        "2026-05-31",
        "2026-03-31",
    ] {
        let today = d(today);
        let cutoff = lapse_cutoff(today);
        let mut day = cutoff - chrono::Duration::days(40);
        while day < cutoff + chrono::Duration::days(40) {
            assert_eq!(has_lapsed(day, today), day <= cutoff, "{day} on {today}");
            day = day.succ_opt().unwrap();
        }
    }
    assert_eq!(lapse_cutoff(d("2026-11-24")), d("2023-11-24"));
}

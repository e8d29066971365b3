//! The creditor every collection names: the service's own name, structured address,
//! account (IBAN, BIC) and SEPA creditor identifier (ICS, "identifiant créancier SEPA"),
//! from the configuration (`--creditor`, `GRANDLIVRE_CREDITOR`), the demo creditor by
//! default. Set once at start-up, as the seller of `invoicing::legal`.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::collection::PRENOTIFICATION_DAYS;
use super::{check_bic, check_iban, check_name};
use crate::customers::Address;
use crate::error::FieldError;

/// The creditor as configured (JSON of `--creditor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditorConfig {
    /// At most 70 characters.
    pub name: String,
    pub address: Address,
    pub iban: String,
    pub bic: String,
    /// The French ICS: `FR`, 2 check digits, a 3-character business code (`ZZZ` unless the
    /// creditor chose one), a 6-character national identifier.
    pub creditor_id: String,
    /// Days between an invoice (the debtor's pre-notification) and its collection, when
    /// the debtors agreed to less than 14: 1 to 14.
    #[serde(default)]
    pub prenotification_days: Option<u32>,
}

/// The creditor, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creditor {
    pub name: String,
    pub address: Address,
    /// Electronic format.
    pub iban: String,
    pub bic: String,
    /// Normalised (upper case, no spaces).
    pub creditor_id: String,
    /// Days an invoice is issued at least before its collection (its pre-notification).
    pub prenotification_days: u32,
}

/// A French creditor identifier (ICS): `FRkkBBBnnnnnn`, 13 characters, whose check digits
/// `kk` are EPC262-08's: ISO 7064 mod 97-10 over the national identifier followed by the
/// country code and `00`, the business code `BBB` left out (unlike an IBAN, whose check
/// covers every character). Answers it normalised.
pub fn check_french_ics(raw: &str) -> Result<String, String> {
    let ics: String = raw
        .chars()
        .filter(|c| *c != ' ')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let shaped = ics.chars().count() == 13
        && ics.starts_with("FR")
        && ics.chars().skip(2).take(2).all(|c| c.is_ascii_digit())
        && ics.chars().skip(4).all(|c| c.is_ascii_alphanumeric());
    if !shaped {
        return Err(
            "a French creditor identifier is FR, 2 check digits, a 3-character business code and a 6-character national identifier (13 characters, such as FR72ZZZ123456)"
                .into(),
        );
    }
    sepa::validate_creditor_id(&ics)
        .map(|ci| ci.as_str().to_string())
        .map_err(|e| format!("not a valid creditor identifier: {e}"))
}

impl CreditorConfig {
    /// Every field checked, each offending one named.
    pub fn check(&self) -> Result<Creditor, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut field = |name: &str, r: Result<String, String>| {
            r.map_err(|e| errors.push(FieldError::new(name, e))).ok()
        };
        let name = field("name", check_name(&self.name));
        let iban = field("iban", check_iban(&self.iban));
        let bic = field("bic", check_bic(&self.bic));
        let creditor_id = field("creditor_id", check_french_ics(&self.creditor_id));
        let days = self.prenotification_days.unwrap_or(PRENOTIFICATION_DAYS);
        if !(1..=PRENOTIFICATION_DAYS).contains(&days) {
            errors.push(FieldError::new(
                "prenotification_days",
                format!("1 to {PRENOTIFICATION_DAYS} (the rulebook's default is the most)"),
            ));
        }
        self.address.check("address", &mut errors);
        match (name, iban, bic, creditor_id) {
            (Some(name), Some(iban), Some(bic), Some(creditor_id)) if errors.is_empty() => {
                Ok(Creditor {
                    name,
                    address: self.address.clone(),
                    iban,
                    bic,
                    creditor_id,
                    prenotification_days: days,
                })
            }
            _ => Err(errors),
        }
    }
}

impl Creditor {
    /// The demo creditor, the default: the demo seller's name and address, an example
    /// account and ICS.
    pub fn demo() -> Creditor {
        Creditor {
            name: "Grandlivre Services SAS".into(),
            address: Address {
                street_number: Some("8".into()),
                street: "Rue du Faubourg Montmartre".into(),
                postcode: "75009".into(),
                town: "Paris".into(),
                country: "FR".into(),
            },
            iban: "FR7630004000031234567890143".into(),
            bic: "BNPAFRPP".into(),
            creditor_id: "FR72ZZZ123456".into(),
            prenotification_days: PRENOTIFICATION_DAYS,
        }
    }

    /// The creditor of `--creditor` (a [`CreditorConfig`] as JSON), or the demo creditor.
    pub fn from_config(json: Option<&str>) -> Result<Creditor, String> {
        let Some(json) = json else {
            return Ok(Creditor::demo());
        };
        let config: CreditorConfig =
            serde_json::from_str(json).map_err(|e| format!("--creditor: {e}"))?;
        config.check().map_err(|errors| {
            let fields: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect();
            format!("--creditor: {}", fields.join("; "))
        })
    }
}

static CREDITOR: OnceLock<Creditor> = OnceLock::new();

/// Sets the process's creditor, once, at start-up (later calls change nothing).
pub fn configure(creditor: Creditor) {
    let _ = CREDITOR.set(creditor);
}

/// The process's creditor: as configured, or the demo creditor.
pub fn creditor() -> &'static Creditor {
    CREDITOR.get_or_init(Creditor::demo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_creditor_identifiers_follow_their_own_check_digit_rule() {
        // computed independently: 98 - (national id, "FR", "00" as digits) mod 97
        for valid in [
            "FR72ZZZ123456",
            "FR76ZZZ000000",
            "FR22ZZZABC123",
            "fr19 zzz 654321",
        ] {
            assert!(check_french_ics(valid).is_ok(), "{valid}");
        }
        assert_eq!(
            check_french_ics("fr19 zzz 654321").unwrap(),
            "FR19ZZZ654321"
        );
        // the business code is outside the check: another one keeps the digits valid
        assert!(check_french_ics("FR72ABC123456").is_ok());
        for invalid in ["FR73ZZZ123456", "FR72ZZZ123457", "FR27ZZZ123456"] {
            assert!(
                check_french_ics(invalid)
                    .unwrap_err()
                    .contains("check digits"),
                "{invalid}"
            );
        }
        // "FR20ZZZ123456" passes the IBAN rule (mod 97 of the rearranged string is 1) and
        // is no valid ICS: the IBAN rule folds the business code into the check
        assert_eq!(iban_rule_remainder("FR20ZZZ123456"), 1);
        assert!(check_french_ics("FR20ZZZ123456").is_err());
        for misshaped in [
            "DE98ZZZ09999999999",
            "FR72ZZZ12345",
            "FR72ZZZ1234567",
            "FRAAZZZ123456",
            "FR72ZZZ12345-",
        ] {
            assert!(check_french_ics(misshaped).is_err(), "{misshaped}");
        }
    }

    /// The IBAN rule's remainder (ISO 13616): the first four characters moved to the end,
    /// letters as 10..35, mod 97.
    fn iban_rule_remainder(s: &str) -> u32 {
        let rearranged = format!("{}{}", &s[4..], &s[..4]);
        rearranged.chars().fold(0, |r, c| {
            let d = c.to_digit(36).unwrap();
            if d < 10 {
                (r * 10 + d) % 97
            } else {
                (r * 100 + d) % 97
            }
        })
    }

    #[test]
    fn the_demo_creditor_is_valid_and_a_configured_one_is_checked() {
        let demo = Creditor::demo();
        let config = CreditorConfig {
            name: demo.name.clone(),
            address: demo.address.clone(),
            iban: demo.iban.clone(),
            bic: demo.bic.clone(),
            creditor_id: demo.creditor_id.clone(),
            prenotification_days: None,
        };
        assert_eq!(config.check(), Ok(demo.clone()));
        let shorter = CreditorConfig {
            prenotification_days: Some(5),
            ..config.clone()
        };
        assert_eq!(shorter.check().map(|c| c.prenotification_days), Ok(5));
        for days in [0, 15] {
            let refused = CreditorConfig {
                prenotification_days: Some(days),
                ..config.clone()
            };
            assert_eq!(
                refused.check().map_err(|e| e[0].field.clone()),
                Err("prenotification_days".to_string())
            );
        }
        assert_eq!(Creditor::from_config(None), Ok(demo));
        let json = serde_json::to_string(&config).unwrap();
        let bad = json
            .replace("FR7630004000031234567890143", "FR7630004000031234567890144")
            .replace("FR72ZZZ", "FR71ZZZ")
            .replace("75009", "7500");
        let refused = Creditor::from_config(Some(&bad)).unwrap_err();
        for field in ["iban", "creditor_id", "address.postcode"] {
            assert!(refused.contains(field), "{field} in {refused}");
        }
        assert!(Creditor::from_config(Some("{}")).is_err());
    }
}

//! The legal mentions of a French B2B invoice (DOMAIN.md, "Invoices and credit notes"):
//! who sells, who buys, and the terms, frozen on the invoice when it is issued so that a
//! later change of the customer's address or of the service's configuration never changes
//! an issued invoice. The seller comes from the service's configuration (`--seller`,
//! `--late-payment-rate`), the demo seller by default.

use std::sync::OnceLock;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::customers::{check_siren, check_vat, Address};
use crate::error::FieldError;
use crate::money::DecimalString;

/// The fixed indemnity for recovery costs owed by a late B2B payer (Code de commerce
/// L441-10, D441-5): 40 €.
pub const RECOVERY_INDEMNITY_EUR: Decimal = Decimal::from_parts(4000, 0, 0, false, 2);

/// The late-payment penalty rate unless configured: the ECB's main refinancing rate
/// (2.15 % since June 2025) plus 10 points, the usual contractual rate.
pub const DEFAULT_LATE_PAYMENT_RATE: Decimal = Decimal::from_parts(1215, 0, 0, false, 4);

/// A seller or a buyer as an invoice names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "legal_name": "Atelier Dupont SARL", "siren": "732829320", "vat_number": "FR44732829320",
    "address": {"street_number": "12", "street": "Rue de la Paix", "postcode": "75002", "town": "Paris", "country": "FR"}
}))]
pub struct Party {
    pub legal_name: String,
    /// 9 digits.
    pub siren: String,
    /// The intra-EU VAT number, when it has one.
    pub vat_number: Option<String>,
    pub address: Address,
}

impl Party {
    /// Refuses a party an invoice could not name: blank or overlong name, invalid SIREN or
    /// VAT number, incomplete address.
    pub fn check(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = self.legal_name.trim().chars().count();
        if name == 0 || name > 200 || self.legal_name.chars().any(char::is_control) {
            errors.push(FieldError::new("legal_name", "1 to 200 characters"));
        }
        if let Err(e) = check_siren(&self.siren) {
            errors.push(FieldError::new("siren", e));
        }
        if let Some(vat) = &self.vat_number {
            if let Err(e) = check_vat(vat, &self.siren) {
                errors.push(FieldError::new("vat_number", e));
            }
        }
        self.address.check("address", &mut errors);
        match errors.is_empty() {
            true => Ok(()),
            false => Err(errors),
        }
    }
}

/// The category of the operations invoiced (required since the e-invoicing reform).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationCategory {
    /// Services (prestations de services): everything this service sells.
    Services,
}

/// The terms an invoice states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegalTerms {
    /// Annual rate of the penalties owed from the day after the due date, as a fraction.
    #[schema(example = "0.1215")]
    pub late_payment_penalty_rate: DecimalString,
    /// EUR owed per late invoice for recovery costs, on top of the penalties.
    #[schema(example = "40.00")]
    pub recovery_indemnity: DecimalString,
    pub operation_category: OperationCategory,
    /// Days from issue to due date.
    #[schema(example = 30)]
    pub payment_days: u32,
}

/// What an invoice carries of its seller, its buyer and its terms, as issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegalMentions {
    pub seller: Party,
    pub buyer: Party,
    pub legal: LegalTerms,
}

/// The service's own identity and terms, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seller {
    pub party: Party,
    pub late_payment_rate: Decimal,
}

impl Seller {
    /// The demo seller, the default.
    pub fn demo() -> Seller {
        Seller {
            party: Party {
                legal_name: "Grandlivre Services SAS".into(),
                siren: "900000035".into(),
                vat_number: Some("FR73900000035".into()),
                address: Address {
                    street_number: Some("8".into()),
                    street: "Rue du Faubourg Montmartre".into(),
                    postcode: "75009".into(),
                    town: "Paris".into(),
                    country: "FR".into(),
                },
            },
            late_payment_rate: DEFAULT_LATE_PAYMENT_RATE,
        }
    }

    /// The seller of `--seller` (a [`Party`] as JSON, or the demo seller) at
    /// `--late-payment-rate` (a fraction from 0 to 1, 4 decimals at most).
    pub fn from_config(
        party: Option<&str>,
        late_payment_rate: Option<Decimal>,
    ) -> Result<Seller, String> {
        let demo = Seller::demo();
        let party = match party {
            None => demo.party,
            Some(json) => {
                let party: Party =
                    serde_json::from_str(json).map_err(|e| format!("--seller: {e}"))?;
                party.check().map_err(|errors| {
                    let fields: Vec<String> = errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.message))
                        .collect();
                    format!("--seller: {}", fields.join("; "))
                })?;
                party
            }
        };
        let rate = late_payment_rate.unwrap_or(demo.late_payment_rate);
        if rate < Decimal::ZERO || rate > Decimal::ONE || rate.normalize().scale() > 4 {
            return Err("--late-payment-rate: a fraction from 0 to 1, 4 decimals at most".into());
        }
        Ok(Seller {
            party,
            late_payment_rate: rate,
        })
    }

    /// What an invoice issued now to `buyer`, payable in `payment_days`, states.
    pub fn mentions(&self, buyer: Party, payment_days: u32) -> LegalMentions {
        LegalMentions {
            seller: self.party.clone(),
            buyer,
            legal: LegalTerms {
                late_payment_penalty_rate: DecimalString(self.late_payment_rate.normalize()),
                recovery_indemnity: DecimalString(RECOVERY_INDEMNITY_EUR),
                operation_category: OperationCategory::Services,
                payment_days,
            },
        }
    }
}

static SELLER: OnceLock<Seller> = OnceLock::new();

/// Sets the process's seller, once, at start-up (later calls change nothing).
pub fn configure(seller: Seller) {
    let _ = SELLER.set(seller);
}

/// The process's seller: as configured, or the demo seller.
pub fn seller() -> &'static Seller {
    SELLER.get_or_init(Seller::demo)
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    #[test]
    fn the_demo_seller_is_a_valid_party() {
        assert_eq!(Seller::demo().party.check(), Ok(()));
        assert_eq!(Seller::from_config(None, None), Ok(Seller::demo()));
    }

    #[test]
    fn a_configured_seller_is_checked() {
        let json = r#"{"legal_name": "Atelier Dupont SARL", "siren": "732829320",
            "vat_number": "FR44732829320", "address": {"street_number": null,
            "street": "Rue de la Paix", "postcode": "75002", "town": "Paris", "country": "FR"}}"#;
        let seller = Seller::from_config(Some(json), Some(dec!(0.10))).unwrap();
        assert_eq!(seller.party.siren, "732829320");
        assert_eq!(seller.late_payment_rate, dec!(0.10));
        let bad = json.replace("FR44", "FR45").replace("75002", "7500");
        let refused = Seller::from_config(Some(&bad), None).unwrap_err();
        assert!(
            refused.contains("vat_number") && refused.contains("address.postcode"),
            "{refused}"
        );
        assert!(Seller::from_config(None, Some(dec!(1.5))).is_err());
        assert!(Seller::from_config(None, Some(dec!(0.12345))).is_err());
        assert!(Seller::from_config(Some("{}"), None).is_err());
    }

    #[test]
    fn mentions_carry_the_fixed_indemnity_and_the_category() {
        let demo = Seller::demo();
        let m = demo.mentions(demo.party.clone(), 30);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["legal"]["recovery_indemnity"], "40.00");
        assert_eq!(json["legal"]["late_payment_penalty_rate"], "0.1215");
        assert_eq!(json["legal"]["operation_category"], "services");
        assert_eq!(serde_json::from_value::<LegalMentions>(json).unwrap(), m);
    }
}

//! Customers: French legal identifiers (SIREN, SIRET, intra-EU VAT number) and a
//! structured postal address (required in SEPA messages from November 2026).

pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::FieldError;

/// The Luhn check (used by SIREN and SIRET).
fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn all_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// La Poste's establishments share SIREN 356000000, whose SIRETs use another check.
const LA_POSTE: &str = "356000000";

pub fn check_siren(s: &str) -> Result<(), &'static str> {
    if !all_digits(s, 9) {
        return Err("a SIREN is 9 digits");
    }
    if !luhn(s) {
        return Err("not a valid SIREN (its check digit is wrong)");
    }
    Ok(())
}

pub fn check_siret(s: &str) -> Result<(), &'static str> {
    if !all_digits(s, 14) {
        return Err("a SIRET is 14 digits");
    }
    let valid = if s.starts_with(LA_POSTE) {
        s.bytes().map(|b| u32::from(b - b'0')).sum::<u32>() % 5 == 0
    } else {
        luhn(s)
    };
    if !valid {
        return Err("not a valid SIRET (its check digit is wrong)");
    }
    check_siren(&s[..9]).map_err(|_| "the SIREN part of this SIRET is not valid")
}

/// The French VAT key of a SIREN: `(12 + 3 × (SIREN mod 97)) mod 97`.
pub fn french_vat_key(siren: &str) -> Option<u32> {
    let n: u64 = siren.parse().ok()?;
    Some(((12 + 3 * (n % 97)) % 97) as u32)
}

/// Checks an intra-EU VAT number; a French one must carry the right key and `siren`.
pub fn check_vat(vat: &str, siren: &str) -> Result<(), &'static str> {
    // ASCII first: the slices below are by byte
    let valid_shape = vat.is_ascii()
        && vat.len() >= 4
        && vat.len() <= 15
        && vat[..2].bytes().all(|b| b.is_ascii_uppercase())
        && vat[2..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !valid_shape {
        return Err(
            "an intra-EU VAT number is a 2-letter country code and 2 to 13 letters or digits",
        );
    }
    if let Some(rest) = vat.strip_prefix("FR") {
        if !all_digits(rest, 11) {
            return Err("a French VAT number is FR, a 2-digit key and the 9-digit SIREN");
        }
        if &rest[2..] != siren {
            return Err("the SIREN in this VAT number is not the customer's");
        }
        if rest[..2].parse::<u32>().ok() != french_vat_key(siren) {
            return Err("the key of this French VAT number does not match its SIREN");
        }
    }
    Ok(())
}

fn check_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
}

/// A postal address, structured as SEPA messages need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"street_number": "12", "street": "Rue de la Paix", "postcode": "75002", "town": "Paris", "country": "FR"}))]
pub struct Address {
    /// Building number (`BldgNb`), at most 16 characters.
    #[schema(max_length = 16)]
    pub street_number: Option<String>,
    /// Street name (`StrtNm`), at most 70 characters.
    #[schema(max_length = 70)]
    pub street: String,
    /// Postcode (`PstCd`), at most 16 characters.
    #[schema(max_length = 16)]
    pub postcode: String,
    /// Town (`TwnNm`), at most 35 characters.
    #[schema(max_length = 35)]
    pub town: String,
    /// ISO 3166-1 alpha-2 country code.
    #[schema(example = "FR", max_length = 2)]
    pub country: String,
}

impl Address {
    pub(crate) fn check(&self, prefix: &str, errors: &mut Vec<FieldError>) {
        let mut bounded = |field: &str, value: &str, max: usize| {
            let n = value.trim().chars().count();
            if n == 0 || n > max {
                errors.push(FieldError::new(
                    format!("{prefix}.{field}"),
                    format!("1 to {max} characters"),
                ));
            }
        };
        bounded("street", &self.street, 70);
        bounded("postcode", &self.postcode, 16);
        bounded("town", &self.town, 35);
        if let Some(n) = &self.street_number {
            bounded("street_number", n, 16);
        }
        if !(self.country.len() == 2 && self.country.bytes().all(|b| b.is_ascii_uppercase())) {
            errors.push(FieldError::new(
                format!("{prefix}.country"),
                "an ISO 3166-1 alpha-2 code such as FR",
            ));
        }
        if self.country == "FR" && !all_digits(self.postcode.trim(), 5) {
            errors.push(FieldError::new(
                format!("{prefix}.postcode"),
                "a French postcode is 5 digits",
            ));
        }
    }
}

crate::text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum CustomerStatus {
        Active = "active",
        Suspended = "suspended",
        Closed = "closed",
    }
}

/// A customer as created: give `siren`, or `siret` (its SIREN is derived), or both.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "legal_name": "Atelier Dupont SARL",
    "siren": "732829320",
    "vat_number": "FR44732829320",
    "billing_email": "compta@atelier-dupont.fr",
    "address": {"street_number": "12", "street": "Rue de la Paix", "postcode": "75002", "town": "Paris", "country": "FR"}
}))]
pub struct NewCustomer {
    #[schema(max_length = 200)]
    pub legal_name: String,
    /// 9 digits (spaces allowed), Luhn-checked.
    #[schema(max_length = 64)]
    pub siren: Option<String>,
    /// 14 digits (spaces allowed), Luhn-checked; its first 9 are the SIREN.
    #[schema(max_length = 64)]
    pub siret: Option<String>,
    /// An intra-EU VAT number; a French one's key is checked against the SIREN.
    #[schema(max_length = 64)]
    pub vat_number: Option<String>,
    #[schema(max_length = 254)]
    pub billing_email: String,
    pub address: Address,
}

/// Fields to change; those absent stay as they are. An empty `vat_number` removes it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerPatch {
    #[schema(max_length = 200)]
    pub legal_name: Option<String>,
    #[schema(max_length = 64)]
    pub siren: Option<String>,
    #[schema(max_length = 64)]
    pub siret: Option<String>,
    #[schema(max_length = 64)]
    pub vat_number: Option<String>,
    #[schema(max_length = 254)]
    pub billing_email: Option<String>,
    pub address: Option<Address>,
    pub status: Option<CustomerStatus>,
}

impl CustomerPatch {
    /// The customer `current` with this patch applied (not yet checked).
    pub fn apply(&self, current: CustomerView) -> NewCustomer {
        let p = self.clone();
        // a new SIRET without a SIREN carries its own SIREN
        let siren = match (&p.siren, &p.siret) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(_)) => None,
            (None, None) => Some(current.siren),
        };
        NewCustomer {
            legal_name: p.legal_name.unwrap_or(current.legal_name),
            siren,
            siret: p.siret.or(current.siret),
            vat_number: match p.vat_number {
                Some(v) if v.trim().is_empty() => None,
                Some(v) => Some(v),
                None => current.vat_number,
            },
            billing_email: p.billing_email.unwrap_or(current.billing_email),
            address: p.address.unwrap_or(current.address),
        }
    }
}

/// Why a patch may not touch a closed customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedRefusal {
    /// A closed customer is read-only: only reopening it changes anything.
    Closed,
    /// Reopening a closed customer is for whoever may (an admin).
    ReopenNotAllowed,
}

impl CustomerPatch {
    /// Whether this patch may be applied to a customer in `current` status: any patch
    /// while it is not closed; while it is closed, only one that reopens it (sets another
    /// status, other fields possibly with it), and only when `may_reopen`.
    pub fn allowed_on(
        &self,
        current: CustomerStatus,
        may_reopen: bool,
    ) -> Result<(), ClosedRefusal> {
        if current != CustomerStatus::Closed {
            return Ok(());
        }
        match self.status {
            Some(s) if s != CustomerStatus::Closed && may_reopen => Ok(()),
            Some(s) if s != CustomerStatus::Closed => Err(ClosedRefusal::ReopenNotAllowed),
            _ => Err(ClosedRefusal::Closed),
        }
    }
}

/// The checked form of a customer's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerFields {
    pub legal_name: String,
    pub siren: String,
    pub siret: Option<String>,
    pub vat_number: Option<String>,
    pub billing_email: String,
    pub address: Address,
}

impl NewCustomer {
    /// Checks every field and names each one that is wrong.
    pub fn validate(self) -> Result<CustomerFields, Vec<FieldError>> {
        let mut errors = Vec::new();
        let legal_name = self.legal_name.trim().to_string();
        if legal_name.is_empty() || legal_name.chars().count() > 200 {
            errors.push(FieldError::new("legal_name", "1 to 200 characters"));
        }
        let siret = self.siret.map(|s| s.replace(' ', ""));
        let mut siren = self.siren.map(|s| s.replace(' ', ""));
        if let Some(s) = &siret {
            match check_siret(s) {
                Err(e) => errors.push(FieldError::new("siret", e)),
                Ok(()) => match &siren {
                    Some(given) if given != &s[..9] => errors.push(FieldError::new(
                        "siret",
                        "its first 9 digits must be the SIREN",
                    )),
                    _ => siren = Some(s[..9].to_string()),
                },
            }
        }
        match &siren {
            None if siret.is_none() => {
                errors.push(FieldError::new("siren", "give the SIREN or the SIRET"))
            }
            Some(s) => {
                if let Err(e) = check_siren(s) {
                    errors.push(FieldError::new("siren", e));
                }
            }
            None => {}
        }
        let vat_number = self
            .vat_number
            .map(|v| v.replace(' ', "").to_ascii_uppercase());
        if let (Some(v), Some(s)) = (&vat_number, &siren) {
            if let Err(e) = check_vat(v, s) {
                errors.push(FieldError::new("vat_number", e));
            }
        }
        let billing_email = self.billing_email.trim().to_string();
        if !check_email(&billing_email) {
            errors.push(FieldError::new(
                "billing_email",
                "an email address such as compta@example.fr",
            ));
        }
        self.address.check("address", &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CustomerFields {
            legal_name,
            siren: siren.unwrap_or_default(),
            siret,
            vat_number,
            billing_email,
            address: Address {
                street_number: self.address.street_number.map(|s| s.trim().to_string()),
                street: self.address.street.trim().to_string(),
                postcode: self.address.postcode.trim().to_string(),
                town: self.address.town.trim().to_string(),
                country: self.address.country,
            },
        })
    }
}

/// A customer as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CustomerView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub legal_name: String,
    pub siren: String,
    pub siret: Option<String>,
    pub vat_number: Option<String>,
    pub billing_email: String,
    pub address: Address,
    pub status: CustomerStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_customer_takes_only_a_patch_that_reopens_it() {
        let patch = |status: Option<CustomerStatus>| CustomerPatch {
            legal_name: Some("Renamed SARL".into()),
            siren: None,
            siret: None,
            vat_number: None,
            billing_email: None,
            address: None,
            status,
        };
        use CustomerStatus::*;
        for current in [Active, Suspended] {
            for status in [None, Some(Active), Some(Suspended), Some(Closed)] {
                assert_eq!(patch(status).allowed_on(current, false), Ok(()));
            }
        }
        assert_eq!(patch(Some(Active)).allowed_on(Closed, true), Ok(()));
        assert_eq!(patch(Some(Suspended)).allowed_on(Closed, true), Ok(()));
        assert_eq!(
            patch(Some(Active)).allowed_on(Closed, false),
            Err(ClosedRefusal::ReopenNotAllowed)
        );
        for may_reopen in [true, false] {
            assert_eq!(
                patch(None).allowed_on(Closed, may_reopen),
                Err(ClosedRefusal::Closed)
            );
            assert_eq!(
                patch(Some(Closed)).allowed_on(Closed, may_reopen),
                Err(ClosedRefusal::Closed)
            );
        }
    }

    #[test]
    fn a_vat_number_of_any_characters_is_refused_not_sliced() {
        for vat in ["\u{200b}\u{200b}", "a\u{ffff}b", "FRé1234567890", "€€"] {
            assert!(check_vat(vat, "732829320").is_err(), "{vat:?}");
        }
    }

    #[test]
    fn siren_siret_and_vat_checks() {
        assert!(check_siren("732829320").is_ok());
        assert!(check_siren("732829321").is_err());
        assert!(check_siren("73282932").is_err());
        assert!(check_siret("73282932000074").is_ok());
        assert!(check_siret("73282932000075").is_err());
        assert!(
            check_siret("35600000000001").is_ok(),
            "La Poste uses its own rule"
        );
        assert_eq!(french_vat_key("732829320"), Some(44));
        assert!(check_vat("FR44732829320", "732829320").is_ok());
        assert!(check_vat("FR45732829320", "732829320").is_err());
        assert!(check_vat("FR44732829320", "542107651").is_err());
        assert!(check_vat("DE123456789", "732829320").is_ok());
        assert!(check_vat("D1", "732829320").is_err());
    }

    #[test]
    fn validation_names_every_wrong_field() {
        let bad = NewCustomer {
            legal_name: " ".into(),
            siren: Some("123456789".into()),
            siret: None,
            vat_number: Some("FR00123456789".into()),
            billing_email: "nobody".into(),
            address: Address {
                street_number: None,
                street: "".into(),
                postcode: "7500".into(),
                town: "Paris".into(),
                country: "fr".into(),
            },
        };
        let fields: Vec<String> = bad
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "legal_name",
                "siren",
                "vat_number",
                "billing_email",
                "address.street",
                "address.country"
            ]
        );
    }
}

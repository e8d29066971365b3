//! The catalog: offers, their entitlements (data, not code that tests offer names) and
//! dated price versions.

pub mod demo;
pub mod store;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;
use crate::money::{fits_columns, DecimalString};

crate::text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum BillingPeriod {
        Month = "month",
        Year = "year",
        /// A one-off sale.
        Once = "once",
        /// Metered use (intervention time).
        PerUse = "per_use",
    }
}

impl BillingPeriod {
    /// Months per period of a recurring offer.
    pub fn months(self) -> Option<u32> {
        match self {
            BillingPeriod::Month => Some(1),
            BillingPeriod::Year => Some(12),
            BillingPeriod::Once | BillingPeriod::PerUse => None,
        }
    }
}

crate::text_enum! {
    /// Whether a price includes VAT.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum PriceBasis {
        /// Excluding VAT.
        Ht = "ht",
        /// Including VAT.
        Ttc = "ttc",
    }
}

crate::text_enum! {
    /// What the service itself sells or prices an offer as: at most one offer has each role.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum CatalogRole {
        /// Tickets are sold at this offer's price (a one-off offer).
        Ticket = "ticket",
        /// Chargeable intervention time is billed at this offer's hourly price (a metered
        /// offer).
        InterventionTime = "intervention_time",
    }
}

/// What an active subscription to the offer gives its holder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Entitlements {
    /// Diagnostics are free (Support VIP).
    pub free_diagnostics: bool,
    /// Assistance is included: no ticket needed (Premium assistance).
    pub assistance_included: bool,
    /// In-scope incidents on the contracted service are free.
    pub maintenance: bool,
    /// Appointments per 12-month period (Assistance+).
    pub appointment_quota: Option<i32>,
    /// The offer appointments beyond the quota are billed at (Assistance+; required with
    /// `appointment_quota`).
    #[schema(example = "appointment")]
    pub overage_offer: Option<String>,
    /// Service credits granted at the start of each 12-month period of the pack, counted
    /// from its own start whatever its parent's terms (Service+; the name is historical).
    pub credits_per_term: Option<DecimalString>,
    /// Unit service credits may be bought while this is held (Service+).
    pub unit_credit_purchase: bool,
    /// The offer unit credits are sold at, per credit (Service+; required with
    /// `unit_credit_purchase`).
    #[schema(example = "service_credit")]
    pub unit_credit_offer: Option<String>,
}

/// An offer of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// 2 to 48 lower-case letters, digits or `_`, starting with a letter.
    #[schema(example = "ip_access_fibre", min_length = 2, max_length = 48)]
    pub code: String,
    #[schema(max_length = 200)]
    pub name: String,
    pub billing_period: BillingPeriod,
    pub price_basis: PriceBasis,
    /// VAT rate as a fraction, e.g. `"0.20"`.
    pub vat_rate: DecimalString,
    /// First term, in months (recurring offers).
    #[serde(default)]
    pub commitment_months: i32,
    /// Each tacit renewal, in months (recurring offers).
    #[serde(default)]
    pub renewal_months: i32,
    /// A cancellation must arrive at least this many days before the term ends.
    #[serde(default)]
    pub notice_days: i32,
    /// Share of the remaining periods' fees billed on early termination, 0 to 1.
    #[serde(default = "one")]
    pub early_termination_rate: DecimalString,
    /// Subscribing needs an active SEPA mandate.
    #[serde(default)]
    pub sepa_required: bool,
    /// The subscription starts when its first invoice is paid.
    #[serde(default)]
    pub activation_on_payment: bool,
    /// An add-on pack: attaches to a parent subscription, shares its terms, ends with it.
    #[serde(default)]
    pub addon: bool,
    #[serde(default)]
    pub entitlements: Entitlements,
    /// Price in service credits, for services sold in euros or in credits.
    #[serde(default)]
    pub credit_price: Option<DecimalString>,
    /// Metered offers bill per started increment of this many minutes.
    #[serde(default)]
    pub increment_minutes: Option<i32>,
    /// What the service sells or prices this offer as, if anything.
    #[serde(default)]
    pub role: Option<CatalogRole>,
}

fn one() -> DecimalString {
    DecimalString(Decimal::ONE)
}

impl Offer {
    /// Checks the offer's rules and names each wrong field.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut err = |f: &str, m: &str| errors.push(FieldError::new(f, m));
        let valid_code = self.code.len() >= 2
            && self.code.len() <= 48
            && self.code.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid_code {
            err(
                "code",
                "2 to 48 lower-case letters, digits or `_`, starting with a letter",
            );
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            err("name", "1 to 200 characters");
        }
        if self.vat_rate.0 < Decimal::ZERO
            || self.vat_rate.0 >= Decimal::ONE
            || self.vat_rate.0.scale() > 4
        {
            err(
                "vat_rate",
                "a fraction from 0 to below 1 with at most 4 decimals, e.g. \"0.20\"",
            );
        }
        if !(Decimal::ZERO..=Decimal::ONE).contains(&self.early_termination_rate.0)
            || self.early_termination_rate.0.scale() > 4
        {
            err(
                "early_termination_rate",
                "a fraction from 0 to 1 with at most 4 decimals",
            );
        }
        if !(0..=365).contains(&self.notice_days) {
            err("notice_days", "0 to 365");
        }
        match self.billing_period.months() {
            Some(months) => {
                let m = months as i32;
                if !(1..=120).contains(&self.commitment_months) || self.commitment_months % m != 0 {
                    err(
                        "commitment_months",
                        "1 to 120, a whole number of billing periods",
                    );
                }
                if !(1..=120).contains(&self.renewal_months) || self.renewal_months % m != 0 {
                    err(
                        "renewal_months",
                        "1 to 120, a whole number of billing periods",
                    );
                }
            }
            None => {
                if self.commitment_months != 0
                    || self.renewal_months != 0
                    || self.addon
                    || self.activation_on_payment
                {
                    err("billing_period", "one-off and metered offers have no terms, are not add-ons and need no activation");
                }
            }
        }
        if self.entitlements.appointment_quota.is_some_and(|q| q <= 0) {
            err("entitlements.appointment_quota", "a positive number");
        }
        if self
            .entitlements
            .credits_per_term
            .as_ref()
            .is_some_and(|c| c.0 <= Decimal::ZERO || c.0.scale() > 2 || !fits_columns(c.0))
        {
            err(
                "entitlements.credits_per_term",
                "a positive number of credits below 10,000,000,000, at most 2 decimals",
            );
        }
        if self
            .credit_price
            .as_ref()
            .is_some_and(|c| c.0 <= Decimal::ZERO || c.0.scale() > 2 || !fits_columns(c.0))
        {
            err(
                "credit_price",
                "a positive number of credits below 10,000,000,000, at most 2 decimals",
            );
        }
        if self
            .increment_minutes
            .is_some_and(|m| !(1..=240).contains(&m))
        {
            err("increment_minutes", "1 to 240");
        }
        let e = &self.entitlements;
        if e.appointment_quota.is_some() != e.overage_offer.is_some() {
            err(
                "entitlements.overage_offer",
                "the offer overage is billed at: required with `appointment_quota`, only with it",
            );
        }
        if e.unit_credit_purchase != e.unit_credit_offer.is_some() {
            err(
                "entitlements.unit_credit_offer",
                "the offer unit credits are sold at: required with `unit_credit_purchase`, only with it",
            );
        }
        match (self.role, self.billing_period) {
            (Some(CatalogRole::Ticket), BillingPeriod::Once)
            | (Some(CatalogRole::InterventionTime), BillingPeriod::PerUse)
            | (None, _) => {}
            (Some(CatalogRole::Ticket), _) => err("role", "tickets are sold by a one-off offer"),
            (Some(CatalogRole::InterventionTime), _) => {
                err("role", "intervention time is priced by a metered offer")
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// One dated price of an offer; the price on a date is the latest version effective on or
/// before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceVersion {
    /// 2000-01-01 to 2100-12-31.
    #[serde(deserialize_with = "crate::input::date")]
    pub effective_from: NaiveDate,
    /// Up to 4 decimals; amounts billed are rounded to the cent.
    #[schema(example = "39.90")]
    pub unit_price: DecimalString,
}

/// An offer as the catalog shows it: with the price in force on the day asked (today in
/// Paris), whose basis (HT or TTC) is the offer's `price_basis`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfferView {
    #[serde(flatten)]
    pub offer: Offer,
    pub current_price: Option<PriceVersion>,
}

/// What [`OfferView`] adds to an offer.
#[derive(ToSchema)]
#[allow(dead_code)]
struct CurrentPrice {
    /// The price version in force today; `null` when the offer has no price yet.
    current_price: Option<PriceVersion>,
}

/// The offer's own schema (closed: as a request it refuses unknown fields) with
/// `current_price` added, rather than an `allOf` that the closed schema would refuse.
impl utoipa::PartialSchema for OfferView {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::Schema;
        use utoipa::openapi::RefOr;
        let (RefOr::T(Schema::Object(mut view)), RefOr::T(Schema::Object(extra))) =
            (Offer::schema(), CurrentPrice::schema())
        else {
            unreachable!("both derive an object schema")
        };
        view.properties.extend(extra.properties);
        view.required.push("current_price".into());
        view.description = Some(
            "An offer as the catalog shows it, with the price in force today (its basis is \
             the offer's `price_basis`)."
                .into(),
        );
        RefOr::T(Schema::Object(view))
    }
}

impl ToSchema for OfferView {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <Offer as ToSchema>::schemas(schemas);
        <CurrentPrice as ToSchema>::schemas(schemas);
    }
}

/// The price in force on `date` among `versions`.
pub fn price_on(versions: &[PriceVersion], date: NaiveDate) -> Option<Decimal> {
    versions
        .iter()
        .filter(|v| v.effective_from <= date)
        .max_by_key(|v| v.effective_from)
        .map(|v| v.unit_price.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn the_latest_version_on_or_before_the_date_wins() {
        let v = |d: &str, p| PriceVersion {
            effective_from: d.parse().unwrap(),
            unit_price: DecimalString(p),
        };
        let versions = [
            v("2026-01-01", dec!(39.90)),
            v("2027-07-01", dec!(42.50)),
            v("2026-06-01", dec!(40)),
        ];
        assert_eq!(price_on(&versions, "2025-12-31".parse().unwrap()), None);
        assert_eq!(
            price_on(&versions, "2026-01-01".parse().unwrap()),
            Some(dec!(39.90))
        );
        assert_eq!(
            price_on(&versions, "2027-06-30".parse().unwrap()),
            Some(dec!(40))
        );
        assert_eq!(
            price_on(&versions, "2027-07-01".parse().unwrap()),
            Some(dec!(42.50))
        );
    }
}

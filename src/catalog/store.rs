use chrono::NaiveDate;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;

use super::{BillingPeriod, CatalogRole, Entitlements, Offer, PriceBasis, PriceVersion};
use crate::money::DecimalString;
use crate::schema::{offer_prices, offers};

#[derive(Queryable, Selectable)]
#[diesel(table_name = offers)]
struct OfferRow {
    code: String,
    name: String,
    billing_period: BillingPeriod,
    price_basis: PriceBasis,
    vat_rate: Decimal,
    commitment_months: i32,
    renewal_months: i32,
    notice_days: i32,
    early_termination_rate: Decimal,
    sepa_required: bool,
    activation_on_payment: bool,
    addon: bool,
    free_diagnostics: bool,
    assistance_included: bool,
    maintenance: bool,
    appointment_quota: Option<i32>,
    credits_per_term: Option<Decimal>,
    unit_credit_purchase: bool,
    credit_price: Option<Decimal>,
    increment_minutes: Option<i32>,
    unit_credit_offer: Option<String>,
    overage_offer: Option<String>,
    catalog_role: Option<CatalogRole>,
}

fn plain(d: Decimal) -> DecimalString {
    DecimalString(d.normalize())
}

impl From<OfferRow> for Offer {
    fn from(r: OfferRow) -> Self {
        Offer {
            code: r.code,
            name: r.name,
            billing_period: r.billing_period,
            price_basis: r.price_basis,
            vat_rate: plain(r.vat_rate),
            commitment_months: r.commitment_months,
            renewal_months: r.renewal_months,
            notice_days: r.notice_days,
            early_termination_rate: plain(r.early_termination_rate),
            sepa_required: r.sepa_required,
            activation_on_payment: r.activation_on_payment,
            addon: r.addon,
            entitlements: Entitlements {
                free_diagnostics: r.free_diagnostics,
                assistance_included: r.assistance_included,
                maintenance: r.maintenance,
                appointment_quota: r.appointment_quota,
                overage_offer: r.overage_offer,
                credits_per_term: r.credits_per_term.map(crate::money::price),
                unit_credit_purchase: r.unit_credit_purchase,
                unit_credit_offer: r.unit_credit_offer,
            },
            credit_price: r.credit_price.map(crate::money::price),
            increment_minutes: r.increment_minutes,
            role: r.catalog_role,
        }
    }
}

/// Inserts the offer unless its code exists; returns whether it was inserted.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    o: &Offer,
) -> Result<bool, diesel::result::Error> {
    let n = diesel::insert_into(offers::table)
        .values((
            offers::code.eq(&o.code),
            offers::name.eq(&o.name),
            offers::billing_period.eq(o.billing_period.as_str()),
            offers::price_basis.eq(o.price_basis.as_str()),
            offers::vat_rate.eq(o.vat_rate.0),
            offers::commitment_months.eq(o.commitment_months),
            offers::renewal_months.eq(o.renewal_months),
            offers::notice_days.eq(o.notice_days),
            offers::early_termination_rate.eq(o.early_termination_rate.0),
            offers::sepa_required.eq(o.sepa_required),
            offers::activation_on_payment.eq(o.activation_on_payment),
            offers::addon.eq(o.addon),
            offers::free_diagnostics.eq(o.entitlements.free_diagnostics),
            offers::assistance_included.eq(o.entitlements.assistance_included),
            offers::maintenance.eq(o.entitlements.maintenance),
            offers::appointment_quota.eq(o.entitlements.appointment_quota),
            offers::credits_per_term.eq(o.entitlements.credits_per_term.map(|c| c.0)),
            offers::unit_credit_purchase.eq(o.entitlements.unit_credit_purchase),
            offers::credit_price.eq(o.credit_price.map(|c| c.0)),
            offers::increment_minutes.eq(o.increment_minutes),
            offers::unit_credit_offer.eq(&o.entitlements.unit_credit_offer),
            offers::overage_offer.eq(&o.entitlements.overage_offer),
            offers::catalog_role.eq(o.role.map(CatalogRole::as_str)),
        ))
        .on_conflict(offers::code)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Checks the offers a pack names for its items: each exists and is sold one by one
/// (one-off or metered). Returns the wrong fields.
pub async fn item_errors(
    conn: &mut AsyncPgConnection,
    o: &Offer,
) -> Result<Vec<crate::error::FieldError>, diesel::result::Error> {
    let mut errors = Vec::new();
    let named = [
        ("entitlements.overage_offer", &o.entitlements.overage_offer),
        (
            "entitlements.unit_credit_offer",
            &o.entitlements.unit_credit_offer,
        ),
    ];
    for (field, code) in named {
        let Some(code) = code else { continue };
        let period: Option<BillingPeriod> = offers::table
            .find(code)
            .select(offers::billing_period)
            .first(conn)
            .await
            .optional()?;
        match period {
            None => errors.push(crate::error::FieldError::new(
                field,
                format!("no offer `{code}` in the catalog"),
            )),
            Some(BillingPeriod::Once | BillingPeriod::PerUse) => {}
            Some(_) => errors.push(crate::error::FieldError::new(
                field,
                format!("`{code}` is a recurring offer: name a one-off or metered one"),
            )),
        }
    }
    Ok(errors)
}

/// The offer that has `role`, if any.
pub async fn with_role(
    conn: &mut AsyncPgConnection,
    role: CatalogRole,
) -> Result<Option<Offer>, diesel::result::Error> {
    let row = offers::table
        .filter(offers::catalog_role.eq(role))
        .select(OfferRow::as_select())
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(Offer::from))
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    code: &str,
) -> Result<Option<Offer>, diesel::result::Error> {
    let row = offers::table
        .find(code)
        .select(OfferRow::as_select())
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(Offer::from))
}

pub async fn list(conn: &mut AsyncPgConnection) -> Result<Vec<Offer>, diesel::result::Error> {
    let rows = offers::table
        .select(OfferRow::as_select())
        .order(offers::code)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Offer::from).collect())
}

pub async fn prices(
    conn: &mut AsyncPgConnection,
    code: &str,
) -> Result<Vec<PriceVersion>, diesel::result::Error> {
    let rows: Vec<(NaiveDate, Decimal)> = offer_prices::table
        .filter(offer_prices::offer_code.eq(code))
        .order(offer_prices::effective_from)
        .select((offer_prices::effective_from, offer_prices::unit_price))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(d, p)| PriceVersion {
            effective_from: d,
            unit_price: crate::money::price(p),
        })
        .collect())
}

/// Adds a price version; `false` when the offer already has one on that date.
pub async fn add_price(
    conn: &mut AsyncPgConnection,
    code: &str,
    v: &PriceVersion,
) -> Result<bool, diesel::result::Error> {
    let n = diesel::insert_into(offer_prices::table)
        .values((
            offer_prices::offer_code.eq(code),
            offer_prices::effective_from.eq(v.effective_from),
            offer_prices::unit_price.eq(v.unit_price.0),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Every offer (or the one coded `only`) with the price version in force on `date`.
pub async fn views(
    conn: &mut AsyncPgConnection,
    only: Option<&str>,
    date: NaiveDate,
) -> Result<Vec<super::OfferView>, diesel::result::Error> {
    let offers = match only {
        Some(code) => get(conn, code).await?.into_iter().collect(),
        None => list(conn).await?,
    };
    let mut current = offer_prices::table
        .filter(offer_prices::effective_from.le(date))
        .distinct_on(offer_prices::offer_code)
        .order((
            offer_prices::offer_code,
            offer_prices::effective_from.desc(),
        ))
        .select((
            offer_prices::offer_code,
            offer_prices::effective_from,
            offer_prices::unit_price,
        ))
        .into_boxed();
    if let Some(code) = only {
        current = current.filter(offer_prices::offer_code.eq(code));
    }
    let mut prices: std::collections::HashMap<String, PriceVersion> = current
        .load::<(String, NaiveDate, Decimal)>(conn)
        .await?
        .into_iter()
        .map(|(code, from, price)| {
            let version = PriceVersion {
                effective_from: from,
                unit_price: crate::money::price(price),
            };
            (code, version)
        })
        .collect();
    Ok(offers
        .into_iter()
        .map(|offer| super::OfferView {
            current_price: prices.remove(&offer.code),
            offer,
        })
        .collect())
}

/// The price of `code` in force on `date`.
pub async fn price_on(
    conn: &mut AsyncPgConnection,
    code: &str,
    date: NaiveDate,
) -> Result<Option<Decimal>, diesel::result::Error> {
    offer_prices::table
        .filter(offer_prices::offer_code.eq(code))
        .filter(offer_prices::effective_from.le(date))
        .order(offer_prices::effective_from.desc())
        .select(offer_prices::unit_price)
        .first::<Decimal>(conn)
        .await
        .optional()
        .map(|p| p.map(|p| p.normalize()))
}

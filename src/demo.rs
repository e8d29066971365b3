//! `grandlivre seed-demo`: the demo catalog, two demo customers (the first with a SEPA
//! mandate) and one API key per role, so that every endpoint can be tried at once.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::auth::{self, Role};
use crate::catalog::{self, PriceVersion};
use crate::customers::{self, Address, NewCustomer};
use crate::schema::mandates;

pub const DEMO_CUSTOMER_1: Uuid = Uuid::from_u128(0x0193_e0a0_0000_7000_8000_0000_0000_0001);
pub const DEMO_CUSTOMER_2: Uuid = Uuid::from_u128(0x0193_e0a0_0000_7000_8000_0000_0000_0002);

pub struct Seeded {
    pub offers_added: usize,
    pub keys: Vec<(Role, String)>,
}

fn customer(
    name: &str,
    siren: &str,
    vat: &str,
    email: &str,
    street: &str,
    postcode: &str,
    town: &str,
) -> NewCustomer {
    NewCustomer {
        legal_name: name.into(),
        siren: Some(siren.into()),
        siret: None,
        vat_number: Some(vat.into()),
        billing_email: email.into(),
        address: Address {
            street_number: Some("12".into()),
            street: street.into(),
            postcode: postcode.into(),
            town: town.into(),
            country: "FR".into(),
        },
    }
}

pub async fn seed(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> anyhow::Result<Seeded> {
    let since = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap_or_default();
    let mut offers_added = 0;
    for (offer, price) in catalog::demo::offers() {
        offers_added += usize::from(catalog::store::insert(conn, &offer).await?);
        let version = PriceVersion {
            effective_from: since,
            unit_price: crate::money::DecimalString(price.parse()?),
        };
        catalog::store::add_price(conn, &offer.code, &version).await?;
    }
    let demo = [
        (
            DEMO_CUSTOMER_1,
            customer(
                "Atelier Démo SARL",
                "900000019",
                "FR25900000019",
                "compta@atelier-demo.example",
                "Rue de la Paix",
                "75002",
                "Paris",
            ),
        ),
        (
            DEMO_CUSTOMER_2,
            customer(
                "Cabinet Exemple SAS",
                "900000027",
                "FR49900000027",
                "factures@cabinet-exemple.example",
                "Quai Perrache",
                "69002",
                "Lyon",
            ),
        ),
    ];
    for (id, c) in demo {
        let fields = c
            .validate()
            .map_err(|e| anyhow::anyhow!("demo customer invalid: {e:?}"))?;
        if customers::store::get(conn, id).await?.is_none() {
            customers::store::create(conn, id, &fields, None, now).await?;
        }
    }
    diesel::insert_into(mandates::table)
        .values((
            mandates::id.eq(Uuid::from_u128(0x0193_e0a0_0000_7000_8000_0000_0000_1001)),
            mandates::customer_id.eq(DEMO_CUSTOMER_1),
            mandates::reference.eq("GL-DEMO-0001"),
            // signed when seeded: a mandate unused for 36 months has lapsed
            mandates::signed_on.eq(crate::calendar::paris_date(now)),
            mandates::debtor_name.eq("Atelier Demo SARL"),
            mandates::iban.eq("FR1420041010050500013M02606"),
            mandates::bic.eq("PSSTFRPP"),
            mandates::scheme.eq(crate::sepa::MandateScheme::Core),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    let mut keys = Vec::new();
    for (role, customer) in [
        (Role::Admin, None),
        (Role::Finance, None),
        (Role::Ticketing, None),
        (Role::Customer, Some(DEMO_CUSTOMER_1)),
    ] {
        let (_, key) = auth::create_key(conn, role, customer, Some("seed-demo")).await?;
        keys.push((role, key));
    }
    Ok(Seeded { offers_added, keys })
}

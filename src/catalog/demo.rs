//! The demo catalog of DOMAIN.md (prices are illustrative), loaded by `seed-demo`.

use rust_decimal::Decimal;

use super::{BillingPeriod, CatalogRole, Entitlements, Offer, PriceBasis};
use crate::money::DecimalString;

fn dec(s: &str) -> DecimalString {
    DecimalString(s.parse::<Decimal>().unwrap_or_default())
}

fn base(code: &str, name: &str, period: BillingPeriod, basis: PriceBasis) -> Offer {
    Offer {
        code: code.into(),
        name: name.into(),
        billing_period: period,
        price_basis: basis,
        vat_rate: dec("0.20"),
        commitment_months: 0,
        renewal_months: 0,
        notice_days: 0,
        early_termination_rate: dec("1"),
        sepa_required: false,
        activation_on_payment: false,
        addon: false,
        entitlements: Entitlements::default(),
        credit_price: None,
        increment_minutes: None,
        role: None,
    }
}

fn recurring(
    code: &str,
    name: &str,
    period: BillingPeriod,
    commitment: i32,
    renewal: i32,
    notice: i32,
) -> Offer {
    Offer {
        commitment_months: commitment,
        renewal_months: renewal,
        notice_days: notice,
        ..base(code, name, period, PriceBasis::Ht)
    }
}

fn network(code: &str, name: &str, commitment: i32, renewal: i32) -> Offer {
    let notice = if renewal >= 12 { 30 } else { 10 };
    let mut o = recurring(
        code,
        name,
        BillingPeriod::Month,
        commitment,
        renewal,
        notice,
    );
    o.sepa_required = true;
    o.entitlements.maintenance = true;
    o
}

fn service(code: &str, name: &str, credits: &str) -> Offer {
    Offer {
        credit_price: Some(dec(credits)),
        ..base(code, name, BillingPeriod::Once, PriceBasis::Ht)
    }
}

/// Every demo offer with the price it has had since 2020-01-01.
pub fn offers() -> Vec<(Offer, &'static str)> {
    let mut vip_month = recurring(
        "support_vip_monthly",
        "Support VIP (monthly)",
        BillingPeriod::Month,
        1,
        1,
        0,
    );
    vip_month.activation_on_payment = true;
    vip_month.entitlements.free_diagnostics = true;
    let mut vip_year = recurring(
        "support_vip_annual",
        "Support VIP (annual)",
        BillingPeriod::Year,
        12,
        12,
        0,
    );
    vip_year.activation_on_payment = true;
    vip_year.entitlements.free_diagnostics = true;
    let mut assistance = recurring(
        "assistance_plus_pack",
        "Assistance+ pack (10 appointments a year)",
        BillingPeriod::Year,
        12,
        12,
        30,
    );
    assistance.addon = true;
    assistance.entitlements.appointment_quota = Some(10);
    assistance.entitlements.overage_offer = Some("appointment".into());
    let mut service_plus = recurring(
        "service_plus_pack",
        "Service+ pack (20 service credits a year)",
        BillingPeriod::Year,
        12,
        12,
        30,
    );
    service_plus.addon = true;
    service_plus.entitlements.credits_per_term = Some(dec("20"));
    service_plus.entitlements.unit_credit_purchase = true;
    service_plus.entitlements.unit_credit_offer = Some("service_credit".into());
    let mut premium = recurring(
        "premium_assistance",
        "Premium assistance",
        BillingPeriod::Year,
        12,
        12,
        30,
    );
    premium.entitlements.assistance_included = true;
    let mut intervention = base(
        "intervention_time",
        "Intervention time (per started 15 minutes)",
        BillingPeriod::PerUse,
        PriceBasis::Ht,
    );
    intervention.increment_minutes = Some(15);
    intervention.role = Some(CatalogRole::InterventionTime);
    let mut ticket = base(
        "ticket",
        "Assistance ticket (one incident)",
        BillingPeriod::Once,
        PriceBasis::Ttc,
    );
    ticket.role = Some(CatalogRole::Ticket);
    // the items packs name come before the packs
    vec![
        (
            base(
                "service_credit",
                "Service credit (unit)",
                BillingPeriod::Once,
                PriceBasis::Ht,
            ),
            "80.00",
        ),
        (
            base(
                "appointment",
                "Assistance+ appointment beyond the quota",
                BillingPeriod::PerUse,
                PriceBasis::Ht,
            ),
            "90.00",
        ),
        (
            network("ip_access_fibre", "IP access, copper/fibre", 36, 12),
            "39.90",
        ),
        (
            network("ip_access_cellular", "IP access, cellular", 3, 1),
            "29.90",
        ),
        (network("ip_telephony", "IP telephony", 24, 12), "24.90"),
        (
            network("mobile_fleet", "Mobile fleet (per line)", 3, 1),
            "19.90",
        ),
        (vip_month, "49.00"),
        (vip_year, "490.00"),
        (assistance, "600.00"),
        (service_plus, "1500.00"),
        (premium, "1200.00"),
        (ticket, "100.00"),
        (service("configuration", "Configuration", "2"), "150.00"),
        (service("training", "Training (half day)", "4"), "300.00"),
        (service("installation", "Installation", "3"), "220.00"),
        (service("usage_help", "Usage help", "1"), "80.00"),
        (intervention, "90.00"),
        (
            base(
                "number_portability",
                "Number portability",
                BillingPeriod::Once,
                PriceBasis::Ht,
            ),
            "25.00",
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_demo_offer_is_valid() {
        for (offer, price) in super::offers() {
            assert_eq!(offer.validate(), Ok(()), "{}", offer.code);
            assert!(price.parse::<rust_decimal::Decimal>().is_ok());
        }
    }
}

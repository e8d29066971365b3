//! Units and amounts. An amount is a `rust_decimal::Decimal` that has been checked against
//! its unit's scale; JSON carries amounts as strings so that no client parses money as a float.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// What the ledger counts. Each unit has a fixed number of decimals.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Unit {
    /// Euros, 2 decimals.
    Eur,
    /// Service credits, 2 decimals.
    Credit,
    /// Prepaid assistance tickets, whole numbers.
    Ticket,
    /// Assistance+ appointments, whole numbers.
    Appointment,
}

impl Unit {
    pub const ALL: [Unit; 4] = [Unit::Eur, Unit::Credit, Unit::Ticket, Unit::Appointment];

    pub fn scale(self) -> u32 {
        match self {
            Unit::Eur | Unit::Credit => 2,
            Unit::Ticket | Unit::Appointment => 0,
        }
    }

    /// `value` as this unit shows it: exactly its number of decimals.
    pub fn show(self, value: Decimal) -> DecimalString {
        let mut d = value.normalize();
        d.rescale(self.scale());
        DecimalString(d)
    }

    pub fn code(self) -> &'static str {
        match self {
            Unit::Eur => "EUR",
            Unit::Credit => "CREDIT",
            Unit::Ticket => "TICKET",
            Unit::Appointment => "APPOINTMENT",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Unit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Unit::ALL
            .into_iter()
            .find(|u| u.code() == s)
            .ok_or_else(|| format!("unknown unit `{s}`"))
    }
}

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("`{0}` is not a decimal number (digits with an optional `.`, no exponent)")]
    Syntax(String),
    #[error("must be greater than zero")]
    NotPositive,
    #[error("{unit} allows at most {scale} decimal(s)")]
    TooManyDecimals { unit: Unit, scale: u32 },
    #[error("is too large")]
    TooLarge,
}

/// Largest amount accepted anywhere: 10^15, a sanity bound far above any real invoice.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0);

/// Domain amounts and counts (prices, credits, quantities) are stored in `NUMERIC(12, 2)`
/// to `NUMERIC(14, 4)` columns: every one of them holds less than 10^10.
pub const STORED_LIMIT: Decimal = Decimal::from_parts(1_410_065_408, 2, 0, false, 0);

/// Whether `d` fits every domain amount column (its size only; scale is the caller's).
pub fn fits_columns(d: Decimal) -> bool {
    d.abs() < STORED_LIMIT
}

/// Parses a decimal string strictly: optional sign, digits, optional fraction. No exponent,
/// no spaces, no `+`, no leading `.`.
pub fn parse_decimal(s: &str) -> Result<Decimal, AmountError> {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) || s.len() > 40 {
        return Err(AmountError::Syntax(s.chars().take(40).collect()));
    }
    Decimal::from_str_exact(s).map_err(|_| AmountError::TooLarge)
}

/// A positive quantity of one unit, within the unit's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    value: Decimal,
    unit: Unit,
}

impl Amount {
    pub fn new(value: Decimal, unit: Unit) -> Result<Self, AmountError> {
        if value <= Decimal::ZERO {
            return Err(AmountError::NotPositive);
        }
        if value > MAX_AMOUNT {
            return Err(AmountError::TooLarge);
        }
        if value.normalize().scale() > unit.scale() {
            return Err(AmountError::TooManyDecimals {
                unit,
                scale: unit.scale(),
            });
        }
        Ok(Amount {
            value: value.round_dp(unit.scale()),
            unit,
        })
    }

    pub fn parse(s: &str, unit: Unit) -> Result<Self, AmountError> {
        Amount::new(parse_decimal(s)?, unit)
    }

    pub fn value(self) -> Decimal {
        self.value
    }

    pub fn unit(self) -> Unit {
        self.unit
    }
}

/// Rounds to the cent, half away from zero (DOMAIN.md: `round_dp` alone rounds half to even).
/// The result always shows its cents (`758.1` → `758.10`).
pub fn round_cents(value: Decimal) -> Decimal {
    let mut cents = value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    cents.rescale(2);
    cents
}

/// A price for display: trailing zeros dropped, but at least the cents (`39.9000` → `39.90`,
/// `12.3456` stays).
pub fn price(value: Decimal) -> DecimalString {
    let mut d = value.normalize();
    if d.scale() < 2 {
        d.rescale(2);
    }
    DecimalString(d)
}

/// A decimal that JSON carries as a string, e.g. `"100.00"`. Numbers are refused: a float
/// parser has already lost precision by the time we would see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[schema(value_type = String, example = "100.00", pattern = r"^-?[0-9]+(\.[0-9]+)?$")]
pub struct DecimalString(#[serde(with = "rust_decimal::serde::str")] pub Decimal);

impl<'de> Deserialize<'de> for DecimalString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DecimalString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal number as a string, e.g. \"12.50\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DecimalString, E> {
                parse_decimal(v).map(DecimalString).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn the_stored_limit_is_ten_to_the_tenth() {
        assert_eq!(STORED_LIMIT, Decimal::from(10_000_000_000_i64));
        assert!(fits_columns(Decimal::new(999_999_999_999, 2)));
        assert!(!fits_columns(Decimal::from(10_000_000_000_i64)));
    }

    #[test]
    fn parses_strictly() {
        assert_eq!(parse_decimal("12.50"), Ok(dec!(12.50)));
        assert_eq!(parse_decimal("-3"), Ok(dec!(-3)));
        for bad in [
            "", "1e3", "+1", ".5", "5.", "1,5", " 1", "0x10", "1.2.3", "NaN", "-",
        ] {
            assert!(parse_decimal(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn amounts_respect_scale_and_sign() {
        assert_eq!(
            Amount::parse("10.10", Unit::Eur).map(Amount::value),
            Ok(dec!(10.10))
        );
        assert_eq!(
            Amount::parse("10.100", Unit::Eur).map(Amount::value),
            Ok(dec!(10.10))
        );
        assert_eq!(
            Amount::parse("10.001", Unit::Eur),
            Err(AmountError::TooManyDecimals {
                unit: Unit::Eur,
                scale: 2
            })
        );
        assert_eq!(
            Amount::parse("1.5", Unit::Ticket),
            Err(AmountError::TooManyDecimals {
                unit: Unit::Ticket,
                scale: 0
            })
        );
        assert_eq!(Amount::parse("0", Unit::Eur), Err(AmountError::NotPositive));
        assert_eq!(
            Amount::parse("-1", Unit::Eur),
            Err(AmountError::NotPositive)
        );
        assert_eq!(
            Amount::parse("1000000000000001", Unit::Eur),
            Err(AmountError::TooLarge)
        );
        assert_eq!(
            Amount::parse("1000000000000000", Unit::Eur).map(Amount::value),
            Ok(MAX_AMOUNT)
        );
    }

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(round_cents(dec!(0.125)), dec!(0.13));
        assert_eq!(round_cents(dec!(0.135)), dec!(0.14));
        assert_eq!(round_cents(dec!(-0.125)), dec!(-0.13));
        assert_eq!(round_cents(dec!(83.3333)), dec!(83.33));
        assert_eq!(round_cents(dec!(758.1)).to_string(), "758.10");
    }

    #[test]
    fn decimal_strings_refuse_numbers() {
        assert_eq!(
            serde_json::from_str::<DecimalString>("\"1.50\"").ok(),
            Some(DecimalString(dec!(1.50)))
        );
        assert!(serde_json::from_str::<DecimalString>("1.5").is_err());
        assert_eq!(
            serde_json::to_string(&DecimalString(dec!(1.50)))
                .ok()
                .as_deref(),
            Some("\"1.50\"")
        );
    }
}

//! The rules of a credit lot's revenue, without a database: what it was sold for, and
//! what each movement off it recognises.

use rust_decimal::Decimal;

use crate::money::round_cents;

/// What a lot was sold for, and how its revenue is recognised to the cent (DOMAIN.md,
/// "Service credits"): each movement off the lot (a use, an expiry) at the unit price,
/// rounded on its own, except the one that empties it, which takes the rest of the sale
/// value, so that a lot recognises in all exactly what it was sold for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LotSale {
    /// Credits granted or bought.
    pub granted: Decimal,
    /// EUR excl. VAT per credit (0 for credits included in a pack).
    pub unit_price: Decimal,
}

impl LotSale {
    /// What the lot was sold for, net of VAT: `granted × unit_price` to the cent.
    pub fn value(&self) -> Decimal {
        round_cents(self.granted * self.unit_price)
    }

    /// The EUR a movement of `credits` off the lot recognises, `left` being the credits on
    /// the lot before it (held ones included) and `earlier` the credits of the lot's
    /// earlier movements. Only the movement that empties the lot reads `earlier`: it takes
    /// the sale value less what those recognised, which can be below the movement's own
    /// rounding, above it, or (after many small movements rounded up) below zero.
    pub fn movement_eur(&self, credits: Decimal, left: Decimal, earlier: &[Decimal]) -> Decimal {
        let eur = |c: &Decimal| round_cents(c * self.unit_price);
        if credits == left {
            self.value() - earlier.iter().map(eur).sum::<Decimal>()
        } else {
            eur(&credits)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use rust_decimal_macros::dec;

    use super::LotSale;

    /// EUR of each movement in turn, from a full lot: what the store does, without a store.
    fn recognise(sale: LotSale, movements: &[Decimal]) -> Vec<Decimal> {
        let mut left = sale.granted;
        let mut out = Vec::new();
        for (n, credits) in movements.iter().enumerate() {
            out.push(sale.movement_eur(*credits, left, &movements[..n]));
            left -= credits;
        }
        out
    }

    #[test]
    fn the_last_movement_takes_the_rest_of_the_sale_value() {
        // the lot: 8.01 credits at 82.2027 are sold 658.44; used 1.90 (156.19), the
        // expiry of 6.11 recognised 502.26 on its own (658.45 in all), 502.25 now
        let sale = LotSale {
            granted: dec!(8.01),
            unit_price: dec!(82.2027),
        };
        assert_eq!(sale.value(), dec!(658.44));
        assert_eq!(
            recognise(sale, &[dec!(1.90), dec!(6.11)]),
            [dec!(156.19), dec!(502.25)]
        );
    }

    #[test]
    fn uses_then_expiry_then_a_release_add_up_to_the_sale() {
        // 10 credits at 52.25 = 522.50: two uses of 3.10 (161.975 → 161.98 each), 0.80
        // expire while 3.00 are held (41.80), 2.10 of the hold used (109.725 → 109.73), the
        // 0.90 it releases expire last: 47.01, not 47.03
        let sale = LotSale {
            granted: dec!(10),
            unit_price: dec!(52.25),
        };
        let eur = recognise(
            sale,
            &[dec!(3.10), dec!(3.10), dec!(0.80), dec!(2.10), dec!(0.90)],
        );
        assert_eq!(
            eur,
            [
                dec!(161.98),
                dec!(161.98),
                dec!(41.80),
                dec!(109.73),
                dec!(47.01)
            ]
        );
        assert_eq!(eur.iter().sum::<Decimal>(), dec!(522.50));
    }

    #[test]
    fn without_drift_the_last_movement_is_its_own_rounding() {
        let sale = LotSale {
            granted: dec!(10),
            unit_price: dec!(80.00),
        };
        assert_eq!(
            recognise(sale, &[dec!(4), dec!(6)]),
            [dec!(320.00), dec!(480.00)]
        );
        assert_eq!(recognise(sale, &[dec!(10)]), [dec!(800.00)], "all at once");
    }

    #[test]
    fn many_small_movements_rounded_up_leave_a_negative_remainder() {
        // 1 credit at 0.15 = 0.15; nine uses of 0.10 recognise 0.02 each (0.015 rounded
        // half away from zero), 0.18 in all: the last one gives 0.03 back
        let sale = LotSale {
            granted: dec!(1),
            unit_price: dec!(0.15),
        };
        let eur = recognise(sale, &[dec!(0.10); 10]);
        assert_eq!(eur[..9], [dec!(0.02); 9]);
        assert_eq!(eur[9], dec!(-0.03));
        assert_eq!(eur.iter().sum::<Decimal>(), dec!(0.15));
    }

    #[test]
    fn pack_credits_recognise_nothing() {
        let sale = LotSale {
            granted: dec!(20),
            unit_price: Decimal::ZERO,
        };
        assert_eq!(sale.value(), dec!(0.00));
        assert_eq!(
            recognise(sale, &[dec!(3), dec!(17)]),
            [dec!(0.00), dec!(0.00)]
        );
    }

    proptest! {
        /// However a lot is used and expired, it recognises what it was sold for.
        #[test]
        fn a_lot_recognises_its_sale_value(
            price in 0i64..2_000_000,
            parts in proptest::collection::vec(1i64..5_000, 1..12),
        ) {
            let movements: Vec<Decimal> = parts.iter().map(|c| Decimal::new(*c, 2)).collect();
            let sale = LotSale {
                granted: movements.iter().sum(),
                unit_price: Decimal::new(price, 4),
            };
            let eur = recognise(sale, &movements);
            prop_assert_eq!(eur.iter().sum::<Decimal>(), sale.value());
            for (m, e) in movements.iter().zip(&eur).take(movements.len() - 1) {
                prop_assert_eq!(*e, crate::money::round_cents(m * sale.unit_price));
            }
        }
    }
}

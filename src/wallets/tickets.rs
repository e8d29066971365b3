//! The rule of a ticket purchase's revenue, without a database: what each ticket used
//! recognises of what the purchase was sold for.

use rust_decimal::Decimal;

use crate::money::round_cents;

/// What a ticket purchase was sold for, and how its revenue is recognised to the cent: each
/// ticket used recognises the purchase's net ÷ quantity, rounded, and the purchase's last
/// ticket the rest (3 tickets sold 250.00 net: 83.33, 83.33, 83.34), so that a purchase
/// recognises in all exactly its net. A ticket never recognises less than zero, nor do the
/// tickets before the last one recognise more than the net (with a net of cents spread
/// over many tickets, rounding up could).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketSale {
    pub quantity: i32,
    /// EUR excl. VAT: the net of the purchase's invoice line.
    pub net: Decimal,
}

impl TicketSale {
    /// What the first `used` tickets recognised together.
    fn recognised(&self, used: i32) -> Decimal {
        if used >= self.quantity {
            return self.net;
        }
        let each = round_cents(self.net / Decimal::from(self.quantity));
        (each * Decimal::from(used.max(0))).min(self.net)
    }

    /// The EUR the `nth` ticket used (from 1) recognises.
    pub fn use_eur(&self, nth: i32) -> Decimal {
        self.recognised(nth) - self.recognised(nth - 1)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use rust_decimal_macros::dec;

    use super::TicketSale;

    #[test]
    fn the_last_ticket_takes_the_remainder() {
        let three = TicketSale {
            quantity: 3,
            net: dec!(250.00),
        };
        assert_eq!(
            [1, 2, 3].map(|n| three.use_eur(n)),
            [dec!(83.33), dec!(83.33), dec!(83.34)]
        );
        let one = TicketSale {
            quantity: 1,
            net: dec!(83.33),
        };
        assert_eq!(one.use_eur(1), dec!(83.33));
    }

    #[test]
    fn cents_spread_over_many_tickets_never_overshoot() {
        // 0.05 over 10 tickets: 0.005 rounds to 0.01, five tickets take it all
        let sale = TicketSale {
            quantity: 10,
            net: dec!(0.05),
        };
        let eur: Vec<Decimal> = (1..=10).map(|n| sale.use_eur(n)).collect();
        assert_eq!(eur[..5], [dec!(0.01); 5]);
        assert_eq!(eur[5..], [dec!(0.00); 5]);
    }

    proptest! {
        /// A purchase's tickets recognise, to the cent, what it was sold for, each at least
        /// zero and, but for the last, its rounded share.
        #[test]
        fn a_purchase_recognises_its_net(quantity in 1i32..=1000, cents in 0i64..100_000_000) {
            let sale = TicketSale { quantity, net: Decimal::new(cents, 2) };
            let eur: Vec<Decimal> = (1..=quantity).map(|n| sale.use_eur(n)).collect();
            prop_assert_eq!(eur.iter().sum::<Decimal>(), sale.net);
            prop_assert!(eur.iter().all(|e| *e >= Decimal::ZERO));
            let each = crate::money::round_cents(sale.net / Decimal::from(quantity));
            if each * Decimal::from(quantity - 1) <= sale.net {
                prop_assert!(eur[..eur.len() - 1].iter().all(|e| *e == each));
            }
        }
    }
}

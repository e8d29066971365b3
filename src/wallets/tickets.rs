//! The rule of a ticket purchase's revenue, without a database: what each ticket used
//! recognises of what the purchase was sold for.

use rust_decimal::Decimal;

use crate::money::round_cents;

/// What a ticket purchase was sold for, and how its revenue is recognised to the cent: each
/// ticket used recognises the purchase's net ÷ quantity, rounded, and the purchase's last
/// ticket the rest (3 tickets sold 250.00 net: 83.33, 83.33, 83.34), so that a purchase
/// recognises in all exactly its net. Tickets a credit note took back leave with the net
/// that note reversed: the rule then runs over what is left (the usable tickets and the net
/// not credited). A ticket never recognises less than zero, nor more than what the
/// purchase still defers (with a net of cents spread over many tickets, rounding up could).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketSale {
    pub quantity: i32,
    /// EUR excl. VAT: the net of the purchase's invoice line.
    pub net: Decimal,
    /// Tickets taken back by credit notes.
    pub credited: i32,
    /// The net those credit notes reversed.
    pub credited_net: Decimal,
}

impl TicketSale {
    /// A purchase no credit note touched.
    pub fn sold(quantity: i32, net: Decimal) -> Self {
        TicketSale {
            quantity,
            net,
            credited: 0,
            credited_net: Decimal::ZERO,
        }
    }

    /// The tickets that may be used, and the net they share.
    fn usable(&self) -> (i32, Decimal) {
        (
            self.quantity - self.credited,
            (self.net - self.credited_net).max(Decimal::ZERO),
        )
    }

    /// What the first `used` usable tickets recognise together.
    fn recognised(&self, used: i32) -> Decimal {
        let (quantity, net) = self.usable();
        if used >= quantity {
            return net;
        }
        let each = round_cents(net / Decimal::from(quantity.max(1)));
        (each * Decimal::from(used.max(0))).min(net)
    }

    /// The EUR the `nth` ticket used (from 1) recognises, the tickets used before it having
    /// recognised `before` together (under this rule, or under the rule before a credit
    /// note changed it): what brings the purchase to the rule's total, within what it
    /// still defers.
    pub fn use_eur(&self, nth: i32, before: Decimal) -> Decimal {
        let (_, net) = self.usable();
        let left = (net - before).max(Decimal::ZERO);
        (self.recognised(nth) - before).clamp(Decimal::ZERO, left)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use rust_decimal_macros::dec;

    use super::TicketSale;

    /// What each ticket recognises when `sale`'s tickets are used one after the other.
    fn uses(sale: &TicketSale, n: i32) -> Vec<Decimal> {
        let mut before = Decimal::ZERO;
        (1..=n)
            .map(|nth| {
                let eur = sale.use_eur(nth, before);
                before += eur;
                eur
            })
            .collect()
    }

    #[test]
    fn the_last_ticket_takes_the_remainder() {
        let three = TicketSale::sold(3, dec!(250.00));
        assert_eq!(uses(&three, 3), [dec!(83.33), dec!(83.33), dec!(83.34)]);
        assert_eq!(uses(&TicketSale::sold(1, dec!(83.33)), 1), [dec!(83.33)]);
    }

    #[test]
    fn cents_spread_over_many_tickets_never_overshoot() {
        // 0.05 over 10 tickets: 0.005 rounds to 0.01, five tickets take it all
        let eur = uses(&TicketSale::sold(10, dec!(0.05)), 10);
        assert_eq!(eur[..5], [dec!(0.01); 5]);
        assert_eq!(eur[5..], [dec!(0.00); 5]);
    }

    #[test]
    fn a_credit_note_between_two_uses_leaves_the_rest_to_the_last_ticket() {
        // 3 tickets for 250.00: one used (83.33), one credited (83.33 reversed), the last
        // one takes what the purchase still defers
        let credited = TicketSale {
            credited: 1,
            credited_net: dec!(83.33),
            ..TicketSale::sold(3, dec!(250.00))
        };
        assert_eq!(credited.use_eur(2, dec!(83.33)), dec!(83.34));
        // credited first: the two left share 166.67
        let first = TicketSale {
            credited: 1,
            credited_net: dec!(83.33),
            ..TicketSale::sold(3, dec!(250.00))
        };
        assert_eq!(uses(&first, 2), [dec!(83.34), dec!(83.33)]);
    }

    proptest! {
        /// A purchase's tickets recognise, to the cent, what it was sold for less what credit
        /// notes reversed, each at least zero, whenever the credit note came.
        #[test]
        fn a_purchase_recognises_its_net(
            quantity in 1i32..=200,
            cents in 0i64..100_000_000,
            credited_seed in 0i32..200,
            used_first_seed in 0i32..200,
        ) {
            let net = Decimal::new(cents, 2);
            let credited = credited_seed % quantity;
            let used_first = used_first_seed % (quantity - credited + 1);
            let sold = TicketSale::sold(quantity, net);
            // some tickets used, then a credit note of `credited` tickets at its share
            let mut before = Decimal::ZERO;
            for nth in 1..=used_first {
                before += sold.use_eur(nth, before);
            }
            let credited_net = (crate::money::round_cents(net * Decimal::from(credited)
                / Decimal::from(quantity))).min(net - before);
            let after = TicketSale { credited, credited_net, ..sold };
            for nth in used_first + 1..=quantity - credited {
                let eur = after.use_eur(nth, before);
                prop_assert!(eur >= Decimal::ZERO);
                before += eur;
            }
            if quantity - credited > used_first {
                prop_assert_eq!(before + credited_net, net);
            } else {
                // the note took back the last unused tickets at their share: what the used
                // ones recognised under the rule before it may leave a cent deferred
                prop_assert!(net - (before + credited_net) <= dec!(0.01) * Decimal::from(quantity));
            }
        }
    }
}

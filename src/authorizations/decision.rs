//! The authorization decision: a pure function of the request and of what the customer
//! holds (DOMAIN.md "Diagnostics and interventions", "Prepaid tickets", "Non-payment").
//! Rules, first match wins:
//! 1. a closed account is denied, then a suspended one;
//! 2. a diagnostic of an incident is free under Support VIP (`free_diagnostics`);
//! 3. out-of-scope requests and service purchases are paid services (credits or euros);
//!    usage questions are free while the requester is certified or in the learning phase,
//!    else paid as "usage help";
//! 4. a misdeclared incident is chargeable at the hourly rate when the contract says so;
//! 5. then funding: included in a subscription → Assistance+ quota (then overage) for
//!    appointments → a paid ticket (declared within 24 business hours) → euros at the
//!    hourly rate when the ticketing system asks for euros → denied.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::calendar::{paris_date, BusinessHours};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Diagnostic,
    Intervention,
    Appointment,
    ServicePurchase,
}

/// What was out of scope (seed 002): each maps to a catalog service or to the hourly rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutOfScope {
    Configuration,
    Training,
    Installation,
    SpecificDevelopment,
    ExtendedAssistance,
}

impl OutOfScope {
    /// The catalog service sold for it; `None`: billed at the hourly rate.
    pub fn service(self) -> Option<&'static str> {
        match self {
            OutOfScope::Configuration => Some("configuration"),
            OutOfScope::Training => Some("training"),
            OutOfScope::Installation => Some("installation"),
            OutOfScope::SpecificDevelopment | OutOfScope::ExtendedAssistance => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "type", content = "sub_kind")]
pub enum Classification {
    InScope,
    Misdeclared,
    OutOfScope(OutOfScope),
    UsageQuestion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Critical,
    High,
    Moderate,
}

impl Priority {
    /// Take-charge delay in business hours (seed 002).
    pub fn take_charge_hours(self) -> i64 {
        match self {
            Priority::Critical => 4,
            Priority::High => 6,
            Priority::Moderate => 8,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PreferredFunding {
    #[default]
    Auto,
    Credits,
    Euros,
    Ticket,
}

/// Who asks: certified users, and users within their learning phase (its last day
/// included), get usage questions answered free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Requester {
    pub certified: bool,
    /// The last day of the learning phase (2000-01-01 to 2100-12-31).
    #[serde(default, deserialize_with = "crate::input::opt_date")]
    pub learning_phase_end: Option<NaiveDate>,
}

/// A request of the ticketing system: what the rules decide on, plus who asks and the
/// ticketing request id (its idempotency key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "customer_id": "0193e0a0-0000-7000-8000-000000000001",
    "request_ref": "TCK-2026-004211",
    "kind": "intervention",
    "classification": {"type": "in_scope"},
    "priority": "high",
    "requester": {"certified": false, "learning_phase_end": null},
    "occurred_at": "2026-11-20T09:30:00+01:00",
    "declared_at": "2026-11-20T10:05:00+01:00",
    "preferred_funding": "auto"
}))]
pub struct AuthorizationRequest {
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: uuid::Uuid,
    /// The ticketing request id: the idempotency key of this call.
    #[schema(min_length = 1, max_length = 200)]
    pub request_ref: String,
    pub kind: RequestKind,
    pub classification: Classification,
    pub priority: Priority,
    pub requester: Requester,
    /// When the incident occurred (2000-01-01 to 2100-12-31).
    #[serde(deserialize_with = "crate::input::instant")]
    pub occurred_at: DateTime<Utc>,
    /// When it was declared to the ticketing system, not before `occurred_at`.
    #[serde(deserialize_with = "crate::input::instant")]
    pub declared_at: DateTime<Utc>,
    /// For a service purchase: the catalog service (e.g. `configuration`).
    #[schema(max_length = 64)]
    pub service_code: Option<String>,
    #[serde(default)]
    pub preferred_funding: PreferredFunding,
}

/// A service's prices: in euros and, when sold for credits, in credits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePrice {
    pub code: String,
    pub euros: Decimal,
    pub credits: Option<Decimal>,
}

/// What the customer holds at the instant of the decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holdings {
    /// The customer is closed (read-only): nothing more is authorized.
    pub closed: bool,
    pub suspended: bool,
    pub free_diagnostics: bool,
    pub assistance_included: bool,
    pub maintenance: bool,
    /// An active Assistance+ pack: appointments left in its quota (pending ones excluded).
    pub appointment_quota_left: Option<i64>,
    pub credits_available: Decimal,
    pub tickets_available: i64,
    /// The contract bills misdeclared incidents (on by default, seed 003).
    pub misdeclared_chargeable: bool,
    /// Hourly rate (EUR, excl. VAT) of intervention time.
    pub hourly_rate: Option<Decimal>,
    /// The prices of the service the request needs, when it needs one.
    pub service: Option<ServicePrice>,
}

crate::text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum Decision {
        Approved = "approved",
        Denied = "denied",
    }
}

crate::text_enum! {
    /// What pays for an approved request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum Funding {
        /// Covered by a subscription: nothing is consumed.
        Included = "included",
        /// An Assistance+ appointment within the quota.
        Quota = "quota",
        /// An Assistance+ appointment beyond the quota, billed at period end.
        Overage = "overage",
        Credits = "credits",
        Ticket = "ticket",
        /// Billed in euros after the work (disputable for 5 days).
        Chargeable = "chargeable",
    }
}

crate::text_enum! {
    /// Why, as a stable code.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum Reason {
        AccountClosed = "account_closed",
        AccountSuspended = "account_suspended",
        VipFreeDiagnostics = "vip_free_diagnostics",
        CoveredBySubscription = "covered_by_subscription",
        UsageQuestionFree = "usage_question_free",
        UsageQuestionChargeable = "usage_question_chargeable",
        OutOfScopeChargeable = "out_of_scope_chargeable",
        ServicePurchase = "service_purchase",
        MisdeclaredIncident = "misdeclared_incident",
        AppointmentQuota = "appointment_quota",
        AppointmentOverage = "appointment_overage",
        NoAppointmentPack = "no_appointment_pack",
        PaidTicket = "paid_ticket",
        ChargeableOnRequest = "chargeable_on_request",
        DeclarationWindowElapsed = "declaration_window_elapsed",
        InsufficientCredits = "insufficient_credits",
        TicketNotApplicable = "ticket_not_applicable",
        UnknownService = "unknown_service",
        NoCoverage = "no_coverage",
    }
}

/// What the rules decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    pub funding: Option<Funding>,
    pub reason: Reason,
    /// Credits to reserve (funding `credits`).
    pub credits: Option<Decimal>,
    /// EUR excl. VAT: the hourly rate, or the service price (funding `chargeable`).
    pub price: Option<Decimal>,
    /// Whether `price` is per hour (billed per started increment) rather than per unit.
    pub hourly: bool,
    pub take_charge_due_at: Option<DateTime<Utc>>,
}

/// Incidents must be declared within this much business time of their occurrence (004).
pub const DECLARATION_WINDOW: Duration = Duration::hours(24);
/// Take-charge delay of ticket assistance (004).
pub const TICKET_TAKE_CHARGE: Duration = Duration::hours(4);

fn denied(reason: Reason) -> Outcome {
    Outcome {
        decision: Decision::Denied,
        funding: None,
        reason,
        credits: None,
        price: None,
        hourly: false,
        take_charge_due_at: None,
    }
}

fn approved(funding: Funding, reason: Reason) -> Outcome {
    Outcome {
        decision: Decision::Approved,
        funding: Some(funding),
        reason,
        credits: None,
        price: None,
        hourly: false,
        take_charge_due_at: None,
    }
}

/// A paid service: in credits when asked (or when `auto` and they cover it), else euros.
fn paid_service(
    req: &AuthorizationRequest,
    h: &Holdings,
    reason: Reason,
    hourly_fallback: bool,
) -> Outcome {
    if req.preferred_funding == PreferredFunding::Ticket {
        return denied(Reason::TicketNotApplicable);
    }
    let Some(service) = &h.service else {
        return match (hourly_fallback, h.hourly_rate) {
            (true, Some(rate)) if req.preferred_funding != PreferredFunding::Credits => Outcome {
                price: Some(rate),
                hourly: true,
                ..approved(Funding::Chargeable, reason)
            },
            (true, Some(_)) => denied(Reason::InsufficientCredits),
            _ => denied(Reason::UnknownService),
        };
    };
    let in_credits = service.credits.filter(|c| *c <= h.credits_available);
    match (req.preferred_funding, in_credits) {
        (PreferredFunding::Credits | PreferredFunding::Auto, Some(c)) => Outcome {
            credits: Some(c),
            ..approved(Funding::Credits, reason)
        },
        (PreferredFunding::Credits, None) => denied(Reason::InsufficientCredits),
        _ => Outcome {
            price: Some(service.euros),
            ..approved(Funding::Chargeable, reason)
        },
    }
}

/// Decides, then sets the take-charge deadline of what is approved.
pub fn decide(req: &AuthorizationRequest, h: &Holdings, hours: &BusinessHours) -> Outcome {
    let mut outcome = rules(req, h, hours);
    if outcome.decision == Decision::Approved {
        let delay = if outcome.funding == Some(Funding::Ticket) {
            TICKET_TAKE_CHARGE
        } else {
            Duration::hours(req.priority.take_charge_hours())
        };
        outcome.take_charge_due_at = Some(hours.add(req.declared_at, delay));
    }
    outcome
}

fn rules(req: &AuthorizationRequest, h: &Holdings, hours: &BusinessHours) -> Outcome {
    use Classification as C;
    if h.closed {
        return denied(Reason::AccountClosed);
    }
    if h.suspended {
        return denied(Reason::AccountSuspended);
    }
    let incident = matches!(req.classification, C::InScope | C::Misdeclared);
    if req.kind == RequestKind::Diagnostic && incident && h.free_diagnostics {
        return approved(Funding::Included, Reason::VipFreeDiagnostics);
    }
    if req.kind == RequestKind::ServicePurchase {
        return paid_service(req, h, Reason::ServicePurchase, false);
    }
    match req.classification {
        C::OutOfScope(_) => return paid_service(req, h, Reason::OutOfScopeChargeable, true),
        C::UsageQuestion => {
            let learning = req
                .requester
                .learning_phase_end
                .is_some_and(|end| paris_date(req.declared_at) <= end);
            return if req.requester.certified || learning {
                approved(Funding::Included, Reason::UsageQuestionFree)
            } else {
                paid_service(req, h, Reason::UsageQuestionChargeable, true)
            };
        }
        C::Misdeclared if h.misdeclared_chargeable => {
            return match h.hourly_rate {
                Some(rate) => Outcome {
                    price: Some(rate),
                    hourly: true,
                    ..approved(Funding::Chargeable, Reason::MisdeclaredIncident)
                },
                None => denied(Reason::UnknownService),
            };
        }
        _ => {}
    }
    if req.kind == RequestKind::Appointment {
        return match h.appointment_quota_left {
            Some(left) if left > 0 => approved(Funding::Quota, Reason::AppointmentQuota),
            Some(_) => approved(Funding::Overage, Reason::AppointmentOverage),
            None => denied(Reason::NoAppointmentPack),
        };
    }
    if h.maintenance || h.assistance_included || h.free_diagnostics {
        return approved(Funding::Included, Reason::CoveredBySubscription);
    }
    let euros = |h: &Holdings| match h.hourly_rate {
        Some(rate) => Outcome {
            price: Some(rate),
            hourly: true,
            ..approved(Funding::Chargeable, Reason::ChargeableOnRequest)
        },
        None => denied(Reason::UnknownService),
    };
    if matches!(
        req.preferred_funding,
        PreferredFunding::Auto | PreferredFunding::Ticket
    ) && h.tickets_available > 0
    {
        return if hours.between(req.occurred_at, req.declared_at) <= DECLARATION_WINDOW {
            approved(Funding::Ticket, Reason::PaidTicket)
        } else {
            denied(Reason::DeclarationWindowElapsed)
        };
    }
    if req.preferred_funding == PreferredFunding::Euros {
        return euros(h);
    }
    denied(Reason::NoCoverage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn p(s: &str) -> DateTime<Utc> {
        let local = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        chrono::TimeZone::from_local_datetime(&chrono_tz::Europe::Paris, &local)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn request(kind: RequestKind, classification: Classification) -> AuthorizationRequest {
        AuthorizationRequest {
            customer_id: uuid::Uuid::nil(),
            request_ref: "T-1".into(),
            kind,
            classification,
            priority: Priority::High,
            requester: Requester {
                certified: false,
                learning_phase_end: None,
            },
            occurred_at: p("2026-11-20 10:00"),
            declared_at: p("2026-11-20 11:00"),
            service_code: None,
            preferred_funding: PreferredFunding::Auto,
        }
    }

    fn bare() -> Holdings {
        Holdings {
            misdeclared_chargeable: true,
            hourly_rate: Some(dec!(90)),
            ..Holdings::default()
        }
    }

    fn outcome(req: &AuthorizationRequest, h: &Holdings) -> (Decision, Option<Funding>, Reason) {
        let o = decide(req, h, &BusinessHours::default());
        (o.decision, o.funding, o.reason)
    }

    #[test]
    fn a_suspended_account_is_denied_before_anything() {
        let h = Holdings {
            suspended: true,
            free_diagnostics: true,
            ..bare()
        };
        let r = request(RequestKind::Diagnostic, Classification::InScope);
        assert_eq!(
            outcome(&r, &h),
            (Decision::Denied, None, Reason::AccountSuspended)
        );
    }

    #[test]
    fn a_closed_account_is_denied_first_even_suspended_or_covered() {
        let r = request(RequestKind::Diagnostic, Classification::InScope);
        for suspended in [false, true] {
            let h = Holdings {
                closed: true,
                suspended,
                free_diagnostics: true,
                maintenance: true,
                tickets_available: 3,
                ..bare()
            };
            assert_eq!(
                outcome(&r, &h),
                (Decision::Denied, None, Reason::AccountClosed)
            );
        }
    }

    #[test]
    fn vip_diagnostics_are_free_even_misdeclared_but_not_out_of_scope() {
        let vip = Holdings {
            free_diagnostics: true,
            ..bare()
        };
        let misdeclared = request(RequestKind::Diagnostic, Classification::Misdeclared);
        assert_eq!(
            outcome(&misdeclared, &vip),
            (
                Decision::Approved,
                Some(Funding::Included),
                Reason::VipFreeDiagnostics
            )
        );
        let out = request(
            RequestKind::Diagnostic,
            Classification::OutOfScope(OutOfScope::SpecificDevelopment),
        );
        let o = decide(&out, &vip, &BusinessHours::default());
        assert_eq!(
            (o.funding, o.reason, o.price, o.hourly),
            (
                Some(Funding::Chargeable),
                Reason::OutOfScopeChargeable,
                Some(dec!(90)),
                true
            )
        );
    }

    #[test]
    fn usage_questions_free_while_certified_or_learning_that_day_included() {
        let h = Holdings {
            service: Some(ServicePrice {
                code: "usage_help".into(),
                euros: dec!(80),
                credits: Some(dec!(1)),
            }),
            ..bare()
        };
        let mut q = request(RequestKind::Intervention, Classification::UsageQuestion);
        q.requester = Requester {
            certified: true,
            learning_phase_end: None,
        };
        assert_eq!(outcome(&q, &h).2, Reason::UsageQuestionFree);
        q.requester = Requester {
            certified: false,
            learning_phase_end: Some("2026-11-20".parse().unwrap()),
        };
        assert_eq!(
            outcome(&q, &h).2,
            Reason::UsageQuestionFree,
            "the phase's last day is in it"
        );
        q.requester = Requester {
            certified: false,
            learning_phase_end: Some("2026-11-19".parse().unwrap()),
        };
        let o = decide(&q, &h, &BusinessHours::default());
        assert_eq!(
            (o.funding, o.reason, o.price),
            (
                Some(Funding::Chargeable),
                Reason::UsageQuestionChargeable,
                Some(dec!(80))
            )
        );
        // with credits that cover it, `auto` pays in credits; `credits` without enough is denied
        let rich = Holdings {
            credits_available: dec!(3),
            ..h.clone()
        };
        assert_eq!(
            decide(&q, &rich, &BusinessHours::default()).credits,
            Some(dec!(1))
        );
        q.preferred_funding = PreferredFunding::Credits;
        assert_eq!(
            outcome(&q, &h),
            (Decision::Denied, None, Reason::InsufficientCredits)
        );
        q.preferred_funding = PreferredFunding::Euros;
        assert_eq!(
            decide(&q, &rich, &BusinessHours::default()).funding,
            Some(Funding::Chargeable)
        );
    }

    #[test]
    fn misdeclared_incidents_are_chargeable_when_the_contract_says_so() {
        let h = Holdings {
            maintenance: true,
            ..bare()
        };
        let r = request(RequestKind::Intervention, Classification::Misdeclared);
        let o = decide(&r, &h, &BusinessHours::default());
        assert_eq!(
            (o.funding, o.reason, o.price, o.hourly),
            (
                Some(Funding::Chargeable),
                Reason::MisdeclaredIncident,
                Some(dec!(90)),
                true
            )
        );
        let lenient = Holdings {
            misdeclared_chargeable: false,
            ..h
        };
        assert_eq!(outcome(&r, &lenient).2, Reason::CoveredBySubscription);
    }

    #[test]
    fn funding_order_for_incidents_and_appointments() {
        let r = request(RequestKind::Intervention, Classification::InScope);
        assert_eq!(
            outcome(
                &r,
                &Holdings {
                    maintenance: true,
                    ..bare()
                }
            )
            .1,
            Some(Funding::Included)
        );
        assert_eq!(
            outcome(
                &r,
                &Holdings {
                    assistance_included: true,
                    tickets_available: 3,
                    ..bare()
                }
            )
            .1,
            Some(Funding::Included)
        );
        assert_eq!(
            outcome(
                &r,
                &Holdings {
                    tickets_available: 1,
                    ..bare()
                }
            )
            .1,
            Some(Funding::Ticket)
        );
        assert_eq!(
            outcome(&r, &bare()),
            (Decision::Denied, None, Reason::NoCoverage)
        );
        let euros = AuthorizationRequest {
            preferred_funding: PreferredFunding::Euros,
            ..r.clone()
        };
        assert_eq!(outcome(&euros, &bare()).2, Reason::ChargeableOnRequest);
        let appt = request(RequestKind::Appointment, Classification::InScope);
        assert_eq!(
            outcome(
                &appt,
                &Holdings {
                    appointment_quota_left: Some(1),
                    maintenance: true,
                    ..bare()
                }
            )
            .1,
            Some(Funding::Quota)
        );
        assert_eq!(
            outcome(
                &appt,
                &Holdings {
                    appointment_quota_left: Some(0),
                    ..bare()
                }
            )
            .1,
            Some(Funding::Overage)
        );
        assert_eq!(outcome(&appt, &bare()).2, Reason::NoAppointmentPack);
    }

    #[test]
    fn tickets_need_a_declaration_within_24_business_hours() {
        let h = Holdings {
            tickets_available: 1,
            ..bare()
        };
        let mut r = request(RequestKind::Intervention, Classification::InScope);
        // Friday 15:00 + 24 business hours, over a weekend: Wednesday 15:00
        r.occurred_at = p("2026-11-20 15:00");
        r.declared_at = p("2026-11-25 15:00");
        assert_eq!(
            outcome(&r, &h).1,
            Some(Funding::Ticket),
            "exactly 24 business hours"
        );
        r.declared_at = p("2026-11-25 15:01");
        assert_eq!(
            outcome(&r, &h).2,
            Reason::DeclarationWindowElapsed,
            "one minute more"
        );
        // over Christmas: Wednesday 23 Dec 15:00 → Tuesday 29 Dec 15:00 (25 Dec and the weekend skipped)
        r.occurred_at = p("2026-12-23 15:00");
        r.declared_at = p("2026-12-29 15:00");
        assert_eq!(outcome(&r, &h).1, Some(Funding::Ticket));
        r.declared_at = p("2026-12-29 15:01");
        assert_eq!(outcome(&r, &h).2, Reason::DeclarationWindowElapsed);
    }

    #[test]
    fn take_charge_deadlines() {
        let h = Holdings {
            maintenance: true,
            ..bare()
        };
        let mut r = request(RequestKind::Intervention, Classification::InScope);
        r.declared_at = p("2026-11-20 16:00");
        for (priority, due) in [
            (Priority::Critical, "2026-11-23 12:00"),
            (Priority::High, "2026-11-23 14:00"),
            (Priority::Moderate, "2026-11-23 16:00"),
        ] {
            r.priority = priority;
            assert_eq!(
                decide(&r, &h, &BusinessHours::default()).take_charge_due_at,
                Some(p(due)),
                "{priority:?}"
            );
        }
        r.priority = Priority::Moderate;
        let ticket = Holdings {
            tickets_available: 1,
            ..bare()
        };
        r.occurred_at = p("2026-11-20 15:00");
        assert_eq!(
            decide(&r, &ticket, &BusinessHours::default()).take_charge_due_at,
            Some(p("2026-11-23 12:00")),
            "4 h for ticket assistance"
        );
        assert_eq!(
            decide(&r, &bare(), &BusinessHours::default()).take_charge_due_at,
            None,
            "denied: no deadline"
        );
    }
}

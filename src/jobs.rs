//! Jobs: each takes an `as_of` instant and is idempotent (a second run for the same or an
//! earlier instant changes nothing; a late run catches up).

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use utoipa::ToSchema;

use crate::authorizations::store as authorizations;
use crate::error::ApiError;
use crate::money::DecimalString;
use crate::subscriptions::store as subscriptions;
use crate::wallets::store as wallets;

/// The jobs this build runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Job {
    /// Ends subscriptions whose end has come and records tacit renewals.
    Renewals,
    /// Charges every billing period that has started.
    Billing,
    /// Releases holds past their expiry.
    HoldExpiry,
    /// Sends the remainder of every expired credit lot to breakage.
    CreditExpiry,
    /// Closes Assistance+ periods and charges their overage.
    AssistancePeriodClose,
    /// Charges interventions whose dispute window closed (or whose dispute was lost).
    InterventionRelease,
    /// Issues one invoice per customer with charges not yet invoiced.
    Invoicing,
    /// Marks invoices past due overdue, sends formal notices (suspending), clears them
    /// once paid, and terminates contracts when a notice stays without effect.
    Dunning,
    /// Lapses SEPA mandates under which no collection was presented for 36 months.
    MandateLapse,
}

impl Job {
    pub const ALL: [Job; 9] = [
        Job::Renewals,
        Job::Billing,
        Job::HoldExpiry,
        Job::CreditExpiry,
        Job::AssistancePeriodClose,
        Job::InterventionRelease,
        Job::Invoicing,
        Job::Dunning,
        Job::MandateLapse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::Renewals => "renewals",
            Job::Billing => "billing",
            Job::HoldExpiry => "hold-expiry",
            Job::CreditExpiry => "credit-expiry",
            Job::AssistancePeriodClose => "assistance-period-close",
            Job::InterventionRelease => "intervention-release",
            Job::Invoicing => "invoicing",
            Job::Dunning => "dunning",
            Job::MandateLapse => "mandate-lapse",
        }
    }

    pub fn parse(s: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|j| j.name() == s)
    }
}

/// How far ahead of now a job may be run: a run catches up every period up to its
/// instant, so an instant centuries away would be millions of charges, not a catch-up.
pub const MAX_HORIZON: chrono::Duration = chrono::Duration::days(366 * 10);

/// Refuses an `as_of` more than [`MAX_HORIZON`] after `now`.
pub fn check_horizon(as_of: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    if as_of > now + MAX_HORIZON {
        return Err(format!(
            "at most 10 years after now ({})",
            (now + MAX_HORIZON).date_naive()
        ));
    }
    Ok(())
}

/// A record a job could not process; the next run takes it up again.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Failure {
    /// The record (a subscription, for the pack jobs).
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    pub error: String,
}

/// What a run did: its instant, its job and that job's own figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobRun {
    pub as_of: DateTime<Utc>,
    #[serde(flatten)]
    pub report: JobReport,
}

/// Each job's figures, named by its `job`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "job", rename_all = "kebab-case")]
pub enum JobReport {
    Renewals(RenewalsReport),
    Billing(ChargesReport),
    HoldExpiry(HoldExpiryReport),
    CreditExpiry(CreditExpiryReport),
    AssistancePeriodClose(wallets::PeriodCloseReport),
    InterventionRelease(ChargesReport),
    Invoicing(InvoicingReport),
    Dunning(crate::dunning::store::DunningReport),
    MandateLapse(MandateLapseReport),
}

/// `mandate-lapse`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MandateLapseReport {
    /// Mandates that lapsed (no collection presented for 36 months).
    pub mandates_lapsed: u32,
}

/// `invoicing`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvoicingReport {
    /// The invoice run that did it (`GET /v1/invoice-runs/{id}`).
    #[schema(value_type = String, format = Uuid)]
    pub run_id: uuid::Uuid,
    pub invoices_issued: u32,
    /// The sums of the invoices issued.
    #[schema(example = "83.33")]
    pub total_ht: DecimalString,
    #[schema(example = "16.67")]
    pub total_vat: DecimalString,
    #[schema(example = "100.00")]
    pub total_ttc: DecimalString,
    /// Customers whose invoice could not be issued; the next run takes them up again.
    pub failed: Vec<Failure>,
}

/// `renewals`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RenewalsReport {
    /// Subscriptions that renewed (one per term that began).
    pub renewed: u32,
    /// Subscriptions that reached their end.
    pub ended: u32,
    /// Service-credit lots granted (one per 12-month period of a Service+ pack).
    pub lots_granted: u32,
}

/// `billing` and `intervention-release`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChargesReport {
    pub charges_created: u32,
}

/// `hold-expiry`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HoldExpiryReport {
    pub holds_expired: u32,
}

/// `credit-expiry`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreditExpiryReport {
    /// Service-credit lots whose remainder went to breakage.
    pub lots_expired: u32,
}

/// The report of an invoice run (the `invoicing` job).
fn invoicing_report(run: crate::invoicing::runs::InvoiceRunView) -> InvoicingReport {
    InvoicingReport {
        run_id: run.id,
        invoices_issued: u32::try_from(run.invoices_issued).unwrap_or_default(),
        total_ht: run.total_ht,
        total_vat: run.total_vat,
        total_ttc: run.total_ttc,
        failed: run
            .errors
            .into_iter()
            .map(|e| Failure {
                id: e.customer_id,
                error: e.error,
            })
            .collect(),
    }
}

/// Runs `job` for `as_of` at the time of `clock`, on connections of `pool`: the
/// production entry (`POST /v1/jobs/{name}/run`, `grandlivre jobs run`). `invoicing` is an
/// invoice run on the run engine (`invoicing::store_runs`), recorded like those of
/// `POST /v1/invoice-runs`, calling `progress` after each page of customers.
pub async fn run_on(
    pool: &crate::db::DbPool,
    job: Job,
    as_of: DateTime<Utc>,
    clock: &crate::clock::ServiceClock,
    progress: &(dyn Fn(&crate::invoicing::runs::Progress) + Sync),
) -> Result<JobRun, ApiError> {
    if job != Job::Invoicing {
        let mut conn = pool.get().await?;
        return run(&mut conn, job, as_of, clock.now()).await;
    }
    let done = crate::invoicing::store_runs::run_to_end(pool, as_of, clock, progress)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
    let report = JobReport::Invoicing(invoicing_report(done));
    tracing::info!(job = job.name(), %as_of, ?report, "job run");
    Ok(JobRun { as_of, report })
}

/// Runs `job` (any but `invoicing`, see [`run_on`]) for `as_of` on one connection; `now` is
/// the wall clock, when the rows it creates are created.
pub async fn run(
    conn: &mut AsyncPgConnection,
    job: Job,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<JobRun, ApiError> {
    let report = match job {
        Job::Renewals => {
            let r = subscriptions::run_renewals(conn, as_of).await?;
            JobReport::Renewals(RenewalsReport {
                renewed: r.renewed,
                ended: r.ended,
                lots_granted: wallets::grant_pack_credits(conn, as_of).await?,
            })
        }
        Job::Billing => JobReport::Billing(ChargesReport {
            charges_created: subscriptions::run_billing(conn, as_of, now).await?,
        }),
        Job::HoldExpiry => JobReport::HoldExpiry(HoldExpiryReport {
            holds_expired: authorizations::expire(conn, as_of).await?,
        }),
        Job::CreditExpiry => JobReport::CreditExpiry(CreditExpiryReport {
            lots_expired: wallets::expire_lots(conn, as_of).await?,
        }),
        Job::InterventionRelease => JobReport::InterventionRelease(ChargesReport {
            charges_created: crate::interventions::store::release(conn, as_of, now).await?,
        }),
        Job::AssistancePeriodClose => JobReport::AssistancePeriodClose(
            wallets::close_appointment_periods(conn, as_of, now).await?,
        ),
        // the run engine issues on several connections: `run_on`
        Job::Invoicing => {
            return Err(ApiError::internal(anyhow::anyhow!(
                "the invoicing job runs on a pool (jobs::run_on)"
            )))
        }
        Job::Dunning => JobReport::Dunning(
            crate::dunning::store::run(conn, crate::dunning::Policy::default(), as_of, now).await?,
        ),
        Job::MandateLapse => JobReport::MandateLapse(MandateLapseReport {
            mandates_lapsed: crate::sepa::store::lapse(conn, as_of).await?,
        }),
    };
    tracing::info!(job = job.name(), %as_of, ?report, "job run");
    Ok(JobRun { as_of, report })
}

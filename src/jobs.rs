//! Jobs: each takes an `as_of` instant and is idempotent (a second run for the same or an
//! earlier instant changes nothing; a late run catches up).

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::ledger;
use crate::subscriptions::store as subscriptions;

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
}

impl Job {
    pub const ALL: [Job; 3] = [Job::Renewals, Job::Billing, Job::HoldExpiry];

    pub fn name(self) -> &'static str {
        match self {
            Job::Renewals => "renewals",
            Job::Billing => "billing",
            Job::HoldExpiry => "hold-expiry",
        }
    }

    pub fn parse(s: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|j| j.name() == s)
    }
}

/// What a run did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobRun {
    pub job: Job,
    pub as_of: DateTime<Utc>,
    /// Subscriptions that renewed (one per term that began).
    pub renewed: u32,
    /// Subscriptions that reached their end.
    pub ended: u32,
    pub charges_created: u32,
    pub holds_expired: u32,
}

/// Runs `job` for `as_of`; `now` is the wall clock, when the rows it creates are created.
pub async fn run(
    conn: &mut AsyncPgConnection,
    job: Job,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<JobRun, ApiError> {
    let mut out = JobRun {
        job,
        as_of,
        renewed: 0,
        ended: 0,
        charges_created: 0,
        holds_expired: 0,
    };
    match job {
        Job::Renewals => {
            let r = subscriptions::run_renewals(conn, as_of).await?;
            (out.renewed, out.ended) = (r.renewed, r.ended);
        }
        Job::Billing => {
            out.charges_created = subscriptions::run_billing(conn, as_of, now)
                .await?
                .charges_created
        }
        Job::HoldExpiry => {
            out.holds_expired = ledger::store::expire_holds(conn, as_of).await? as u32
        }
    }
    tracing::info!(job = job.name(), %as_of, renewed = out.renewed, ended = out.ended, charges = out.charges_created, holds = out.holds_expired, "job run");
    Ok(out)
}

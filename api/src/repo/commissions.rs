//! Affiliates, commission rules, and the commissions a won deal earns.
//!
//! The rounding rule, in one place ([`commission_for`]): a commission is Σ over the rule's
//! marginal tiers of (the part of the base in the tier × rate_bps), exact in integers, then ÷ 10,000
//! rounded half away from zero — once per commission line, never per tier.

use runtime::UserId;
use runtime::db::TenantTx;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Date, OffsetDateTime};

use super::foreign_key_is_invalid;

/// One marginal tier: `rate_bps` applies to the part of the base at or above `from_minor` (and
/// below the next tier's `from_minor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub from_minor: i64,
    pub rate_bps: i32,
}

/// Tiers are valid when they start at 0, rise strictly, and rates are 0–10,000 bp.
pub fn check_tiers(tiers: &[Tier]) -> Result<(), String> {
    if tiers.first().map(|t| t.from_minor) != Some(0) {
        return Err("the first tier starts at from_minor 0".into());
    }
    if tiers.windows(2).any(|w| w[1].from_minor <= w[0].from_minor) {
        return Err("tiers rise strictly by from_minor".into());
    }
    if tiers.iter().any(|t| !(0..=10_000).contains(&t.rate_bps)) {
        return Err("rate_bps is 0 to 10,000 (0 % to 100 %)".into());
    }
    if tiers.len() > 20 {
        return Err("at most 20 tiers".into());
    }
    Ok(())
}

/// The commission on `base_minor` under `tiers` (valid per [`check_tiers`]).
pub fn commission_for(base_minor: i64, tiers: &[Tier]) -> i64 {
    let base = i128::from(base_minor.max(0));
    let mut exact: i128 = 0; // minor units × basis points
    for (i, tier) in tiers.iter().enumerate() {
        let from = i128::from(tier.from_minor);
        let to = tiers
            .get(i + 1)
            .map_or(base, |next| i128::from(next.from_minor).min(base));
        if to > from {
            exact += (to - from) * i128::from(tier.rate_bps);
        }
    }
    let (q, r) = (exact / 10_000, exact % 10_000);
    let rounded = if r * 2 >= 10_000 { q + 1 } else { q };
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Affiliate {
    pub id: uuid::Uuid,
    pub display_name: String,
    pub user_id: Option<UserId>,
    pub contact_id: Option<runtime::ContactId>,
    pub status: String,
    pub referral_code: String,
    pub onboarding: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const AFFILIATE: &str = "id, display_name, user_id, contact_id, status, referral_code, onboarding, created_at, updated_at";

impl Affiliate {
    /// Its onboarding steps not done yet, in order.
    pub fn undone_steps(&self) -> Vec<String> {
        self.onboarding
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["done_at"].is_null())
            .filter_map(|s| s["step"].as_str().map(str::to_owned))
            .collect()
    }
}

pub async fn find_affiliate(
    tx: &mut TenantTx,
    id: uuid::Uuid,
    lock: bool,
) -> runtime::Result<Affiliate> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as::<_, Affiliate>(&format!(
        "SELECT {AFFILIATE} FROM affiliates WHERE tenant_id = wasit_current_tenant() AND id = $1{lock}"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(runtime::Error::NotFound("affiliate"))
}

pub async fn create_affiliate(
    tx: &mut TenantTx,
    display_name: &str,
    user_id: Option<UserId>,
    contact_id: Option<runtime::ContactId>,
    referral_code: &str,
) -> runtime::Result<Affiliate> {
    sqlx::query_as::<_, Affiliate>(&format!(
        "INSERT INTO affiliates (tenant_id, display_name, user_id, contact_id, referral_code)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4) RETURNING {AFFILIATE}"
    ))
    .bind(display_name)
    .bind(user_id)
    .bind(contact_id)
    .bind(referral_code)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| match runtime::Error::from(e) {
        e if e.is_unique_violation() => {
            runtime::Error::Conflict(format!("the referral code {referral_code} is taken"))
        }
        runtime::Error::Database(e) => foreign_key_is_invalid(e),
        e => e,
    })
}

pub async fn save_affiliate(tx: &mut TenantTx, a: &Affiliate) -> runtime::Result<Affiliate> {
    Ok(sqlx::query_as::<_, Affiliate>(&format!(
        "UPDATE affiliates SET display_name = $2, status = $3, onboarding = $4, updated_at = now()
         WHERE tenant_id = wasit_current_tenant() AND id = $1 RETURNING {AFFILIATE}"
    ))
    .bind(a.id)
    .bind(&a.display_name)
    .bind(&a.status)
    .bind(&a.onboarding)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn list_affiliates(
    tx: &mut TenantTx,
    after: Option<super::Cursor>,
    limit: i64,
) -> runtime::Result<Vec<Affiliate>> {
    Ok(sqlx::query_as::<_, Affiliate>(&format!(
        "SELECT {AFFILIATE} FROM affiliates WHERE tenant_id = wasit_current_tenant()
           AND ($1::timestamptz IS NULL OR (created_at, id) < ($1, $2))
         ORDER BY created_at DESC, id DESC LIMIT $3"
    ))
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Rule {
    pub id: uuid::Uuid,
    pub name: String,
    pub beneficiary: String,
    pub affiliate_id: Option<uuid::Uuid>,
    pub currency: String,
    pub tiers: sqlx::types::Json<Vec<Tier>>,
    /// Lines up to this amount are approved by the commission agent; larger ones wait for a
    /// manager. `None`: every line waits for a person.
    pub approval_threshold_minor: Option<i64>,
    pub active: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

const RULE: &str = "id, name, beneficiary, affiliate_id, currency, tiers, approval_threshold_minor, active, created_at";

pub async fn create_rule(
    tx: &mut TenantTx,
    name: &str,
    beneficiary: &str,
    affiliate_id: Option<uuid::Uuid>,
    currency: &str,
    tiers: &[Tier],
    approval_threshold_minor: Option<i64>,
) -> runtime::Result<Rule> {
    sqlx::query_as::<_, Rule>(&format!(
        "INSERT INTO commission_rules (tenant_id, name, beneficiary, affiliate_id, currency, tiers,
                                       approval_threshold_minor)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5, $6) RETURNING {RULE}"
    ))
    .bind(name)
    .bind(beneficiary)
    .bind(affiliate_id)
    .bind(currency)
    .bind(sqlx::types::Json(tiers))
    .bind(approval_threshold_minor)
    .fetch_one(&mut **tx)
    .await
    .map_err(foreign_key_is_invalid)
}

/// Renames or (de)activates a rule; its tiers stay (commissions already computed name it).
pub async fn update_rule(
    tx: &mut TenantTx,
    id: uuid::Uuid,
    name: Option<&str>,
    active: Option<bool>,
) -> runtime::Result<Rule> {
    sqlx::query_as::<_, Rule>(&format!(
        "UPDATE commission_rules SET name = coalesce($2, name), active = coalesce($3, active)
         WHERE tenant_id = wasit_current_tenant() AND id = $1 RETURNING {RULE}"
    ))
    .bind(id)
    .bind(name)
    .bind(active)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(runtime::Error::NotFound("commission rule"))
}

/// Moves a commission pending → approved → paid; anything else is a conflict.
pub async fn set_status(
    tx: &mut TenantTx,
    id: uuid::Uuid,
    next: &str,
) -> runtime::Result<Commission> {
    let current: String = sqlx::query_scalar(
        "SELECT status FROM commissions WHERE tenant_id = wasit_current_tenant() AND id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(runtime::Error::NotFound("commission"))?;
    let legal = match current.as_str() {
        "pending" => "approved",
        "approved" => "paid",
        _ => "",
    };
    if next != legal {
        return Err(runtime::Error::Conflict(if legal.is_empty() {
            "the commission is paid".to_owned()
        } else {
            format!("a {current} commission moves to {legal}, not to {next}")
        }));
    }
    Ok(sqlx::query_as::<_, Commission>(
        "UPDATE commissions SET status = $2 WHERE tenant_id = wasit_current_tenant() AND id = $1
         RETURNING id, deal_id, rule_id, affiliate_id, user_id, base_minor, amount_minor, currency, period,
                   status, created_at",
    )
    .bind(id)
    .bind(next)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn list_rules(tx: &mut TenantTx) -> runtime::Result<Vec<Rule>> {
    Ok(sqlx::query_as::<_, Rule>(&format!(
        "SELECT {RULE} FROM commission_rules WHERE tenant_id = wasit_current_tenant()
         ORDER BY created_at, id"
    ))
    .fetch_all(&mut **tx)
    .await?)
}

/// The rule that pays `beneficiary` (`affiliate` or `owner`) in `currency`: the active rule of
/// that affiliate if there is one, else the latest active rule for every affiliate (or owner).
pub async fn rule_for(
    tx: &mut TenantTx,
    beneficiary: &str,
    currency: &str,
    affiliate: Option<uuid::Uuid>,
) -> runtime::Result<Option<Rule>> {
    Ok(sqlx::query_as::<_, Rule>(&format!(
        "SELECT {RULE} FROM commission_rules
         WHERE tenant_id = wasit_current_tenant() AND active AND beneficiary = $1 AND currency = $2
           AND (affiliate_id IS NULL OR affiliate_id = $3)
         ORDER BY affiliate_id IS NULL, created_at DESC LIMIT 1"
    ))
    .bind(beneficiary)
    .bind(currency)
    .bind(affiliate)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Computes the commissions of a deal that was just won (in this transaction): one line for its
/// affiliate and one for its owner, each under the most specific active rule in the deal's
/// currency. A line computed before is not computed again.
pub async fn on_deal_won(
    tx: &mut TenantTx,
    deal: &super::deals::Deal,
    won_at: OffsetDateTime,
) -> runtime::Result<usize> {
    let period = Date::from_calendar_date(won_at.year(), won_at.month(), 1)
        .map_err(|e| runtime::Error::Invalid(e.to_string()))?;
    let mut lines = 0;
    for (beneficiary, affiliate, user) in [
        ("affiliate", deal.affiliate_id, None),
        ("owner", None, deal.owner_user_id),
    ] {
        if affiliate.is_none() && user.is_none() {
            continue;
        }
        let Some(rule) = rule_for(tx, beneficiary, &deal.currency, affiliate).await? else {
            continue;
        };
        let amount = commission_for(deal.amount_minor, &rule.tiers.0);
        let rule = rule.id;
        lines += sqlx::query(
            "INSERT INTO commissions (tenant_id, deal_id, rule_id, affiliate_id, user_id, base_minor,
                                      amount_minor, currency, period)
             VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT DO NOTHING",
        )
        .bind(deal.id)
        .bind(rule)
        .bind(affiliate)
        .bind(user)
        .bind(deal.amount_minor)
        .bind(amount)
        .bind(&deal.currency)
        .bind(period)
        .execute(&mut **tx)
        .await?
        .rows_affected() as usize;
    }
    Ok(lines)
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Commission {
    pub id: uuid::Uuid,
    pub deal_id: uuid::Uuid,
    pub rule_id: uuid::Uuid,
    pub affiliate_id: Option<uuid::Uuid>,
    pub user_id: Option<UserId>,
    pub base_minor: i64,
    pub amount_minor: i64,
    pub currency: String,
    pub period: Date,
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

pub async fn list(
    tx: &mut TenantTx,
    period: Option<Date>,
    after: Option<super::Cursor>,
    limit: i64,
) -> runtime::Result<Vec<Commission>> {
    Ok(sqlx::query_as::<_, Commission>(
        "SELECT id, deal_id, rule_id, affiliate_id, user_id, base_minor, amount_minor, currency, period, status,
                created_at
         FROM commissions WHERE tenant_id = wasit_current_tenant() AND ($1::date IS NULL OR period = $1)
           AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4",
    )
    .bind(period)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// What each beneficiary is owed for a period, per currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Payout {
    pub affiliate_id: Option<uuid::Uuid>,
    pub user_id: Option<UserId>,
    pub currency: String,
    pub commissions: i64,
    pub amount_minor: i64,
}

pub async fn payouts(tx: &mut TenantTx, period: Date) -> runtime::Result<Vec<Payout>> {
    Ok(sqlx::query_as::<_, Payout>(
        "SELECT affiliate_id, user_id, currency, count(*) AS commissions, sum(amount_minor)::bigint AS amount_minor
         FROM commissions WHERE tenant_id = wasit_current_tenant() AND period = $1
         GROUP BY affiliate_id, user_id, currency
         ORDER BY currency, amount_minor DESC, affiliate_id, user_id",
    )
    .bind(period)
    .fetch_all(&mut **tx)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(from_minor: i64, rate_bps: i32) -> Tier {
        Tier {
            from_minor,
            rate_bps,
        }
    }

    #[test]
    fn commissions_are_exact_over_marginal_tiers_and_round_half_away_from_zero_once() {
        // 5 % of 12,345.67 SAR = 617.2835 SAR → 617.28 (61,728.35 halalas → 61,728).
        assert_eq!(commission_for(1_234_567, &[t(0, 500)]), 61_728);
        // 2.5 % of 0.30 SAR = 0.0075 SAR → 0.75 halala → 1.
        assert_eq!(commission_for(30, &[t(0, 250)]), 1);
        // 2.5 % of 0.10 SAR = 0.25 halala → 0.
        assert_eq!(commission_for(10, &[t(0, 250)]), 0);
        // Exactly half a halala rounds up: 50 % of 1 halala.
        assert_eq!(commission_for(1, &[t(0, 5_000)]), 1);
        // Marginal tiers: 5 % on the first 100,000.00, 7 % above. 150,000.00 SAR →
        // 5,000.00 + 3,500.00 = 8,500.00 SAR.
        let tiers = [t(0, 500), t(10_000_000, 700)];
        assert_eq!(commission_for(15_000_000, &tiers), 850_000);
        // Rounded once, not per tier: 100,000.01 SAR → 500,000 + 0.07 → 500,000.07 → 500,000.
        assert_eq!(commission_for(10_000_001, &tiers), 500_000);
        // Below the second tier only the first applies.
        assert_eq!(commission_for(9_999_999, &tiers), 500_000);
        assert!(check_tiers(&tiers).is_ok());
        assert!(check_tiers(&[t(100, 500)]).is_err());
        assert!(check_tiers(&[t(0, 500), t(0, 600)]).is_err());
        assert!(check_tiers(&[t(0, 10_001)]).is_err());
    }
}

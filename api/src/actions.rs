//! The action handler: agents' tool calls applied to the CRM (`runtime::actions::ActionHandler`).
//! Arguments arrive already checked against the tool's schema (`agents::tools`); the tenant,
//! contact and conversation come from the conversation, never from the model, and every object is
//! found through them (the contact's lead, its open claim, its next meeting). Money never moves
//! here: a refund becomes a pending approval for a person.

use runtime::actions::{ActionContext, ActionError, ActionFuture, ActionHandler, ToolAction};
use runtime::db::TenantTx;
use runtime::{Channel, Currency, LeadId, Money, UserId};
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::repo::{commissions, contacts, deals, guarantees, leads, meetings, proposals};

/// The tools this handler implements. Agents are offered no other action or read tool.
pub const SUPPORTED: &[&str] = &[
    "create_lead",
    "update_contact",
    "update_lead",
    "set_qualification",
    "set_lead_score",
    "assign_lead",
    "update_deal",
    "create_task",
    "create_proposal",
    "send_proposal",
    "get_affiliate_stats",
    "calculate_commission",
    "open_commission_dispute",
    "write_forecast",
    "approve_commissions",
    "schedule_follow_up",
    "create_deal",
    "find_slots",
    "book_meeting",
    "reschedule_meeting",
    "cancel_meeting",
    "mark_lost",
    "create_affiliate_application",
    "complete_onboarding_step",
    "issue_referral_code",
    "open_guarantee_claim",
    "request_refund",
    "attach_evidence",
    "assign_conversation",
    "notify_rep",
];

/// Meeting length when the model does not say.
const DEFAULT_MEETING_MINUTES: i64 = 30;

/// The CRM's action handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct CrmActions;

type Outcome = Result<Value, ActionError>;

fn refused(reason: impl Into<String>) -> ActionError {
    ActionError::Refused(reason.into())
}

/// A domain error of the repo layer is the model's to hear about; a database error is not.
fn from_repo(e: runtime::Error) -> ActionError {
    match e {
        runtime::Error::Invalid(m) | runtime::Error::Conflict(m) => ActionError::Refused(m),
        runtime::Error::NotFound(what) => ActionError::Refused(format!("{what} not found")),
        other => ActionError::Failed(other),
    }
}

fn text<'a>(args: &'a Value, key: &str) -> Option<&'a str> {
    args.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Minor units per major unit of `currency` (ISO 4217 exponents; 2 unless listed).
/// The amount the model gave under `key`, exactly, in `currency`'s minor units (absent: 0). Read
/// through its decimal text, never a float: `1250.1` is 125,010 halalas, and more decimals than
/// the currency has is refused with the reason, not rounded.
fn amount_arg(args: &Value, key: &str, currency: &str) -> Result<i64, ActionError> {
    let currency = Currency::parse(currency).map_err(refused)?;
    match args.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(amount) => Money::from_json(amount, currency)
            .map(|m| m.minor)
            .map_err(|e| refused(format!("{key}: {e}"))),
    }
}

/// Basis points as the percentage the model and the audit read (1,250 → 12.5).
fn percent_of_bps(bps: i32) -> Value {
    let sign = if bps < 0 { "-" } else { "" };
    let bps = bps.unsigned_abs();
    serde_json::from_str(&format!("{sign}{}.{:02}", bps / 100, bps % 100)).unwrap_or(Value::Null)
}

/// An amount in minor units as the model and the audit read it: a number in major units.
fn to_major(minor: i64, currency: &str) -> Value {
    Currency::parse(currency).map_or_else(|_| json!(minor), |c| Money::new(minor, c).major_json())
}

impl ActionHandler for CrmActions {
    fn supports(&self, tool: &str) -> bool {
        SUPPORTED.contains(&tool)
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut TenantTx,
        ctx: ActionContext,
        action: &'a ToolAction,
    ) -> ActionFuture<'a> {
        Box::pin(async move {
            let args = &action.arguments;
            match action.tool.as_str() {
                "create_lead" => create_lead(tx, ctx, args).await,
                "update_contact" => update_contact(tx, ctx, args).await,
                "update_lead" => update_lead(tx, ctx, args).await,
                "set_qualification" => set_qualification(tx, ctx, args).await,
                "set_lead_score" => set_lead_score(tx, ctx, args).await,
                "update_deal" => update_deal(tx, ctx, args).await,
                "create_task" => create_task(tx, ctx, args).await,
                "create_proposal" => create_proposal(tx, ctx, args).await,
                "send_proposal" => send_proposal(tx, ctx).await,
                "open_commission_dispute" => open_commission_dispute(tx, ctx, args).await,
                "write_forecast" => write_forecast(tx, ctx, args).await,
                "approve_commissions" => approve_commissions(tx, ctx, args).await,
                "schedule_follow_up" => schedule_follow_up(tx, ctx, args).await,
                "assign_lead" => assign_lead(tx, ctx).await,
                "create_deal" => create_deal(tx, ctx, args).await,
                "book_meeting" => book_meeting(tx, ctx, args).await,
                "reschedule_meeting" => reschedule_meeting(tx, ctx, args).await,
                "cancel_meeting" => cancel_meeting(tx, ctx, args).await,
                "mark_lost" => mark_lost(tx, ctx, args).await,
                "create_affiliate_application" => affiliate_application(tx, ctx, args).await,
                "complete_onboarding_step" => onboarding_step(tx, ctx, args).await,
                "issue_referral_code" => issue_referral_code(tx, ctx).await,
                "open_guarantee_claim" => open_claim(tx, ctx, args).await,
                "request_refund" => request_refund(tx, ctx, args).await,
                "attach_evidence" => attach_evidence(tx, ctx, args).await,
                "assign_conversation" => assign_conversation(tx, ctx, args).await,
                "notify_rep" => notify_rep(tx, ctx, args).await,
                other => Err(refused(format!("{other} is not available"))),
            }
        })
    }

    fn read<'a>(
        &'a self,
        pool: &'a PgPool,
        ctx: ActionContext,
        tool: &'a str,
        arguments: &'a Value,
    ) -> ActionFuture<'a> {
        Box::pin(async move {
            let mut tx = runtime::db::begin_tenant(pool, ctx.tenant).await?;
            let result = match tool {
                "find_slots" => find_slots(&mut tx, ctx, arguments).await,
                "get_affiliate_stats" => affiliate_stats(&mut tx, ctx, arguments).await,
                "calculate_commission" => calculate_commission(&mut tx, ctx, arguments).await,
                other => Err(refused(format!("{other} is not available"))),
            };
            tx.rollback().await.map_err(runtime::Error::from)?;
            result
        })
    }
}

/// The lead the work is about (a background agent's event), else the contact's latest lead;
/// locked for the change.
async fn current_lead(
    tx: &mut TenantTx,
    ctx: ActionContext,
) -> Result<Option<leads::Lead>, ActionError> {
    let id: Option<LeadId> = match ctx.lead {
        Some(lead) => Some(lead),
        None => sqlx::query_scalar(
            "SELECT id FROM leads WHERE tenant_id = wasit_current_tenant() AND contact_id = $1
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(ctx.contact)
        .fetch_optional(&mut **tx)
        .await
        .map_err(runtime::Error::from)?,
    };
    match id {
        Some(id) => Ok(Some(leads::find_for_update(tx, id).await?)),
        None => Ok(None),
    }
}

async fn require_lead(tx: &mut TenantTx, ctx: ActionContext) -> Result<leads::Lead, ActionError> {
    current_lead(tx, ctx)
        .await?
        .ok_or_else(|| refused("the contact has no lead yet (the intake agent creates it)"))
}

fn lead_view(lead: &leads::Lead) -> Value {
    json!({"status": lead.status.as_str(), "qualification": lead.qualification,
           "sector": lead.sector, "territory": lead.territory, "assigned": lead.owner_user_id.is_some()})
}

/// Copies the given keys of `args` into the lead's qualification object.
fn merge_qualification(lead: &mut leads::Lead, args: &Value, keys: &[&str]) {
    let mut q = lead
        .qualification
        .as_object()
        .cloned()
        .unwrap_or_else(Map::new);
    for key in keys {
        if let Some(v) = text(args, key) {
            q.insert((*key).to_owned(), Value::String(v.to_owned()));
        }
    }
    lead.qualification = Value::Object(q);
}

async fn create_lead(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    if let Some(lead) = current_lead(tx, ctx).await?
        && !matches!(
            lead.status,
            leads::LeadStatus::Converted | leads::LeadStatus::Disqualified
        )
    {
        return Err(refused(format!(
            "the contact already has a lead (status {}): update it with update_lead instead",
            lead.status.as_str()
        )));
    }
    if let Some(name) = text(args, "name") {
        let change = contacts::Change {
            display_name: Some(Some(name.to_owned())),
            ..contacts::Change::default()
        };
        contacts::update(tx, ctx.contact()?, &change).await?;
    }
    let mut qualification = Map::new();
    for key in ["company", "need"] {
        if let Some(v) = text(args, key) {
            qualification.insert(key.into(), Value::String(v.into()));
        }
    }
    let source = match ctx.channel {
        Some(Channel::Whatsapp) => leads::LeadSource::Whatsapp,
        Some(Channel::Sms) => leads::LeadSource::Sms,
        Some(Channel::Email) => leads::LeadSource::Email,
        // `wasit chat`: someone typing at a terminal.
        Some(Channel::Chat) | None => leads::LeadSource::Manual,
    };
    let lead = leads::create(
        tx,
        &leads::NewLead {
            contact_id: Some(ctx.contact()?),
            source: Some(source),
            qualification: Some(Value::Object(qualification)),
            sector: text(args, "sector").map(str::to_owned),
            territory: text(args, "territory").map(str::to_owned),
            ..leads::NewLead::default()
        },
    )
    .await
    .map_err(from_repo)?;
    Ok(json!({"lead": lead_view(&lead)}))
}

async fn update_contact(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let change = contacts::Change {
        display_name: text(args, "name").map(|n| Some(n.to_owned())),
        locale: text(args, "locale").map(|l| Some(l.to_owned())),
        ..contacts::Change::default()
    };
    let contact = contacts::update(tx, ctx.contact()?, &change)
        .await
        .map_err(from_repo)?;
    Ok(json!({"contact": {"name": contact.display_name, "locale": contact.locale}}))
}

/// Moves a `new` lead to `contacted`: an agent is talking with it.
fn contacted(lead: &mut leads::Lead) {
    if lead.status == leads::LeadStatus::New {
        lead.status = leads::LeadStatus::Contacted;
    }
}

async fn update_lead(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let mut lead = require_lead(tx, ctx).await?;
    merge_qualification(
        &mut lead,
        args,
        &["company", "need", "budget", "timeline", "authority"],
    );
    if let Some(sector) = text(args, "sector") {
        lead.sector = Some(sector.to_owned());
    }
    if let Some(territory) = text(args, "territory") {
        lead.territory = Some(territory.to_owned());
    }
    contacted(&mut lead);
    let lead = leads::save(tx, &lead).await.map_err(from_repo)?;
    Ok(json!({"lead": lead_view(&lead)}))
}

async fn set_qualification(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let mut lead = require_lead(tx, ctx).await?;
    if matches!(
        lead.status,
        leads::LeadStatus::Converted | leads::LeadStatus::Disqualified
    ) {
        return Err(refused(format!(
            "the lead is already {}",
            lead.status.as_str()
        )));
    }
    merge_qualification(
        &mut lead,
        args,
        &["budget", "authority", "need", "timeline"],
    );
    let qualified = args.get("qualified").and_then(Value::as_bool) == Some(true);
    let reason = text(args, "reason").unwrap_or_default().to_owned();
    if qualified {
        contacted(&mut lead);
        lead.status = leads::LeadStatus::Qualified;
        if let Some(q) = lead.qualification.as_object_mut() {
            q.insert("qualified_because".into(), Value::String(reason));
        }
    } else {
        lead.status = leads::LeadStatus::Disqualified;
        lead.disqualified_reason = Some(reason);
    }
    let lead = leads::save(tx, &lead).await.map_err(from_repo)?;
    Ok(json!({"lead": lead_view(&lead)}))
}

/// The scorer's score, with the reasons and the points each adds or removes.
async fn set_lead_score(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let mut lead = require_lead(tx, ctx).await?;
    let score = args
        .get("score")
        .and_then(Value::as_i64)
        .and_then(|s| i16::try_from(s).ok())
        .filter(|s| (0..=100).contains(s))
        .ok_or_else(|| refused("score is a whole number from 0 to 100"))?;
    let reasons: Vec<leads::ScoreReason> = args
        .get("reasons")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| refused(format!("reasons: {e}")))?
        .unwrap_or_default();
    lead.score = Some(score);
    lead.score_reasons = reasons;
    let lead = leads::save(tx, &lead).await.map_err(from_repo)?;
    Ok(json!({"lead": lead_view(&lead), "score": lead.score}))
}

/// The deal the work is about (a background agent's event), else the contact's latest open
/// deal; locked for the change.
async fn current_deal(tx: &mut TenantTx, ctx: ActionContext) -> Result<deals::Deal, ActionError> {
    let id: Option<uuid::Uuid> = match ctx.deal {
        Some(deal) => Some(deal.0),
        None => sqlx::query_scalar(
            "SELECT id FROM deals WHERE tenant_id = wasit_current_tenant() AND contact_id = $1
               AND closed_at IS NULL ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(ctx.contact)
        .fetch_optional(&mut **tx)
        .await
        .map_err(runtime::Error::from)?,
    };
    let id = id.ok_or_else(|| refused("there is no open deal"))?;
    deals::find(tx, id, true).await.map_err(from_repo)
}

/// The deal coach's estimate and next step; the stage stays the people's to move.
async fn update_deal(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let mut deal = current_deal(tx, ctx).await?;
    if let Some(p) = args.get("probability").and_then(Value::as_i64) {
        deal.win_probability = Some(i16::try_from(p.clamp(0, 100)).unwrap_or_default());
    }
    if let Some(step) = text(args, "next_step") {
        deal.next_step = Some(step.to_owned());
    }
    let deal = deals::save(
        tx,
        &deal,
        None,
        false,
        (None, &format!("agent:{}", ctx.agent)),
    )
    .await
    .map_err(from_repo)?;
    Ok(
        json!({"deal": {"title": deal.title, "win_probability": deal.win_probability,
                        "next_step": deal.next_step}}),
    )
}

/// A task for the deal's owner: it reaches them as a notification (`kind` `task`), with the
/// deal and the due date in its data.
async fn create_task(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let deal = current_deal(tx, ctx).await?;
    let owner = deal
        .owner_user_id
        .ok_or_else(|| refused("the deal has no owner to give a task to"))?;
    let title = text(args, "title").unwrap_or("Follow up on the deal");
    let due = text(args, "due_date");
    let id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO notifications (tenant_id, user_id, kind, title, body, data)
         VALUES (wasit_current_tenant(), $1, 'task', left($2, 200), left($3, 2000),
                 jsonb_build_object('deal_id', $4::uuid, 'due_date', $5::text, 'agent', $6::text))
         RETURNING id",
    )
    .bind(owner)
    .bind(title)
    .bind(text(args, "notes"))
    .bind(deal.id)
    .bind(due)
    .bind(ctx.agent)
    .fetch_one(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    Ok(json!({"task": {"id": id, "title": title, "due_date": due, "for": "the deal's owner"}}))
}

/// A draft proposal on the contact's open deal, priced from the deal. A discount beyond the limit
/// of the deal's owner (their sales profile; 5 % without one; none without an owner) waits for a
/// manager's approval, and the proposal cannot be sent until then.
async fn create_proposal(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let deal = current_deal(tx, ctx).await.map_err(|_| {
        refused("the contact has no open deal: the sales agent opens one with create_deal first")
    })?;
    // Basis points, exactly: 12.5 % is 1,250.
    let discount_bps = match args.get("discount_percent") {
        None | Some(Value::Null) => None,
        Some(percent) => {
            let text = match percent {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => String::new(),
            };
            let bps = runtime::domain::parse_decimal(&text, 2)
                .ok()
                .filter(|bps| *bps <= 10_000)
                .and_then(|bps| i32::try_from(bps).ok());
            Some(bps.ok_or_else(|| {
                refused("discount_percent is 0 to 100, with at most two decimals")
            })?)
        }
    };
    let discount_minor = discount_bps.map_or(0, |bps| {
        let exact = i128::from(deal.amount_minor) * i128::from(bps);
        i64::try_from((exact + 5_000) / 10_000).unwrap_or(i64::MAX)
    });
    let proposal = proposals::create(
        tx,
        &proposals::NewProposal {
            deal_id: deal.id,
            title: text(args, "title").unwrap_or("عرض سعر").to_owned(),
            content: text(args, "body").unwrap_or_default().to_owned(),
            amount_minor: Some(deal.amount_minor - discount_minor),
            currency: Some(deal.currency.clone()),
            author_user_id: None,
            author_agent: Some(ctx.agent.to_string()),
            discount_bps,
        },
    )
    .await
    .map_err(from_repo)?;
    let view = json!({"title": proposal.title, "status": proposal.status,
                      "amount": to_major(proposal.amount_minor.unwrap_or(0), &deal.currency),
                      "currency": deal.currency, "discount_percent": discount_bps.map(percent_of_bps)});
    let limit: i32 = match deal.owner_user_id {
        None => 0,
        Some(owner) => sqlx::query_scalar(
            "SELECT max_discount_bps FROM rep_profiles WHERE tenant_id = wasit_current_tenant() AND user_id = $1",
        )
        .bind(owner)
        .fetch_optional(&mut **tx)
        .await
        .map_err(runtime::Error::from)?
        .unwrap_or(crate::routes::leads::DEFAULT_MAX_DISCOUNT_BPS),
    };
    let Some(bps) = discount_bps.filter(|&bps| bps > limit) else {
        return Ok(json!({ "proposal": view }));
    };
    sqlx::query(
        "INSERT INTO approvals (tenant_id, kind, conversation_id, agent, tool, arguments, summary,
                                subject_type, subject_id, amount_minor, currency)
         VALUES (wasit_current_tenant(), 'discount', $1, $2, 'create_proposal', $3, left($4, 2000),
                 'proposal', $5, $6, $7)",
    )
    .bind(ctx.conversation)
    .bind(ctx.agent)
    .bind(args)
    .bind(format!(
        "A discount of {}% ({} {}) on \"{}\", beyond the rep's limit of {}%",
        f64::from(bps) / 100.0,
        to_major(discount_minor, &deal.currency),
        deal.currency,
        deal.title,
        f64::from(limit) / 100.0
    ))
    .bind(proposal.id)
    .bind(discount_minor)
    .bind(&deal.currency)
    .execute(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    Ok(json!({"proposal": view, "discount": "pending_approval",
              "note": "The discount is beyond the rep's limit: a manager must approve it before the proposal can be sent. Tell the contact the offer is being reviewed, not that the discount is granted."}))
}

/// Sends the latest draft proposal on the contact's deals, unless its discount still waits for
/// (or was refused) approval.
async fn send_proposal(tx: &mut TenantTx, ctx: ActionContext) -> Outcome {
    let found: Option<(uuid::Uuid, Option<String>)> = sqlx::query_as(
        "SELECT p.id,
                (SELECT a.status FROM approvals a WHERE a.tenant_id = p.tenant_id
                   AND a.subject_type = 'proposal' AND a.subject_id = p.id
                 ORDER BY a.requested_at DESC LIMIT 1)
         FROM proposals p JOIN deals d ON d.tenant_id = p.tenant_id AND d.id = p.deal_id
         WHERE p.tenant_id = wasit_current_tenant() AND p.status = 'draft'
           AND (d.id = $1 OR ($1 IS NULL AND d.contact_id = $2))
         ORDER BY p.created_at DESC, p.id DESC LIMIT 1",
    )
    .bind(ctx.deal)
    .bind(ctx.contact)
    .fetch_optional(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    let (id, approval) = found
        .ok_or_else(|| refused("there is no draft proposal: write one with create_proposal"))?;
    match approval.as_deref() {
        Some("pending") => {
            return Err(refused(
                "its discount waits for a manager's approval: tell the contact the offer is being reviewed",
            ));
        }
        Some("rejected") => {
            return Err(refused(
                "a manager refused its discount: write a new proposal without it (or with a smaller one)",
            ));
        }
        _ => {}
    }
    let mut proposal = proposals::find(tx, id, true).await.map_err(from_repo)?;
    proposal.status = proposals::ProposalStatus::Sent.as_str().to_owned();
    let proposal = proposals::save(tx, &proposal).await.map_err(from_repo)?;
    let currency = proposal.currency.clone().unwrap_or_default();
    Ok(
        json!({"proposal": {"title": proposal.title, "status": proposal.status,
              "amount": to_major(proposal.amount_minor.unwrap_or(0), &currency), "currency": currency,
              "content": proposal.content}}),
    )
}

/// The commission agent's review of a won deal's lines (the event's deal): a line up to its
/// rule's approval threshold is approved; a larger one (or any, under a rule without a
/// threshold) waits for a manager's approval. Lines reviewed before are left alone.
async fn approve_commissions(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let deal = ctx
        .deal
        .ok_or_else(|| refused("this reviews a won deal's commissions, on its event"))?;
    let lines: Vec<(uuid::Uuid, i64, String, Option<i64>, bool)> = sqlx::query_as(
        "SELECT c.id, c.amount_minor, c.currency, r.approval_threshold_minor,
                EXISTS (SELECT 1 FROM approvals a WHERE a.tenant_id = c.tenant_id
                          AND a.subject_type = 'commission' AND a.subject_id = c.id)
         FROM commissions c JOIN commission_rules r ON r.tenant_id = c.tenant_id AND r.id = c.rule_id
         WHERE c.tenant_id = wasit_current_tenant() AND c.deal_id = $1 AND c.status = 'pending'
         ORDER BY c.created_at, c.id FOR UPDATE OF c",
    )
    .bind(deal)
    .fetch_all(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    let note = text(args, "note").unwrap_or("");
    let mut reviewed = Vec::new();
    for (id, amount, currency, threshold, asked) in lines {
        if asked {
            continue;
        }
        let within = threshold.is_some_and(|t| amount <= t);
        if within {
            commissions::set_status(tx, id, "approved")
                .await
                .map_err(from_repo)?;
        } else {
            sqlx::query(
                "INSERT INTO approvals (tenant_id, kind, conversation_id, agent, tool, arguments, summary,
                                        subject_type, subject_id, amount_minor, currency)
                 VALUES (wasit_current_tenant(), 'commission_change', NULL, $1, 'approve_commissions', $2,
                         left($3, 2000), 'commission', $4, $5, $6)",
            )
            .bind(ctx.agent)
            .bind(args)
            .bind(format!(
                "A commission of {} {currency} is over its rule's approval threshold. {note}",
                to_major(amount, &currency)
            ))
            .bind(id)
            .bind(amount)
            .bind(&currency)
            .execute(&mut **tx)
            .await
            .map_err(runtime::Error::from)?;
        }
        reviewed.push(
            json!({"amount": to_major(amount, &currency), "currency": currency,
                             "status": if within { "approved" } else { "pending_approval" }}),
        );
    }
    if reviewed.is_empty() {
        return Err(refused("the deal has no commission waiting for review"));
    }
    Ok(json!({ "commissions": reviewed }))
}

/// Comes back to the contact in `in_days` days unless they write first: one pending follow-up per
/// conversation, a new one replacing it.
async fn schedule_follow_up(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let conversation = ctx.conversation()?;
    let days = args
        .get("in_days")
        .and_then(Value::as_i64)
        .unwrap_or(3)
        .clamp(1, 90);
    let due: OffsetDateTime = sqlx::query_scalar(
        "INSERT INTO follow_ups (tenant_id, conversation_id, due_at, note, agent)
         VALUES (wasit_current_tenant(), $1, now() + make_interval(days => $2), $3, $4)
         ON CONFLICT (tenant_id, conversation_id) WHERE status = 'pending'
         DO UPDATE SET due_at = EXCLUDED.due_at, note = EXCLUDED.note, agent = EXCLUDED.agent
         RETURNING due_at",
    )
    .bind(conversation)
    .bind(i32::try_from(days).unwrap_or(3))
    .bind(text(args, "note"))
    .bind(ctx.agent)
    .fetch_one(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    let due = due
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| refused(e.to_string()))?;
    Ok(json!({"follow_up": {"due_at": due, "in_days": days},
              "note": "Cancelled if the contact writes first."}))
}

/// The forecaster's estimate for a month, kept beside the weighted pipeline.
async fn write_forecast(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let period = text(args, "period").unwrap_or_default();
    let first_day = time::Date::parse(
        &format!("{period}-01"),
        &time::format_description::well_known::Iso8601::DATE,
    )
    .map_err(|_| refused("period is a month, YYYY-MM"))?;
    let currency = text(args, "currency").unwrap_or("SAR");
    let amount = amount_arg(args, "amount", currency)?;
    sqlx::query(
        "INSERT INTO forecasts (tenant_id, period, currency, amount_minor, reasons, agent, event_id)
         VALUES (wasit_current_tenant(), $1, $2, $3, left($4, 2000), $5, $6)",
    )
    .bind(first_day)
    .bind(currency)
    .bind(amount)
    .bind(text(args, "reasons").unwrap_or("—"))
    .bind(ctx.agent)
    .bind(ctx.event)
    .execute(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    Ok(
        json!({"forecast": {"period": period, "amount": to_major(amount, currency), "currency": currency}}),
    )
}

/// The affiliate this contact is, or why the tool cannot run.
async fn require_affiliate(
    tx: &mut TenantTx,
    ctx: ActionContext,
) -> Result<commissions::Affiliate, ActionError> {
    contact_affiliate(tx, ctx)
        .await?
        .ok_or_else(|| refused("this contact is not an affiliate"))
}

/// Amounts per currency, in major units: `{"SAR": 1234.5}`.
fn by_currency(rows: &[(String, i64)]) -> Value {
    Value::Object(
        rows.iter()
            .map(|(currency, minor)| (currency.clone(), json!(to_major(*minor, currency))))
            .collect(),
    )
}

/// The affiliate's figures over the last `days` (30 by default): leads referred, deals won and
/// their value, commissions by status.
async fn affiliate_stats(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let affiliate = require_affiliate(tx, ctx).await?;
    let days = args
        .get("days")
        .and_then(Value::as_i64)
        .unwrap_or(30)
        .clamp(1, 366);
    let (leads, won): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM leads WHERE tenant_id = wasit_current_tenant() AND affiliate_id = $1
                   AND created_at >= now() - make_interval(days => $2)),
                (SELECT count(*) FROM deals d JOIN pipeline_stages s ON s.tenant_id = d.tenant_id AND s.id = d.stage_id
                  WHERE d.tenant_id = wasit_current_tenant() AND d.affiliate_id = $1 AND s.kind = 'won'
                    AND d.closed_at >= now() - make_interval(days => $2))",
    )
    .bind(affiliate.id)
    .bind(i32::try_from(days).unwrap_or(30))
    .fetch_one(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    let won_value: Vec<(String, i64)> = sqlx::query_as(
        "SELECT d.currency, sum(d.amount_minor)::bigint FROM deals d
         JOIN pipeline_stages s ON s.tenant_id = d.tenant_id AND s.id = d.stage_id
         WHERE d.tenant_id = wasit_current_tenant() AND d.affiliate_id = $1 AND s.kind = 'won'
           AND d.closed_at >= now() - make_interval(days => $2)
         GROUP BY d.currency ORDER BY d.currency",
    )
    .bind(affiliate.id)
    .bind(i32::try_from(days).unwrap_or(30))
    .fetch_all(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    let earned: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT status, currency, sum(amount_minor)::bigint FROM commissions
         WHERE tenant_id = wasit_current_tenant() AND affiliate_id = $1
           AND created_at >= now() - make_interval(days => $2)
         GROUP BY status, currency ORDER BY status, currency",
    )
    .bind(affiliate.id)
    .bind(i32::try_from(days).unwrap_or(30))
    .fetch_all(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    let mut commissions_by_status = Map::new();
    for status in ["pending", "approved", "paid"] {
        let rows: Vec<(String, i64)> = earned
            .iter()
            .filter(|(s, ..)| s == status)
            .map(|(_, c, m)| (c.clone(), *m))
            .collect();
        commissions_by_status.insert(status.into(), by_currency(&rows));
    }
    Ok(
        json!({"affiliate": affiliate.display_name, "status": affiliate.status, "days": days,
              "referred_leads": leads, "won_deals": won, "won_value": by_currency(&won_value),
              "commissions": commissions_by_status}),
    )
}

/// What the affiliate's commission rule pays on an amount.
async fn calculate_commission(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let affiliate = require_affiliate(tx, ctx).await?;
    let currency = text(args, "currency").unwrap_or("SAR");
    let amount = amount_arg(args, "amount", currency)?;
    let rule = commissions::rule_for(tx, "affiliate", currency, Some(affiliate.id))
        .await
        .map_err(from_repo)?
        .ok_or_else(|| refused(format!("no active affiliate commission rule in {currency}")))?;
    let commission = commissions::commission_for(amount, &rule.tiers.0);
    let tiers: Vec<Value> = rule
        .tiers
        .0
        .iter()
        .map(|t| json!({"from": to_major(t.from_minor, currency), "rate_percent": f64::from(t.rate_bps) / 100.0}))
        .collect();
    Ok(
        json!({"rule": rule.name, "tiers": tiers, "amount": to_major(amount, currency),
              "commission": to_major(commission, currency), "currency": currency}),
    )
}

/// A dispute over the affiliate's latest commission, for a person to resolve.
async fn open_commission_dispute(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let affiliate = require_affiliate(tx, ctx).await?;
    let latest: Option<(uuid::Uuid, i64, String, bool)> = sqlx::query_as(
        "SELECT c.id, c.amount_minor, c.currency,
                EXISTS (SELECT 1 FROM disputes d WHERE d.tenant_id = c.tenant_id AND d.subject_kind = 'commission'
                          AND d.subject_id = c.id AND d.status <> 'resolved')
         FROM commissions c WHERE c.tenant_id = wasit_current_tenant() AND c.affiliate_id = $1
         ORDER BY c.created_at DESC, c.id DESC LIMIT 1",
    )
    .bind(affiliate.id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    let (commission, amount, currency, open) =
        latest.ok_or_else(|| refused("the affiliate has no commission to dispute"))?;
    if open {
        return Err(refused(
            "a dispute about this commission is open already: a person is reviewing it",
        ));
    }
    let id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO disputes (tenant_id, subject_kind, subject_id, reason, raised_by_user_id, raised_by_role)
         VALUES (wasit_current_tenant(), 'commission', $1, left($2, 5000), $3, 'affiliate')
         RETURNING id",
    )
    .bind(commission)
    .bind(text(args, "reason").unwrap_or_default())
    .bind(affiliate.user_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    Ok(
        json!({"dispute": {"id": id, "status": "open", "commission": to_major(amount, &currency),
              "currency": currency},
              "note": "A person reviews the dispute; tell the affiliate it is open, not that the amount changes."}),
    )
}

async fn assign_lead(tx: &mut TenantTx, ctx: ActionContext) -> Outcome {
    let lead = require_lead(tx, ctx).await?;
    match leads::assign(tx, lead.id).await.map_err(from_repo)? {
        Some(lead) => Ok(json!({"lead": lead_view(&lead)})),
        None => Err(refused(
            "no rep is eligible for this lead's sector and territory",
        )),
    }
}

async fn create_deal(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let lead = require_lead(tx, ctx).await?;
    let currency = text(args, "currency").unwrap_or("SAR").to_owned();
    let amount = amount_arg(args, "amount", &currency)?;
    let stage = deals::stages(tx)
        .await?
        .into_iter()
        .find(|s| s.kind.0 == deals::StageKind::Open)
        .ok_or_else(|| refused("the tenant's pipeline has no open stage"))?;
    let expected_close_date = text(args, "expected_close_date").and_then(|d| {
        time::Date::parse(d, &time::format_description::well_known::Iso8601::DATE).ok()
    });
    let now = OffsetDateTime::now_utc();
    let deal = deals::Deal {
        id: uuid::Uuid::nil(),
        title: text(args, "title").unwrap_or("Deal").to_owned(),
        lead_id: Some(lead.id),
        contact_id: Some(ctx.contact()?),
        stage_id: stage.id,
        amount_minor: amount,
        currency,
        expected_close_date,
        owner_user_id: lead.owner_user_id,
        affiliate_id: lead.affiliate_id,
        win_probability: None,
        next_step: None,
        closed_at: None,
        created_at: now,
        updated_at: now,
    };
    let deal = deals::create(tx, &deal, (None, &format!("agent:{}", ctx.agent)))
        .await
        .map_err(from_repo)?;
    Ok(json!({"deal": {"title": deal.title, "stage": stage.name,
                        "amount": to_major(deal.amount_minor, &deal.currency), "currency": deal.currency}}))
}

fn minutes(args: &Value) -> i64 {
    args.get("duration_minutes")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_MEETING_MINUTES)
}

/// Free slots of the lead's owner (or of every active rep when it has none), on the reps' working
/// hours, from an hour from now, that no scheduled meeting overlaps.
async fn find_slots(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let owner = current_lead(tx, ctx).await?.and_then(|l| l.owner_user_id);
    let days = args.get("days_ahead").and_then(Value::as_i64).unwrap_or(7);
    let minutes = minutes(args);
    let rows: Vec<(OffsetDateTime, String, String)> = sqlx::query_as(
        "WITH reps AS (
             SELECT id FROM users WHERE tenant_id = wasit_current_tenant() AND disabled_at IS NULL
               AND role IN ('sales_rep', 'sales_manager') AND ($1::uuid IS NULL OR id = $1)),
         days AS (
             SELECT d::date AS day FROM generate_series(current_date - 1, current_date + $2::int, interval '1 day') d),
         windows AS (
             SELECT h.user_id, h.time_zone, (d.day + h.starts) AT TIME ZONE h.time_zone AS opens,
                    (d.day + h.ends) AT TIME ZONE h.time_zone AS closes
             FROM rep_working_hours h JOIN reps r ON r.id = h.user_id CROSS JOIN days d
             WHERE h.tenant_id = wasit_current_tenant() AND extract(isodow FROM d.day) = h.weekday),
         slots AS (
             SELECT w.user_id, w.time_zone, s AS starts_at
             FROM windows w, generate_series(w.opens, w.closes - make_interval(mins => $3), make_interval(mins => $3)) s
             WHERE s >= now() + interval '1 hour' AND s < now() + make_interval(days => $2))
         SELECT DISTINCT ON (s.starts_at) s.starts_at,
                to_char(s.starts_at AT TIME ZONE s.time_zone, 'YYYY-MM-DD HH24:MI'), s.time_zone
         FROM slots s
         WHERE NOT EXISTS (
             SELECT 1 FROM meetings m
             WHERE m.tenant_id = wasit_current_tenant() AND m.rep_user_id = s.user_id AND m.status = 'scheduled'
               AND tstzrange(m.starts_at, m.ends_at) && tstzrange(s.starts_at, s.starts_at + make_interval(mins => $3)))
         ORDER BY s.starts_at LIMIT 8",
    )
    .bind(owner)
    .bind(i32::try_from(days).unwrap_or(7))
    .bind(i32::try_from(minutes).unwrap_or(30))
    .fetch_all(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    if rows.is_empty() {
        return Ok(
            json!({"slots": [], "note": "No free slot in that period: offer to have a rep propose a time, or look further ahead."}),
        );
    }
    let slots: Vec<Value> = rows
        .into_iter()
        .map(|(starts_at, local, zone)| {
            json!({"starts_at": starts_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                   "local_time": format!("{local} ({zone})"), "duration_minutes": minutes})
        })
        .collect();
    Ok(json!({ "slots": slots }))
}

/// The rep who takes a meeting at `starts_at`: the lead's owner if free then, else the active
/// rep free then with the fewest meetings that day.
async fn free_rep(
    tx: &mut TenantTx,
    owner: Option<UserId>,
    starts_at: OffsetDateTime,
    ends_at: OffsetDateTime,
) -> Result<Option<UserId>, ActionError> {
    Ok(sqlx::query_scalar(
        "SELECT u.id FROM users u
         WHERE u.tenant_id = wasit_current_tenant() AND u.disabled_at IS NULL
           AND u.role IN ('sales_rep', 'sales_manager') AND ($1::uuid IS NULL OR u.id = $1)
           AND (NOT EXISTS (SELECT 1 FROM rep_working_hours h WHERE h.tenant_id = u.tenant_id AND h.user_id = u.id)
                OR EXISTS (SELECT 1 FROM rep_working_hours h
                           WHERE h.tenant_id = u.tenant_id AND h.user_id = u.id
                             AND h.weekday = extract(isodow FROM $2 AT TIME ZONE h.time_zone)
                             AND ($2 AT TIME ZONE h.time_zone)::date = ($3 AT TIME ZONE h.time_zone)::date
                             AND ($2 AT TIME ZONE h.time_zone)::time >= h.starts
                             AND ($3 AT TIME ZONE h.time_zone)::time <= h.ends))
           AND NOT EXISTS (SELECT 1 FROM meetings m
                           WHERE m.tenant_id = u.tenant_id AND m.rep_user_id = u.id AND m.status = 'scheduled'
                             AND tstzrange(m.starts_at, m.ends_at) && tstzrange($2, $3))
         ORDER BY (SELECT count(*) FROM meetings m WHERE m.tenant_id = u.tenant_id AND m.rep_user_id = u.id
                     AND m.status = 'scheduled' AND m.starts_at::date = $2::date), u.created_at, u.id
         LIMIT 1",
    )
    .bind(owner)
    .bind(starts_at)
    .bind(ends_at)
    .fetch_optional(&mut **tx)
    .await
    .map_err(runtime::Error::from)?)
}

/// The meeting time the model gave: RFC 3339, and not in the past.
fn future_start(args: &Value) -> Result<OffsetDateTime, ActionError> {
    let starts_at = text(args, "starts_at")
        .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
        .ok_or_else(|| refused("starts_at must be an RFC 3339 time"))?;
    if starts_at < OffsetDateTime::now_utc() {
        return Err(refused(
            "that time is in the past: offer slots from find_slots",
        ));
    }
    Ok(starts_at)
}

fn meeting_view(m: &meetings::Meeting) -> Value {
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    json!({"title": m.title, "starts_at": rfc(m.starts_at), "ends_at": rfc(m.ends_at), "status": m.status})
}

async fn book_meeting(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let starts_at = future_start(args)?;
    let ends_at = starts_at + time::Duration::minutes(minutes(args));
    let lead = current_lead(tx, ctx).await?;
    let owner = lead.as_ref().and_then(|l| l.owner_user_id);
    let mut rep = free_rep(tx, owner, starts_at, ends_at).await?;
    if rep.is_none() && owner.is_some() {
        rep = free_rep(tx, None, starts_at, ends_at).await?;
    }
    let rep = rep
        .ok_or_else(|| refused("no rep is free at that time: offer other slots from find_slots"))?;
    let meeting = meetings::create(
        tx,
        &meetings::NewMeeting {
            rep_user_id: rep,
            contact_id: Some(ctx.contact()?),
            lead_id: lead.as_ref().map(|l| l.id),
            deal_id: None,
            title: text(args, "title").unwrap_or("Meeting").to_owned(),
            location: None,
            starts_at,
            ends_at,
        },
    )
    .await
    .map_err(from_repo)?;
    Ok(json!({"meeting": meeting_view(&meeting)}))
}

/// The contact's next scheduled meeting, locked for the change.
async fn next_meeting(
    tx: &mut TenantTx,
    ctx: ActionContext,
) -> Result<meetings::Meeting, ActionError> {
    let id: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM meetings WHERE tenant_id = wasit_current_tenant() AND contact_id = $1
           AND status = 'scheduled' AND starts_at > now() ORDER BY starts_at LIMIT 1",
    )
    .bind(ctx.contact()?)
    .fetch_optional(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    let id = id.ok_or_else(|| refused("the contact has no upcoming meeting"))?;
    meetings::find(tx, id, true).await.map_err(from_repo)
}

/// Moves the contact's next meeting, keeping its rep: refused when the rep is busy then or it is
/// outside their working hours (checked before writing, so the transaction stays usable).
async fn reschedule_meeting(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let mut meeting = next_meeting(tx, ctx).await?;
    let starts_at = future_start(args)?;
    let length = args
        .get("duration_minutes")
        .and_then(Value::as_i64)
        .map_or(meeting.ends_at - meeting.starts_at, time::Duration::minutes);
    let busy: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM meetings WHERE tenant_id = wasit_current_tenant() AND rep_user_id = $1
             AND status = 'scheduled' AND id <> $2 AND tstzrange(starts_at, ends_at) && tstzrange($3, $4))",
    )
    .bind(meeting.rep_user_id)
    .bind(meeting.id)
    .bind(starts_at)
    .bind(starts_at + length)
    .fetch_one(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    if busy {
        return Err(refused(
            "the rep is not free at that time: offer other slots from find_slots",
        ));
    }
    meeting.starts_at = starts_at;
    meeting.ends_at = starts_at + length;
    let meeting = meetings::save(tx, &meeting, true)
        .await
        .map_err(from_repo)?;
    Ok(json!({"meeting": meeting_view(&meeting)}))
}

/// Closes the contact's lead as lost; an opt-out also records the refusal of consent on the
/// conversation's channel.
async fn mark_lost(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let reason = text(args, "reason").unwrap_or_default().to_owned();
    let mut lead = current_lead(tx, ctx).await?;
    if let Some(open) = lead.as_mut().filter(|l| {
        !matches!(
            l.status,
            leads::LeadStatus::Converted | leads::LeadStatus::Disqualified
        )
    }) {
        open.status = leads::LeadStatus::Disqualified;
        open.disqualified_reason = Some(reason.clone());
        *open = leads::save(tx, open).await.map_err(from_repo)?;
    }
    let opted_out = args.get("opted_out").and_then(Value::as_bool) == Some(true);
    if opted_out {
        let channel = match ctx.channel {
            Some(Channel::Whatsapp) => contacts::ConsentChannel::Whatsapp,
            Some(Channel::Sms) => contacts::ConsentChannel::Sms,
            Some(Channel::Email | Channel::Chat) | None => contacts::ConsentChannel::Email,
        };
        let change = contacts::Change {
            consent: vec![(channel, contacts::ConsentStatus::OptedOut)],
            ..contacts::Change::default()
        };
        contacts::update(tx, ctx.contact()?, &change)
            .await
            .map_err(from_repo)?;
    }
    Ok(json!({"lead": lead.as_ref().map(lead_view), "opted_out": opted_out}))
}

async fn cancel_meeting(tx: &mut TenantTx, ctx: ActionContext, _args: &Value) -> Outcome {
    let mut meeting = next_meeting(tx, ctx).await?;
    meeting.status = "cancelled".into();
    let meeting = meetings::save(tx, &meeting, false)
        .await
        .map_err(from_repo)?;
    Ok(json!({"meeting": meeting_view(&meeting)}))
}

/// The contact's affiliate record, locked, if it has one.
async fn contact_affiliate(
    tx: &mut TenantTx,
    ctx: ActionContext,
) -> Result<Option<commissions::Affiliate>, ActionError> {
    let id: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM affiliates WHERE tenant_id = wasit_current_tenant() AND contact_id = $1
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(ctx.contact()?)
    .fetch_optional(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    match id {
        Some(id) => Ok(Some(commissions::find_affiliate(tx, id, true).await?)),
        None => Ok(None),
    }
}

/// Registers the contact as an affiliate applicant (status `applied`, for a manager to approve).
async fn affiliate_application(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    if let Some(a) = contact_affiliate(tx, ctx).await? {
        return Err(refused(format!(
            "the contact is an affiliate already (status {})",
            a.status
        )));
    }
    let name = text(args, "name").unwrap_or("Affiliate");
    // The code is issued (shown) only when onboarding is done.
    let code: String = uuid::Uuid::new_v4().simple().to_string()[..10].to_ascii_uppercase();
    let a = commissions::create_affiliate(tx, name, None, Some(ctx.contact()?), &code)
        .await
        .map_err(from_repo)?;
    Ok(json!({"application": {"name": a.display_name, "status": a.status}}))
}

async fn onboarding_step(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let mut a = contact_affiliate(tx, ctx)
        .await?
        .ok_or_else(|| refused("the contact is not an affiliate"))?;
    if !matches!(a.status.as_str(), "approved" | "onboarding") {
        return Err(refused(format!(
            "the affiliate is {}: onboarding is for approved affiliates",
            a.status
        )));
    }
    let name = text(args, "step").unwrap_or_default();
    let now = OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let step = a
        .onboarding
        .as_array_mut()
        .and_then(|steps| steps.iter_mut().find(|s| s["step"] == name))
        .ok_or_else(|| refused(format!("there is no onboarding step {name:?}")))?;
    if step["done_at"].is_null() {
        step["done_at"] = Value::String(now);
    }
    a.status = "onboarding".into();
    let a = commissions::save_affiliate(tx, &a)
        .await
        .map_err(from_repo)?;
    Ok(json!({"status": a.status, "steps_left": a.undone_steps()}))
}

/// Activates an affiliate whose onboarding is done and gives the referral code.
async fn issue_referral_code(tx: &mut TenantTx, ctx: ActionContext) -> Outcome {
    let mut a = contact_affiliate(tx, ctx)
        .await?
        .ok_or_else(|| refused("the contact is not an affiliate"))?;
    if a.status == "active" {
        return Ok(json!({"referral_code": a.referral_code, "status": a.status}));
    }
    let left = a.undone_steps();
    if a.status != "onboarding" || !left.is_empty() {
        return Err(refused(format!(
            "onboarding is not finished (status {}, steps left: {})",
            a.status,
            left.join(", ")
        )));
    }
    a.status = "active".into();
    let a = commissions::save_affiliate(tx, &a)
        .await
        .map_err(from_repo)?;
    Ok(json!({"referral_code": a.referral_code, "status": a.status}))
}

async fn open_claim(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let currency = text(args, "currency").unwrap_or("SAR").to_owned();
    let amount = amount_arg(args, "amount", &currency)?;
    let claim = guarantees::create(
        tx,
        Some(ctx.contact()?),
        None,
        text(args, "description").unwrap_or_default(),
        amount,
        &currency,
    )
    .await
    .map_err(from_repo)?;
    Ok(
        json!({"claim": {"status": claim.status, "amount": to_major(claim.claimed_minor, &claim.currency), "currency": claim.currency}}),
    )
}

/// The contact's open (undecided) guarantee claim, locked.
async fn open_claim_of(
    tx: &mut TenantTx,
    ctx: ActionContext,
) -> Result<guarantees::Claim, ActionError> {
    let id: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM guarantee_claims WHERE tenant_id = wasit_current_tenant() AND contact_id = $1
           AND status IN ('submitted', 'under_review') ORDER BY created_at DESC LIMIT 1",
    )
    .bind(ctx.contact()?)
    .fetch_optional(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    let id =
        id.ok_or_else(|| refused("the contact has no open guarantee claim: open one first"))?;
    guarantees::find(tx, id, true).await.map_err(from_repo)
}

/// Evidence the contact gave (a description, a receipt number, a link), added to their open
/// claim beside the files staff attach.
async fn attach_evidence(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let mut claim = open_claim_of(tx, ctx).await?;
    let added_at = OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| refused(e.to_string()))?;
    let count = match claim.evidence.as_array_mut() {
        Some(items) => {
            items.push(
                json!({"description": text(args, "description").unwrap_or_default(),
                              "url": text(args, "url"), "added_by_agent": ctx.agent,
                              "added_at": added_at}),
            );
            items.len()
        }
        None => return Err(refused("the claim's evidence cannot take more")),
    };
    guarantees::save(tx, &claim).await.map_err(from_repo)?;
    Ok(json!({"claim": {"status": claim.status, "evidence_items": count}}))
}

/// Every refund waits for a person: the claim goes under review and an approval is opened.
async fn request_refund(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let mut claim = open_claim_of(tx, ctx).await?;
    let minor = amount_arg(args, "amount", &claim.currency)?;
    if minor > claim.claimed_minor {
        return Err(refused(format!(
            "the refund cannot exceed the {} {} claimed",
            to_major(claim.claimed_minor, &claim.currency),
            claim.currency
        )));
    }
    let reason = text(args, "reason").unwrap_or_default();
    sqlx::query(
        "INSERT INTO approvals (tenant_id, kind, conversation_id, agent, tool, arguments, summary,
                                subject_type, subject_id, amount_minor, currency)
         VALUES (wasit_current_tenant(), 'refund', $1, $2, 'request_refund', $3, left($4, 2000),
                 'guarantee_claim', $5, $6, $7)",
    )
    .bind(ctx.conversation)
    .bind(ctx.agent)
    .bind(args)
    .bind(format!(
        "Refund of {} {} on a guarantee claim: {reason}",
        to_major(minor, &claim.currency),
        claim.currency
    ))
    .bind(claim.id)
    .bind(minor)
    .bind(&claim.currency)
    .execute(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    if claim.status == "submitted" {
        claim.status = "under_review".into();
        claim = guarantees::save(tx, &claim).await.map_err(from_repo)?;
    }
    Ok(
        json!({"refund": "pending_approval", "claim_status": claim.status,
              "note": "A person must approve this refund: tell the contact it is under review, not that it is paid."}),
    )
}

/// The rep a conversation goes to: its owner, else the lead's owner, else the active rep (or
/// manager, or admin) with the fewest escalated conversations.
async fn rep_for(tx: &mut TenantTx, ctx: ActionContext) -> Result<Option<UserId>, ActionError> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(
             (SELECT owner_user_id FROM conversations WHERE tenant_id = wasit_current_tenant() AND id = $1),
             (SELECT l.owner_user_id FROM leads l JOIN users u ON u.tenant_id = l.tenant_id AND u.id = l.owner_user_id
               WHERE l.tenant_id = wasit_current_tenant() AND l.contact_id = $2 AND u.disabled_at IS NULL
               ORDER BY l.created_at DESC LIMIT 1),
             (SELECT u.id FROM users u
               WHERE u.tenant_id = wasit_current_tenant() AND u.disabled_at IS NULL
                 AND u.role IN ('sales_rep', 'sales_manager', 'admin')
               ORDER BY array_position(ARRAY['sales_rep', 'sales_manager', 'admin'], u.role),
                        (SELECT count(*) FROM conversations v WHERE v.tenant_id = u.tenant_id
                           AND v.owner_user_id = u.id AND v.status = 'escalated'),
                        u.created_at, u.id
               LIMIT 1))",
    )
    .bind(ctx.conversation)
    .bind(ctx.contact)
    .fetch_one(&mut **tx)
    .await
    .map_err(runtime::Error::from)?)
}

/// The conversation becomes a rep's: escalated, owned by the rep, silent for agents until the rep
/// hands it back.
async fn assign_conversation(tx: &mut TenantTx, ctx: ActionContext, _args: &Value) -> Outcome {
    let conversation = ctx.conversation()?;
    let rep = rep_for(tx, ctx).await?;
    sqlx::query(
        "UPDATE conversations SET status = 'escalated', needs_human = true, owner_user_id = $2,
             escalated_from = coalesce(escalated_from, $3), updated_at = now()
         WHERE tenant_id = wasit_current_tenant() AND id = $1",
    )
    .bind(conversation)
    .bind(rep)
    .bind(ctx.agent)
    .execute(&mut **tx)
    .await
    .map_err(runtime::Error::from)?;
    Ok(
        json!({"assigned": rep.is_some(), "note": "A person has the conversation now; no agent writes to the contact until it is handed back."}),
    )
}

/// The summary reaches the conversation's rep and the sales managers, or every rep while none
/// can be assigned.
async fn notify_rep(tx: &mut TenantTx, ctx: ActionContext, args: &Value) -> Outcome {
    let summary = text(args, "summary").unwrap_or_default();
    let rep = rep_for(tx, ctx).await?;
    let sent: i64 = match rep {
        Some(rep) => sqlx::query_scalar(
            "WITH targets AS (
                 SELECT $1::uuid AS id
                 UNION
                 SELECT id FROM users WHERE tenant_id = wasit_current_tenant() AND disabled_at IS NULL
                   AND role = 'sales_manager'),
             sent AS (
                 INSERT INTO notifications (tenant_id, user_id, kind, title, body, data)
                 SELECT wasit_current_tenant(), t.id, 'conversation_escalated', 'محادثة تحتاج إلى موظف',
                        left($2, 2000), jsonb_build_object('conversation_id', $3::uuid)
                 FROM targets t
                 RETURNING 1)
             SELECT count(*) FROM sent",
        )
        .bind(rep)
        .bind(summary)
        .bind(ctx.conversation)
        .fetch_one(&mut **tx)
        .await
        .map_err(runtime::Error::from)?,
        None => sqlx::query_scalar::<_, i32>("SELECT wasit_notify_escalation($1, $2)")
            .bind(ctx.conversation)
            .bind(summary)
            .fetch_one(&mut **tx)
            .await
            .map(i64::from)
            .map_err(runtime::Error::from)?,
    };
    Ok(json!({ "notified": sent }))
}

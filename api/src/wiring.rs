//! The composition root: builds the conversation runtime from settings — the agents with their
//! prompt files and LLM client, the channel senders — so `serve`, tests and load tools assemble it
//! the same way.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use runtime::actors::{RuntimeConfig, RuntimeParts};
use runtime::outbox::Senders;
use runtime::turn::TurnEngine;
use runtime::{AgentKind, Settings};

/// Everything `runtime::actors::Runtime::start` needs, from settings; adjust `config` before
/// starting if needed. Every agent kind of `agents::catalog` runs, each with its prompt file; the
/// prompt files are watched and reloaded while the returned parts live.
pub async fn runtime_parts(
    settings: &Settings,
    pool: sqlx::PgPool,
    knowledge: Option<Arc<knowledge_base::KnowledgeBase>>,
) -> anyhow::Result<RuntimeParts> {
    let prompts = agents::prompt::PromptStore::load(&settings.prompts_dir).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "invalid prompt files (WASIT_PROMPTS_DIR={}):\n{}",
            settings.prompts_dir.display(),
            lines.join("\n")
        )
    })?;
    let prompts = Arc::new(prompts);
    let kinds: Arc<[AgentKind]> = AgentKind::ALL.into();
    for kind in kinds.iter() {
        prompts.current().get("", kind.as_str()).with_context(|| {
            format!(
                "no prompt file for the {kind} agent in {}",
                settings.prompts_dir.display()
            )
        })?;
    }
    prompts.watch(agents::prompt::RELOAD_INTERVAL);
    let llm = match local_model::llm_from_settings(settings).await {
        Ok(llm) => {
            let provider = llm.provider();
            if provider.selects_models() {
                tracing::info!(
                    model = llm.default_model(),
                    "language model: {}",
                    provider.describe()
                );
            } else {
                // The embedded model is a development default: say so loudly at every start.
                tracing::warn!(
                    model = llm.default_model(),
                    "language model: {}",
                    provider.describe()
                );
            }
            Ok(llm)
        }
        Err(e) => {
            tracing::warn!(
                "{e}: turns wait (and are taken up again at the next start) until a model is available"
            );
            Err(e.to_string())
        }
    };
    let handler: Arc<dyn runtime::actions::ActionHandler> = Arc::new(crate::actions::CrmActions);
    let actions = runtime::actions::Actions {
        handler: handler.clone(),
        pool: pool.clone(),
    };
    let engines: Vec<(AgentKind, Arc<dyn TurnEngine>)> = kinds
        .iter()
        .map(|kind| {
            let mut agent = agents::llm_agent::LlmAgent::new(*kind, prompts.clone(), llm.clone())
                .with_actions(actions.clone())
                .with_running(kinds.clone());
            if let Some(kb) = &knowledge {
                agent = agent.with_knowledge(kb.clone());
            }
            let engine: Arc<dyn TurnEngine> = Arc::new(agent);
            (*kind, engine)
        })
        .collect();
    let router = agents::router::AgentRouter::new(prompts.clone(), kinds.iter().copied());
    let graph = channels::whatsapp::GraphClient::new(
        runtime::http::client(Duration::from_secs(20)),
        &settings.whatsapp_graph_url,
    );
    let senders = Senders::default().with(Arc::new(channels::whatsapp::WhatsAppSender::new(graph)));
    let config = RuntimeConfig {
        debounce: settings.debounce,
        idle_timeout: settings.idle_timeout,
        pacing: runtime::actors::Pacing {
            per_account_per_second: settings.whatsapp_rate as f64,
            ..runtime::actors::Pacing::default()
        },
        split: |text| channels::whatsapp::split_text(text, channels::whatsapp::MAX_TEXT_CHARS),
        ..RuntimeConfig::default()
    };
    Ok(RuntimeParts {
        pool,
        config,
        engines,
        senders,
        router: Some(Arc::new(router)),
        actions: Some(handler),
    })
}

/// The knowledge base the settings describe (see `knowledge_base::service::open`), with the LLM
/// layer only when embeddings need it.
pub async fn knowledge(
    settings: &Settings,
    pool: sqlx::PgPool,
) -> anyhow::Result<knowledge_base::KnowledgeBase> {
    let llm = match &settings.embedding_model {
        Some(_) => Some(
            local_model::llm_from_settings(settings)
                .await
                .context("EMBEDDING_MODEL is set but the LLM endpoint is not usable")?,
        ),
        None => None,
    };
    Ok(knowledge_base::service::open(settings, pool, llm.as_ref()).await?)
}

//! AgentSupervisor, one AgentPool per agent kind, and the pool's workers.
//!
//! Workers are where a turn's slow work happens (rendering, LLM calls): a pool bounds how many run
//! at once for its kind, queues the rest, and replaces a worker that fails. A caller that stops
//! waiting (a superseded generation) cancels the worker's job.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::oneshot;

use crate::domain::AgentKind;
use crate::turn::{TurnEngine, TurnError, TurnInput, TurnOutcome};

type JobReply = oneshot::Sender<Result<TurnOutcome, TurnError>>;

/// A turn for a worker to run, and where to send the outcome.
pub struct Job {
    input: TurnInput,
    reply: JobReply,
}

/// Runs turns on the pool of the right kind. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct AgentsHandle {
    pools: Arc<RwLock<HashMap<AgentKind, ActorRef<PoolMsg>>>>,
}

impl AgentsHandle {
    /// Runs `input` on its agent's pool. An unknown kind, or a worker that failed, is an error.
    pub async fn run(&self, input: TurnInput) -> Result<TurnOutcome, AgentFailure> {
        let pool = self
            .pools
            .read()
            .expect("pool map lock")
            .get(&input.agent)
            .cloned()
            .ok_or_else(|| {
                AgentFailure::Turn(TurnError::Permanent(format!(
                    "no agent of kind {:?}",
                    input.agent
                )))
            })?;
        let (reply, answer) = oneshot::channel();
        pool.cast(PoolMsg::Run(Box::new(Job { input, reply })))
            .map_err(|_| AgentFailure::Crashed("the agent pool is gone".into()))?;
        match answer.await {
            Ok(result) => result.map_err(AgentFailure::Turn),
            Err(_) => Err(AgentFailure::Crashed(
                "the agent worker failed during the turn".into(),
            )),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentFailure {
    #[error(transparent)]
    Turn(TurnError),
    /// The worker crashed (panicked) while running the turn.
    #[error("{0}")]
    Crashed(String),
}

// ---------------------------------------------------------------------------------------------

/// Starts one pool per agent kind and restarts a pool that fails.
pub struct AgentSupervisor;

pub struct AgentSupervisorArgs {
    pub engines: Vec<(AgentKind, Arc<dyn TurnEngine>)>,
    pub workers: usize,
    pub handle: AgentsHandle,
}

pub struct AgentSupervisorState {
    /// Kept to rebuild a pool that fails.
    engines: HashMap<AgentKind, Arc<dyn TurnEngine>>,
    workers: usize,
    handle: AgentsHandle,
    /// Which kind each pool actor serves, to restart the right one.
    kinds: HashMap<ActorId, AgentKind>,
}

impl Actor for AgentSupervisor {
    type Msg = ();
    type State = AgentSupervisorState;
    type Arguments = AgentSupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        args: AgentSupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = AgentSupervisorState {
            engines: args.engines.into_iter().collect(),
            workers: args.workers.max(1),
            handle: args.handle,
            kinds: HashMap::new(),
        };
        let kinds: Vec<AgentKind> = state.engines.keys().copied().collect();
        for kind in kinds {
            start_pool(&myself, &mut state, kind).await?;
        }
        Ok(state)
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Policy: a pool that stops or fails is started again.
        if let Some(id) = super::stopped_child(&event)
            && let Some(kind) = state.kinds.remove(&id)
        {
            tracing::error!(%kind, "agent pool stopped; starting it again");
            start_pool(&myself, state, kind).await?;
        }
        Ok(())
    }
}

async fn start_pool(
    myself: &ActorRef<()>,
    state: &mut AgentSupervisorState,
    kind: AgentKind,
) -> Result<(), ActorProcessingErr> {
    let engine = state.engines[&kind].clone();
    let (pool, _) = AgentPool::spawn_linked(
        None,
        AgentPool,
        PoolArgs {
            kind,
            engine,
            workers: state.workers,
        },
        myself.get_cell(),
    )
    .await?;
    state.kinds.insert(pool.get_id(), kind);
    state
        .handle
        .pools
        .write()
        .expect("pool map lock")
        .insert(kind, pool);
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// The workers of one agent kind, and the queue in front of them.
pub struct AgentPool;

pub struct PoolArgs {
    kind: AgentKind,
    engine: Arc<dyn TurnEngine>,
    workers: usize,
}

pub struct PoolState {
    kind: AgentKind,
    engine: Arc<dyn TurnEngine>,
    /// Workers waiting for a job.
    idle: Vec<ActorRef<WorkerMsg>>,
    /// Every live worker, idle or busy.
    workers: HashMap<ActorId, ActorRef<WorkerMsg>>,
    /// Jobs waiting for a worker, oldest first.
    queue: VecDeque<Job>,
}

pub enum PoolMsg {
    Run(Box<Job>),
    /// A worker finished its job and is free.
    Done(ActorId),
}

impl Actor for AgentPool {
    type Msg = PoolMsg;
    type State = PoolState;
    type Arguments = PoolArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<PoolMsg>,
        args: PoolArgs,
    ) -> Result<PoolState, ActorProcessingErr> {
        let mut state = PoolState {
            kind: args.kind,
            engine: args.engine,
            idle: Vec::new(),
            workers: HashMap::new(),
            queue: VecDeque::new(),
        };
        for _ in 0..args.workers {
            start_worker(&myself, &mut state).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<PoolMsg>,
        msg: PoolMsg,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PoolMsg::Run(job) => state.queue.push_back(*job),
            PoolMsg::Done(id) => {
                if let Some(worker) = state.workers.get(&id) {
                    state.idle.push(worker.clone());
                }
            }
        }
        dispatch(state);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<PoolMsg>,
        event: SupervisionEvent,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        // Policy: a worker that fails is replaced. Its job's caller sees the reply port close.
        if let Some(id) = super::stopped_child(&event)
            && state.workers.remove(&id).is_some()
        {
            state.idle.retain(|w| w.get_id() != id);
            tracing::error!(kind = %state.kind, "agent worker failed; replacing it");
            start_worker(&myself, state).await?;
            dispatch(state);
        }
        Ok(())
    }
}

fn dispatch(state: &mut PoolState) {
    while !state.queue.is_empty() {
        let Some(worker) = state.idle.pop() else {
            return;
        };
        let job = state.queue.pop_front().expect("checked non-empty");
        if job.reply.is_closed() {
            // The caller gave up (superseded) while the job waited.
            state.idle.push(worker);
            continue;
        }
        if let Err(e) = worker.cast(WorkerMsg(job)) {
            tracing::warn!(error = %e, "agent worker is gone");
        }
    }
}

async fn start_worker(
    pool: &ActorRef<PoolMsg>,
    state: &mut PoolState,
) -> Result<(), ActorProcessingErr> {
    let (worker, _) = AgentWorker::spawn_linked(
        None,
        AgentWorker,
        (state.engine.clone(), pool.clone()),
        pool.get_cell(),
    )
    .await?;
    state.workers.insert(worker.get_id(), worker.clone());
    state.idle.push(worker);
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// Runs one turn at a time for its pool.
pub struct AgentWorker;

pub struct WorkerMsg(Job);

impl Actor for AgentWorker {
    type Msg = WorkerMsg;
    /// The engine it runs and the pool it reports to.
    type State = (Arc<dyn TurnEngine>, ActorRef<PoolMsg>);
    type Arguments = (Arc<dyn TurnEngine>, ActorRef<PoolMsg>);

    async fn pre_start(
        &self,
        _myself: ActorRef<WorkerMsg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMsg>,
        WorkerMsg(job): WorkerMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (engine, pool) = state;
        let Job { input, mut reply } = job;
        tokio::select! {
            result = engine.run(input) => {
                let _ = reply.send(result);
            }
            () = reply.closed() => {
                tracing::debug!("turn cancelled by its caller");
            }
        }
        let _ = pool.cast(PoolMsg::Done(myself.get_id()));
        Ok(())
    }
}

//! Inference off the async runtime: one worker thread per model, fed by a bounded
//! queue. candle already spreads one forward pass over its own thread pool (and
//! serialises concurrent quantized matmuls), so one request at a time per model uses
//! every core without oversubscribing them; the queue bounds the waiting requests and
//! a full queue is a clear 503, not unbounded memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};
use veil_models::ModelError;
use veil_models::chat::{ChatModel, GenParams, Generation};
use veil_models::embed::{Embedder, Embeddings};

/// Requests that may wait for one model.
pub const QUEUE_DEPTH: usize = 32;

/// Why a job did not run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The queue is full.
    #[error("the model is busy; retry later")]
    Busy,
    /// The worker is gone (model unloaded or the runtime is stopping).
    #[error("the model is not being served")]
    Stopped,
    /// The model refused or failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

struct ChatJob {
    prompt: Vec<u32>,
    params: GenParams,
    /// Text as it becomes final; a closed receiver cancels the generation.
    stream: Option<mpsc::Sender<String>>,
    done: oneshot::Sender<Result<Generation, ModelError>>,
}

struct EmbedJob {
    inputs: Vec<String>,
    done: oneshot::Sender<Result<Embeddings, ModelError>>,
}

/// A chat model behind its worker.
#[derive(Debug, Clone)]
pub struct ChatEngine {
    model: Arc<ChatModel>,
    queue: std::sync::mpsc::SyncSender<ChatJob>,
    waiting: Arc<AtomicUsize>,
}

impl std::fmt::Debug for ChatJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatJob").field("prompt_tokens", &self.prompt.len()).finish_non_exhaustive()
    }
}

impl ChatEngine {
    /// Starts the worker thread for `model`.
    pub fn start(model: ChatModel) -> std::io::Result<Self> {
        let model = Arc::new(model);
        let (queue, rx) = std::sync::mpsc::sync_channel::<ChatJob>(QUEUE_DEPTH);
        let waiting = Arc::new(AtomicUsize::new(0));
        let (m, w) = (model.clone(), waiting.clone());
        std::thread::Builder::new().name("veil-chat".into()).spawn(move || {
            while let Ok(job) = rx.recv() {
                w.fetch_sub(1, Ordering::Relaxed);
                let ChatJob { prompt, params, stream, done } = job;
                let result = m.generate(&prompt, &params, |text| match &stream {
                    Some(tx) => tx.blocking_send(text.to_owned()).is_ok(),
                    None => !done.is_closed(),
                });
                let _ = done.send(result);
            }
        })?;
        Ok(Self { model, queue, waiting })
    }

    /// The model (for tokenising and templates on the async side: cheap work).
    pub fn model(&self) -> &ChatModel {
        &self.model
    }

    /// Requests waiting (not counting the one running).
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Queues a generation. With `stream`, text arrives there as it is produced.
    pub async fn generate(
        &self,
        prompt: Vec<u32>,
        params: GenParams,
        stream: Option<mpsc::Sender<String>>,
    ) -> Result<Generation, EngineError> {
        let (done, wait) = oneshot::channel();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        match self.queue.try_send(ChatJob { prompt, params, stream, done }) {
            Ok(()) => {}
            Err(e) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                return Err(match e {
                    std::sync::mpsc::TrySendError::Full(_) => EngineError::Busy,
                    std::sync::mpsc::TrySendError::Disconnected(_) => EngineError::Stopped,
                });
            }
        }
        Ok(wait.await.map_err(|_| EngineError::Stopped)??)
    }
}

/// An embedding model behind its worker.
#[derive(Debug, Clone)]
pub struct EmbedEngine {
    model: Arc<Embedder>,
    queue: std::sync::mpsc::SyncSender<EmbedJob>,
}

impl std::fmt::Debug for EmbedJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedJob").field("inputs", &self.inputs.len()).finish_non_exhaustive()
    }
}

impl EmbedEngine {
    /// Starts the worker thread for `model`.
    pub fn start(model: Embedder) -> std::io::Result<Self> {
        let model = Arc::new(model);
        let (queue, rx) = std::sync::mpsc::sync_channel::<EmbedJob>(QUEUE_DEPTH);
        let m = model.clone();
        std::thread::Builder::new().name("veil-embed".into()).spawn(move || {
            while let Ok(job) = rx.recv() {
                if job.done.is_closed() {
                    continue;
                }
                let _ = job.done.send(m.embed(&job.inputs));
            }
        })?;
        Ok(Self { model, queue })
    }

    /// The model.
    pub fn model(&self) -> &Embedder {
        &self.model
    }

    /// Queues an embedding request.
    pub async fn embed(&self, inputs: Vec<String>) -> Result<Embeddings, EngineError> {
        let (done, wait) = oneshot::channel();
        self.queue.try_send(EmbedJob { inputs, done }).map_err(|e| match e {
            std::sync::mpsc::TrySendError::Full(_) => EngineError::Busy,
            std::sync::mpsc::TrySendError::Disconnected(_) => EngineError::Stopped,
        })?;
        Ok(wait.await.map_err(|_| EngineError::Stopped)??)
    }
}

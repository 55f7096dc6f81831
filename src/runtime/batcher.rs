//! Store calls merged across lanes: the claim before each send and the versions read before
//! each supersede check, asked by every lane at once, go to the store as one call per batch
//! ([`gw_store::Store::claim_many`], [`gw_store::Store::versions_many`]) instead of one per
//! delivery.
//!
//! # Invariants
//! - A lane's answer is the store's answer to its own request: the batch calls answer in the
//!   order asked, each as the request would have been answered alone, one after another.
//! - Requests waiting together are merged (at most [`MAX_MERGE`]); when a merged call fails,
//!   each request is asked alone, so one bad request never fails its neighbours.
//! - Nothing is cached: every answer comes from a store call made after the request arrived.

use std::sync::Arc;

use futures::future::BoxFuture;
use gw_store::StoreError;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

/// Most requests merged into one store call.
pub(super) const MAX_MERGE: usize = 512;

type Answer<A> = oneshot::Sender<Result<A, StoreError>>;
type Call<Q, A> = dyn Fn(Vec<Q>) -> BoxFuture<'static, Result<Vec<A>, StoreError>> + Send + Sync;

/// One task that merges the requests of every lane into batch calls of the store.
pub(super) struct Batcher<Q, A> {
    tx: mpsc::Sender<(Q, Answer<A>)>,
}

impl<Q, A> Clone for Batcher<Q, A> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
        }
    }
}

impl<Q: Clone + Send + 'static, A: Send + 'static> Batcher<Q, A> {
    /// Start the task; `call` asks the store for a batch and answers in the order asked.
    pub(super) fn start(
        call: impl Fn(Vec<Q>) -> BoxFuture<'static, Result<Vec<A>, StoreError>> + Send + Sync + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(batch_loop(Arc::new(call), rx));
        Batcher { tx }
    }

    /// Ask; resolves with the store's answer to this request.
    pub(super) async fn ask(&self, q: Q) -> Result<A, StoreError> {
        let (done, wait) = oneshot::channel();
        let stopped = || StoreError::Query("the store batcher stopped".into());
        self.tx.send((q, done)).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

async fn batch_loop<Q: Clone + Send + 'static, A: Send + 'static>(
    call: Arc<Call<Q, A>>,
    mut rx: mpsc::Receiver<(Q, Answer<A>)>,
) {
    while let Some(first) = rx.recv().await {
        let mut waiting = vec![first];
        while waiting.len() < MAX_MERGE {
            match rx.try_recv() {
                Ok(r) => waiting.push(r),
                Err(_) => break,
            }
        }
        let asks: Vec<Q> = waiting.iter().map(|(q, _)| q.clone()).collect();
        let n = asks.len();
        match call(asks).await {
            Ok(answers) if answers.len() == n => {
                for ((_, done), a) in waiting.into_iter().zip(answers) {
                    let _ = done.send(Ok(a));
                }
            }
            Ok(answers) => {
                let why = format!("the store answered {} of {n} requests", answers.len());
                for (_, done) in waiting {
                    let _ = done.send(Err(StoreError::Query(why.clone())));
                }
            }
            Err(e) if n > 1 => {
                debug!(error = %e, n, "merged store call failed; asking one by one");
                for (q, done) in waiting {
                    let one = call(vec![q]).await.and_then(|mut a| {
                        a.pop().ok_or_else(|| StoreError::Query("no answer".into()))
                    });
                    let _ = done.send(one);
                }
            }
            Err(e) => {
                if let Some((_, done)) = waiting.pop() {
                    let _ = done.send(Err(e));
                }
            }
        }
    }
}

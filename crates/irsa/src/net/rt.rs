//! The CLI's one async runtime: built on first use, shared by every
//! command that talks to AWS, Kubernetes or an issuer over HTTPS, and by
//! `webhook serve`. Commands stay synchronous and enter it through
//! [`block_on`], never from inside a future it runs.

use std::future::Future;
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use tokio::runtime::Runtime;

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// Runs `future` to completion on the CLI's runtime.
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("irsa")
            .build()
            .map_err(|e| e.to_string())
    });
    match runtime {
        Ok(runtime) => Ok(runtime.block_on(future)),
        Err(e) => Err(anyhow!("cannot start the async runtime: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_started_by_one_call_lives_on_into_the_next() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        // Wrapped, so that the call returns the handle instead of awaiting it.
        let task = block_on(async { Some(tokio::spawn(async move { rx.await.unwrap_or(0) + 1 })) })
            .expect("runtime")
            .expect("spawned");
        tx.send(41).expect("task waits");
        // A runtime per call would have dropped the task with its runtime.
        assert_eq!(block_on(task).expect("runtime").expect("joined"), 42);
    }
}

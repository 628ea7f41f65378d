//! The stream a subscription yields.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use projectengine_core::{JobId, Notification};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

/// One subscriber's view of a job's broadcast channel. A subscriber that falls
/// behind by more than the channel holds gets [`Notification::Lagged`]. When
/// dropped, it reports its job so that the last one out unsubscribes.
pub(crate) struct Subscription {
    inner: Option<BroadcastStream<Notification>>,
    job_id: JobId,
    dropped: mpsc::UnboundedSender<JobId>,
}

impl Subscription {
    pub(crate) fn new(
        rx: broadcast::Receiver<Notification>,
        job_id: JobId,
        dropped: mpsc::UnboundedSender<JobId>,
    ) -> Self {
        Self {
            inner: Some(BroadcastStream::new(rx)),
            job_id,
            dropped,
        }
    }
}

impl Stream for Subscription {
    type Item = Notification;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Notification>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        Pin::new(inner).poll_next(cx).map(|item| {
            item.map(|r| match r {
                Ok(n) => n,
                Err(BroadcastStreamRecvError::Lagged(_)) => Notification::Lagged,
            })
        })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The receiver goes first, so that the background task sees it gone.
        self.inner.take();
        let _ = self.dropped.send(self.job_id);
    }
}

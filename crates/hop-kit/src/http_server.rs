//! One HTTP/1.1 connection of a listening hop, from its first byte to its end: the first request
//! head read as Go's server reads it ([`read_first_head`]), then hyper, upgrades included, until
//! the client leaves or the hop shuts down (the request in flight finishes first).

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Mutex, PoisonError};

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::limits::ConnectionLimits;
use crate::long_target::read_first_head;
use crate::request_head::LONG_TARGET_STAND_IN;

/// Serves the requests of one connection with `handle` until it ends or `shutdown` resolves.
pub async fn serve_http1<S, H, Fut, B>(
    io: S,
    limits: &ConnectionLimits,
    handle: H,
    shutdown: impl Future<Output = ()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (io, long_target) = match read_first_head(io, limits).await {
        Ok(first) => first,
        Err(err) => {
            tracing::debug!(error = %err, "connection ended before its first request");
            return;
        }
    };
    // Only the first request's target can have been put aside.
    let long_target = Mutex::new(long_target);
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        if req.uri().path() == LONG_TARGET_STAND_IN {
            let taken = long_target
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(target) = taken {
                req.extensions_mut().insert(target);
            }
        }
        let response = handle(req);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let conn = limits
        .http1()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::pin!(shutdown);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = &mut shutdown => {
            // Finish the request in flight (an upgrade hands its stream on), then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(error = %err, "connection ended with an error");
    }
}

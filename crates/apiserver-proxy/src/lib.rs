//! apiserver-proxy: kube-apiserver's part of `kubectl exec`, for real, unmodified kubectl.
//!
//! - [`server`]: HTTPS listener (client certs + bearer tokens), graceful shutdown, [`run`].
//! - [`handler`]: authentication → authorization → route, per request; [`request_info`] turns a
//!   request into the verb/resource/namespace the authorizer judges.
//! - [`authn`], [`authz`]: who is calling, and whether the policy lets them.
//! - [`discovery`], [`pods`]: what kubectl reads before it execs (`/api`, `/api/v1`, pods).
//! - [`exec`]: `pods/exec` and `pods/attach` routing; [`passthrough`] (SPDY and legacy WebSocket
//!   spliced to the kubelet) and [`translate`] (WebSocket v5 accepted here, SPDY to the kubelet).
//! - [`kubelet`]: the `--node` table and the mTLS client for kubelets.
//! - [`status`]: `metav1.Status` errors with upstream's texts.
pub mod authn;
pub mod authz;
pub mod discovery;
pub mod exec;
pub mod handler;
pub mod kubelet;
pub mod passthrough;
pub mod pods;
pub mod request_info;
pub mod server;
pub mod status;
pub mod translate;

pub use server::{run, ApiServer, ProxyConfig, SetupError};

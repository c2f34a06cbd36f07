//! What every network hop of execlab needs once: accepting TCP connections ([`accept`]), TLS
//! loading and client-certificate identity ([`tls`], each verified chain remembered:
//! [`verified_chains`]), the HTTP upgrade client and byte splice ([`upgrade`]) with Go's wording
//! for an answer that is not HTTP ([`response_head`]), `--addr-file` writing ([`addr_file`]),
//! the exec-session id carried in `traceparent` ([`session_id`]), tracing setup ([`logging`]),
//! Prometheus metrics ([`metrics`]), the OTLP span exporter ([`otlp`]), the flags that set
//! those up in every hop ([`observe`]), what one client connection may take from a hop
//! ([`limits`]), serving one HTTP/1.1 connection as Go's server does ([`http_server`], with
//! request heads read over bytes in [`request_head`] and targets too long for hyper carried by
//! [`long_target`]), and how much freed memory the allocator keeps ([`heap`]).

pub mod accept;
pub mod addr_file;
pub mod heap;
mod http_server;
pub mod limits;
pub mod logging;
pub mod long_target;
pub mod metrics;
pub mod observe;
pub mod otlp;
pub mod read_ahead;
pub mod request_head;
pub mod response_head;
pub mod session_id;
pub mod tls;
pub mod upgrade;
pub mod verified_chains;
mod write_passthrough;
pub mod x509_v1;

pub use accept::accept;
pub use addr_file::{read_addr_file, write_addr_file};
pub use http_server::serve_http1;
pub use limits::{ConnectionLimits, ConnectionSlots, LimitArgs};
pub use logging::LogFormat;
pub use long_target::path_and_query;
pub use read_ahead::ReadAhead;
pub use session_id::{exec_session_span, TraceParent, TRACEPARENT};
pub use tls::{ClientCert, PeerIdentity, ServerTls};
pub use upgrade::{dial_upgrade, splice, DialError, UpgradeOutcome, UpgradeRequest, UpgradedIo};
#[cfg(feature = "test-pki")]
pub mod test_io;
#[cfg(feature = "test-pki")]
pub mod test_pki;

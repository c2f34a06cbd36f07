//! Sessions on a hop's TLS server, as Go's crypto/tls server keeps them
//! (`src/crypto/tls/handshake_server_tls13.go`):
//! - one TLS 1.3 session ticket per handshake (`sendSessionTickets`: one per connection;
//!   rustls' default is two). A client that resumes needs no more, and each one costs the
//!   server a stored session and a record on the wire;
//! - a client certificate chain is verified once: a resumed session keeps the verdict of its
//!   first handshake (`checkForResumption` restores the verified chains).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hop_kit::test_pki::TestCa;
use hop_kit::{ClientCert, ServerTls};
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, NamedGroup, ServerConnection};

/// A session store that counts the TLS 1.3 tickets it is given.
#[derive(Debug)]
struct CountingStore {
    inner: ClientSessionMemoryCache,
    tickets: AtomicUsize,
}

impl ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.inner.set_kx_hint(server_name, group)
    }
    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(server_name)
    }
    fn set_tls12_session(
        &self,
        server_name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(server_name, value)
    }
    fn tls12_session(
        &self,
        server_name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(server_name)
    }
    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.inner.remove_tls12_session(server_name)
    }
    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.tickets.fetch_add(1, Ordering::SeqCst);
        self.inner.insert_tls13_ticket(server_name, value)
    }
    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(server_name)
    }
}

/// Moves every pending record from one side to the other, until neither has anything to say.
fn exchange(client: &mut ClientConnection, server: &mut ServerConnection) {
    for _ in 0..20 {
        let mut moved = false;
        while client.wants_write() {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).expect("client write");
            server.read_tls(&mut wire.as_slice()).expect("server read");
            server.process_new_packets().expect("server process");
            moved = true;
        }
        while server.wants_write() {
            let mut wire = Vec::new();
            server.write_tls(&mut wire).expect("server write");
            client.read_tls(&mut wire.as_slice()).expect("client read");
            client.process_new_packets().expect("client process");
            moved = true;
        }
        if !moved {
            return;
        }
    }
    panic!("the handshake did not settle");
}

/// A kubelet-like server asking for client certificates of a fresh CA, and the client config of
/// the apiserver's kubelet client (a certificate from that CA), resuming sessions.
fn kubelet_and_client() -> (ServerTls, rustls::ClientConfig) {
    let ca = TestCa::new("test-ca").expect("ca");
    let serving = ca.issue_server(&["localhost"]).expect("server cert");
    let tls =
        ServerTls::new(serving.pem().expect("pem"), Some(vec![ca.cert_der()])).expect("server tls");
    let identity = ca
        .issue_client("kube-apiserver-kubelet-client", Some("system:masters"))
        .expect("client cert");
    let config =
        hop_kit::tls::client_config(vec![ca.cert_der()], Some(identity.pem().expect("pem")))
            .expect("client config");
    (tls, (*config).clone())
}

#[test]
fn one_session_ticket_per_handshake_as_go_sends() {
    let (tls, mut config) = kubelet_and_client();
    let store = Arc::new(CountingStore {
        inner: ClientSessionMemoryCache::new(8),
        tickets: AtomicUsize::new(0),
    });
    config.resumption = Resumption::store(store.clone());
    let config = Arc::new(config);

    for handshake in 1..=2 {
        let name = ServerName::try_from("localhost").expect("name");
        let mut client = ClientConnection::new(config.clone(), name).expect("client");
        let mut server = ServerConnection::new(tls.config()).expect("server");
        exchange(&mut client, &mut server);
        assert!(!client.is_handshaking() && !server.is_handshaking());
        assert_eq!(store.tickets.load(Ordering::SeqCst), handshake);
    }
}

#[test]
fn a_client_chain_is_verified_once_then_resumed_sessions_keep_the_verdict() {
    let (tls, config) = kubelet_and_client();
    let config = Arc::new(config);
    for handshake in ["full", "resumed", "resumed"] {
        let name = ServerName::try_from("localhost").expect("name");
        let mut client = ClientConnection::new(config.clone(), name).expect("client");
        let mut server = ServerConnection::new(tls.config()).expect("server");
        exchange(&mut client, &mut server);
        let resumed = client.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        assert_eq!(resumed, handshake == "resumed", "{handshake} handshake");
        match tls.client_cert(server.peer_certificates()) {
            ClientCert::Verified(who) => assert_eq!(who.user, "kube-apiserver-kubelet-client"),
            other => panic!("{handshake} handshake: {other:?}"),
        }
        assert_eq!(
            tls.chain_verifications(),
            1,
            "after a {handshake} handshake"
        );
    }
}

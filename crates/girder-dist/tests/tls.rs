//! TLS with mutual certificates under the cookie handshake: the right CA both ways works;
//! a client or server certificate from another CA, or a plain-text peer, is refused.

use std::time::Duration;

use girder_dist::handshake::{self, HandshakeConfig, Refusal};
use girder_dist::tls::{self, TlsConfig};
use girder_dist::{Cookie, NodeName};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Ca {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca() -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        der: cert.der().clone(),
        issuer: Issuer::new(params, key),
    }
}

fn node_tls(ca: &Ca, trust: &Ca) -> TlsConfig {
    node_tls_for(ca, trust, "localhost")
}

/// A certificate signed by `ca` for `host`, trusting `trust`.
fn node_tls_for(ca: &Ca, trust: &Ca, host: &str) -> TlsConfig {
    let params = CertificateParams::new(vec![host.to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    TlsConfig::new(vec![trust.der.clone()], vec![cert.der().clone()], key).unwrap()
}

fn hs(name: &str) -> HandshakeConfig {
    let mut c = HandshakeConfig::new(
        NodeName::new(name).unwrap(),
        1,
        Cookie::new("tls-test-cluster-cookie").unwrap(),
    );
    c.timeout = Duration::from_secs(3);
    c
}

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (a.unwrap(), b.unwrap().0)
}

#[tokio::test]
async fn same_ca_both_ways_then_the_cookie_handshake_inside_tls() {
    let cluster = ca();
    let (a_tls, b_tls) = (node_tls(&cluster, &cluster), node_tls(&cluster, &cluster));
    let (a, b) = pair().await;
    let (ta, tb) = tokio::join!(tls::connect(a, "localhost", &a_tls), tls::accept(b, &b_tls));
    let (ta, tb) = (ta.unwrap(), tb.unwrap());
    let (ha, hb) = (hs("a@localhost"), hs("b@localhost"));
    let (ra, rb) = tokio::join!(
        handshake::initiate(ta, &ha),
        handshake::accept(tb, &hb, |_: &NodeName, _| Ok::<(), Refusal>(()))
    );
    assert_eq!(ra.unwrap().0.peer.as_str(), "b@localhost");
    assert_eq!(rb.unwrap().0.peer.as_str(), "a@localhost");
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let cluster = ca();
    let rogue = ca();
    let server = node_tls(&cluster, &cluster);
    // Signed by the rogue CA, but trusts the cluster CA (so it would accept the server).
    let client = node_tls(&rogue, &cluster);
    let (a, b) = pair().await;
    let (ra, rb) = tokio::join!(
        tls::connect(a, "localhost", &client),
        tls::accept(b, &server)
    );
    assert!(
        rb.is_err(),
        "the server must refuse an unknown client certificate"
    );
    // TLS 1.3 clients may only learn of the refusal on their first read; either way no handshake
    // can run.
    if let Ok(mut stream) = ra {
        let _ = stream.write_all(b"hello").await;
        let mut buf = [0u8; 8];
        let r = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
        assert!(matches!(r, Err(_) | Ok(0)), "{r:?}");
    }
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let cluster = ca();
    let rogue = ca();
    let server = node_tls(&rogue, &cluster);
    let client = node_tls(&cluster, &cluster);
    let (a, b) = pair().await;
    let (ra, _rb) = tokio::join!(
        tls::connect(a, "localhost", &client),
        tls::accept(b, &server)
    );
    assert!(
        ra.is_err(),
        "the client must refuse an unknown server certificate"
    );
}

#[tokio::test]
async fn a_plain_text_peer_is_refused() {
    let cluster = ca();
    let server = node_tls(&cluster, &cluster);
    let (mut a, b) = pair().await;
    a.write_all(b"\x00\x00\x00\x05hello, no tls here")
        .await
        .unwrap();
    let r = tls::accept(b, &server).await;
    assert!(r.is_err());
}

#[test]
fn missing_pem_files_get_a_clear_error() {
    let r = TlsConfig::from_pem_files(
        "/nonexistent/ca.pem".as_ref(),
        "/nonexistent/c.pem".as_ref(),
        "/nonexistent/k.pem".as_ref(),
    );
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("CA certificates") && e.contains("/nonexistent/ca.pem"),
        "{e}"
    );
}

#[tokio::test]
async fn a_peer_that_never_starts_tls_is_closed_after_the_handshake_timeout() {
    let ca = ca();
    let mut cfg = girder_testkit::dist::config("silent-tls@127.0.0.1", "tls-test-cluster-cookie");
    cfg.tls = Some(std::sync::Arc::new(node_tls(&ca, &ca)));
    cfg.handshake_timeout = Duration::from_millis(300);
    let node = girder_dist::DistNode::start(girder::Node::new("silent-tls@127.0.0.1"), cfg)
        .await
        .unwrap();
    // Connects and never sends a ClientHello.
    let mut silent = TcpStream::connect(node.local_addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let read = girder_testkit::within("the silent peer closed", silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    girder_testkit::eventually("counted as refused", || {
        let s = node.listener_status();
        s.refused == 1 && s.pending_handshakes == 0
    })
    .await;
}

async fn tls_node(name: &str, tls: TlsConfig) -> girder_dist::DistNode {
    let mut cfg = girder_testkit::dist::config(name, "tls-test-cluster-cookie");
    cfg.tls = Some(std::sync::Arc::new(tls));
    girder_dist::DistNode::start(girder::Node::new(name), cfg)
        .await
        .unwrap()
}

/// Whether `from`'s dial to `to` succeeds.
async fn dial(from: &girder_dist::DistNode, to: &girder_dist::DistNode) -> bool {
    from.add_address(to.name().clone(), to.local_addr());
    from.connect(to.name()).await.is_ok()
}

async fn dial_failure(from: &girder_dist::DistNode, to: &girder_dist::DistNode) -> String {
    from.add_address(to.name().clone(), to.local_addr());
    let mut events = from.subscribe();
    assert!(
        from.connect(to.name()).await.is_err(),
        "{} got in",
        from.name()
    );
    girder_testkit::within("the dial's failure", async {
        loop {
            if let Ok(girder_dist::NodeEvent::DialFailed { reason, .. }) = events.recv().await {
                return reason;
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_certificate_from_the_cluster_ca_cannot_pose_as_another_host() {
    let cluster = ca();
    let a = tls_node("a@localhost", node_tls_for(&cluster, &cluster, "localhost")).await;
    // A valid certificate of the cluster, issued to another host, claiming a name on it.
    let mallory = tls_node(
        "m@victim.example",
        node_tls_for(&cluster, &cluster, "mallory.example"),
    )
    .await;
    let why = dial_failure(&mallory, &a).await;
    assert!(why.contains("certificate is not for its host"), "{why}");
    assert!(a.connected().is_empty());
    // The certificate of the host it claims: let in.
    let b = tls_node("b@localhost", node_tls_for(&cluster, &cluster, "localhost")).await;
    assert!(dial(&b, &a).await);
    // Unless the acceptor was told to take any name from its CA.
    let lax = tls_node(
        "lax@localhost",
        node_tls_for(&cluster, &cluster, "localhost").allow_any_client_name(),
    )
    .await;
    assert!(dial(&mallory, &lax).await);
}

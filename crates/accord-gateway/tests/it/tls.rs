//! Mutual TLS between gateways, over real TCP on 127.0.0.1: certificates
//! from a federation CA made in a temporary directory, a provider that
//! accepts connections and reports what it saw, consumers that connect.
//! Every refusal is checked for its outcome and for saying why.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use accord_ca::{gateway_uri, FederationKeys, GatewayCertificateRequest, KeySource, CA_KEY_FILE};
use accord_domain::agreement::index::Index;
use accord_domain::configuration::{ConfigurationPayload, SignedConfiguration, FORMAT};
use accord_domain::MemberId;
use accord_gateway::federation::Federation;
use accord_gateway::tls::{
    accept, client_config, connect, refusal, server_config, server_name_for_address,
    ExpectedProvider, PeerIdentity, SharedTrust, TlsError, TrustView,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);
const PROVIDER: &str = "TEST/GOV/1";
const CONSUMER: &str = "TEST/GOV/2";
const THIRD: &str = "TEST/COM/3";

/// A certificate and its key, as a gateway is given them.
#[derive(Clone)]
struct Cert {
    member: String,
    name: String,
    cert_pem: String,
    key_pem: String,
    fingerprint: String,
}

impl Cert {
    fn identity(&self) -> PeerIdentity {
        PeerIdentity {
            member: self.member.parse().unwrap(),
            gateway: self.name.clone(),
            fingerprint_sha256: self.fingerprint.clone(),
        }
    }
}

/// The federation CA and an unrelated one, in a temporary directory.
struct Pki {
    _dir: TempDir,
    ca: FederationKeys,
    other_ca: FederationKeys,
    serial: u64,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = FederationKeys::create(&dir.path().join("federation"), "TEST", "Test").unwrap();
        let other_ca =
            FederationKeys::create(&dir.path().join("other"), "ELSE", "Elsewhere").unwrap();
        Pki {
            _dir: dir,
            ca,
            other_ca,
            serial: 0,
        }
    }

    fn issue(&mut self, member: &str, name: &str) -> Cert {
        self.serial += 1;
        issue_by(&self.ca, member, name, self.serial)
    }

    fn issue_by_other_ca(&mut self, member: &str, name: &str) -> Cert {
        self.serial += 1;
        issue_by(&self.other_ca, member, name, self.serial)
    }

    /// A trust view of the federation CA with `registered` valid and `revoked` revoked.
    fn view(&self, registered: &[&Cert], revoked: &[&Cert]) -> TrustView {
        TrustView::new(
            self.ca.ca_certificate_pem(),
            registered
                .iter()
                .map(|c| (c.fingerprint.clone(), c.identity())),
            revoked.iter().map(|c| c.fingerprint.clone()),
        )
        .unwrap()
    }

    /// A certificate signed by the federation CA whose validity ended yesterday
    /// (accord-ca cannot issue one: it always starts validity a minute ago).
    fn issue_expired(&mut self, member: &str, name: &str) -> Cert {
        self.serial += 1;
        let dir: &Path = self.ca.dir();
        let ca_key =
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join(CA_KEY_FILE)).unwrap())
                .unwrap();
        let issuer = rcgen::CertificateParams::from_ca_cert_pem(self.ca.ca_certificate_pem())
            .unwrap()
            .self_signed(&ca_key)
            .unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::Ia5String::try_from(gateway_uri(member, name)).unwrap(),
        ));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now - time::Duration::days(1);
        params.serial_number = Some(rcgen::SerialNumber::from(self.serial));
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, member);
        dn.push(rcgen::DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer, &ca_key).unwrap();
        Cert {
            member: member.to_owned(),
            name: name.to_owned(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            fingerprint: hex::encode(Sha256::digest(cert.der())),
        }
    }
}

fn issue_by(ca: &FederationKeys, member: &str, name: &str, serial: u64) -> Cert {
    let issued = ca
        .issue_gateway_certificate(&GatewayCertificateRequest {
            member_id: member.to_owned(),
            gateway_name: name.to_owned(),
            hosts: vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            key: KeySource::Generate,
            validity_days: 30,
            serial,
        })
        .unwrap();
    Cert {
        member: member.to_owned(),
        name: name.to_owned(),
        cert_pem: issued.certificate_pem,
        key_pem: issued.private_key_pem.unwrap(),
        fingerprint: issued.fingerprint_sha256,
    }
}

/// A provider gateway on 127.0.0.1: every connection's handshake outcome
/// is reported; a verified consumer is greeted with its own identity.
struct Provider {
    address: SocketAddr,
    outcomes: mpsc::UnboundedReceiver<Result<PeerIdentity, TlsError>>,
    task: JoinHandle<()>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Provider {
    async fn start(trust: SharedTrust, cert: &Cert) -> Provider {
        let config = server_config(trust.clone(), &cert.cert_pem, &cert.key_pem).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (report, outcomes) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((tcp, remote)) = listener.accept().await {
                let (config, trust, report) = (config.clone(), trust.clone(), report.clone());
                tokio::spawn(async move {
                    let peer = remote.to_string();
                    let outcome = match timeout(LIMIT, accept(&config, &trust, tcp, &peer)).await {
                        Err(_) => Err(TlsError::Handshake {
                            peer,
                            reason: "timed out".into(),
                        }),
                        Ok(Err(e)) => Err(e),
                        Ok(Ok((mut stream, identity))) => {
                            let greeting = format!("hello {}", identity.gateway_path());
                            let _ = timeout(LIMIT, async {
                                stream.write_all(greeting.as_bytes()).await?;
                                stream.shutdown().await
                            })
                            .await;
                            Ok(identity)
                        }
                    };
                    let _ = report.send(outcome);
                });
            }
        });
        Provider {
            address,
            outcomes,
            task,
        }
    }

    /// What the provider made of the next connection.
    async fn outcome(&mut self) -> Result<PeerIdentity, TlsError> {
        timeout(LIMIT, self.outcomes.recv())
            .await
            .expect("the provider reports every connection in time")
            .expect("the provider is running")
    }
}

fn localhost() -> ServerName<'static> {
    ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into())
}

fn expect(member: &str, gateway: Option<&str>) -> ExpectedProvider {
    ExpectedProvider {
        member: member.parse().unwrap(),
        gateway: gateway.map(str::to_owned),
    }
}

/// What a consumer saw: the provider's identity and greeting, or the error text.
#[derive(Debug)]
enum Seen {
    /// The handshake completed and the provider greeted us.
    Greeted(PeerIdentity, String),
    /// The consumer refused the provider (`connect` failed).
    Refused(TlsError),
    /// The handshake completed on the consumer's side, then the provider
    /// hung up with an alert (TLS 1.3: the client certificate is checked
    /// after the client's Finished).
    Dropped(String),
}

/// A consumer gateway: one client configuration for all its calls, as a
/// running gateway keeps it (so a session could be resumed if it were allowed).
struct Consumer {
    config: Arc<rustls::ClientConfig>,
    trust: SharedTrust,
}

impl Consumer {
    fn new(cert: &Cert, trust: &SharedTrust) -> Consumer {
        Consumer {
            config: client_config(trust.clone(), &cert.cert_pem, &cert.key_pem).unwrap(),
            trust: trust.clone(),
        }
    }

    async fn call(&self, address: SocketAddr, expected: ExpectedProvider) -> Seen {
        timeout(LIMIT, async {
            let tcp = TcpStream::connect(address).await.unwrap();
            let (mut stream, identity) =
                match connect(&self.config, &self.trust, localhost(), expected, tcp).await {
                    Ok(connected) => connected,
                    Err(e) => return Seen::Refused(e),
                };
            let mut greeting = String::new();
            match stream.read_to_string(&mut greeting).await {
                Ok(_) => Seen::Greeted(identity, greeting),
                Err(e) => Seen::Dropped(e.to_string()),
            }
        })
        .await
        .expect("the call ends in time")
    }
}

/// Asserts the provider refused the consumer and its error says `why`.
async fn assert_provider_refused(provider: &mut Provider, seen: Seen, why: &str) -> TlsError {
    let error = provider.outcome().await.unwrap_err();
    assert!(
        error.to_string().contains(why),
        "the provider's error {error:?} should say {why:?}"
    );
    match seen {
        Seen::Dropped(text) => assert!(
            text.contains("received fatal alert"),
            "the consumer should see the provider's alert: {text}"
        ),
        other => panic!("the consumer should have been dropped, saw {other:?}"),
    }
    error
}

#[tokio::test]
async fn registered_gateways_connect_both_ways_and_know_who_is_calling() {
    let mut pki = Pki::new();
    let provider_cert = pki.issue(PROVIDER, "gw1");
    let consumer_cert = pki.issue(CONSUMER, "edge");
    let view = || pki.view(&[&provider_cert, &consumer_cert], &[]);

    // Consumer → provider.
    let provider_trust = SharedTrust::new(view());
    let consumer_trust = SharedTrust::new(view());
    let mut provider = Provider::start(provider_trust, &provider_cert).await;
    let seen = Consumer::new(&consumer_cert, &consumer_trust)
        .call(provider.address, expect(PROVIDER, Some("gw1")))
        .await;
    assert_eq!(provider.outcome().await.unwrap(), consumer_cert.identity());
    match seen {
        Seen::Greeted(identity, greeting) => {
            assert_eq!(identity, provider_cert.identity());
            assert_eq!(greeting, "hello TEST/GOV/2/edge");
        }
        other => panic!("expected a greeting, saw {other:?}"),
    }

    // And the other way round: the former consumer now provides.
    let mut reverse = Provider::start(SharedTrust::new(view()), &consumer_cert).await;
    let seen = Consumer::new(&provider_cert, &SharedTrust::new(view()))
        .call(reverse.address, expect(CONSUMER, None))
        .await;
    let identity = reverse.outcome().await.unwrap();
    assert_eq!(identity.member, PROVIDER.parse::<MemberId>().unwrap());
    assert_eq!(identity.gateway, "gw1");
    assert_eq!(identity.fingerprint_sha256, provider_cert.fingerprint);
    assert!(
        matches!(&seen, Seen::Greeted(id, text) if *id == consumer_cert.identity() && text == "hello TEST/GOV/1/gw1"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let mut pki = Pki::new();
    let provider_cert = pki.issue(PROVIDER, "gw1");
    // Same member and name, and even registered: only the issuer is wrong.
    let stranger = pki.issue_by_other_ca(CONSUMER, "edge");
    let trust = SharedTrust::new(pki.view(&[&provider_cert, &stranger], &[]));
    let mut provider = Provider::start(trust.clone(), &provider_cert).await;

    let seen = Consumer::new(&stranger, &trust)
        .call(provider.address, expect(PROVIDER, None))
        .await;
    let error = assert_provider_refused(
        &mut provider,
        seen,
        &format!(
            "peer certificate {} is not issued by the federation CA",
            stranger.fingerprint
        ),
    )
    .await;
    assert!(matches!(error, TlsError::UnknownIssuer { .. }), "{error:?}");
}

#[tokio::test]
async fn revoking_a_certificate_refuses_the_next_handshake_without_a_restart() {
    let mut pki = Pki::new();
    let provider_cert = pki.issue(PROVIDER, "gw1");
    let consumer_cert = pki.issue(CONSUMER, "edge");
    let provider_trust = SharedTrust::new(pki.view(&[&provider_cert, &consumer_cert], &[]));
    let consumer_trust = SharedTrust::new(pki.view(&[&provider_cert, &consumer_cert], &[]));
    let mut provider = Provider::start(provider_trust.clone(), &provider_cert).await;
    // One consumer for both calls: the second handshake must not resume the first session.
    let consumer = Consumer::new(&consumer_cert, &consumer_trust);

    let seen = consumer
        .call(provider.address, expect(PROVIDER, None))
        .await;
    assert!(matches!(seen, Seen::Greeted(..)), "{seen:?}");
    assert_eq!(provider.outcome().await.unwrap(), consumer_cert.identity());

    // A new configuration arrives: the consumer's certificate is revoked
    // (and still listed as valid, to show revocation wins).
    provider_trust.replace(pki.view(&[&provider_cert, &consumer_cert], &[&consumer_cert]));

    let seen = consumer
        .call(provider.address, expect(PROVIDER, None))
        .await;
    let error = assert_provider_refused(
        &mut provider,
        seen,
        &format!("peer certificate {} is revoked", consumer_cert.fingerprint),
    )
    .await;
    assert_eq!(
        error,
        TlsError::Revoked {
            fingerprint: consumer_cert.fingerprint.clone()
        }
    );
}

#[tokio::test]
async fn a_certificate_of_the_federation_ca_not_registered_for_any_gateway_is_refused() {
    let mut pki = Pki::new();
    let provider_cert = pki.issue(PROVIDER, "gw1");
    let unregistered = pki.issue(CONSUMER, "edge");
    let trust = SharedTrust::new(pki.view(&[&provider_cert], &[]));
    let mut provider = Provider::start(trust.clone(), &provider_cert).await;

    let seen = Consumer::new(&unregistered, &trust)
        .call(provider.address, expect(PROVIDER, None))
        .await;
    assert_provider_refused(
        &mut provider,
        seen,
        &format!(
            "peer certificate {} is not registered for any gateway",
            unregistered.fingerprint
        ),
    )
    .await;
}

#[tokio::test]
async fn a_certificate_registered_for_another_gateway_than_it_names_is_refused() {
    let mut pki = Pki::new();
    let provider_cert = pki.issue(PROVIDER, "gw1");
    let consumer_cert = pki.issue(CONSUMER, "edge");
    // The configuration says this fingerprint is THIRD's gateway; the
    // certificate says it is CONSUMER's.
    let mut claimed = consumer_cert.clone();
    claimed.member = THIRD.to_owned();
    let trust = SharedTrust::new(pki.view(&[&provider_cert, &claimed], &[]));
    let mut provider = Provider::start(trust.clone(), &provider_cert).await;

    let seen = Consumer::new(&consumer_cert, &trust)
        .call(provider.address, expect(PROVIDER, None))
        .await;
    assert_provider_refused(
        &mut provider,
        seen,
        &format!(
            "peer certificate {} is registered for gateway TEST/COM/3/edge but names urn:accord:gateway:",
            consumer_cert.fingerprint
        ),
    )
    .await;
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let mut pki = Pki::new();
    let provider_cert = pki.issue(PROVIDER, "gw1");
    let expired = pki.issue_expired(CONSUMER, "edge");
    // Registered and not revoked: only its age is wrong.
    let trust = SharedTrust::new(pki.view(&[&provider_cert, &expired], &[]));
    let mut provider = Provider::start(trust.clone(), &provider_cert).await;

    let seen = Consumer::new(&expired, &trust)
        .call(provider.address, expect(PROVIDER, None))
        .await;
    let error = assert_provider_refused(
        &mut provider,
        seen,
        &format!(
            "peer certificate {} expired: it is not valid after 20",
            expired.fingerprint
        ),
    )
    .await;
    assert!(matches!(error, TlsError::Expired { .. }), "{error:?}");
}

#[tokio::test]
async fn the_consumer_refuses_a_provider_that_is_not_the_one_it_called() {
    let mut pki = Pki::new();
    let provider_cert = pki.issue(PROVIDER, "gw1");
    let impostor = pki.issue(THIRD, "gw1");
    let consumer_cert = pki.issue(CONSUMER, "edge");
    let stranger = pki.issue_by_other_ca(PROVIDER, "gw1");
    let view = || pki.view(&[&provider_cert, &impostor, &consumer_cert], &[]);
    let consumer = Consumer::new(&consumer_cert, &SharedTrust::new(view()));

    // Another registered gateway answers on the provider's address.
    let mut provider = Provider::start(SharedTrust::new(view()), &impostor).await;
    let seen = consumer
        .call(provider.address, expect(PROVIDER, None))
        .await;
    match seen {
        Seen::Refused(error) => {
            assert_eq!(
                error.to_string(),
                format!(
                    "peer certificate {} belongs to gateway TEST/COM/3/gw1, \
                     not to the expected provider a gateway of TEST/GOV/1",
                    impostor.fingerprint
                )
            );
        }
        other => panic!("the consumer should refuse the impostor, saw {other:?}"),
    }
    // The provider learns only that the consumer hung up.
    let error = provider.outcome().await.unwrap_err();
    assert!(
        error.to_string().contains("received fatal alert"),
        "{error:?}"
    );

    // The right member but another of its gateways than the one named.
    let seen = consumer
        .call(provider.address, expect(THIRD, Some("gw2")))
        .await;
    assert!(
        matches!(&seen, Seen::Refused(e) if e.to_string().ends_with("not to the expected provider TEST/COM/3/gw2")),
        "{seen:?}"
    );
    provider.outcome().await.unwrap_err();

    // A provider certificate from another CA is refused as well.
    let provider = Provider::start(SharedTrust::new(view()), &stranger).await;
    let seen = consumer
        .call(provider.address, expect(PROVIDER, None))
        .await;
    assert!(
        matches!(&seen, Seen::Refused(TlsError::UnknownIssuer { fingerprint }) if *fingerprint == stranger.fingerprint),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_consumer_without_a_client_certificate_is_refused() {
    let mut pki = Pki::new();
    let provider_cert = pki.issue(PROVIDER, "gw1");
    let trust = SharedTrust::new(pki.view(&[&provider_cert], &[]));
    let mut provider = Provider::start(trust, &provider_cert).await;

    // A client that trusts the CA but has no certificate to present.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.ca_certificate_pem().as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let seen = timeout(LIMIT, async {
        let tcp = TcpStream::connect(provider.address).await.unwrap();
        let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(localhost(), tcp)
            .await
            .unwrap();
        let mut text = String::new();
        stream
            .read_to_string(&mut text)
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap();
    let seen = seen.unwrap_err();
    assert!(
        seen.contains("received fatal alert: CertificateRequired"),
        "{seen}"
    );
    let error = provider.outcome().await.unwrap_err();
    assert!(
        error.to_string().ends_with("peer sent no certificates"),
        "{error:?}"
    );
}

#[tokio::test]
async fn handshake_errors_carry_the_refusal() {
    let mut pki = Pki::new();
    let provider_cert = pki.issue(PROVIDER, "gw1");
    let unregistered = pki.issue(CONSUMER, "edge");
    let trust = SharedTrust::new(pki.view(&[&provider_cert], &[]));
    let config = server_config(trust, &provider_cert.cert_pem, &provider_cert.key_pem).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tokio_rustls::TlsAcceptor::from(config).accept(tcp).await
    });
    let client = client_config(
        SharedTrust::new(pki.view(&[&provider_cert], &[])),
        &unregistered.cert_pem,
        &unregistered.key_pem,
    )
    .unwrap();
    let tcp = TcpStream::connect(address).await.unwrap();
    let _stream = timeout(
        LIMIT,
        tokio_rustls::TlsConnector::from(client).connect(localhost(), tcp),
    )
    .await
    .unwrap();
    let error = timeout(LIMIT, server)
        .await
        .unwrap()
        .unwrap()
        .err()
        .unwrap();
    // The plain rustls error text names the reason too, and `refusal` finds it.
    assert!(
        error
            .to_string()
            .contains("is not registered for any gateway"),
        "{error}"
    );
    assert_eq!(
        refusal(&error),
        Some(&TlsError::Unregistered {
            fingerprint: unregistered.fingerprint.clone()
        })
    );
}

#[test]
fn the_trust_view_follows_the_federation_configuration() {
    let mut pki = Pki::new();
    let valid = pki.issue(PROVIDER, "gw1");
    let revoked = pki.issue(CONSUMER, "edge");
    let address = "https://127.0.0.1:8443".to_owned();
    let federation = Federation {
        signed: SignedConfiguration {
            payload: ConfigurationPayload {
                format: FORMAT.into(),
                instance: "TEST".into(),
                name: "Test".into(),
                as_of: "2026-01-01T00:00:00.000Z".into(),
                ca_certificate_pem: pki.ca.ca_certificate_pem().to_owned(),
                members: vec![],
                services: vec![],
                gateways: vec![],
                revoked_certificates: vec![],
                purposes: vec![],
                agreements: vec![],
            },
            digest: String::new(),
            signature: String::new(),
        },
        index: Index::compile(Vec::new()),
        services: HashSet::new(),
        gateways_by_fingerprint: HashMap::from([(
            valid.fingerprint.to_uppercase(),
            (PROVIDER.parse().unwrap(), "gw1".to_owned(), address.clone()),
        )]),
        revoked: HashSet::from([revoked.fingerprint.clone()]),
        subsystems: HashSet::new(),
        gateways_by_member: HashMap::new(),
        gateway_by_path: HashMap::new(),
    };
    let view = TrustView::from_federation(&federation).unwrap();
    assert_eq!(view.identity(&valid.fingerprint), Ok(&valid.identity()));
    assert!(view.is_revoked(&revoked.fingerprint));
    assert_eq!(
        view.identity(&revoked.fingerprint).unwrap_err().to_string(),
        format!("peer certificate {} is revoked", revoked.fingerprint)
    );
    assert_eq!(
        view.ca_fingerprints_sha256(),
        [pki.ca.ca_fingerprint_sha256()]
    );
    assert_eq!(server_name_for_address(&address).unwrap(), localhost());
    assert!(server_name_for_address("http://127.0.0.1:8443").is_err());

    // Unusable inputs say which input is wrong, never what a key holds.
    let no_ca = TrustView::new("not a certificate", [], []).unwrap_err();
    assert!(matches!(no_ca, TlsError::CaCertificate(_)), "{no_ca}");
    let trust = SharedTrust::new(view);
    let wrong_key = server_config(trust.clone(), &valid.cert_pem, &revoked.key_pem).unwrap_err();
    assert!(
        wrong_key
            .to_string()
            .starts_with("this gateway's private key cannot be used: it does not belong"),
        "{wrong_key}"
    );
    assert!(!wrong_key.to_string().contains("PRIVATE KEY"));
    let no_key = client_config(trust, &valid.cert_pem, "").unwrap_err();
    assert!(matches!(no_key, TlsError::OwnKey(_)), "{no_key}");
}

#[tokio::test]
async fn the_provider_never_resumes_a_session_so_every_handshake_is_checked() {
    let mut pki = Pki::new();
    let provider_cert = pki.issue(PROVIDER, "gw1");
    let consumer_cert = pki.issue(CONSUMER, "edge");
    let trust = SharedTrust::new(pki.view(&[&provider_cert, &consumer_cert], &[]));
    let mut provider = Provider::start(trust, &provider_cert).await;

    // A plain rustls client that would resume if the provider let it.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.ca_certificate_pem().as_bytes()).unwrap())
        .unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(consumer_cert.cert_pem.as_bytes()).unwrap()],
            rustls_pki_types::PrivateKeyDer::from_pem_slice(consumer_cert.key_pem.as_bytes())
                .unwrap(),
        )
        .unwrap(),
    );
    for _ in 0..3 {
        let kind = timeout(LIMIT, async {
            let tcp = TcpStream::connect(provider.address).await.unwrap();
            let mut stream = tokio_rustls::TlsConnector::from(config.clone())
                .connect(localhost(), tcp)
                .await
                .unwrap();
            let mut greeting = String::new();
            stream.read_to_string(&mut greeting).await.unwrap();
            assert_eq!(greeting, "hello TEST/GOV/2/edge");
            stream.get_ref().1.handshake_kind()
        })
        .await
        .unwrap();
        assert_eq!(kind, Some(rustls::HandshakeKind::Full));
        assert_eq!(provider.outcome().await.unwrap(), consumer_cert.identity());
    }
}

//! `quilt call`: one signed request to a board's gateway (`quiltd`). The
//! board is pinned by its key's fingerprint, as ssh pins a host key: the
//! certificate's names and dates are not looked at, only that its key
//! hashes to the pin (and the TLS handshake proves the board holds it).
//! The request is signed with the client key (RFC 9421, the profile in
//! `quilt-gateway-auth`, the same code quiltd verifies with).

use anyhow::{bail, Context};
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use quilt_gateway_auth::fingerprint::Fingerprint;
use quilt_gateway_auth::profile::{sign_request, Outgoing};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// Exit status when the board answered with an error.
const REFUSED: u8 = 3;

#[derive(Args)]
pub struct CallArgs {
    /// The gateway, e.g. https://127.0.0.1:8443.
    #[arg(long, value_name = "URL")]
    board: String,
    /// Client secret key (BASE.key from `quilt key gen --client`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The board key's fingerprint (`quiltd identity` on the board).
    #[arg(long, value_name = "FINGERPRINT")]
    board_key: String,
    /// GET, POST, …
    method: String,
    /// Path and query, e.g. /v1/bundles or /v1/tools/hello/run?tool=greet.
    path: String,
    /// JSON request body (`@FILE` reads a file).
    #[arg(long, value_name = "JSON")]
    data: Option<String>,
}

/// Checks the board's certificate against the pin; remembers what it saw
/// so a mismatch can be reported with both fingerprints.
#[derive(Debug)]
struct Pinned {
    pin: Fingerprint,
    seen: Mutex<Option<Fingerprint>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let fp = Fingerprint::of_spki(&cert.subject_public_key_info());
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fp);
        }
        if fp == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn read_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "client key {} has mode {mode:03o}; run `chmod 600 {}` (and consider the key leaked)",
            path.display(),
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    quilt_gateway_auth::keys::parse_secret(&text).with_context(|| path.display().to_string())
}

fn nonce() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    let mut got = 0;
    while got < b.len() {
        got += rustix::rand::getrandom(
            b.get_mut(got..).unwrap_or_default(),
            rustix::rand::GetRandomFlags::empty(),
        )
        .context("reading the kernel RNG")?;
    }
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// `quilt call`.
pub fn run(a: &CallArgs) -> anyhow::Result<ExitCode> {
    let pin = Fingerprint::parse(&a.board_key)?;
    let seed = read_key(&a.key)?;
    let uri: hyper::Uri = a
        .board
        .parse()
        .with_context(|| format!("--board {:?} is not a URL like https://HOST:PORT", a.board))?;
    if uri.scheme_str() != Some("https") {
        bail!("--board must be an https:// URL (quiltd speaks only TLS)");
    }
    let host = uri
        .host()
        .context("--board has no host")?
        .trim_matches(|c| c == '[' || c == ']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    if !a.path.starts_with('/') {
        bail!("the path must start with / (e.g. /v1/bundles)");
    }
    let (path, query) = match a.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (a.path.as_str(), None),
    };
    let body: Vec<u8> = match &a.data {
        None => Vec::new(),
        Some(d) => {
            let raw = match d.strip_prefix('@') {
                Some(file) => std::fs::read(file).with_context(|| format!("reading {file}"))?,
                None => d.as_bytes().to_vec(),
            };
            serde_json::from_slice::<serde_json::Value>(&raw).context("--data is not JSON")?;
            raw
        }
    };
    let method = a.method.to_ascii_uppercase();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let nonce = nonce()?;
    let signed = sign_request(
        &seed,
        &Outgoing {
            method: &method,
            path,
            query,
            body: &body,
            created: i64::try_from(created).unwrap_or(i64::MAX),
            nonce: &nonce,
        },
    )?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned {
        pin,
        seen: Mutex::new(None),
        provider: Arc::clone(&provider),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(&verifier) as Arc<dyn ServerCertVerifier>)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = ServerName::try_from(host.clone())
        .with_context(|| format!("{host} is not a host name or address"))?;
    let authority = uri
        .authority()
        .map(|x| x.as_str().to_owned())
        .unwrap_or_else(|| host.clone());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (status, reply) = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| {
                format!("cannot connect to {host}:{port} (is quiltd running, and the port forwarded?)")
            })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
        let stream = match connector.connect(server_name, tcp).await {
            Ok(s) => s,
            Err(e) => {
                let seen = verifier.seen.lock().ok().and_then(|s| *s);
                match seen {
                    Some(fp) if fp != pin => bail!(
                        "the board's key is {fp}, not the {pin} you pinned: if the board was re-imaged \
                         (or is diskless, whose key is new every boot), read `quiltd identity` on it and \
                         pin that; otherwise something else is answering at {host}:{port}"
                    ),
                    _ => return Err(anyhow::Error::new(e).context("TLS handshake with the board")),
                }
            }
        };
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .context("HTTP handshake with the board")?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method.as_str())
            .uri(&a.path)
            .header("host", authority)
            .header("content-type", "application/json")
            .header("content-digest", signed.content_digest)
            .header("signature-input", signed.signature_input)
            .header("signature", signed.signature)
            .body(Full::new(Bytes::from(body)))
            .context("building the request")?;
        let resp = sender
            .send_request(req)
            .await
            .context("sending the request")?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .context("reading the reply")?
            .to_bytes();
        anyhow::Ok((status, bytes))
    })?;
    let value: Option<serde_json::Value> = serde_json::from_slice(&reply).ok();
    match &value {
        Some(v) => println!("{}", serde_json::to_string_pretty(v)?),
        None => println!("{}", String::from_utf8_lossy(&reply)),
    }
    if status.is_success() {
        return Ok(ExitCode::SUCCESS);
    }
    let code = value
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    eprintln!("quilt: the board answered {status}{}", hint(code, &seed));
    Ok(ExitCode::from(REFUSED))
}

/// What to do next, by the board's reason code.
fn hint(code: &str, seed: &[u8; 32]) -> String {
    let public = quilt_gateway_auth::keys::public_text(&quilt_gateway_auth::keys::public_of(seed));
    match code {
        "unknown-key" => format!(
            "; authorize this key on the board with a line `operator NAME {public}` (or `agent …`) in its authorized-clients file"
        ),
        "stale" => "; the clocks of this machine and the board differ by more than the board's window: set the board's time".into(),
        "forbidden-role" => "; this key's role does not allow that: ask for an operator key, or use an agent endpoint".into(),
        "replayed" => "; every request needs a fresh nonce (retry the command)".into(),
        _ => String::new(),
    }
}

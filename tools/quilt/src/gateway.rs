//! A client of a board's gateway (`quiltd`), shared by `quilt call`,
//! `quilt token` and `quilt mcp`. The board is pinned by its key's
//! fingerprint, as ssh pins a host key: the certificate's names and dates
//! are not looked at, only that its key hashes to the pin (and the TLS
//! handshake proves the board holds it). Every request is signed with the
//! client key (RFC 9421, the profile in `quilt-gateway-auth`, the same
//! code quiltd verifies with). Connections are kept and reused (HTTP/1.1
//! keep-alive), so a proxy does not pay a TLS handshake per message.
//!
//! Over a serial line (`--serial DEVICE`, for boards without a network:
//! `quiltd --serial` on the board's end) the same TLS, pinning and
//! signatures run over the line's bytes: one request at a time, each in a
//! TLS session of its own that the board closes after the reply
//! (`Connection: close`), so a session never outlives its request on a
//! line that cannot tell when its other end went away.

use anyhow::{bail, Context};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use quilt_gateway_auth::fingerprint::Fingerprint;
use quilt_gateway_auth::profile::{sign_with_digest, Outgoing};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::path::Path;
use std::sync::{Arc, Mutex};

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

/// TLS 1.3 to a board whose certificate key must hash to `pin`.
fn client_tls(pin: Fingerprint) -> anyhow::Result<(Arc<rustls::ClientConfig>, Arc<Pinned>)> {
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
    Ok((Arc::new(tls), verifier))
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

/// How the board is reached.
enum Transport {
    /// TCP to `host:port`.
    Tcp { host: String, port: u16 },
    /// A serial line: a tty, or a Unix socket standing in for one (QEMU's
    /// chardev); one request at a time.
    Serial {
        path: std::path::PathBuf,
        baud: u32,
        line: tokio::sync::Mutex<()>,
    },
}

/// A board's gateway, pinned, with a client key.
pub struct Board {
    transport: Transport,
    authority: String,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    verifier: Arc<Pinned>,
    seed: [u8; 32],
    idle: Mutex<Vec<SendRequest<ReqBody>>>,
}

/// A connection's task: done when the connection is (after `Connection:
/// close`, once its TLS `close_notify` is sent).
type Conn = tokio::task::JoinHandle<Result<(), hyper::Error>>;

/// How long a session marker's echo is waited for before another is sent.
const SERIAL_MARK: std::time::Duration = std::time::Duration::from_millis(1500);

/// How long a TLS handshake over a serial line may take.
const SERIAL_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(15);

/// How long a whole request over a serial line may take: as long as the
/// board gives a session (quiltd's `SERIAL_SESSION`), so a line that
/// stops answering fails the command instead of hanging it.
const SERIAL_SESSION: std::time::Duration = std::time::Duration::from_secs(300);

/// How long the end of a serial session may take.
const SERIAL_CLOSE: std::time::Duration = std::time::Duration::from_secs(3);

/// A request body: bytes in hand, or a file streamed as it is read.
type ReqBody = BoxBody<Bytes, std::io::Error>;

/// Bytes read from a file per frame of an upload.
const UPLOAD_PIECE: usize = 256 << 10;

/// A reply: status, content type, whole body.
pub struct Answer {
    /// HTTP status.
    pub status: hyper::StatusCode,
    /// `Content-Type`, if any.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

impl Board {
    /// For `url` (https://HOST:PORT), pinned to `pin`, signing with the
    /// key in `key`.
    pub fn new(url: &str, key: &Path, pin: &str) -> anyhow::Result<Board> {
        let pin = Fingerprint::parse(pin)?;
        let seed = read_key(key)?;
        let uri: hyper::Uri = url
            .parse()
            .with_context(|| format!("--board {url:?} is not a URL like https://HOST:PORT"))?;
        if uri.scheme_str() != Some("https") {
            bail!("--board must be an https:// URL (quiltd speaks only TLS)");
        }
        if !matches!(uri.path(), "" | "/") {
            bail!("--board is the board's address alone (https://HOST:PORT), without a path");
        }
        let host = uri
            .host()
            .context("--board has no host")?
            .trim_matches(|c| c == '[' || c == ']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let (tls, verifier) = client_tls(pin)?;
        let server_name = ServerName::try_from(host.clone())
            .with_context(|| format!("{host} is not a host name or address"))?;
        let authority = uri
            .authority()
            .map(|x| x.as_str().to_owned())
            .unwrap_or_else(|| host.clone());
        Ok(Board {
            transport: Transport::Tcp { host, port },
            authority,
            server_name,
            tls,
            verifier,
            seed,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// For the board at the other end of the serial line `path` (a tty
    /// set to `baud`, or a Unix socket), pinned to `pin`, signing with
    /// `key`.
    pub fn serial(path: &Path, baud: u32, key: &Path, pin: &str) -> anyhow::Result<Board> {
        let pin = Fingerprint::parse(pin)?;
        let seed = read_key(key)?;
        let (tls, verifier) = client_tls(pin)?;
        Ok(Board {
            transport: Transport::Serial {
                path: path.to_owned(),
                baud,
                line: tokio::sync::Mutex::new(()),
            },
            // The board checks no names; this one says where it was.
            authority: "quilt-board.serial".into(),
            server_name: ServerName::try_from("quilt-board.serial")
                .context("the serial line's TLS name")?,
            tls,
            verifier,
            seed,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Where the board is, for messages.
    pub fn describe(&self) -> String {
        match &self.transport {
            Transport::Tcp { host, port } => format!("{host}:{port}"),
            Transport::Serial { path, .. } => format!("the serial line {}", path.display()),
        }
    }

    /// The client's secret key seed (for hints that print its public half).
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    async fn connect(&self) -> anyhow::Result<(SendRequest<ReqBody>, Conn)> {
        match &self.transport {
            Transport::Tcp { .. } => {
                let stream = self.tls_stream().await?;
                self.http(stream).await
            }
            Transport::Serial { path, baud, .. } => {
                let mut line = quilt_serial_line::open(path, *baud).with_context(|| {
                    format!(
                        "opening the serial line {} (is the board connected, and quiltd on it started with --serial?)",
                        path.display()
                    )
                })?;
                tokio::time::timeout(SERIAL_HANDSHAKE, async {
                    // A marker can be lost (the board was still failing a
                    // session that read it): send a fresh one until one is
                    // echoed.
                    loop {
                        let session = nonce()?;
                        let greet = quilt_serial_line::greet(&mut line, &session);
                        match tokio::time::timeout(SERIAL_MARK, greet).await {
                            Ok(r) => break r.context("starting a session on the serial line")?,
                            Err(_) => continue,
                        }
                    }
                    self.handshake(line).await
                })
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "no TLS answer on {} within {} s: is quiltd on the board started with --serial on this line, and the rate (--baud) the same?",
                            path.display(),
                            SERIAL_HANDSHAKE.as_secs()
                        )
                    })?
            }
        }
    }

    /// A new TLS connection to the board, pinned, with nothing sent on it
    /// yet: for callers that speak HTTP by hand (the system tests' slow
    /// and malformed clients). Over TCP only.
    pub async fn tls_stream(
        &self,
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let Transport::Tcp { host, port } = &self.transport else {
            bail!("a raw TLS stream is for boards reached over the network (--board)");
        };
        let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
            .await
            .with_context(|| {
                format!(
                    "cannot connect to {host}:{port} (is quiltd running, and the port forwarded?)"
                )
            })?;
        self.tls(tcp).await
    }

    /// TLS, pinned, then HTTP/1.1 over `io`.
    async fn handshake<S>(&self, io: S) -> anyhow::Result<(SendRequest<ReqBody>, Conn)>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let stream = self.tls(io).await?;
        self.http(stream).await
    }

    /// HTTP/1.1 over a pinned TLS stream.
    async fn http<S>(
        &self,
        stream: tokio_rustls::client::TlsStream<S>,
    ) -> anyhow::Result<(SendRequest<ReqBody>, Conn)>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .context("HTTP handshake with the board")?;
        Ok((sender, tokio::spawn(conn)))
    }

    /// TLS over `io`, the board's key held to the pin.
    async fn tls<S>(&self, io: S) -> anyhow::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let pin = self.verifier.pin;
        let whom = self.describe();
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls));
        let stream = match connector.connect(self.server_name.clone(), io).await {
            Ok(s) => s,
            Err(e) => {
                let seen = self.verifier.seen.lock().ok().and_then(|s| *s);
                match seen {
                    Some(fp) if fp != pin => bail!(
                        "the board's key is {fp}, not the {pin} you pinned: if the board was re-imaged \
                         (or is diskless, whose key is new every boot), read `quiltd identity` on it and \
                         pin that; otherwise something else is answering at {whom}"
                    ),
                    _ => return Err(anyhow::Error::new(e).context("TLS handshake with the board")),
                }
            }
        };
        Ok(stream)
    }

    /// An idle connection that is still open (`true`), or a new one.
    async fn sender(&self) -> anyhow::Result<(SendRequest<ReqBody>, bool)> {
        loop {
            let next = self.idle.lock().ok().and_then(|mut v| v.pop());
            match next {
                Some(mut s) => {
                    if s.ready().await.is_ok() {
                        return Ok((s, true));
                    }
                }
                None => return Ok((self.connect().await?.0, false)),
            }
        }
    }

    /// One signed request: `path` may carry a query; `headers` are sent
    /// as well (not signed: the profile covers method, path, query and
    /// the body's digest).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Answer> {
        let digest = quilt_gateway_auth::digest::content_digest(&body);
        let len = body.len().to_string();
        let body = Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed();
        let mut all = vec![
            ("content-type", "application/json"),
            ("content-length", &len),
        ];
        all.extend_from_slice(headers);
        self.send(method, path, digest, body, &all).await
    }

    /// `POST path` with the file at `file` as the body, streamed as it is
    /// read (never held whole); `sent` is told the bytes handed over so
    /// far. The file is read twice: once to hash it for the signature,
    /// once to send it; a file that changes in between is refused by the
    /// board (its digest no longer matches).
    pub async fn upload(
        &self,
        path: &str,
        file: &Path,
        sent: impl Fn(u64) + Send + 'static,
    ) -> anyhow::Result<Answer> {
        use std::io::Read;
        let open =
            || std::fs::File::open(file).with_context(|| format!("opening {}", file.display()));
        let mut f = open()?;
        let mut hasher = quilt_gateway_auth::digest::Hasher::default();
        let mut buf = vec![0u8; UPLOAD_PIECE];
        let mut len: u64 = 0;
        loop {
            let n = f
                .read(&mut buf)
                .with_context(|| format!("reading {}", file.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(buf.get(..n).unwrap_or_default());
            len += n as u64;
        }
        let mut f = open()?;
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(4);
        // Read on a thread of its own: file reads block, and the runtime
        // may have one thread.
        std::thread::spawn(move || {
            let mut done: u64 = 0;
            loop {
                let mut piece = vec![0u8; UPLOAD_PIECE];
                let frame = match f.read(&mut piece) {
                    Ok(0) => return,
                    Ok(n) => {
                        piece.truncate(n);
                        done += n as u64;
                        Ok(hyper::body::Frame::data(Bytes::from(piece)))
                    }
                    Err(e) => Err(e),
                };
                let failed = frame.is_err();
                if tx.blocking_send(frame).is_err() || failed {
                    return;
                }
                sent(done);
            }
        });
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed();
        let len = len.to_string();
        let headers = [
            ("content-type", "application/octet-stream"),
            ("content-length", len.as_str()),
        ];
        self.send("POST", path, hasher.field(), body, &headers)
            .await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        content_digest: String,
        body: ReqBody,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Answer> {
        if !path.starts_with('/') {
            bail!("the path must start with / (e.g. /v1/bundles)");
        }
        let (bare, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs();
        let nonce = nonce()?;
        let signed = sign_with_digest(
            &self.seed,
            &Outgoing {
                method,
                path: bare,
                query,
                body: &[],
                created: i64::try_from(created).unwrap_or(i64::MAX),
                nonce: &nonce,
            },
            content_digest,
        )?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority)
            .header("content-digest", signed.content_digest)
            .header("signature-input", signed.signature_input)
            .header("signature", signed.signature);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let serial = match &self.transport {
            Transport::Serial { line, .. } => Some(line.lock().await),
            Transport::Tcp { .. } => None,
        };
        if serial.is_some() {
            req = req.header("connection", "close");
        }
        let req = req.body(body).context("building the request")?;
        let over_serial = serial.is_some();
        let deadline = tokio::time::Instant::now() + SERIAL_SESSION;
        let (mut sender, conn, kept) = if over_serial {
            let (s, c) = self.connect().await?;
            (s, Some(c), false)
        } else {
            let (s, kept) = self.sender().await?;
            (s, None, kept)
        };
        let sent = within(over_serial, deadline, sender.try_send_request(req)).await?;
        let resp = match sent {
            Ok(r) => r,
            // A kept connection the board closed (idle past its header
            // deadline) just as this request was handed to it: none of it
            // was written, so the board never saw its nonce. The same
            // signed request goes once more on a new connection.
            Err(mut e) if kept && e.message().is_some() => {
                let req = e.take_message().context("the unsent request")?;
                sender = self.connect().await?.0;
                sender
                    .send_request(req)
                    .await
                    .context("sending the request")?
            }
            Err(e) => return Err(anyhow::Error::new(e.into_error()).context("sending the request")),
        };
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = within(over_serial, deadline, resp.into_body().collect())
            .await?
            .context("reading the reply")?
            .to_bytes();
        match conn {
            // The session ends with its close_notify on the line before
            // the line is let go: the board waits for it.
            Some(conn) => {
                drop(sender);
                let _ = tokio::time::timeout(SERIAL_CLOSE, conn).await;
            }
            None => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(sender);
                }
            }
        }
        drop(serial);
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }
}

/// `fut`, given until `deadline` over a serial line (`bounded`); over TCP
/// the connection's own deadlines apply.
async fn within<F: std::future::Future>(
    bounded: bool,
    deadline: tokio::time::Instant,
    fut: F,
) -> anyhow::Result<F::Output> {
    if !bounded {
        return Ok(fut.await);
    }
    tokio::time::timeout_at(deadline, fut).await.map_err(|_| {
        anyhow::anyhow!(
            "no reply on the serial line within {} s, when the board ends a session: is quiltd on the board still running?",
            SERIAL_SESSION.as_secs()
        )
    })
}

/// What to do next, by the board's reason code.
pub fn hint(code: &str, seed: &[u8; 32]) -> String {
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

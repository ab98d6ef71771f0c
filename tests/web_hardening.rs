//! Browser hardening: security headers on every response, and the bound on uploads in
//! progress per client address.

mod support;

use std::time::Duration;

use support::web::{WebOptions, http_client, start_web_local};
use tokio::io::AsyncWriteExt;
use tritontube::web::hardening::{CONTENT_SECURITY_POLICY, DEFAULT_UPLOADS_PER_CLIENT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let (web, _dir) = start_web_local(WebOptions::default()).await;
    let client = http_client();
    for path in [
        "/",
        "/static/app.js",
        "/static/dash.all.min.js",
        "/api/videos",
        "/api/videos/missing",
        "/videos/missing",
        "/content/missing/manifest.mpd",
        "/no/such/route",
        "/metrics",
    ] {
        let response = client
            .get(format!("{}{path}", web.url))
            .send()
            .await
            .unwrap();
        let headers = response.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .unwrap_or_else(|| panic!("{path} has no {name}"))
                .to_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(
            header("content-security-policy"),
            CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        // Plain HTTP: no HSTS (a browser would ignore it, and it would pin nothing).
        assert!(headers.get("strict-transport-security").is_none(), "{path}");
    }
    let policy = CONTENT_SECURITY_POLICY;
    assert!(policy.contains("script-src 'self';") && !policy.contains("unsafe"));
}

/// Opens an upload whose body never finishes: it holds its slot until dropped.
async fn stalled_upload(address: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let boundary = "tritontubeboundary";
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: {address}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
Content-Length: 1000000\r\n\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
filename=\"stalled.mp4\"\r\nContent-Type: video/mp4\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(&[0u8; 1000]).await.unwrap();
    stream
}

/// Status of an upload form with no file: 400 when let in, 429 when refused at the door.
async fn empty_upload_status(url: &str) -> (reqwest::StatusCode, String) {
    let form = reqwest::multipart::Form::new().text("other", "x");
    let response = http_client()
        .post(format!("{url}/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_in_progress_are_bounded_per_client_address() {
    let (web, dir) = start_web_local(WebOptions::default()).await;
    let address = web.url.trim_start_matches("http://").to_string();
    assert_eq!(
        empty_upload_status(&web.url).await.0,
        reqwest::StatusCode::BAD_REQUEST
    );
    let mut stalled = Vec::new();
    for _ in 0..DEFAULT_UPLOADS_PER_CLIENT {
        stalled.push(stalled_upload(&address).await);
    }
    // The stalled uploads reach the handler on their own time: poll until refused.
    let mut refusal = None;
    for _ in 0..400 {
        let (status, body) = empty_upload_status(&web.url).await;
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            refusal = Some(body);
            break;
        }
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let refusal = refusal.expect("the upload past the limit was never refused");
    assert!(
        refusal.contains("too many uploads in progress"),
        "{refusal}"
    );
    assert!(support::files_under(&dir).is_empty());

    // The slots come back when the uploads end (here: their clients go away).
    drop(stalled);
    let mut let_in = false;
    for _ in 0..400 {
        if empty_upload_status(&web.url).await.0 == reqwest::StatusCode::BAD_REQUEST {
            let_in = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(let_in, "slots were not given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_get_https_with_hsts_when_given_a_certificate() {
    use tritontube::trust::certs;
    support::require_tool("curl", "curl");
    let work = tempfile::tempdir().unwrap();
    let certs_dir = work.path().join("certs");
    certs::create_ca(&certs_dir).unwrap();
    certs::create_node(&certs_dir, &["127.0.0.1".into()]).unwrap();
    let viewer_tls = tritontube::web::https::server_config(
        &certs_dir.join(certs::NODE_CERT),
        &certs_dir.join(certs::NODE_KEY),
    )
    .unwrap();
    let meta = tritontube::meta::MetaStore::sqlite(&work.path().join("m.db"))
        .await
        .unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = http.local_addr().unwrap().to_string();
    let config = tritontube::web::WebConfig {
        work_dir: work.path().join("uploads"),
        viewer_tls: Some(viewer_tls),
        ..tritontube::web::WebConfig::default()
    };
    let content = tritontube::web::ContentSpec::Local(work.path().join("files"));
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let server = tokio::spawn(async move {
        tritontube::web::run(http, None, meta, content, config, stopped).await
    });

    let curl = |url: String| {
        let ca = certs_dir.join(certs::CA_CERT);
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "20",
                    "-D",
                    "-",
                    "-o",
                    "/dev/null",
                    "--cacert",
                ])
                .arg(ca)
                .arg(url)
                .output()
                .unwrap()
        })
    };
    let mut answer = curl(format!("https://{address}/")).await.unwrap();
    for _ in 0..100 {
        if answer.status.success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        answer = curl(format!("https://{address}/")).await.unwrap();
    }
    let headers = String::from_utf8_lossy(&answer.stdout).to_lowercase();
    assert!(answer.status.success(), "{answer:?}");
    assert!(
        headers.starts_with("http/2 200") || headers.starts_with("http/1.1 200"),
        "{headers}"
    );
    assert!(
        headers.contains("strict-transport-security: max-age=31536000; includesubdomains"),
        "{headers}"
    );
    assert!(headers.contains("content-security-policy: "), "{headers}");
    // Plain HTTP on the HTTPS port gets no page.
    let plain = curl(format!("http://{address}/")).await.unwrap();
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains(" 200"),
        "{plain:?}"
    );
    stop.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_token_when_set_is_required_and_refusals_store_nothing() {
    let work = tempfile::tempdir().unwrap();
    let meta = tritontube::meta::MetaStore::sqlite(&work.path().join("m.db"))
        .await
        .unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", http.local_addr().unwrap());
    let config = tritontube::web::WebConfig {
        work_dir: work.path().join("uploads"),
        upload_token: Some("upload-secret".into()),
        ..tritontube::web::WebConfig::default()
    };
    let files = work.path().join("files");
    let content = tritontube::web::ContentSpec::Local(files.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let (served_meta, stopped) = (meta.clone(), stop.clone());
    let server = tokio::spawn(async move {
        tritontube::web::run(http, None, served_meta, content, config, stopped).await
    });
    let upload = |token: Option<&'static str>| {
        let url = url.clone();
        async move {
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(vec![0u8; 4096]).file_name("sneaky.mp4"),
            );
            let mut request = http_client().post(format!("{url}/upload")).multipart(form);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.unwrap().status()
        }
    };
    // The node starts listening at once; poll until it answers.
    let mut status = None;
    for _ in 0..100 {
        if http_client()
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_ok()
        {
            status = Some(upload(None).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, Some(reqwest::StatusCode::UNAUTHORIZED));
    assert_eq!(
        upload(Some("guess")).await,
        reqwest::StatusCode::UNAUTHORIZED
    );
    assert!(meta.list_videos().await.unwrap().value.is_empty());
    assert!(support::files_under(&files).is_empty());
    // With the token the upload is let in (and refused as not a video: 4 KB of zeros).
    assert_eq!(
        upload(Some("upload-secret")).await,
        reqwest::StatusCode::BAD_REQUEST
    );
    stop.cancel();
    server.await.unwrap().unwrap();
}

/// A DELETE without credentials: its status, `WWW-Authenticate` header and JSON error.
async fn unauthenticated_delete(url: &str) -> (reqwest::StatusCode, Option<String>, String) {
    let response = http_client()
        .delete(format!("{url}/api/videos/kept"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    (
        status,
        challenge,
        body["error"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delete_over_http_asks_for_the_token_and_never_for_a_certificate() {
    // RFC 6750's challenge: a bearer token, the one credential an HTTP client can show.
    const AUTH_CHALLENGE: &str = "Bearer realm=\"tritontube\"";
    // A node with an admin token: the token is what an HTTP client can send.
    let node = support::start_storage_node().await;
    let web = support::web::start_web_ring(
        &[&node],
        WebOptions {
            admin_token: Some("s3cret".into()),
            ..WebOptions::default()
        },
    )
    .await;
    let (status, challenge, error) = unauthenticated_delete(&web.url).await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some(AUTH_CHALLENGE));
    assert!(error.contains("Authorization: Bearer"), "{error}");
    assert!(!error.contains("certificate"), "{error}");

    // A node with certificates and no token: nothing an HTTP client sends can work, and
    // the answer says so instead of asking for a certificate the port cannot take.
    let work = tempfile::tempdir().unwrap();
    let certs_dir = work.path().join("certs");
    tritontube::trust::certs::create_ca(&certs_dir).unwrap();
    tritontube::trust::certs::create_node(&certs_dir, &["127.0.0.1".into()]).unwrap();
    let meta = tritontube::meta::MetaStore::sqlite(&work.path().join("m.db"))
        .await
        .unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", http.local_addr().unwrap());
    let config = tritontube::web::WebConfig {
        work_dir: work.path().join("uploads"),
        cluster_tls: Some(tritontube::trust::tls::ClusterTls::node(&certs_dir).unwrap()),
        ..tritontube::web::WebConfig::default()
    };
    let content = tritontube::web::ContentSpec::Local(work.path().join("files"));
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let server = tokio::spawn(async move {
        tritontube::web::run(http, None, meta, content, config, stopped).await
    });
    let mut answered = false;
    for _ in 0..100 {
        if http_client()
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_ok()
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered, "the web node never answered");
    let (status, challenge, error) = unauthenticated_delete(&url).await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some(AUTH_CHALLENGE));
    assert!(error.contains("no admin token"), "{error}");
    assert!(!error.contains("certificate"), "{error}");
    stop.cancel();
    server.await.unwrap().unwrap();
}

//! The static file server that `bm2 serve` runs as a managed app (`bm2 __serve`), with the
//! behaviour of PM2's `lib/API/Serve.js`: settings from `PM2_SERVE_*` variables (or the
//! arguments path, port, host), `/` serves the homepage (`/index.html`), a missing file is a 404
//! with the directory's `404.html` when there is one, `--spa` answers unknown paths with the
//! homepage, and basic auth guards everything when a user and password are set.

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, Uri, header};

/// The server's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Directory served.
    pub root: PathBuf,
    /// Port.
    pub port: u16,
    /// Address.
    pub host: String,
    /// Unknown paths serve the homepage.
    pub spa: bool,
    /// The page for `/` (and for unknown paths with `spa`).
    pub homepage: String,
    /// User and password every request must give.
    pub basic_auth: Option<(String, String)>,
}

impl Settings {
    /// Read as PM2's Serve.js reads them: each `PM2_SERVE_*` variable, else the argument
    /// (`path port host`), else `.`, 8080, 0.0.0.0.
    pub fn from_env(args: &[String]) -> Settings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let arg = |i: usize| args.get(i).cloned();
        let root = var("PM2_SERVE_PATH")
            .or_else(|| arg(0))
            .unwrap_or(".".into());
        let root = std::env::current_dir().map_or_else(|_| PathBuf::from(&root), |c| c.join(&root));
        let basic_auth = (var("PM2_SERVE_BASIC_AUTH").as_deref() == Some("true")).then(|| {
            (
                var("PM2_SERVE_BASIC_AUTH_USERNAME").unwrap_or_default(),
                var("PM2_SERVE_BASIC_AUTH_PASSWORD").unwrap_or_default(),
            )
        });
        Settings {
            root: bm2_config::resolve::lexical(&root),
            port: var("PM2_SERVE_PORT")
                .or_else(|| arg(1))
                .and_then(|p| p.parse().ok())
                .unwrap_or(8080),
            host: var("PM2_SERVE_HOST")
                .or_else(|| arg(2))
                .unwrap_or("0.0.0.0".into()),
            spa: var("PM2_SERVE_SPA").as_deref() == Some("true"),
            homepage: var("PM2_SERVE_HOMEPAGE").unwrap_or("/index.html".into()),
            basic_auth,
        }
    }
}

/// Runs the server until the process is stopped.
pub fn run(args: &[String]) -> ExitCode {
    let settings = Settings::from_env(args);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> std::io::Result<()> {
    let addr = format!("{}:{}", settings.host, settings.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    println!(
        "Exposing {} directory on {}:{}",
        settings.root.display(),
        settings.host,
        settings.port
    );
    let settings = std::sync::Arc::new(settings);
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let settings = settings.clone();
        async move { answer(&settings, &uri, &headers).await }
    });
    axum::serve(listener, app).await
}

/// The answer to a request for `uri`.
pub async fn answer(s: &Settings, uri: &Uri, headers: &HeaderMap) -> Response<Body> {
    if let Some((user, password)) = &s.basic_auth
        && !authorized(headers, user, password)
    {
        let mut r = plain(StatusCode::UNAUTHORIZED, "401 Unauthorized");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Authentication service\""),
        );
        return r;
    }
    let file = percent_encoding::percent_decode_str(uri.path())
        .decode_utf8_lossy()
        .into_owned();
    let Some(path) = inside(&s.root, &file) else {
        return plain(StatusCode::FORBIDDEN, "403 Forbidden");
    };
    let is_dir = tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_dir());
    if file == "/" || file.is_empty() {
        // The homepage, whether `/` exists (a directory) or not.
        return static_file(s, &s.homepage, true).await;
    }
    if is_dir {
        // As PM2: reading a directory as a file is an error.
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sorry, check with the site admin for error: EISDIR ..\n",
        );
    }
    static_file(s, &file, false).await
}

/// Serves the file at URL path `file`; with `spa`, a missing file falls back to the file of the
/// same name at the root, then to the homepage (as PM2's serveStaticFile).
async fn static_file(s: &Settings, file: &str, mut want_homepage: bool) -> Response<Body> {
    let mut file = file.to_string();
    loop {
        let Some(path) = inside(&s.root, &file) else {
            return plain(StatusCode::FORBIDDEN, "403 Forbidden");
        };
        match tokio::fs::read(&path).await {
            Ok(content) => {
                let mut r = Response::new(Body::from(content));
                let h = r.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type(&path)),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET"),
                );
                return r;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if s.spa && !want_homepage {
                    want_homepage = true;
                    let base = Path::new(&file)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    file = format!("/{base}");
                    continue;
                }
                if s.spa && file != s.homepage {
                    file.clone_from(&s.homepage);
                    continue;
                }
                let page = tokio::fs::read(s.root.join("404.html"))
                    .await
                    .unwrap_or_else(|_| b"404 Not Found".to_vec());
                return html(StatusCode::NOT_FOUND, page);
            }
            Err(e) => {
                let code = e.raw_os_error().map_or_else(
                    || format!("{:?}", e.kind()),
                    |n| nix::errno::Errno::from_raw(n).to_string(),
                );
                let code = code.split(':').next().unwrap_or("").to_string();
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("Sorry, check with the site admin for error: {code} ..\n"),
                );
            }
        }
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    html(status, text.as_bytes().to_vec())
}

fn html(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

/// Whether the request carries these basic auth credentials (compared in constant time).
fn authorized(headers: &HeaderMap, user: &str, password: &str) -> bool {
    use base64::Engine;
    use subtle::ConstantTimeEq;
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
    else {
        return false;
    };
    let expected = format!("{user}:{password}");
    given.ct_eq(expected.as_bytes()).into()
}

/// The file `url_path` names under `root`, or `None` when it leaves `root`.
fn inside(root: &Path, url_path: &str) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for part in Path::new(url_path).components() {
        match part {
            Component::Normal(p) => path.push(p),
            Component::ParentDir => {
                if path == root {
                    return None;
                }
                path.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(path)
}

/// The content type PM2's Serve.js gives a file extension (text/plain for others).
fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" => "application/javascript",
        "json" => "application/json",
        "xml" | "xsl" => "application/xml",
        "xhtml" => "application/xhtml+xml",
        "svg" | "svgz" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "ico" => "image/vnd.microsoft.icon",
        "tif" | "tiff" => "image/tiff",
        "woff" | "woff2" => "application/font-woff",
        "otf" | "otc" | "ttf" => "application/font-sfnt",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/x-gzip",
        "tar" => "application/x-tar",
        "wasm" | "bin" | "exe" | "dll" | "so" | "iso" | "dmg" => "application/octet-stream",
        "mp3" => "audio/mpeg",
        "wav" => "audio/x-wav",
        "ogg" => "application/ogg",
        "mp4" | "m4v" | "mp4v" => "video/mp4",
        "webm" => "video/webm",
        "mov" | "qt" => "video/quicktime",
        "csv" => "text/csv",
        "yaml" | "yml" => "text/yaml",
        "rss" => "application/rss+xml",
        "atom" => "application/atom+xml",
        "sh" => "application/x-sh",
        _ => "text/plain",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let root = Path::new("/srv/www");
        assert_eq!(
            inside(root, "/a/b.html"),
            Some(PathBuf::from("/srv/www/a/b.html"))
        );
        assert_eq!(inside(root, "/a/../b"), Some(PathBuf::from("/srv/www/b")));
        assert_eq!(inside(root, "/../etc/passwd"), None);
        assert_eq!(inside(root, "/a/../../etc"), None);
        assert_eq!(inside(root, "/"), Some(PathBuf::from("/srv/www")));
    }

    #[test]
    fn content_types_follow_pm2() {
        assert_eq!(content_type(Path::new("a.HTML")), "text/html");
        assert_eq!(content_type(Path::new("a.js")), "application/javascript");
        assert_eq!(content_type(Path::new("README")), "text/plain");
    }
}

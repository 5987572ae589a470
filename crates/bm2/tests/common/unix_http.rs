//! A small HTTP/1.1 client over the daemon's Unix socket that sends exactly the bytes it is given
//! (for malformed, truncated and oversized requests) and reads responses byte by byte.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A response as read from the socket.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A connection to the daemon of `home`, with read and write timeouts.
pub fn connect(home: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let s = UnixStream::connect(home.join("daemon.sock"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// The bytes of a well-formed request with `Content-Length` and `Connection: close`.
pub fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// Sends a well-formed request and reads the whole response.
pub fn request(
    home: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut s = connect(home, Duration::from_secs(30))?;
    s.write_all(&request_bytes(method, path, headers, body))?;
    read_response(&mut BufReader::new(s))?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed without a response"))
}

/// POSTs `body` as JSON.
pub fn post_json(home: &Path, path: &str, body: &[u8]) -> io::Result<Response> {
    request(
        home,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body,
    )
}

/// Reads the status line and headers; `None` when the connection closed before any byte.
pub fn read_head(r: &mut impl BufRead) -> io::Result<Option<Response>> {
    let mut status_line = String::new();
    if read_line(r, &mut status_line)? == 0 {
        return Ok(None);
    }
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if read_line(r, &mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed in the headers",
            ));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some(Response {
        status,
        headers,
        body: Vec::new(),
    }))
}

/// Reads a whole response (body by `Content-Length`, chunks, or up to the end of the stream).
pub fn read_response(r: &mut impl BufRead) -> io::Result<Option<Response>> {
    let Some(mut resp) = read_head(r)? else {
        return Ok(None);
    };
    read_body(r, &mut resp)?;
    Ok(Some(resp))
}

/// Reads the body of `resp`, whose head was read with [`read_head`].
pub fn read_body(r: &mut impl BufRead, resp: &mut Response) -> io::Result<()> {
    if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(io::Error::other)?;
        resp.body = vec![0; len];
        r.read_exact(&mut resp.body)?;
    } else if resp
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            read_line(r, &mut size)?;
            let size = usize::from_str_radix(size.trim(), 16)
                .map_err(|e| io::Error::other(format!("bad chunk size {size:?}: {e}")))?;
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            resp.body.extend_from_slice(&chunk[..size]);
        }
    } else if resp.status != 204 && resp.status != 304 {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(())
}

fn read_line(r: &mut impl BufRead, line: &mut String) -> io::Result<usize> {
    let mut bytes = Vec::new();
    let n = r.read_until(b'\n', &mut bytes)?;
    line.push_str(&String::from_utf8_lossy(&bytes));
    Ok(n)
}

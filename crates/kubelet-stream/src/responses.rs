//! Responses written the way the kubelet's Go libraries write them, so clients build the same
//! error texts: go-restful's `WriteErrorString` (body as is, no newline; net/http sniffs
//! `text/plain; charset=utf-8`), net/http's `http.Error` (body plus `\n`, `nosniff`) and
//! `http.Redirect` (a small HTML body for GET).
//!
//! Checked against emicklei/go-restful `response.go` and Go's `net/http/server.go`
//! (Error, Redirect, htmlEscape).

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

pub type Body = Full<Bytes>;

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// go-restful `WriteErrorString` / `WriteError`, and the streaming package's `WriteError`.
pub fn restful_error(status: StatusCode, text: &str) -> Response<Body> {
    with_body(status, TEXT_PLAIN, text.to_owned())
}

/// net/http `http.Error`.
pub fn http_error(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = with_body(status, TEXT_PLAIN, format!("{text}\n"));
    response.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A 200 with a plain-text body (`/healthz`).
pub fn text(body: &'static str) -> Response<Body> {
    with_body(StatusCode::OK, TEXT_PLAIN, body)
}

/// A 200 with a JSON body.
pub fn json(value: &serde_json::Value) -> Response<Body> {
    with_body(StatusCode::OK, "application/json", value.to_string())
}

/// net/http `http.Redirect(w, r, url, 302)`.
pub fn found(method: &Method, location: &str) -> Response<Body> {
    let body = if *method == Method::GET {
        format!("<a href=\"{}\">Found</a>.\n\n", html_escape(location))
    } else {
        String::new()
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    if *method == Method::GET || *method == Method::HEAD {
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    response
}

fn html_escape(s: &str) -> String {
    s.chars()
        .fold(String::with_capacity(s.len()), |mut out, c| {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&#34;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(r: Response<Body>) -> String {
        let bytes = r.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn restful_errors_have_no_newline_http_errors_do() {
        assert_eq!(
            body(restful_error(StatusCode::UNAUTHORIZED, "Unauthorized")).await,
            "Unauthorized"
        );
        let r = http_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "error dialing backend: x",
        );
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(body(r).await, "error dialing backend: x\n");
    }

    #[tokio::test]
    async fn redirect_matches_net_http() {
        let r = found(&Method::GET, "http://127.0.0.1:1/exec/a&b");
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(r.headers()[LOCATION], "http://127.0.0.1:1/exec/a&b");
        assert_eq!(
            body(r).await,
            "<a href=\"http://127.0.0.1:1/exec/a&amp;b\">Found</a>.\n\n"
        );
        let r = found(&Method::POST, "http://x/");
        assert!(r.headers().get(CONTENT_TYPE).is_none());
        assert_eq!(body(r).await, "");
    }
}

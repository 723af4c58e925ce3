//! A plain HTTP client for the web console: a session cookie, no redirects followed (tests
//! look at them), and the CSRF token read from a page's forms.

use reqwest::redirect::Policy;

pub struct Console {
    pub base: String,
    http: reqwest::Client,
    token: Option<String>,
}

pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    /// The value of the first `csrf` hidden field.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in:\n{}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

impl Console {
    /// `token`: the session (as after signing in with it); `None`: a visitor.
    pub fn new(base: &str, token: Option<&str>) -> Self {
        Console {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            token: token.map(str::to_owned),
        }
    }

    fn with_cookie(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => rb.header("cookie", format!("pbackend_session={t}")),
            None => rb,
        }
    }

    async fn read(resp: reqwest::Response) -> Page {
        Page {
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: resp.text().await.unwrap_or_default(),
        }
    }

    /// GET a path or a whole URL.
    pub async fn get(&self, path_or_url: &str) -> Page {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        Self::read(
            self.with_cookie(self.http.get(url))
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    /// POST a form.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(fields).unwrap();
        let rb = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        Self::read(self.with_cookie(rb).send().await.expect("POST")).await
    }
}

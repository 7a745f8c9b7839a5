//! Helpers for driving the web app with plain HTTP: cookies and hidden form fields.

/// `jar` with the cookies `response` sets (a cookie set again replaces the old one), as `name=value` pairs.
pub fn cookies(response: &reqwest::Response, mut jar: Vec<String>) -> Vec<String> {
    for value in response.headers().get_all("set-cookie") {
        let pair = value.to_str().expect("ascii").split(';').next().expect("pair").to_owned();
        let name = pair.split('=').next().expect("name").to_owned();
        jar.retain(|existing| !existing.starts_with(&format!("{name}=")));
        jar.push(pair);
    }
    jar
}

/// The value of the hidden input `name` in `page`.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).expect("hidden field") + marker.len();
    page[start..].split('"').next().expect("value").to_owned()
}

/// Signs in through the cardholder app's form with `client` (which should not follow redirects): the answer, and the
/// cookies the sign-in page set (add the answer's with [`cookies`]).
pub async fn sign_in(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> (reqwest::Response, Vec<String>) {
    let page = client.get(format!("{base}/app/sign-in")).send().await.expect("page");
    let jar = cookies(&page, vec![]);
    let csrf = hidden(&page.text().await.expect("html"), "csrf");
    let answer = client
        .post(format!("{base}/app/sign-in"))
        .header("cookie", jar.join("; "))
        .form(&[("csrf", csrf.as_str()), ("email", email), ("password", password)])
        .send()
        .await
        .expect("answer");
    (answer, jar)
}

//! Reading `GET /metrics` in tests: one scrape's samples, summed by name and labels.

use crate::{Client, TestApp};

/// One scrape: every sample.
pub struct Scrape(Vec<Sample>);

/// A sample's name, labels and value.
type Sample = (String, Vec<(String, String)>, f64);

impl Scrape {
    /// `GET /metrics` as `client`, checked to be OpenMetrics text.
    pub async fn of(client: &Client) -> Self {
        let response = client
            .request(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .expect("scrape");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("content type")
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        Self::parse(&response.text().await.expect("body"))
    }

    /// The metrics of `app` rendered without a request, for an app whose request
    /// timeout would cut a scrape short.
    pub fn of_state(app: &TestApp) -> Self {
        let state = &app.state;
        Self::parse(
            &state
                .metrics
                .render(&state.db, &state.hub, &state.fanout)
                .expect("render"),
        )
    }

    fn parse(text: &str) -> Self {
        assert!(
            text.ends_with("# EOF\n"),
            "an incomplete exposition: {text}"
        );
        Self(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .map(parse_sample)
                .collect(),
        )
    }

    /// The sum of the samples named `name` whose labels include all of `labels` (0
    /// when there is none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(sample, have, _)| {
                sample == name
                    && labels
                        .iter()
                        .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            .map(|(_, _, value)| value)
            .sum()
    }
}

/// `name{k="v",...} value` (labels optional; values here never hold quotes or commas).
fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("a sample line");
    let value = value.parse().unwrap_or_else(|_| panic!("a value: {line}"));
    let (name, labels) = match series.split_once('{') {
        Some((name, labels)) => (name, labels.trim_end_matches('}')),
        None => (series, ""),
    };
    let labels = labels
        .split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("label=value");
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect();
    (name.to_owned(), labels, value)
}

//! Reading Prometheus text, as the tests do with `/metrics`.

/// The sum of every sample of the metric `name` in `text` (one line
/// without labels, or a family's lines with labels); 0 when absent.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_family_and_ignores_prefixes() {
        let text =
            "# TYPE a counter\na_total{r=\"x\"} 2\na_total{r=\"y\"} 3\na_total_more 7\nb 1.5\n";
        assert_eq!(metric_sum(text, "a_total"), 5.0);
        assert_eq!(metric_sum(text, "b"), 1.5);
        assert_eq!(metric_sum(text, "c"), 0.0);
    }
}

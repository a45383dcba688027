//! Human output as podman prints it: relative times, SI sizes, aligned tables.

/// "3 seconds", "About a minute", "2 weeks" (docker's go-units wording).
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    if s < 1 {
        "Less than a second".into()
    } else if s == 1 {
        "1 second".into()
    } else if s < 60 {
        format!("{s} seconds")
    } else if m == 1 {
        "About a minute".into()
    } else if m < 60 {
        format!("{m} minutes")
    } else if h == 1 {
        "About an hour".into()
    } else if h < 48 {
        format!("{h} hours")
    } else if h < 24 * 7 * 2 {
        format!("{} days", h / 24)
    } else if h < 24 * 30 * 2 {
        format!("{} weeks", h / 24 / 7)
    } else if h < 24 * 365 * 2 {
        format!("{} months", h / 24 / 30)
    } else {
        format!("{} years", h / 24 / 365)
    }
}

/// "2 minutes ago" for a unix time.
pub fn ago(t: i64) -> String {
    format!("{} ago", human_duration(crate::storage::now() - t))
}

/// Parses an RFC 3339 time into unix seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp())
}

/// RFC 3339 with nanoseconds, as podman's JSON shows times.
pub fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_default()
}

/// Go's time.String() in UTC ("2023-11-14 22:13:20 +0000 UTC"), as podman's templates
/// print times.
pub fn go_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default()
}

/// "4.5 MB": SI units with three significant digits, as podman prints sizes.
pub fn human_size(bytes: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes.max(0) as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s} {}", units[i])
}

/// Prints rows as left-aligned columns separated by at least two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(human_size(4_500_000), "4.5 MB");
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_234_567_890), "1.23 GB");
        assert_eq!(human_duration(3), "3 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(15 * 86400), "2 weeks");
    }
}

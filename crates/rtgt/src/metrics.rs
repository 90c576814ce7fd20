//! Prometheus text exposition (format 0.0.4) of the iSCSI fabric's
//! statistics: per LU and per target port command, byte and error
//! counters and latency histograms, live sessions per target port, and
//! login counters.
//!
//! Per-session counters are not exported here (one series per session and
//! LU would grow without bound as initiators come and go); the control
//! API's session view carries them.

use std::fmt::Write;

use rtgt_iscsi::stats::{IoTotals, ServerStats, LATENCY_BOUNDS_NS};

/// The `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The ALUA state of each target port group, one series per (group,
/// state) with 1 for the state it is in and 0 for the others, so that an
/// alert or a graph needs no mapping of codes.
pub fn render_alua(
    states: &std::collections::BTreeMap<u16, rtgt_scsi::alua::AccessState>,
) -> String {
    let mut out = String::new();
    header(
        &mut out,
        "rtgt_alua_state",
        "gauge",
        "Asymmetric access state of each ALUA target port group (1: the state it is in).",
    );
    for (id, now) in states {
        for s in rtgt_scsi::alua::AccessState::ALL {
            let _ = writeln!(
                out,
                "rtgt_alua_state{{group=\"{id}\",state=\"{}\"}} {}",
                s.name(),
                u8::from(s == *now)
            );
        }
    }
    out
}

/// Render `stats` in the Prometheus text format.
pub fn render(stats: &ServerStats) -> String {
    let mut out = String::with_capacity(256 + (stats.lus.len() + stats.ports.len()) * 2048);
    let lus: Vec<(String, &IoTotals)> = stats
        .lus
        .iter()
        .map(|l| (format!("lu=\"{}\"", escape(&l.lu)), &l.totals))
        .collect();
    let ports: Vec<(String, &IoTotals)> = stats
        .ports
        .iter()
        .map(|p| (port_labels(&p.target, p.tpg), &p.totals))
        .collect();
    io_families(&mut out, "lu", "logical unit", &lus);
    io_families(
        &mut out,
        "port",
        "target port (target and portal group)",
        &ports,
    );

    header(
        &mut out,
        "rtgt_sessions",
        "gauge",
        "Live iSCSI sessions per target port.",
    );
    for p in &stats.ports {
        let _ = writeln!(
            out,
            "rtgt_sessions{{{}}} {}",
            port_labels(&p.target, p.tpg),
            p.sessions
        );
    }
    header(
        &mut out,
        "rtgt_logins_total",
        "counter",
        "iSCSI logins that reached full feature phase (discovery sessions included).",
    );
    let _ = writeln!(out, "rtgt_logins_total {}", stats.logins.succeeded);
    header(
        &mut out,
        "rtgt_login_failures_total",
        "counter",
        "iSCSI logins that failed, by reason.",
    );
    for (reason, n) in &stats.logins.failures {
        let _ = writeln!(
            out,
            "rtgt_login_failures_total{{reason=\"{}\"}} {n}",
            escape(reason)
        );
    }
    header(
        &mut out,
        "rtgt_auth_failures_total",
        "counter",
        "Failed authentications (CHAP) by reason; locked_out and paced were refused unchecked.",
    );
    for (reason, n) in &stats.logins.auth_failures {
        let _ = writeln!(
            out,
            "rtgt_auth_failures_total{{reason=\"{}\"}} {n}",
            escape(reason)
        );
    }
    let lp = &stats.login_phase;
    header(
        &mut out,
        "rtgt_logins_in_progress",
        "gauge",
        "Connections in the login phase now.",
    );
    let _ = writeln!(out, "rtgt_logins_in_progress {}", lp.in_login);
    header(
        &mut out,
        "rtgt_login_limit",
        "gauge",
        "Bounds on connections in the login phase: in all, per source network (/24, /64), per initiator name.",
    );
    for (scope, n) in [
        ("global", lp.limit),
        ("network", lp.limit_per_network),
        ("initiator", lp.limit_per_initiator),
    ] {
        let _ = writeln!(out, "rtgt_login_limit{{scope=\"{scope}\"}} {n}");
    }
    header(
        &mut out,
        "rtgt_login_timeout_seconds",
        "gauge",
        "Deadlines of the login: for authentication (security stage) and for the whole login.",
    );
    for (stage, t) in [
        ("security", lp.security_timeout_seconds),
        ("login", lp.login_timeout_seconds),
    ] {
        let _ = writeln!(out, "rtgt_login_timeout_seconds{{stage=\"{stage}\"}} {t}");
    }
    header(
        &mut out,
        "rtgt_chap_challenges_outstanding",
        "gauge",
        "CHAP challenges sent and not yet answered (the reflection guard's record).",
    );
    let _ = writeln!(
        out,
        "rtgt_chap_challenges_outstanding {}",
        lp.challenges_outstanding
    );
    header(
        &mut out,
        "rtgt_chap_challenges_capacity",
        "gauge",
        "Challenges the record holds; a login finding it full gets 03/02, nothing is forgotten.",
    );
    let _ = writeln!(
        out,
        "rtgt_chap_challenges_capacity {}",
        lp.challenges_capacity
    );
    header(
        &mut out,
        "rtgt_auth_paced_sources",
        "gauge",
        "(initiator name, source) pairs whose failed authentications are on record and paced.",
    );
    let _ = writeln!(out, "rtgt_auth_paced_sources {}", lp.paced_sources);
    out
}

fn port_labels(target: &str, tpg: u16) -> String {
    format!("target=\"{}\",tpg=\"{tpg}\"", escape(target))
}

/// The counter families and the latency histogram of one kind of object
/// (`kind` "lu" or "port"), each row its rendered labels and totals.
fn io_families(out: &mut String, kind: &str, what: &str, rows: &[(String, &IoTotals)]) {
    type Field = fn(&IoTotals) -> u64;
    let counters: [(&str, &str, Field); 6] = [
        ("commands_total", "SCSI commands that ended with a status", |t| {
            t.commands
        }),
        (
            "read_commands_total",
            "READ (6/10/12/16) commands",
            |t| t.read_commands,
        ),
        (
            "write_commands_total",
            "WRITE, WRITE AND VERIFY and WRITE ATOMIC commands",
            |t| t.write_commands,
        ),
        ("read_bytes_total", "Data-In bytes sent", |t| t.read_bytes),
        (
            "written_bytes_total",
            "Data-Out bytes of commands that ended GOOD",
            |t| t.written_bytes,
        ),
        (
            "errors_total",
            "Commands that ended with a status other than GOOD (CHECK CONDITION, RESERVATION CONFLICT, BUSY...)",
            |t| t.errors,
        ),
    ];
    for (suffix, help, field) in counters {
        let name = format!("rtgt_{kind}_{suffix}");
        header(out, &name, "counter", &format!("{help}, per {what}."));
        for (labels, t) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {}", field(t));
        }
    }
    let name = format!("rtgt_{kind}_latency_seconds");
    header(
        out,
        &name,
        "histogram",
        &format!("Time from receipt of a SCSI command to its status, per {what}."),
    );
    for (labels, t) in rows {
        let mut cumulative = 0u64;
        for (i, n) in t.latency.buckets.iter().enumerate() {
            cumulative += n;
            let _ = match LATENCY_BOUNDS_NS.get(i) {
                Some(&ns) => {
                    let le = ns as f64 / 1e9;
                    writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}")
                }
                None => writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}"),
            };
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", t.latency.sum_seconds());
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", t.latency.count());
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value, escaped as the text format requires: backslash, double
/// quote and line feed.
pub fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtgt_iscsi::stats::{
        Latency, LoginFailureReason, LoginPhaseStats, LoginStats, LuStats, PortStats,
        LATENCY_BUCKETS,
    };
    use std::collections::{BTreeMap, HashMap, HashSet};

    const WEIRD: &str = "we\"ird\\lu\nname";

    fn totals(commands: u64, errors: u64, latency_us: &[u64]) -> IoTotals {
        let mut buckets = [0u64; LATENCY_BUCKETS];
        let mut sum_ns = 0;
        for &us in latency_us {
            let ns = us * 1000;
            let i = LATENCY_BOUNDS_NS.partition_point(|&b| b < ns);
            buckets[i] += 1;
            sum_ns += ns;
        }
        IoTotals {
            commands,
            read_commands: commands / 2,
            write_commands: commands / 3,
            read_bytes: commands * 4096,
            written_bytes: commands * 512,
            errors,
            latency: Latency { buckets, sum_ns },
        }
    }

    fn sample_stats() -> ServerStats {
        let failures: BTreeMap<&'static str, u64> = LoginFailureReason::ALL
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i as u64))
            .collect();
        ServerStats {
            latency_bounds_seconds: LATENCY_BOUNDS_NS.iter().map(|&n| n as f64 / 1e9).collect(),
            session_count: 3,
            sessions: Vec::new(),
            lus: vec![
                LuStats {
                    lu: "ram0".into(),
                    totals: totals(6, 1, &[20, 70, 70, 3_000, 2_000_000, 400]),
                },
                LuStats {
                    lu: "idle".into(),
                    totals: IoTotals::default(),
                },
                LuStats {
                    lu: WEIRD.into(),
                    totals: totals(1, 0, &[100]),
                },
            ],
            ports: vec![
                PortStats {
                    target: "iqn.2026-11.org.rtgt:demo".into(),
                    tpg: 1,
                    sessions: 2,
                    totals: totals(7, 1, &[20, 70, 70, 3_000, 2_000_000, 400, 100]),
                },
                PortStats {
                    target: "iqn.2026-11.org.rtgt:other".into(),
                    tpg: 3,
                    sessions: 0,
                    totals: IoTotals::default(),
                },
            ],
            logins: LoginStats {
                succeeded: 42,
                failures,
                auth_failures: [("wrong_response", 7), ("locked_out", 2)]
                    .into_iter()
                    .collect(),
            },
            login_phase: LoginPhaseStats {
                in_login: 5,
                limit: 1024,
                limit_per_network: 128,
                limit_per_initiator: 16,
                security_timeout_seconds: 5.0,
                login_timeout_seconds: 15.0,
                challenges_outstanding: 3,
                challenges_capacity: 1024,
                paced_sources: 9,
            },
        }
    }

    fn parse(text: &str) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    }

    /// The value of the counter or gauge `name` with exactly `labels`.
    fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<_> = s
            .samples
            .iter()
            .filter(|x| {
                x.metric == name
                    && x.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
            })
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        match &found[0].value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            v => panic!("{name}: not a single value: {v:?}"),
        }
    }

    #[test]
    fn counters_parse_back_with_their_values() {
        let text = render(&sample_stats());
        let s = parse(&text);
        let ram0 = [("lu", "ram0")];
        assert_eq!(value(&s, "rtgt_lu_commands_total", &ram0), 6.0);
        assert_eq!(value(&s, "rtgt_lu_read_commands_total", &ram0), 3.0);
        assert_eq!(value(&s, "rtgt_lu_write_commands_total", &ram0), 2.0);
        assert_eq!(value(&s, "rtgt_lu_read_bytes_total", &ram0), 6.0 * 4096.0);
        assert_eq!(value(&s, "rtgt_lu_written_bytes_total", &ram0), 6.0 * 512.0);
        assert_eq!(value(&s, "rtgt_lu_errors_total", &ram0), 1.0);
        assert_eq!(value(&s, "rtgt_lu_commands_total", &[("lu", "idle")]), 0.0);
        assert!(matches!(
            s.samples
                .iter()
                .find(|x| x.metric == "rtgt_lu_commands_total")
                .map(|x| &x.value),
            Some(prometheus_parse::Value::Counter(_))
        ));
        let demo = [("target", "iqn.2026-11.org.rtgt:demo"), ("tpg", "1")];
        assert_eq!(value(&s, "rtgt_port_commands_total", &demo), 7.0);
        assert_eq!(value(&s, "rtgt_port_errors_total", &demo), 1.0);
        assert_eq!(value(&s, "rtgt_sessions", &demo), 2.0);
        let other = [("target", "iqn.2026-11.org.rtgt:other"), ("tpg", "3")];
        assert_eq!(value(&s, "rtgt_sessions", &other), 0.0);
        assert_eq!(value(&s, "rtgt_logins_total", &[]), 42.0);
        for (i, r) in LoginFailureReason::ALL.iter().enumerate() {
            assert_eq!(
                value(&s, "rtgt_login_failures_total", &[("reason", r.as_str())]),
                i as f64
            );
        }
        assert!(s.docs.contains_key("rtgt_lu_commands_total"));
        let auth = |r| value(&s, "rtgt_auth_failures_total", &[("reason", r)]);
        assert_eq!((auth("wrong_response"), auth("locked_out")), (7.0, 2.0));
        assert_eq!(value(&s, "rtgt_logins_in_progress", &[]), 5.0);
        let limit = |scope| value(&s, "rtgt_login_limit", &[("scope", scope)]);
        assert_eq!(
            (limit("global"), limit("network"), limit("initiator")),
            (1024.0, 128.0, 16.0)
        );
        let t = |stage| value(&s, "rtgt_login_timeout_seconds", &[("stage", stage)]);
        assert_eq!((t("security"), t("login")), (5.0, 15.0));
        assert_eq!(value(&s, "rtgt_chap_challenges_outstanding", &[]), 3.0);
        assert_eq!(value(&s, "rtgt_chap_challenges_capacity", &[]), 1024.0);
        assert_eq!(value(&s, "rtgt_auth_paced_sources", &[]), 9.0);
    }

    #[test]
    fn latency_histograms_are_cumulative() {
        let text = render(&sample_stats());
        let s = parse(&text);
        let h = s
            .samples
            .iter()
            .find(|x| x.metric == "rtgt_lu_latency_seconds" && x.labels.get("lu") == Some("ram0"))
            .expect("ram0 histogram");
        let prometheus_parse::Value::Histogram(buckets) = &h.value else {
            panic!("not a histogram: {:?}", h.value);
        };
        let got: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
        // Latencies 20, 70, 70, 400, 3000 us and 2 s.
        let want = [
            (0.00005, 1.0),
            (0.0001, 3.0),
            (0.00025, 3.0),
            (0.0005, 4.0),
            (0.001, 4.0),
            (0.0025, 4.0),
            (0.005, 5.0),
            (0.01, 5.0),
            (0.025, 5.0),
            (0.05, 5.0),
            (0.1, 5.0),
            (0.25, 5.0),
            (1.0, 5.0),
            (f64::INFINITY, 6.0),
        ];
        assert_eq!(got, want);
        let sum = value(&s, "rtgt_lu_latency_seconds_sum", &[("lu", "ram0")]);
        assert!((sum - 2.00356).abs() < 1e-9, "{sum}");
        assert_eq!(
            value(&s, "rtgt_lu_latency_seconds_count", &[("lu", "ram0")]),
            6.0
        );
        assert!(text.contains("rtgt_port_latency_seconds_bucket{target=\"iqn.2026-11.org.rtgt:demo\",tpg=\"1\",le=\"+Inf\"} 7\n"));
    }

    /// A strict reading of one sample line: name, unescaped labels, value.
    fn strict_sample(line: &str) -> (String, Vec<(String, String)>, f64) {
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let name = &line[..name_end];
        assert!(
            !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()),
            "{line}"
        );
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let eq = rest.find('=').expect("label =");
                let key = rest[..eq].to_string();
                assert!(
                    key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                let mut chars = rest[eq + 1..].chars();
                assert_eq!(chars.next(), Some('"'), "{line}");
                let mut v = String::new();
                loop {
                    match chars.next().expect("unterminated label value") {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('\\') => v.push('\\'),
                            Some('"') => v.push('"'),
                            Some('n') => v.push('\n'),
                            other => panic!("bad escape {other:?} in {line}"),
                        },
                        '\n' => panic!("raw newline"),
                        c => v.push(c),
                    }
                }
                labels.push((key, v));
                rest = chars.as_str();
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let value = rest.strip_prefix(' ').expect("space before value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("value {v:?} in {line}")),
        };
        (name.to_string(), labels, value)
    }

    #[test]
    fn exposition_is_well_formed_and_labels_are_escaped() {
        let text = render(&sample_stats());
        assert!(text.ends_with('\n'));
        // The awkward LU name goes out escaped on one line...
        assert!(
            text.contains("rtgt_lu_commands_total{lu=\"we\\\"ird\\\\lu\\nname\"} 1\n"),
            "{text}"
        );
        // ...and every line reads back strictly: families declared once,
        // HELP then TYPE, their samples together, no series twice.
        let mut typed: HashMap<String, String> = HashMap::new();
        let mut current: Option<(String, String)> = None;
        let mut done_families = HashSet::new();
        let mut series = HashSet::new();
        let mut weird_seen = 0;
        for line in text.lines() {
            if let Some(h) = line.strip_prefix("# HELP ") {
                let name = h.split(' ').next().unwrap();
                assert!(!typed.contains_key(name), "family {name} twice");
                continue;
            }
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let mut it = t.split(' ');
                let (name, kind) = (it.next().unwrap(), it.next().unwrap());
                assert!(matches!(kind, "counter" | "gauge" | "histogram"));
                assert!(name.starts_with("rtgt_"), "{name}");
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{name}");
                }
                if let Some((prev, _)) = current.take() {
                    done_families.insert(prev);
                }
                assert!(typed.insert(name.into(), kind.into()).is_none());
                current = Some((name.into(), kind.into()));
                continue;
            }
            let (name, labels, v) = strict_sample(line);
            assert!(v >= 0.0);
            let (family, kind) = current.clone().expect("sample before any TYPE");
            let ok = match kind.as_str() {
                "histogram" => [
                    format!("{family}_bucket"),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ]
                .contains(&name),
                _ => name == family,
            };
            assert!(ok, "{name} outside its family {family}");
            if labels.iter().any(|(_, v)| v == WEIRD) {
                weird_seen += 1;
            }
            assert!(series.insert((name, format!("{labels:?}"))), "{line}");
        }
        // Six counters and a histogram (14 buckets, sum, count).
        assert_eq!(weird_seen, 6 + LATENCY_BUCKETS + 2);
        assert!(typed.len() >= 2 * 7 + 3);
    }

    #[test]
    fn alua_states_are_one_series_per_state() {
        use rtgt_scsi::alua::AccessState;
        let states = [(1, AccessState::ActiveOptimized), (2, AccessState::Standby)]
            .into_iter()
            .collect();
        let text = render_alua(&states);
        let samples: Vec<_> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(strict_sample)
            .collect();
        assert_eq!(samples.len(), 2 * AccessState::ALL.len());
        let on: Vec<(String, String)> = samples
            .iter()
            .filter(|(n, _, v)| n == "rtgt_alua_state" && *v == 1.0)
            .map(|(_, l, _)| (l[0].1.clone(), l[1].1.clone()))
            .collect();
        assert_eq!(
            on,
            [
                ("1".to_string(), "active_optimized".to_string()),
                ("2".to_string(), "standby".to_string())
            ]
        );
        assert!(text.contains("# TYPE rtgt_alua_state gauge\n"));
    }

    #[test]
    fn empty_stats_render_the_families() {
        let s = parse(&render(&ServerStats::default()));
        assert!(s.docs.contains_key("rtgt_logins_total"));
        assert_eq!(value(&s, "rtgt_logins_total", &[]), 0.0);
    }

    #[test]
    fn a_thousand_lus_render_quickly() {
        let mut stats = sample_stats();
        stats.lus = (0..1000)
            .map(|i| LuStats {
                lu: format!("lu{i}"),
                totals: totals(i, 0, &[i]),
            })
            .collect();
        let t = std::time::Instant::now();
        let text = render(&stats);
        let took = t.elapsed();
        assert!(took < std::time::Duration::from_secs(2), "{took:?}");
        let s = parse(&text);
        assert_eq!(
            value(&s, "rtgt_lu_commands_total", &[("lu", "lu999")]),
            999.0
        );
    }
}

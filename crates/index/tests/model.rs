//! Model check: on generated access events, the index returns exactly
//! the entries a brute-force scan with the query evaluator returns, for
//! random queries of every construct; and a rebuilt index answers the same.

use std::sync::Arc;

use custos_index::engine::LogIndex;
use custos_index::query::{matches, parse};
use custos_log::sim::SimStorage;
use custos_log::{Log, LogConfig};
use custos_tlog::note::NoteSigner;
use proptest::prelude::*;
use serde_json::{Value, json};

const NOW: &str = "2026-11-27T12:00:00Z";
const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "mallory"];
const ACTIVITIES: [&str; 4] = ["user.login", "db.query", "file.read", "admin.role.grant"];
const WORDS: [&str; 6] = ["denied", "root", "payments", "select", "granted", "token"];

fn events(seed: u64, n: usize) -> Vec<Value> {
    let mut x = seed | 1;
    let mut r = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    (0..n)
        .map(|i| {
            let mut e = json!({
                // On the hour, on a minute (where generated range bounds
                // fall), or anywhere: time ranges are answered per hour,
                // and per entry within partial hours.
                "time": custos_event::time::format_rfc3339(
                    custos_event::time::parse_rfc3339(NOW).unwrap()
                        - (r(72) as i64) * 3_600_000_000_000
                        - match r(3) {
                            0 => 0,
                            1 => (r(60) as i64) * 60_000_000_000,
                            _ => (r(3_600_000) as i64) * 1_000_000,
                        }
                ),
                "received_at": NOW,
                "log": "m",
                "submitter": {"name": "ingest", "via": "http"},
                "activity": ACTIVITIES[r(4) as usize],
                "actor": {"user": {"name": USERS[r(5) as usize]}},
                "status": if r(10) < 3 { "failure" } else { "success" },
                "src_endpoint": {"ip": format!("{}.{}.0.{}", [10, 192, 172][r(3) as usize], r(3), r(4)), "port": r(5) * 1000},
                "message": format!("{} {} {}", WORDS[r(6) as usize], WORDS[r(6) as usize], i),
                "class_uid": 3000 + r(3),
            });
            if r(3) == 0 {
                e["actor"]["session"] = json!({"uid": format!("s{}", r(4))});
            }
            if r(4) == 0 {
                e["targets"] = json!([{"type": "user", "name": USERS[r(5) as usize]}]);
                // Some with more than one target, and one named twice
                // (from the entry number, leaving the random stream as it
                // was).
                if i % 3 == 0 {
                    let t = e["targets"][0].clone();
                    e["targets"].as_array_mut().unwrap().push(json!({"type": "table", "name": "payments.card"}));
                    if i % 2 == 0 {
                        e["targets"].as_array_mut().unwrap().push(t);
                    }
                }
            }
            // A field with a keyword column of its own, holding a string,
            // a number, an object, an empty object, null, or nothing: its
            // "exists" is answered from the column or from a token.
            match r(7) {
                0 => e["resource"] = json!({"name": "db1"}),
                1 => e["resource"] = json!({"name": 7}),
                2 => e["resource"] = json!({"name": {"schema": "public"}}),
                3 => e["resource"] = json!({"name": {}}),
                4 => e["resource"] = json!({"name": null, "type": "table"}),
                5 => e["resource"] = json!({"name": ["a", "b"]}),
                _ => {}
            }
            // Durations as the gateway records them, whole and fractional
            // (from the entry number, leaving the random stream as it was).
            e["duration_ms"] = if i % 3 == 0 { json!(i % 40) } else { json!((i % 40) as f64 / 4.0 + 0.125) };
            // The schema takes any value there: some text, too.
            if i % 50 == 7 {
                e["duration_ms"] = json!(if i % 100 == 7 { "slow" } else { "2.625" });
            }
            e
        })
        .collect()
}

fn term() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..5usize).prop_map(|i| format!("actor.user.name:{}", USERS[i])),
        (0..4usize).prop_map(|i| format!("activity:{}", ACTIVITIES[i])),
        Just("status:failure".to_string()),
        Just("status:success".to_string()),
        (0..5usize).prop_map(|i| format!("targets.name:{}", USERS[i])),
        Just("actor.session.uid:*".to_string()),
        Just("targets:*".to_string()),
        (0..3usize).prop_map(|i| format!("src_endpoint.ip:{}.0.0.0/8", [10, 192, 172][i])),
        Just("src_endpoint.ip:10.1.0.0/16".to_string()),
        (0..5u64).prop_map(|p| format!("src_endpoint.port:>={}", p * 1000)),
        (0..5u64, 0..5u64).prop_map(|(a, b)| format!("src_endpoint.port:[{} TO {}]", a * 1000, b * 1000)),
        (1..72u64).prop_map(|h| format!("time:[now-{h}h TO now]")),
        Just("time:>2026-11-26".to_string()),
        Just("time:2026-11-26".to_string()),
        (0..72i64).prop_map(|h| format!(
            "time:\"{}\"",
            custos_event::time::format_rfc3339(custos_event::time::parse_rfc3339(NOW).unwrap() - h * 3_600_000_000_000)
        )),
        Just("time:\"2026-11-27T13:00:00+01:00\"".to_string()),
        Just(format!("received_at:\"{NOW}\"")),
        Just("time:*".to_string()),
        Just("activity:*".to_string()),
        Just("actor.user:*".to_string()),
        Just("submitter.name:*".to_string()),
        Just("resource.name:*".to_string()),
        Just("resource:*".to_string()),
        Just("resource.type:*".to_string()),
        Just("resource.name.schema:*".to_string()),
        Just("src_endpoint.ip:*".to_string()),
        (0..48u64, 0..60u64, 1..30u64, any::<bool>(), any::<bool>()).prop_map(|(h, m, span, a, b)| {
            let lo = custos_event::time::parse_rfc3339("2026-11-25T00:00:00Z").unwrap()
                + ((h * 60 + m) * 60_000_000_000) as i64;
            let hi = lo + (span * 1_700_000_000_000) as i64;
            let f = custos_event::time::format_rfc3339;
            format!("time:{}{} TO {}{}", if a { "[" } else { "{" }, f(lo), f(hi), if b { "]" } else { "}" })
        }),
        (0..6usize).prop_map(|i| WORDS[i].to_string()),
        (0..6usize, 0..6usize).prop_map(|(a, b)| format!("\"{} {}\"", WORDS[a], WORDS[b])),
        Just("pay*".to_string()),
        Just("actor.user.name:*o*".to_string()),
        Just("actor.user.name:[bob TO dave]".to_string()),
        Just("actor.user.name:>carol".to_string()),
        Just("actor.user.name:<=bob".to_string()),
        Just("activity:*.*".to_string()),
        Just("actor.session.uid:>=s2".to_string()),
        Just("targets.name:{* TO dave}".to_string()),
        Just("class_uid:3001".to_string()),
        Just("class_uid:{3000 TO 3002}".to_string()),
        Just("duration_ms:>2.5".to_string()),
        Just("duration_ms:[1.125 TO 7]".to_string()),
        Just("duration_ms:{0 TO 5.125}".to_string()),
        Just("duration_ms:<=3".to_string()),
        Just("duration_ms:2.625".to_string()),
        Just("duration_ms:2.6250".to_string()),
        Just("duration_ms:\"5\"".to_string()),
        Just("duration_ms:5.0".to_string()),
        Just("duration_ms:slow".to_string()),
        Just("duration_ms:sl*".to_string()),
        Just("duration_ms:2.*".to_string()),
        Just("duration_ms:(1 OR 2.625 OR slow)".to_string()),
        // Field groups.
        (0..5usize, 0..5usize).prop_map(|(a, b)| format!("actor.user.name:({} OR {}*)", USERS[a], &USERS[b][..2])),
        (0..4usize).prop_map(|i| format!("activity:(NOT {} AND *.*)", ACTIVITIES[i])),
        (0..5u64, 1..5u64).prop_map(|(a, b)| format!("src_endpoint.port:(>={} -[{} TO *])", a * 1000, (a + b) * 1000)),
        Just("targets.name:(\"alice\" OR (mallory))".to_string()),
        Just("time:(2026-11-26 OR [now-6h TO now])".to_string()),
    ]
}

fn query() -> impl Strategy<Value = String> {
    let leaf = term();
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} AND {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
            inner.clone().prop_map(|a| format!("NOT {a}")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a} {b})")),
        ]
    })
}

struct Fixture {
    _dir: tempfile::TempDir,
    log: Log,
    index: LogIndex,
    entries: Vec<Value>,
}

fn fixture(n: usize) -> Fixture {
    fixture_of(events(42, n))
}

/// Events in time order, as a log mostly holds them: each segment of the
/// index then spans a few hours, and time ranges skip the others.
fn fixture_in_time_order(n: usize) -> Fixture {
    let mut evs = events(43, n);
    evs.sort_by_key(|e| custos_event::time::parse_rfc3339(e["time"].as_str().unwrap()).unwrap());
    fixture_of(evs)
}

/// Events in time order, indexed by two threads that share out each step's
/// entries (as `custos reindex` does): segments whose runs of entries and
/// times overlap.
fn fixture_two_writers(n: usize) -> Fixture {
    let f = fixture_in_time_order(n);
    let dir = tempfile::tempdir().unwrap();
    let index = LogIndex::open_with(dir.path(), f.log.size(), 2, 40 << 20).unwrap();
    while index.catch_up(&f.log, 60).unwrap() > 0 {}
    Fixture { _dir: dir, log: f.log, index, entries: f.entries }
}

fn fixture_of(events: Vec<Value>) -> Fixture {
    let log = Log::open(
        Arc::new(SimStorage::new(1)),
        LogConfig::new("test/log"),
        NoteSigner::from_seed("test", [1; 32]).unwrap(),
    )
    .unwrap();
    let raw: Vec<Vec<u8>> =
        events.iter().map(|e| custos_event::canonical::to_canonical(e).unwrap().into_bytes()).collect();
    log.append_blocking(&raw).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let index = LogIndex::open(dir.path(), log.size()).unwrap();
    // Index in several steps, as the server does while events arrive.
    while index.catch_up(&log, 97).unwrap() > 0 {}
    let entries = raw.iter().map(|r| serde_json::from_slice(r).unwrap()).collect();
    Fixture { _dir: dir, log, index, entries }
}

fn now() -> i64 {
    custos_event::time::parse_rfc3339(NOW).unwrap()
}

fn brute(f: &Fixture, q: &str) -> Vec<u64> {
    let q = parse(q).unwrap();
    let mut v: Vec<u64> =
        f.entries.iter().enumerate().filter(|(_, e)| matches(&q, e, now())).map(|(i, _)| i as u64).collect();
    v.reverse();
    v
}

/// Every hit, page by page with the cursor, newest first; checked against
/// the same walk oldest first, and the count of each page against the hits.
fn indexed(f: &Fixture, q: &str) -> Vec<u64> {
    let q = parse(q).unwrap();
    let walk = |newest_first: bool| {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let (page, total) = f.index.search(&q, 50, cursor, newest_first, now()).unwrap();
            if page.is_empty() {
                assert_eq!(all.len(), total, "every page counts all matches");
                return all;
            }
            assert!(all.len() + page.len() <= total);
            cursor = page.last().copied();
            all.extend(page);
        }
    };
    let newest = walk(true);
    let mut oldest = walk(false);
    oldest.reverse();
    assert_eq!(oldest, newest, "oldest-first pages hold the same hits");
    newest
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn index_matches_brute_force(q in query()) {
        thread_local! {
            static F: Fixture = fixture(700);
            static S: Fixture = fixture_in_time_order(700);
            static T: Fixture = fixture_two_writers(700);
        }
        F.with(|f| check_against_brute_force(f, &q))?;
        S.with(|f| check_against_brute_force(f, &q))?;
        T.with(|f| check_against_brute_force(f, &q))?;
    }
}

fn check_against_brute_force(f: &Fixture, q: &str) -> Result<(), TestCaseError> {
    let want = brute(f, q);
    prop_assert_eq!(indexed(f, q), want.clone(), "query {}", q);
    prop_assert_eq!(f.index.count(&parse(q).unwrap(), now()).unwrap(), want.len());
    // Oldest first: the first page is the lowest entry numbers.
    let (asc, total) = f.index.search(&parse(q).unwrap(), 50, None, false, now()).unwrap();
    let mut oldest = want.clone();
    oldest.sort_unstable();
    oldest.truncate(50);
    prop_assert_eq!(asc, oldest, "query {} oldest first", q);
    prop_assert_eq!(total, want.len());
    Ok(())
}

/// In a log in time order, a time range skips the segments outside it and
/// still finds everything in it.
#[test]
fn time_ranges_skip_segments_outside_them() {
    let f = fixture_in_time_order(700);
    let before = f.index.segments_skipped();
    for q in ["time:[now-3h TO now]", "status:failure AND time:[now-70h TO now-66h]", "time:2026-11-25"] {
        assert_eq!(indexed(&f, q), brute(&f, q), "{q}");
    }
    assert!(f.index.segments_skipped() > before, "no segment was skipped");
    // Aggregations skip them too, and count the same.
    let q = "time:[now-10h TO now]";
    let want = brute(&f, q);
    let before = f.index.segments_skipped();
    let top = f.index.aggregate(&parse(q).unwrap(), Some("actor.user.name"), 10, None, now()).unwrap();
    let hist = f.index.aggregate(&parse(q).unwrap(), None, 10, Some("1h"), now()).unwrap();
    assert!(f.index.segments_skipped() > before, "no segment was skipped by aggregations");
    assert_eq!(top.iter().map(|(_, c)| c).sum::<u64>(), want.len() as u64);
    assert_eq!(hist.iter().map(|(_, c)| c).sum::<u64>(), want.len() as u64);
    for (user, count) in &top {
        let n = want.iter().filter(|&&i| f.entries[i as usize]["actor"]["user"]["name"] == *user).count();
        assert_eq!(*count, n as u64, "{user}");
    }
    // Without a time range, or under NOT, nothing is skipped.
    let before = f.index.segments_skipped();
    for q in ["status:failure", "NOT time:[now-3h TO now]", "time:[now-3h TO now] OR status:failure"] {
        assert_eq!(indexed(&f, q), brute(&f, q), "{q}");
    }
    assert_eq!(f.index.segments_skipped(), before);
}

#[test]
fn rebuilt_and_damaged_indexes_answer_the_same() {
    let f = fixture(300);
    let q = "status:failure AND NOT actor.user.name:alice";
    let want = indexed(&f, q);
    assert_eq!(want, brute(&f, q));
    // Delete: rebuilt from the log.
    let dir = f.index.dir().to_path_buf();
    drop(f.index);
    std::fs::remove_dir_all(&dir).unwrap();
    let index = LogIndex::open(&dir, f.log.size()).unwrap();
    assert_eq!(index.indexed().unwrap(), 0);
    while index.catch_up(&f.log, 1000).unwrap() > 0 {}
    let g = Fixture { _dir: f._dir, log: f.log, index, entries: f.entries };
    assert_eq!(indexed(&g, q), want);
    // Corrupt: every file overwritten with garbage, rebuilt at open.
    let dir = g.index.dir().to_path_buf();
    drop(g.index);
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::write(&p, b"garbage").unwrap();
        }
    }
    let index = LogIndex::open(&dir, g.log.size()).unwrap();
    while index.catch_up(&g.log, 1000).unwrap() > 0 {}
    let h = Fixture { _dir: g._dir, log: g.log, index, entries: g.entries };
    assert_eq!(indexed(&h, q), want);
}

/// `duration_ms` ranges compare numbers with their fractions, checked
/// against the numbers themselves, not the evaluator.
#[test]
fn durations_with_fractions_compare_as_numbers() {
    let f = fixture(200);
    // Text durations are in no range.
    let ms = |i: u64| f.entries[i as usize]["duration_ms"].as_f64().unwrap_or(f64::NAN);
    for (q, want) in [
        ("duration_ms:>2.5", &(|d: f64| d > 2.5) as &dyn Fn(f64) -> bool),
        ("duration_ms:[1.125 TO 7]", &|d| (1.125..=7.0).contains(&d)),
        ("duration_ms:<9.375", &|d| d < 9.375),
        ("duration_ms:>=9.625", &|d| d >= 9.625),
    ] {
        let hits = indexed(&f, q);
        let expected: Vec<u64> = (0..f.entries.len() as u64).rev().filter(|&i| want(ms(i))).collect();
        assert!(!expected.is_empty() && expected.len() < f.entries.len(), "{q} splits the fixture");
        assert!(expected.iter().any(|&i| ms(i).fract() != 0.0), "{q} matches fractional durations");
        assert_eq!(hits, expected, "{q}");
    }
    // Exact matches compare numbers as numbers, and text as text.
    let is = |i: u64, v: Value| f.entries[i as usize]["duration_ms"] == v;
    for (q, want) in [("duration_ms:2.6250", 2.625), ("duration_ms:5", 5.0), ("duration_ms:\"5.0\"", 5.0)] {
        let expected: Vec<u64> = (0..f.entries.len() as u64).rev().filter(|&i| ms(i) == want).collect();
        assert!(!expected.is_empty(), "{q}");
        assert_eq!(indexed(&f, q), expected, "{q}");
    }
    let texts: Vec<u64> = (0..f.entries.len() as u64).rev().filter(|&i| is(i, json!("slow"))).collect();
    assert!(!texts.is_empty());
    assert_eq!(indexed(&f, "duration_ms:slow"), texts);
    assert_eq!(indexed(&f, "duration_ms:s*"), texts, "wildcards see text only");
    assert_eq!(
        indexed(&f, "duration_ms:2*"),
        (0..f.entries.len() as u64).rev().filter(|&i| is(i, json!("2.625"))).collect::<Vec<_>>()
    );
}

/// -0 is 0 to the evaluator; the index's f64 column orders the two apart
/// unless both are normalised. (The canonical form already stores -0 as 0;
/// a bound of -0 is what reaches the column.)
#[test]
fn a_negative_zero_duration_is_zero() {
    let mut evs = events(5, 3);
    evs[0]["duration_ms"] = json!(-0.0);
    evs[1]["duration_ms"] = json!(0);
    evs[2]["duration_ms"] = json!(0.5);
    let f = fixture_of(evs);
    for (q, want) in
        [("duration_ms:[0 TO 0.25]", vec![1, 0]), ("duration_ms:<=-0", vec![1, 0]), ("duration_ms:>0", vec![2])]
    {
        assert_eq!(indexed(&f, q), want, "{q}");
        assert_eq!(brute(&f, q), want, "{q}");
    }
}

#[test]
fn bad_queries_are_refused_with_a_reason() {
    let f = fixture(10);
    for (q, msg) in [
        ("message:denied", "free text"),
        ("actor.user.name:10.0.0.0/8", "CIDR"),
        ("time:[yesterday TO now]", "not a time"),
        ("src_endpoint.port:>abc", "whole number"),
        ("duration_ms:>abc", "not a number"),
        ("duration_ms:<inf", "not a number"),
    ] {
        let e = f.index.search(&parse(q).unwrap(), 10, None, true, now()).unwrap_err().to_string();
        assert!(e.contains(msg), "{q}: {e}");
    }
    // A wildcard whose automaton is over tantivy's size limit (found by the
    // query fuzz target) is the query's fault, not the index's.
    let q = format!("{}*", "?*".repeat(300));
    let e = f.index.search(&parse(&q).unwrap(), 10, None, true, now()).unwrap_err();
    assert!(matches!(e, custos_index::engine::IndexError::Query(_)), "{e}");
    assert!(e.to_string().contains("too complex"), "{e}");
}

#[test]
fn top_n_and_histogram_equal_brute_force_counts() {
    let f = fixture(700);
    let q = parse("status:failure").unwrap();
    let top = f.index.aggregate(&q, Some("actor.user.name"), 3, None, now()).unwrap();
    let mut counts = std::collections::HashMap::new();
    for e in f.entries.iter().filter(|e| matches(&q, e, now())) {
        *counts.entry(e["actor"]["user"]["name"].as_str().unwrap().to_string()).or_insert(0u64) += 1;
    }
    let mut want: Vec<(String, u64)> = counts.into_iter().collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    assert_eq!(top.len(), 3);
    for (k, c) in &top {
        assert_eq!(want.iter().find(|w| w.0 == k.as_str().unwrap()).unwrap().1, *c, "{k}");
    }
    assert_eq!(top[0].1, want[0].1);
    // Hourly histogram: every bucket's count equals the brute-force count.
    let hist = f.index.aggregate(&parse("").unwrap(), None, 0, Some("1h"), now()).unwrap();
    let total: u64 = hist.iter().map(|(_, c)| c).sum();
    assert_eq!(total, 700);
    for (k, c) in hist.iter().filter(|(_, c)| *c > 0).take(5) {
        let start = custos_event::time::parse_rfc3339(k.as_str().unwrap()).unwrap();
        let brute = f
            .entries
            .iter()
            .filter(|e| {
                let t = custos_event::time::parse_rfc3339(e["time"].as_str().unwrap()).unwrap();
                t >= start && t < start + 3_600_000_000_000
            })
            .count() as u64;
        assert_eq!(*c, brute, "{k}");
    }
    // Top targets: events count once per value they hold, even one named
    // twice in the same event.
    for q in ["", "status:failure", "targets.type:table"] {
        let q = parse(q).unwrap();
        let top = f.index.aggregate(&q, Some("targets.name"), 10, None, now()).unwrap();
        let mut counts = std::collections::BTreeMap::new();
        for e in f.entries.iter().filter(|e| matches(&q, e, now())) {
            let names: std::collections::BTreeSet<&str> =
                e["targets"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
            for n in names {
                *counts.entry(n.to_string()).or_insert(0u64) += 1;
            }
        }
        let got: std::collections::BTreeMap<String, u64> =
            top.iter().map(|(k, c)| (k.as_str().unwrap().to_string(), *c)).collect();
        assert_eq!(got, counts, "{q:?}");
        assert!(counts.contains_key("payments.card"));
    }
    assert!(f.index.aggregate(&q, Some("message"), 3, None, now()).is_err());
    assert!(f.index.aggregate(&q, None, 0, Some("1y"), now()).is_err());
}

/// Commits are not synced; an index that was open when the machine went
/// down (another boot id in its marker) is rebuilt, while one left open by
/// a process that died under this boot, or closed cleanly, is kept.
#[test]
fn an_index_open_across_a_machine_crash_is_rebuilt() {
    use custos_index::unsynced::{MARKER_FILE, boot_id};
    let Some(boot) = boot_id() else { return };
    let f = fixture(300);
    let dir = f.index.dir().to_path_buf();
    let size = f.log.size();
    assert_eq!(std::fs::read_to_string(dir.join(MARKER_FILE)).unwrap(), format!("open {boot}\n"));
    f.index.close().unwrap();
    assert_eq!(std::fs::read_to_string(dir.join(MARKER_FILE)).unwrap(), "clean\n");
    assert!(f.index.catch_up(&f.log, 10).is_err(), "a closed index takes no more entries");
    drop(f.index);
    let index = LogIndex::open(&dir, size).unwrap();
    assert_eq!(index.indexed().unwrap(), size, "a clean index is kept");
    drop(index);
    // Left open (kill -9) under this boot: kept.
    let index = LogIndex::open(&dir, size).unwrap();
    assert_eq!(index.indexed().unwrap(), size);
    drop(index);
    // Left open under another boot: rebuilt.
    std::fs::write(dir.join(MARKER_FILE), "open 00000000-0000-0000-0000-000000000000\n").unwrap();
    let index = LogIndex::open(&dir, size).unwrap();
    assert_eq!(index.indexed().unwrap(), 0);
    while index.catch_up(&f.log, 1000).unwrap() > 0 {}
    let g = Fixture { _dir: f._dir, log: f.log, index, entries: f.entries };
    let q = "status:failure";
    assert_eq!(indexed(&g, q), brute(&g, q));
}

/// An index already open (its writer holds the lock) is in use, not
/// damaged: opening it again is an error, and it is not deleted.
#[test]
fn an_index_open_twice_is_refused_not_rebuilt() {
    let f = fixture(50);
    let again = LogIndex::open(f.index.dir(), f.log.size());
    assert!(again.is_err(), "a second open of a live index succeeded");
    drop(again);
    assert_eq!(f.index.indexed().unwrap(), 50);
    assert_eq!(indexed(&f, "status:failure"), brute(&f, "status:failure"));
    assert!(f.index.dir().join("meta.json").exists(), "the live index was deleted");
}

/// A page is filled from the segments holding the newest (or oldest)
/// entries; the others are only counted, and pages and counts stay exact.
#[test]
fn pages_only_count_segments_that_cannot_make_them() {
    let f = fixture(700);
    let before = f.index.segments_counted_only();
    for q in ["status:success", "status:failure", "actor.user.name:alice OR activity:*", "NOT status:failure"] {
        assert_eq!(indexed(&f, q), brute(&f, q), "{q}");
    }
    assert!(f.index.segments_counted_only() > before, "every segment was searched for hits");
    // Segments whose runs of entries overlap: each page still holds
    // exactly the right entries.
    let g = fixture_two_writers(700);
    for q in ["status:success", "status:failure", "activity:*", "NOT status:failure", "actor.user.name:alice"] {
        assert_eq!(indexed(&g, q), brute(&g, q), "{q} (overlapping segments)");
    }
}

/// A search or an aggregation past its deadline fails with `TimedOut`
/// (checked after each segment), and one within it answers as without a
/// deadline.
#[test]
fn searches_past_their_deadline_stop_with_timed_out() {
    use custos_index::engine::IndexError;
    let f = fixture(300);
    let q = parse("status:failure OR sel*").unwrap();
    let plain = f.index.search(&q, 10, None, true, now()).unwrap();
    let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let p = f.index.prepare(&q, now()).unwrap().until(later);
    assert_eq!(f.index.search_prepared(&p, 10, None, true).unwrap(), plain);
    let top = f.index.aggregate(&q, Some("actor.user.name"), 5, None, now()).unwrap();
    assert_eq!(f.index.aggregate_prepared(&p, Some("actor.user.name"), 5, None).unwrap(), top);

    let past = f.index.prepare(&q, now()).unwrap().until(std::time::Instant::now());
    assert!(matches!(f.index.search_prepared(&past, 10, None, true), Err(IndexError::TimedOut)));
    for (by, interval) in [(Some("actor.user.name"), None), (None, Some("1h"))] {
        let e = f.index.aggregate_prepared(&past, by, 5, interval).unwrap_err();
        assert!(matches!(e, IndexError::TimedOut), "{e}");
    }
}

//! `reco eval` and `reco eval-fixture` as a user (or CI) runs them, on the generated fixture.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use reco_eval::fixture::{FixtureConfig, generate};

const BIN: &str = env!("CARGO_BIN_EXE_reco");

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN).args(args).current_dir(dir).env("RECO_LOG", "warn").output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}\n{}", String::from_utf8_lossy(&output.stdout), stderr(output));
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `key=value` pairs of the line starting with `prefix ` (the prefix word left out).
fn fields(text: &str, prefix: &str) -> BTreeMap<String, String> {
    let line =
        text.lines().find(|l| l.starts_with(&format!("{prefix} "))).unwrap_or_else(|| panic!("{prefix}: {text}"));
    line.split(' ')
        .skip(1)
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{kv:?} in {line:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn expect(pairs: &[(&str, usize)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.to_string())).collect()
}

/// One `scorer=` line: name and the four metrics.
#[derive(Debug)]
struct ScorerLine {
    name: String,
    impressions: usize,
    auc: f64,
    mrr: f64,
    ndcg5: f64,
    ndcg10: f64,
}

fn scorer_line(line: &str) -> ScorerLine {
    let pairs: Vec<(&str, &str)> = line.split(' ').map(|kv| kv.split_once('=').unwrap()).collect();
    let keys: Vec<&str> = pairs.iter().map(|p| p.0).collect();
    assert_eq!(keys, ["scorer", "impressions", "auc", "mrr", "ndcg5", "ndcg10"], "{line}");
    for (_, value) in &pairs[2..] {
        let decimals = value.split_once('.').map(|(_, d)| d.len());
        assert_eq!(decimals, Some(4), "{line}");
    }
    let metric = |i: usize| -> f64 {
        let x: f64 = pairs[i].1.parse().unwrap();
        assert!((0.0..=1.0).contains(&x), "{line}");
        x
    };
    ScorerLine {
        name: pairs[0].1.to_owned(),
        impressions: pairs[1].1.parse().unwrap(),
        auc: metric(2),
        mrr: metric(3),
        ndcg5: metric(4),
        ndcg10: metric(5),
    }
}

#[test]
fn eval_fixture_writes_the_generators_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    let printed = stdout(&run(&["eval-fixture", "--out", out.to_str().unwrap()], dir.path()));
    let fixture = generate(&FixtureConfig::default());
    assert_eq!(std::fs::read_to_string(out.join("news.tsv")).unwrap(), fixture.news_tsv);
    assert_eq!(std::fs::read_to_string(out.join("behaviors.tsv")).unwrap(), fixture.behaviors_tsv);
    assert!(printed.contains(&format!("impressions={} ", fixture.injected.impressions)), "{printed}");

    let other = run(&["eval-fixture", "--out", "small", "--seed", "7", "--impressions", "50"], dir.path());
    stdout(&other);
    let config = FixtureConfig { seed: 7, impressions: 50, ..FixtureConfig::default() };
    let behaviors = std::fs::read_to_string(dir.path().join("small/behaviors.tsv")).unwrap();
    assert_eq!(behaviors, generate(&config).behaviors_tsv);
}

#[test]
fn eval_on_the_fixture_reports_skips_and_beats_popularity() {
    let dir = tempfile::tempdir().unwrap();
    let config = FixtureConfig::default();
    let fixture = generate(&config);
    fixture.write_to(dir.path()).unwrap();
    let output = run(&["eval", "--behaviors", "behaviors.tsv", "--news", "news.tsv", "--seed", "7"], dir.path());
    let text = stdout(&output);
    eprintln!("{text}{}", stderr(&output));
    let i = &fixture.injected;

    let news_skips = i.news_too_few_fields + i.news_empty_id + i.news_duplicate;
    let expected = expect(&[
        ("records", config.news),
        ("skipped", news_skips),
        ("skipped_duplicate_news", i.news_duplicate),
        ("skipped_empty_news_id", i.news_empty_id),
        ("skipped_too_few_fields", i.news_too_few_fields),
    ]);
    assert_eq!(fields(&text, "news"), expected);

    let bad_lines =
        i.behaviors_too_few_fields + i.behaviors_bad_impression_id + i.behaviors_bad_time + i.behaviors_bad_candidate;
    let expected = expect(&[
        ("records", i.impressions),
        ("skipped", bad_lines),
        ("skipped_bad_candidate", i.behaviors_bad_candidate),
        ("skipped_bad_impression_id", i.behaviors_bad_impression_id),
        ("skipped_bad_time", i.behaviors_bad_time),
        ("skipped_too_few_fields", i.behaviors_too_few_fields),
    ]);
    assert_eq!(fields(&text, "behaviors"), expected);

    // The fixture's news ids are N1..: all numeric, so only ids without a news.tsv row whose
    // number a described one holds (NX7 beside N7) are hashed; eight categories, and the
    // channel of articles without content (ids the log mentions without a news.tsv row).
    let catalog = fields(&text, "catalog");
    let without_content: usize = catalog["without_content"].parse().unwrap();
    let hashed: usize = catalog["hashed_ids"].parse().unwrap();
    assert!(without_content > 0 && without_content <= i.candidates_without_content + i.history_without_content);
    assert!(hashed <= without_content);
    let expected = expect(&[
        ("articles", config.news + without_content),
        ("channels", 9),
        ("hashed_ids", hashed),
        ("without_content", without_content),
    ]);
    assert_eq!(catalog, expected);

    let expected = expect(&[
        ("impressions", i.impressions),
        ("scored", config.impressions + i.without_content_only),
        ("users", i.users),
        ("users_without_history", i.users_without_history),
        ("candidates_without_content", i.candidates_without_content),
        ("history_without_content", i.history_without_content),
        ("skipped_no_negative", i.no_negative),
        ("skipped_no_positive", i.no_positive),
    ]);
    assert_eq!(fields(&text, "replay"), expected);
    for n in [
        i.without_content_only,
        i.no_negative,
        i.no_positive,
        i.candidates_without_content,
        i.history_without_content,
        bad_lines,
    ] {
        assert!(n > 0, "the fixture injects every kind of mess");
    }
    // Each skipped line is named on stderr.
    let err = stderr(&output);
    assert!(err.contains("news.tsv: line ") && err.contains(": duplicate news id N1: skipped"), "{err}");
    assert!(err.contains("behaviors.tsv: line ") && err.contains(": no clicked candidate: skipped"), "{err}");

    // The last lines are exactly the scorer lines, the full engine first, then the engine
    // paired with each of the others.
    let lines: Vec<&str> = text.lines().collect();
    let (scorer_lines, paired_lines) = lines[lines.len() - 9..].split_at(5);
    let scorers: Vec<ScorerLine> = scorer_lines.iter().map(|l| scorer_line(l)).collect();
    let names: Vec<&str> = scorers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["reco", "random", "popularity", "recent_ctr", "decayed_ctr"]);
    assert!(!lines[lines.len() - 10].starts_with("scorer="));
    for (line, other) in paired_lines.iter().zip(&scorers[1..]) {
        let fields: Vec<(&str, &str)> = line.split(' ').map(|kv| kv.split_once('=').unwrap()).collect();
        assert_eq!(fields[0], ("paired", format!("reco-{}", other.name).as_str()), "{line}");
        assert_eq!((fields[1].0, fields[2].0), ("auc_diff", "ci95"), "{line}");
        // Paired over the same impressions, the mean difference is the difference of means.
        let diff: f64 = fields[1].1.parse().unwrap();
        assert!((diff - (scorers[0].auc - other.auc)).abs() < 2e-4, "{line} vs {:?} {other:?}", scorers[0]);
        let ci95: f64 = fields[2].1.parse().unwrap();
        assert!(ci95 > 0.0 && ci95 < 0.1, "{line}");
    }
    let scored = config.impressions + i.without_content_only;
    assert!(scorers.iter().all(|s| s.impressions == scored), "{scorers:?}");

    let [reco, random, popularity, recent_ctr, decayed_ctr] = &scorers[..] else { unreachable!() };
    println!(
        "reco auc {:.4} vs popularity {:.4}: +{:.4}; vs recent_ctr {:.4}: +{:.4}; vs decayed_ctr {:.4}: +{:.4}; \
         random {:.4}",
        reco.auc,
        popularity.auc,
        reco.auc - popularity.auc,
        recent_ctr.auc,
        reco.auc - recent_ctr.auc,
        decayed_ctr.auc,
        reco.auc - decayed_ctr.auc,
        random.auc
    );
    assert!((random.auc - 0.5).abs() < 0.03, "{text}");
    assert!(reco.auc > popularity.auc + 0.02, "{text}");
    assert!(reco.auc > recent_ctr.auc + 0.02, "{text}");
    assert!(reco.auc > decayed_ctr.auc + 0.02, "{text}");
    assert!(reco.mrr > popularity.mrr && reco.ndcg5 > popularity.ndcg5 && reco.ndcg10 > popularity.ndcg10, "{text}");

    // The same run again prints the same figures: everything is seeded.
    let again =
        stdout(&run(&["eval", "--behaviors", "behaviors.tsv", "--news", "news.tsv", "--seed", "7"], dir.path()));
    assert_eq!(again, text);
}

#[test]
fn unreadable_files_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    generate(&FixtureConfig { impressions: 20, ..FixtureConfig::default() }).write_to(dir.path()).unwrap();
    let output = run(&["eval", "--behaviors", "behaviors.tsv", "--news", "missing.tsv"], dir.path());
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("cannot read missing.tsv: No such file"), "{err}");
    assert!(output.stdout.is_empty());

    // A directory is not a file either.
    let output = run(&["eval", "--behaviors", ".", "--news", "news.tsv"], dir.path());
    assert!(!output.status.success());
    assert!(stderr(&output).contains("cannot read .: "), "{}", stderr(&output));
}

#[test]
fn impressions_whose_candidates_lack_news_rows_are_scored_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    // One described news; the log mentions four more (as in real exports, whose news.tsv
    // covers a small share of the candidates).
    std::fs::write(dir.path().join("news.tsv"), "N1\tnews\tnewsus\tA title\nnot a news line\n").unwrap();
    std::fs::write(
        dir.path().join("behaviors.tsv"),
        "1\tU1\t11/15/2019 8:55:22 AM\tN7\tN8-1 N9-0\n         2\tU2\t11/15/2019 9:00:00 AM\t\tN1-1 N8-0 N10-0\n         3\tU3\t11/15/2019 9:10:00 AM\t\tN1-1\n\u{0}\u{1}junk\n",
    )
    .unwrap();
    let output = run(&["eval", "--behaviors", "behaviors.tsv", "--news", "news.tsv"], dir.path());
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    assert!(output.status.success(), "{text}{}", stderr(&output));
    assert_eq!(fields(&text, "news")["skipped_too_few_fields"], "1");
    assert_eq!(fields(&text, "catalog")["without_content"], "4", "N7, N8, N9, N10");
    let replay = fields(&text, "replay");
    assert_eq!(replay["scored"], "2", "both two-class impressions, content or not: {text}");
    assert_eq!((replay["candidates_without_content"].as_str(), replay["history_without_content"].as_str()), ("4", "1"));
    assert_eq!(replay["skipped_no_negative"], "1");
    for scorer in ["reco", "random", "popularity", "recent_ctr", "decayed_ctr"] {
        let line = text.lines().find(|l| l.starts_with(&format!("scorer={scorer} "))).expect(scorer);
        assert!(line.contains(" impressions=2 "), "{line}");
    }
}

#[test]
fn logs_with_nothing_to_score_are_reported_not_crashed_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("news.tsv"), "N1\tnews\tnewsus\tA title\n").unwrap();
    // Only clicks or only non-clicks, and junk.
    std::fs::write(
        dir.path().join("behaviors.tsv"),
        "1\tU1\t11/15/2019 8:55:22 AM\tN7\tN8-0 N9-0\n2\tU2\t11/15/2019 9:00:00 AM\t\tN1-1\n\u{0}\u{1}junk\n",
    )
    .unwrap();
    let output = run(&["eval", "--behaviors", "behaviors.tsv", "--news", "news.tsv"], dir.path());
    assert!(!output.status.success());
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    let replay = fields(&text, "replay");
    assert_eq!((replay["scored"].as_str(), replay["history_without_content"].as_str()), ("0", "1"));
    assert_eq!((replay["skipped_no_positive"].as_str(), replay["skipped_no_negative"].as_str()), ("1", "1"));
    assert!(!text.contains("scorer="), "{text}");
    assert!(stderr(&output).contains("no impression could be scored"), "{}", stderr(&output));
}

#[test]
fn a_family_switched_off_is_named_and_costs_what_it_earns() {
    let dir = tempfile::tempdir().unwrap();
    generate(&FixtureConfig::default()).write_to(dir.path()).unwrap();
    let auc = |without: &str| {
        let output =
            run(&["eval", "--behaviors", "behaviors.tsv", "--news", "news.tsv", "--without", without], dir.path());
        let text = stdout(&output);
        assert!(output.status.success(), "{text}{}", stderr(&output));
        let line = text.lines().find(|l| l.starts_with("scorer=reco ")).expect("a reco line");
        (scorer_line(line).auc, text)
    };
    let (all, text) = auc("");
    assert!(!text.contains("engine without="), "nothing is off by default: {text}");
    // The fixture's clicks follow hidden interests: without the personal features the engine
    // loses most of its margin.
    let (without_personal, text) = auc("personal,article");
    assert!(text.contains("engine without=article,personal"), "{text}");
    assert!(without_personal < all - 0.05, "{without_personal} vs {all}");

    let output =
        run(&["eval", "--behaviors", "behaviors.tsv", "--news", "news.tsv", "--without", "everything"], dir.path());
    assert!(!output.status.success());
    assert!(stderr(&output).contains("unknown family \"everything\" (known: behaviour, ranker"), "{}", stderr(&output));
}

#[test]
fn ablations_run_beside_the_full_engine_and_are_paired_with_it() {
    let dir = tempfile::tempdir().unwrap();
    generate(&FixtureConfig::default()).write_to(dir.path()).unwrap();
    let output =
        run(&["eval", "--behaviors", "behaviors.tsv", "--news", "news.tsv", "--ablate", "personal,age"], dir.path());
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    let line =
        |prefix: &str| text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {text}"));
    let reco = scorer_line(line("scorer=reco "));
    let without_personal = scorer_line(line("scorer=reco_without_personal "));
    scorer_line(line("scorer=reco_without_age "));
    // The full engine is the same as without --ablate, and the ablated one loses the
    // fixture's personal signal, by more than the paired interval.
    let plain = stdout(&run(&["eval", "--behaviors", "behaviors.tsv", "--news", "news.tsv"], dir.path()));
    assert!(plain.contains(line("scorer=reco ")), "{plain}");
    let paired: BTreeMap<&str, &str> =
        line("paired=reco-reco_without_personal ").split(' ').skip(1).map(|kv| kv.split_once('=').unwrap()).collect();
    let (diff, ci95): (f64, f64) = (paired["auc_diff"].parse().unwrap(), paired["ci95"].parse().unwrap());
    assert!((diff - (reco.auc - without_personal.auc)).abs() < 2e-4, "{text}");
    assert!(diff > ci95 && diff > 0.05, "{text}");
}

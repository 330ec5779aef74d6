//! The synthetic fixture, end to end: generate, write, read, replay with the baselines.

use reco_engine::EngineConfig;
use reco_eval::fixture::{FixtureConfig, generate};
use reco_eval::mind::{count_by_kind, read_behaviors, read_news};
use reco_eval::{DecayedCtr, NewsIndex, Popularity, Random, RecentCtr, RecoScorer, Report, Scorer, map_news, replay};

fn baselines() -> Vec<Box<dyn Scorer>> {
    vec![
        Box::new(Random::new(7)),
        Box::new(Popularity::default()),
        Box::new(RecentCtr::default()),
        Box::new(DecayedCtr::default()),
    ]
}

fn run(config: &FixtureConfig) -> Report {
    let fixture = generate(config);
    let news = reco_eval::mind::parse_news(&fixture.news_tsv);
    let behaviors = reco_eval::mind::parse_behaviors(&fixture.behaviors_tsv);
    replay(&behaviors.records, &NewsIndex::new(news.records), &mut baselines()).unwrap()
}

#[test]
fn generation_is_deterministic_per_seed() {
    let config = FixtureConfig::default();
    let (a, b) = (generate(&config), generate(&config));
    assert_eq!(a.news_tsv, b.news_tsv);
    assert_eq!(a.behaviors_tsv, b.behaviors_tsv);
    let other = generate(&FixtureConfig { seed: 43, ..config });
    assert_ne!(a.behaviors_tsv, other.behaviors_tsv);
}

#[test]
fn skips_match_what_the_generator_injected() {
    let fixture = generate(&FixtureConfig::default());
    let dir = tempfile::tempdir().unwrap();
    fixture.write_to(dir.path()).unwrap();
    let news = read_news(&dir.path().join("news.tsv")).unwrap();
    let behaviors = read_behaviors(&dir.path().join("behaviors.tsv")).unwrap();
    let injected = &fixture.injected;

    assert_eq!(news.records.len(), FixtureConfig::default().news);
    let news_skips = count_by_kind(&news.skipped);
    let expected = [
        ("duplicate_news", injected.news_duplicate),
        ("empty_news_id", injected.news_empty_id),
        ("too_few_fields", injected.news_too_few_fields),
    ];
    assert_eq!(news_skips, expected.into_iter().collect());

    let behavior_skips = count_by_kind(&behaviors.skipped);
    let expected = [
        ("bad_candidate", injected.behaviors_bad_candidate),
        ("bad_impression_id", injected.behaviors_bad_impression_id),
        ("bad_time", injected.behaviors_bad_time),
        ("too_few_fields", injected.behaviors_too_few_fields),
    ];
    assert_eq!(behavior_skips, expected.into_iter().collect());
    assert!(behavior_skips.values().all(|&n| n > 0));

    let report = replay(&behaviors.records, &NewsIndex::new(news.records), &mut baselines()).unwrap();
    let counts = &report.counts;
    assert_eq!(counts.impressions, injected.impressions);
    assert_eq!(counts.users, injected.users);
    assert_eq!(counts.users_without_history, injected.users_without_history);
    assert_eq!(counts.candidates_without_content, injected.candidates_without_content);
    assert_eq!(counts.history_without_content, injected.history_without_content);
    let expected = [("no_negative", injected.no_negative), ("no_positive", injected.no_positive)];
    assert_eq!(counts.skipped, expected.into_iter().collect());
    assert!(counts.skipped.values().all(|&n| n > 0));
    assert!(counts.users_without_history > 0 && counts.history_without_content > 0);
    // Candidates without a news.tsv row are scored: the impression of only such is too.
    assert_eq!(injected.without_content_only, 1);
    assert_eq!(counts.scored, FixtureConfig::default().impressions + injected.without_content_only);
    for s in &report.scorers {
        assert_eq!(s.metrics.impressions, counts.scored, "{}", s.name);
    }
}

#[test]
fn popularity_beats_random_on_the_fixture() {
    let report = run(&FixtureConfig::default());
    println!("{}\n{report}", report.counts);
    let metric = |name: &str| report.scorer(name).unwrap().metrics;
    let (random, popularity) = (metric("random"), metric("popularity"));
    assert!((random.auc() - 0.5).abs() < 0.03, "{report}");
    assert!(popularity.auc() > random.auc() + 0.05, "{report}");
    assert!(popularity.mrr() > random.mrr(), "{report}");
    assert!(popularity.ndcg10() > random.ndcg10(), "{report}");
    assert!(metric("recent_ctr").auc() > random.auc(), "{report}");
}

#[test]
fn the_report_prints_one_line_per_scorer() {
    let report = run(&FixtureConfig { impressions: 200, ..FixtureConfig::default() });
    let text = report.to_string();
    let names: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with("paired="))
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let keys: Vec<&str> = fields.iter().map(|f| f.split('=').next().unwrap()).collect();
            assert_eq!(keys, ["scorer", "impressions", "auc", "mrr", "ndcg5", "ndcg10"]);
            // The 200 ordinary impressions and the one whose candidates all lack content.
            assert_eq!(fields[1], "impressions=201", "{line}");
            for f in &fields[2..] {
                let value = f.split_once('=').unwrap().1;
                assert_eq!(value.split_once('.').unwrap().1.len(), 4, "{line}");
            }
            fields[0]
        })
        .collect();
    assert_eq!(names, ["scorer=random", "scorer=popularity", "scorer=recent_ctr", "scorer=decayed_ctr"]);
    // Then the first scorer paired with each of the others.
    let paired: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("paired=")?.split(' ').next()).collect();
    assert_eq!(paired, ["random-popularity", "random-recent_ctr", "random-decayed_ctr"]);
}

#[test]
fn the_engine_beats_the_baselines_on_the_fixture() {
    let fixture = generate(&FixtureConfig::default());
    let news = reco_eval::mind::parse_news(&fixture.news_tsv).records;
    let behaviors = reco_eval::mind::parse_behaviors(&fixture.behaviors_tsv).records;
    let reco = RecoScorer::new(map_news(&news, &behaviors), EngineConfig::default()).unwrap();
    let mut scorers = baselines();
    scorers.insert(0, Box::new(reco));
    let report = replay(&behaviors, &NewsIndex::new(news), &mut scorers).unwrap();
    println!("{report}");
    let metric = |name: &str| report.scorer(name).unwrap().metrics;
    let (reco, popularity, recent_ctr) = (metric("reco"), metric("popularity"), metric("recent_ctr"));
    assert_eq!(reco.impressions, FixtureConfig::default().impressions + fixture.injected.without_content_only);
    assert!(reco.auc() > popularity.auc() + 0.05, "{report}");
    assert!(reco.auc() > recent_ctr.auc() + 0.1, "{report}");
    assert!(reco.mrr() > popularity.mrr() && reco.ndcg10() > popularity.ndcg10(), "{report}");
}

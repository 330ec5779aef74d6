//! `reco eval` and `reco eval-fixture`: offline evaluation on MIND-format logs.
//!
//! stdout is key=value lines: what was read and skipped, then one line per scorer (the last
//! lines). The skipped lines themselves and the wall time go to stderr.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use reco_engine::EngineConfig;
use reco_engine::learn::Families;
use reco_eval::fixture::{FixtureConfig, generate};
use reco_eval::mind::{Parsed, Skip, count_by_kind, read_behaviors, read_news};
use reco_eval::{DecayedCtr, NewsIndex, Popularity, Random, RecentCtr, RecoScorer, Scorer, map_news, replay};

#[derive(clap::Args)]
pub struct EvalArgs {
    /// MIND's behaviors.tsv: impression id, user, time, history, candidates (`N1-1 N2-0`).
    #[arg(long)]
    behaviors: PathBuf,
    /// MIND's news.tsv: id, category, subcategory, title, abstract, ...
    #[arg(long)]
    news: PathBuf,
    /// Seed of the random baseline.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Parts of the engine's ranker to switch off, comma-separated, for ablations: behaviour,
    /// ranker, ctr, article, personal, popularity, age, context.
    #[arg(long, value_parser = Families::parse, default_value = "")]
    without: Families,
    /// Families to ablate in the same run: for each, one more engine with it switched off
    /// (`scorer=reco_without_<family>`), paired with the full engine over the same
    /// impressions (`paired=reco-reco_without_<family>`), so what each part earns comes with
    /// its confidence interval.
    #[arg(long, value_parser = Families::parse, default_value = "")]
    ablate: Families,
}

#[derive(clap::Args)]
pub struct FixtureArgs {
    /// Directory to write news.tsv and behaviors.tsv into (created if missing).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = FixtureConfig::default().seed)]
    seed: u64,
    #[arg(long, default_value_t = FixtureConfig::default().news)]
    news: usize,
    #[arg(long, default_value_t = FixtureConfig::default().users)]
    users: usize,
    /// Well-formed impressions with a click and a non-click (a few odd ones are added).
    #[arg(long, default_value_t = FixtureConfig::default().impressions)]
    impressions: usize,
    /// Candidates per impression.
    #[arg(long, default_value_t = FixtureConfig::default().candidates)]
    candidates: usize,
}

/// Skipped lines shown on stderr per file; the rest are only counted.
const SHOWN_SKIPS: usize = 20;

pub fn eval(args: &EvalArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let news = read_news(&args.news)?;
    let behaviors = read_behaviors(&args.behaviors)?;
    report_skips(&args.news, &news.skipped);
    report_skips(&args.behaviors, &behaviors.skipped);
    println!("{}", parsed_line("news", &news));
    println!("{}", parsed_line("behaviors", &behaviors));

    let map = map_news(&news.records, &behaviors.records);
    println!(
        "catalog articles={} channels={} hashed_ids={} without_content={}",
        map.articles.len(),
        map.categories.len(),
        map.hashed,
        map.without_content
    );
    let index = NewsIndex::new(news.records);
    let mut config = EngineConfig::default();
    config.learn.off = args.without;
    if args.without != Families::default() {
        println!("engine without={}", args.without.names());
    }
    let engine =
        |config: EngineConfig| RecoScorer::new(map.clone(), config).context("cannot build the engine's catalog");
    let mut scorers: Vec<Box<dyn Scorer>> = vec![
        Box::new(engine(config.clone())?),
        Box::new(Random::new(args.seed)),
        Box::new(Popularity::default()),
        Box::new(RecentCtr::default()),
        Box::new(DecayedCtr::default()),
    ];
    for family in args.ablate.each() {
        let mut ablated = config.clone();
        ablated.learn.off = args.without.with(family);
        scorers.push(Box::new(engine(ablated)?.named(format!("reco_without_{}", family.names()))));
    }
    let loaded = started.elapsed();
    let report = replay(&behaviors.records, &index, &mut scorers)?;
    let mut unscored = report.skipped.clone();
    unscored.sort_by_key(|s| s.line);
    report_skips(&args.behaviors, &unscored);
    println!("replay {}", report.counts);
    eprintln!(
        "read in {:.2} s, replayed {} impressions through {} scorers in {:.2} s",
        loaded.as_secs_f64(),
        report.counts.impressions,
        scorers.len(),
        (started.elapsed() - loaded).as_secs_f64()
    );
    if report.counts.scored == 0 {
        bail!(
            "no impression could be scored: {} holds no impression with both a clicked and an unclicked candidate",
            args.behaviors.display()
        );
    }
    print!("{report}");
    Ok(())
}

/// `<what> records=<n> skipped=<n> skipped_<kind>=<n>...`
fn parsed_line<T>(what: &str, parsed: &Parsed<T>) -> String {
    let mut line = format!("{what} records={} skipped={}", parsed.records.len(), parsed.skipped.len());
    for (kind, n) in count_by_kind(&parsed.skipped) {
        let _ = write!(line, " skipped_{kind}={n}");
    }
    line
}

fn report_skips(file: &Path, skips: &[Skip]) {
    for skip in skips.iter().take(SHOWN_SKIPS) {
        eprintln!("{}: {skip}: skipped", file.display());
    }
    if skips.len() > SHOWN_SKIPS {
        eprintln!("{}: and {} more skipped", file.display(), skips.len() - SHOWN_SKIPS);
    }
}

pub fn write_fixture(args: &FixtureArgs) -> anyhow::Result<()> {
    let config = FixtureConfig {
        seed: args.seed,
        news: args.news,
        users: args.users,
        impressions: args.impressions,
        candidates: args.candidates,
    };
    let fixture = generate(&config);
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    fixture.write_to(&args.out)?;
    let i = &fixture.injected;
    println!(
        "wrote {} and {}: impressions={} users={} users_without_history={} candidates_without_content={} \
         history_without_content={} no_positive={} no_negative={} without_content_only={} bad_news_lines={} \
         bad_behaviors_lines={}",
        args.out.join("news.tsv").display(),
        args.out.join("behaviors.tsv").display(),
        i.impressions,
        i.users,
        i.users_without_history,
        i.candidates_without_content,
        i.history_without_content,
        i.no_positive,
        i.no_negative,
        i.without_content_only,
        i.news_too_few_fields + i.news_empty_id + i.news_duplicate,
        i.behaviors_too_few_fields + i.behaviors_bad_impression_id + i.behaviors_bad_time + i.behaviors_bad_candidate,
    );
    Ok(())
}

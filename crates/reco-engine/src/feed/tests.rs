use super::*;
use crate::learn::Context;
use crate::model::Action;

const NOW: i64 = 1_000 * 3_600_000;

fn article(id: i64, channel: ChannelId, keywords: &[&str], age_hours: i64) -> Article {
    Article {
        id,
        channel_id: channel,
        title: format!("{}的故事", keywords.join("")),
        author: String::new(),
        publish_time: NOW - age_hours * 3_600_000,
        keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
        summary: String::new(),
        cover: String::new(),
    }
}

/// Channels 1..=4 have 足球, 篮球, 股票, 基金 articles; ids are channel * 100 + i, newer
/// with higher i.
fn world() -> (Catalog, TextIndex, HotIndex) {
    let mut articles = Vec::new();
    for (channel, kw) in [(1, "足球"), (2, "篮球"), (3, "股票"), (4, "基金")] {
        for i in 0..20 {
            let id = i64::from(channel) * 100 + i;
            articles.push(article(id, channel, &[kw, if i % 2 == 0 { "赛事" } else { "分析" }], 40 - i));
        }
    }
    let catalog = Catalog::new(articles);
    let text = catalog.text().clone();
    (catalog, text, HotIndex::default())
}

struct Fixture {
    catalog: Catalog,
    text: TextIndex,
    hot: HotIndex,
    learner: Learner,
    learn: LearnConfig,
    rank: RankConfig,
    variant: Variant,
}

impl Fixture {
    fn new() -> Self {
        let (catalog, text, hot) = world();
        let learn = LearnConfig::default();
        Self {
            catalog,
            text,
            hot,
            learner: Learner::default(),
            learn,
            rank: RankConfig::default(),
            variant: Variant::default(),
        }
    }

    fn act(&mut self, user: &str, id: ArticleId, action: Action) {
        let world = World {
            learn: &self.learn,
            catalog: &self.catalog,
            text: &self.text,
            hot: &self.hot,
            popularity: &self.rank.popularity,
        };
        let a = self.catalog.get(id).unwrap();
        let ctx = Context { now_ms: NOW, position: Some(0), sources: Sources::FRESH };
        self.learner.learn(&self.learn, &world, user, a, &ctx, action, 60_000);
    }

    fn input<'a>(&'a self, user: &'a str, channel: ChannelId, n: usize) -> RankInput<'a> {
        RankInput {
            catalog: &self.catalog,
            hot: &self.hot,
            text: &self.text,
            learner: &self.learner,
            learn: &self.learn,
            user,
            channel,
            article_num: n,
            now_ms: NOW,
            config: &self.rank,
            variant: &self.variant,
            seed: 7,
        }
    }
}

fn ids(c: &[Candidate]) -> Vec<ArticleId> {
    c.iter().map(|c| c.id).collect()
}

#[test]
fn fresh_is_newest_first_within_the_channel_and_skips_the_excluded() {
    let f = Fixture::new();
    let user = UserRecord::default();
    let ex = Exclusion::new(&user, 2);
    assert_eq!(ids(&fresh_source(&f.input("u", 2, 3), &ex, 3)), [219, 218, 217]);
}

#[test]
fn fresh_walks_past_the_scan_limit_rather_than_come_back_short() {
    let mut f = Fixture::new();
    f.rank.scan_limit = 5;
    // The user has seen the channel's newest 8, more than the other sources look at.
    let mut user = UserRecord::default();
    (212..=219).for_each(|id| user.mark_read(id));
    let ex = Exclusion::new(&user, 2);
    assert_eq!(ids(&fresh_source(&f.input("u", 2, 3), &ex, 3)), [211, 210, 209]);
}

#[test]
fn similar_follows_the_liked_topic_and_skips_the_liked_article() {
    let mut f = Fixture::new();
    f.act("u", 105, Action::Click);
    let user = UserRecord::default();
    let profile = f.learner.profile("u").unwrap().clone();
    let got = similar_source(&f.input("u", ALL_CHANNELS, 5), &Exclusion::new(&user, 0), &profile, 5);
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|c| c.sources == Sources::SIMILAR && c.id / 100 == 1 && c.id != 105), "{got:?}");
    // 105 is an odd one ("分析"): the articles sharing both keywords rank first.
    assert!(got.iter().take(3).all(|c| c.id % 2 == 1), "{got:?}");
}

#[test]
fn coengaged_proposes_what_others_liked_with_the_same_article() {
    let mut f = Fixture::new();
    for other in ["a", "b"] {
        f.act(other, 101, Action::Click);
        f.act(other, 305, Action::Click);
    }
    f.act("u", 101, Action::Click);
    let user = UserRecord::default();
    let profile = f.learner.profile("u").unwrap().clone();
    let got = coengaged_source(&f.input("u", ALL_CHANNELS, 5), &Exclusion::new(&user, 0), &profile, 5);
    assert_eq!(ids(&got), [305]);
    let in_channel_2 = coengaged_source(&f.input("u", 2, 5), &Exclusion::new(&user, 2), &profile, 5);
    assert!(in_channel_2.is_empty(), "a channel feed keeps to its channel");
}

#[test]
fn affinity_proposes_the_favourite_channel_newest_first() {
    let mut f = Fixture::new();
    f.act("u", 201, Action::Click);
    f.act("u", 203, Action::Read);
    let user = UserRecord::default();
    let profile = f.learner.profile("u").unwrap().clone();
    let got = affinity_source(&f.input("u", ALL_CHANNELS, 4), &Exclusion::new(&user, 0), &profile, 4);
    assert_eq!(got[0].id, 219);
    assert!(got.iter().all(|c| c.id / 100 == 2 && c.sources == Sources::AFFINITY), "{got:?}");
}

#[test]
fn explore_skips_articles_with_many_exposures() {
    let mut f = Fixture::new();
    f.rank.explore_max_exposures = 2;
    for _ in 0..2 {
        f.act("x", 319, Action::Exposure);
    }
    f.act("x", 318, Action::Exposure);
    let user = UserRecord::default();
    let got = explore_source(&f.input("u", 3, 2), &Exclusion::new(&user, 3), 2);
    assert_eq!(ids(&got), [318, 317]);
}

#[test]
fn filter_merges_sources_and_drops_the_excluded() {
    let f = Fixture::new();
    let mut user = UserRecord::default();
    user.mark_read(102);
    let c = |id, sources| Candidate::new(f.catalog.get(id).unwrap(), sources);
    let got = filter(
        &Exclusion::new(&user, 0),
        [vec![c(101, Sources::FRESH), c(102, Sources::FRESH)], vec![c(101, Sources::HOT), c(103, Sources::HOT)]],
    );
    assert_eq!(got, [c(101, Sources::FRESH.union(Sources::HOT)), c(103, Sources::HOT)]);
}

#[test]
fn pick_keeps_the_diversity_rule_in_the_mixed_feed() {
    let mut f = Fixture::new();
    f.variant.explore_rate = 0.0;
    // Channel 1 scores best by far: without the rule the batch would be all 足球.
    let scored: Vec<Scored> = f
        .catalog
        .newest_first(ALL_CHANNELS)
        .map(|a| Scored {
            id: a.id,
            sources: Sources::FRESH,
            score: if a.channel_id == 1 { 10.0 } else { 1.0 },
            article: a,
        })
        .collect();
    let got = pick(&f.input("u", ALL_CHANNELS, 9), scored.clone());
    let channels: Vec<ChannelId> = got.iter().map(|s| f.catalog.get(s.id).unwrap().channel_id).collect();
    assert_eq!(channels.len(), 9);
    assert!(channels.windows(2).all(|w| w[0] != w[1]), "{channels:?}");
    assert_eq!(channels.iter().filter(|c| **c == 1).count(), 3, "a third at most: {channels:?}");
    // In one channel, only the adjacent-topic rule applies.
    let ch1: Vec<Scored> = scored.into_iter().filter(|s| s.id / 100 == 1).collect();
    let got = pick(&f.input("u", 1, 6), ch1);
    let topics: Vec<&str> = got.iter().map(|s| f.catalog.get(s.id).unwrap().keywords[0].as_str()).collect();
    assert_eq!(topics.len(), 6, "the rule never shortens a batch");
}

#[test]
fn pick_gives_exploration_its_share() {
    let mut f = Fixture::new();
    f.variant.explore_rate = 0.3;
    let scored: Vec<Scored> = f
        .catalog
        .newest_first(ALL_CHANNELS)
        .enumerate()
        .map(|(i, a)| {
            let sources = if i % 2 == 0 { Sources::EXPLORE } else { Sources::FRESH };
            Scored { id: a.id, sources, score: if sources == Sources::EXPLORE { 0.0 } else { 1.0 }, article: a }
        })
        .collect();
    let mut explored = 0;
    for seed in 0..200 {
        let mut input = f.input("u", ALL_CHANNELS, 10);
        input.seed = seed;
        explored += pick(&input, scored.clone()).iter().filter(|s| s.sources == Sources::EXPLORE).count();
    }
    let share = explored as f64 / 2000.0;
    assert!((0.25..0.35).contains(&share), "exploration share {share}");
}

#[test]
fn variants_parse_and_refuse_bad_input() {
    let v = Variant::parse_list("a:ranker=on,explore=0.2; b:ranker=off").unwrap();
    assert_eq!(v[1], Variant { name: "b".into(), ranker: false, explore_rate: 0.1 });
    assert_eq!(v[0].explore_rate, 0.2);
    for bad in ["", "a:explore=2", "a:speed=1", "a;a", "a b"] {
        assert!(Variant::parse_list(bad).is_err(), "{bad:?}");
    }
}

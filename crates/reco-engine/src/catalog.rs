//! The article catalog in memory: lookups by id, per-channel lists newest first, the channel
//! list, the deterministic demo catalog, and JSON Lines import.

use std::cmp::Reverse;
use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use imbl::{OrdMap, OrdSet};
use rustc_hash::FxHashMap as HashMap;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use serde::{Deserialize, Serialize};

use crate::model::{ALL_CHANNELS, Article, ArticleId, Channel, ChannelId};
use crate::text::TextIndex;

/// The toutiao course's channels (id, name); 推荐 (0) is every channel at once.
pub const CHANNELS: &[(ChannelId, &str)] = &[
    (0, "推荐"),
    (1, "html"),
    (2, "开发者资讯"),
    (3, "ios"),
    (4, "c++"),
    (5, "android"),
    (6, "css"),
    (7, "数据库"),
    (8, "区块链"),
    (9, "go"),
    (10, "产品"),
    (11, "后端"),
    (12, "linux"),
    (13, "人工智能"),
    (14, "php"),
    (15, "javascript"),
    (16, "架构"),
    (17, "前端"),
    (18, "python"),
    (19, "java"),
    (20, "算法"),
    (21, "面试"),
    (22, "科技动态"),
    (23, "js"),
    (24, "设计"),
    (25, "数码产品"),
];

pub fn is_channel(id: ChannelId) -> bool {
    CHANNELS.iter().any(|(c, _)| *c == id)
}

/// Why and when an article was taken out of feeds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retraction {
    pub reason: String,
    /// Unix time in milliseconds.
    pub time_ms: i64,
}

/// Orders articles newest first: the later `publish_time`, then the larger id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Newest(Reverse<i64>, Reverse<ArticleId>);

impl Newest {
    pub fn of(a: &Article) -> Self {
        Self(Reverse(a.publish_time), Reverse(a.id))
    }

    pub fn id(self) -> ArticleId {
        self.1.0
    }

    pub fn publish_time(self) -> i64 {
        self.0.0
    }

    /// The key before every article's: where a walk of a whole list starts.
    pub const START: Newest = Newest(Reverse(i64::MAX), Reverse(i64::MAX));

    /// The key after every article's: a bound that no article's key reaches (publish times
    /// and ids are positive).
    pub const END: Newest = Newest(Reverse(i64::MIN), Reverse(i64::MIN));

    /// The next key in the order, if any: what comes right after this one and before every
    /// later key.
    pub fn successor(self) -> Option<Newest> {
        match (self.0.0, self.1.0.checked_sub(1)) {
            (time, Some(id)) => Some(Newest(Reverse(time), Reverse(id))),
            (time, None) => Some(Newest(Reverse(time.checked_sub(1)?), Reverse(i64::MAX))),
        }
    }
}

/// Insertions kept per newest-first list for [`Catalog::inserted_behind`]: a walk that
/// remembered the list from further back than this starts afresh.
pub const BEHIND_LOG: usize = 1_024;

/// Where a catalog is in its line of snapshots: the line (every catalog built from articles
/// starts its own; its changed clones continue it) and the number of changes to its
/// newest-first lists (insertions and removals) so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatalogPoint {
    line: u64,
    changes: u64,
}

/// A catalog line's number, unique in the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Line(u64);

impl Default for Line {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Per (channel, n) asked, the key after the channel's `n` newest live articles
/// ([`Catalog::window_end`]), found once per snapshot: a clone starts without them, since a
/// clone is made to be changed.
#[derive(Debug, Default)]
struct WindowEnds(Mutex<Vec<(ChannelId, usize, Newest)>>);

impl Clone for WindowEnds {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Window ends kept per snapshot: each source asks for one `n` per channel.
const WINDOW_ENDS: usize = 64;

/// One channel's live articles newest first, and what a walk that remembered the list needs to
/// know of the insertions since (see [`Catalog::inserted_behind`]).
#[derive(Clone, Debug, Default)]
struct FreshList {
    live: OrdMap<Newest, Arc<Article>>,
    /// The newest key the list ever held in this line: an article inserted newer than it
    /// lands in front of everything a walk passed.
    newest_ever: Option<Newest>,
    /// By change number, the latest [`BEHIND_LOG`] keys inserted not newer than `newest_ever`
    /// was then (backdated articles, republished ones, updates): they may land among
    /// articles a walk passed.
    behind: OrdMap<u64, Newest>,
    /// Changes up to this number may be missing from `behind`.
    behind_lost: u64,
}

impl FreshList {
    /// Inserts `article` under `key`, as change `change` (`None` while the catalog is built:
    /// no walk knows the line yet).
    fn insert(&mut self, key: Newest, article: Arc<Article>, change: Option<u64>) {
        if self.newest_ever.is_none_or(|newest| key < newest) {
            self.newest_ever = Some(key);
        } else if let Some(change) = change {
            self.behind.insert(change, key);
            if self.behind.len() > BEHIND_LOG
                && let Some(&(oldest, _)) = self.behind.get_min()
            {
                self.behind.remove(&oldest);
                self.behind_lost = oldest;
            }
        }
        self.live.insert(key, article);
    }
}

/// The catalog's lookup maps: cheap to clone, cheap to change a little, flat to read.
pub(crate) type SharedMap<K, V> = crate::layered::LayeredMap<K, V>;

/// Articles indexed for the feed. A snapshot: a change is made to a clone (which shares its
/// persistent newest-first lists but for the touched paths, and its lookup maps but for their
/// small deltas, so a change costs O(log n) amortized, not O(n)) and the engine swaps the
/// clone in, so a refresh ranks against one consistent catalog.
///
/// A retracted article stays here for lookups ([`Catalog::get`]: history joins, events on it,
/// `Catalog.Articles`) but is in no candidate list: not in [`Catalog::newest_first`], not in the
/// text index, and [`Catalog::live`] is `None` for it. An article older than the maximum age
/// leaves the catalog altogether ([`Catalog::age_out`]; the store keeps it).
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    articles: SharedMap<ArticleId, Arc<Article>>,
    /// Per channel (and `ALL_CHANNELS`), the live articles newest first.
    fresh: HashMap<ChannelId, FreshList>,
    line: Line,
    /// Changes to the newest-first lists since the line began (see [`CatalogPoint`]).
    changes: u64,
    window_ends: WindowEnds,
    /// Every article by (publish time, id), oldest first: what ages out next.
    by_age: OrdSet<(i64, ArticleId)>,
    retracted: SharedMap<ArticleId, Retraction>,
    text: TextIndex,
    /// Articles published before this time have left the catalog.
    oldest_ms: i64,
    /// Articles that left by age, counted.
    aged_out: u64,
}

impl Catalog {
    pub fn new(articles: Vec<Article>) -> Self {
        Self::with_retractions(articles, Vec::new())
    }

    /// A catalog of `articles`, the ids of `retracted` among them taken out of feeds.
    pub fn with_retractions(articles: Vec<Article>, retracted: Vec<(ArticleId, Retraction)>) -> Self {
        let mut catalog = Self::default();
        let retracted: HashMap<ArticleId, Retraction> = retracted.into_iter().collect();
        // The text index ranks title tokens by their document frequency over the whole set.
        let mut text = TextIndex::default();
        let articles: Vec<Arc<Article>> = articles.into_iter().map(Arc::new).collect();
        for a in &articles {
            if !retracted.contains_key(&a.id) {
                text.count(a);
            }
        }
        catalog.text = text;
        for a in articles {
            let retraction = retracted.get(&a.id).cloned();
            catalog.put(a, retraction, false);
        }
        catalog.articles.merge();
        catalog.retracted.merge();
        catalog.text.merge();
        catalog
    }

    /// Upserts `article`: a new one is live, a changed one replaces the old (a retracted id
    /// published again is live again).
    pub fn upsert(&mut self, article: Arc<Article>) {
        self.put(article, None, true);
    }

    fn put(&mut self, article: Arc<Article>, retraction: Option<Retraction>, count: bool) {
        if let Some(old) = self.articles.get(&article.id).cloned() {
            self.remove(&old);
        }
        self.by_age.insert((article.publish_time, article.id));
        match retraction {
            Some(r) => {
                self.retracted.insert(article.id, r);
            }
            None => self.index(&article, count),
        }
        self.articles.insert(article.id, article);
    }

    /// Takes a live article out of feeds; false when it is unknown or retracted already.
    pub fn retract(&mut self, id: ArticleId, retraction: Retraction) -> bool {
        let Some(article) = self.articles.get(&id).cloned() else { return false };
        if self.retracted.contains_key(&id) {
            return false;
        }
        self.unindex(&article);
        self.retracted.insert(id, retraction);
        true
    }

    /// Drops every article published before `before_ms` (lookups of it miss from now on) and
    /// returns their ids, oldest first.
    pub fn age_out(&mut self, before_ms: i64) -> Vec<ArticleId> {
        let mut gone = Vec::new();
        while let Some(&(time, id)) = self.by_age.get_min() {
            if time >= before_ms {
                break;
            }
            if let Some(article) = self.articles.get(&id).cloned() {
                self.remove(&article);
            } else {
                self.by_age.remove(&(time, id));
            }
            gone.push(id);
        }
        self.aged_out += gone.len() as u64;
        self.oldest_ms = self.oldest_ms.max(before_ms);
        gone
    }

    /// Articles published before this time have left the catalog (see [`Catalog::age_out`]).
    pub fn oldest_ms(&self) -> i64 {
        self.oldest_ms
    }

    /// How many articles have aged out of this catalog's line of snapshots so far.
    pub fn aged_out(&self) -> u64 {
        self.aged_out
    }

    fn remove(&mut self, article: &Article) {
        if self.retracted.remove(&article.id).is_none() {
            self.unindex(article);
        }
        self.by_age.remove(&(article.publish_time, article.id));
        self.articles.remove(&article.id);
    }

    /// Makes `article` a candidate; `count` is false while the catalog is built (the text
    /// index counted it already).
    fn index(&mut self, article: &Arc<Article>, count: bool) {
        let key = Newest::of(article);
        self.changes += 1;
        let change = count.then_some(self.changes);
        for c in [article.channel_id, ALL_CHANNELS] {
            self.fresh.entry(c).or_default().insert(key, Arc::clone(article), change);
        }
        self.text.insert(article, count);
    }

    fn unindex(&mut self, article: &Article) {
        let key = Newest::of(article);
        self.changes += 1;
        for c in [article.channel_id, ALL_CHANNELS] {
            if let Some(list) = self.fresh.get_mut(&c) {
                list.live.remove(&key);
            }
        }
        self.text.remove(article);
    }

    pub fn len(&self) -> usize {
        self.articles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.articles.is_empty()
    }

    /// Any article, retracted or not.
    pub fn get(&self, id: ArticleId) -> Option<&Article> {
        self.articles.get(&id).map(|a| &**a)
    }

    /// Any article, as the catalog shares it.
    pub fn shared(&self, id: ArticleId) -> Option<Arc<Article>> {
        self.articles.get(&id).cloned()
    }

    /// An article that may be served.
    pub fn live(&self, id: ArticleId) -> Option<&Article> {
        self.get(id).filter(|_| !self.retracted.contains_key(&id))
    }

    pub fn contains(&self, id: ArticleId) -> bool {
        self.articles.contains_key(&id)
    }

    pub fn retraction(&self, id: ArticleId) -> Option<&Retraction> {
        self.retracted.get(&id)
    }

    /// The index of the live articles' keywords and title tokens.
    pub fn text(&self) -> &TextIndex {
        &self.text
    }

    /// Live articles of `channel` (every channel for `ALL_CHANNELS`), newest first.
    pub fn newest_first(&self, channel: ChannelId) -> impl Iterator<Item = &Article> {
        self.fresh.get(&channel).into_iter().flat_map(|list| list.live.values().map(|a| &**a))
    }

    /// [`Catalog::newest_first`] from the key `from` on (it included, if live): a walk's jump
    /// over articles it need not look at, in O(log n).
    pub fn newest_from(&self, channel: ChannelId, from: Newest) -> impl Iterator<Item = &Article> {
        self.fresh.get(&channel).into_iter().flat_map(move |list| list.live.range(from..).map(|(_, a)| &**a))
    }

    /// The key of the article after `channel`'s `n` newest live ones ([`Newest::END`] when it
    /// has no more than `n`): the newest `n` are the articles before it. Found by a walk of
    /// `n` the first time a snapshot is asked, then remembered with it.
    pub fn window_end(&self, channel: ChannelId, n: usize) -> Newest {
        let lock = || self.window_ends.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&(_, _, end)) = lock().iter().find(|(c, m, _)| *c == channel && *m == n) {
            return end;
        }
        let end = self.newest_first(channel).nth(n).map_or(Newest::END, Newest::of);
        let mut ends = lock();
        if ends.len() >= WINDOW_ENDS {
            ends.clear();
        }
        ends.push((channel, n, end));
        end
    }

    /// Where this snapshot is in its line (see [`Catalog::inserted_behind`]).
    pub fn point(&self) -> CatalogPoint {
        CatalogPoint { line: self.line.0, changes: self.changes }
    }

    /// The keys inserted into `channel`'s newest-first list after `since` (a point of this
    /// catalog's line, not later than this snapshot) that may land among articles a walk of
    /// the list at `since` passed: everything inserted then except articles newer than any
    /// the list had ever held. `None` when that is not known: `since` is of another line or
    /// later than this snapshot, or the list's log no longer reaches back to it.
    ///
    /// What a walk learned at `since` about a stretch of the list (every live article in it
    /// was excluded) holds now unless one of these keys lies in the stretch: removals only
    /// take articles out, and other insertions land in front of it.
    pub fn inserted_behind(&self, channel: ChannelId, since: CatalogPoint) -> Option<impl Iterator<Item = Newest>> {
        if since.line != self.line.0 || since.changes > self.changes {
            return None;
        }
        let Some(list) = self.fresh.get(&channel) else { return Some(None.into_iter().flatten()) };
        if since.changes < list.behind_lost {
            return None;
        }
        Some(Some(list.behind.range(since.changes + 1..).map(|(_, key)| *key)).into_iter().flatten())
    }

    /// Every channel with its live article count, 推荐 first.
    pub fn channels(&self) -> Vec<(Channel, usize)> {
        CHANNELS
            .iter()
            .map(|&(id, name)| {
                let count = self.fresh.get(&id).map_or(0, |list| list.live.len());
                (Channel { id, name: name.to_owned() }, count)
            })
            .collect()
    }
}

/// Topic words per channel for the demo catalog.
const TOPICS: &[(ChannelId, &[&str])] = &[
    (1, &["HTML5", "语义化标签", "Canvas", "表单校验", "Web Components", "无障碍"]),
    (2, &["开源社区", "开发者大会", "GitHub", "技术招聘", "远程办公", "程序员成长"]),
    (3, &["Swift", "SwiftUI", "UIKit", "Xcode", "Combine", "内存管理"]),
    (4, &["模板元编程", "智能指针", "移动语义", "STL", "C++20 协程", "内存模型"]),
    (5, &["Kotlin", "Jetpack Compose", "Activity 生命周期", "Gradle", "性能优化", "Binder"]),
    (6, &["Flex 布局", "Grid 布局", "CSS 变量", "动画", "响应式设计", "BFC"]),
    (7, &["MySQL", "索引", "事务隔离", "Redis", "分库分表", "SQL 调优"]),
    (8, &["比特币", "以太坊", "智能合约", "共识算法", "零知识证明", "钱包"]),
    (9, &["goroutine", "channel", "Gin", "泛型", "GC", "context"]),
    (10, &["需求分析", "用户增长", "原型设计", "数据驱动", "A/B 测试", "产品思维"]),
    (11, &["微服务", "消息队列", "RPC", "缓存设计", "高并发", "接口幂等"]),
    (12, &["Shell", "systemd", "进程调度", "文件系统", "网络调优", "容器"]),
    (13, &["深度学习", "Transformer", "推荐系统", "自然语言处理", "计算机视觉", "强化学习"]),
    (14, &["Laravel", "Composer", "PHP 8", "Swoole", "性能调优", "安全"]),
    (15, &["闭包", "原型链", "事件循环", "Promise", "ES2024", "TypeScript"]),
    (16, &["DDD", "分布式事务", "服务治理", "高可用", "架构演进", "限流熔断"]),
    (17, &["Vue", "React", "Webpack", "Vite", "状态管理", "前端工程化"]),
    (18, &["装饰器", "生成器", "asyncio", "Django", "Flask", "pandas"]),
    (19, &["JVM", "Spring Boot", "并发编程", "集合框架", "虚拟线程", "MyBatis"]),
    (20, &["动态规划", "二叉树", "图算法", "排序", "贪心", "回溯"]),
    (21, &["面试题", "简历", "系统设计面试", "算法面试", "offer", "职业规划"]),
    (22, &["大模型", "芯片", "5G", "自动驾驶", "云计算", "开源"]),
    (23, &["Node.js", "模块化", "异步编程", "V8", "npm", "Deno"]),
    (24, &["UI 设计", "交互设计", "设计系统", "配色", "Figma", "用户体验"]),
    (25, &["手机评测", "笔记本", "耳机", "智能手表", "相机", "平板"]),
];

const TITLES: &[&str] = &[
    "{a}详解：从入门到实战",
    "深入理解{a}",
    "{a}的 {n} 个常见误区",
    "用{a}和{b}构建一个真实项目",
    "{a}性能优化实践",
    "一文读懂{a}",
    "{a}源码剖析",
    "为什么你应该重新认识{a}",
    "{a}与{b}：该怎么选？",
    "{n} 分钟掌握{a}",
    "{a}在生产环境中的踩坑记录",
    "从{b}到{a}：一次迁移复盘",
];

const SURNAMES: &[&str] = &["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "周", "吴", "徐", "孙", "马", "胡", "郭"];
const GIVEN: &[&str] =
    &["伟", "芳", "娜", "敏", "静", "强", "磊", "洋", "艳", "勇", "军", "杰", "涛", "明", "超", "霞"];

/// How many articles the demo catalog has.
pub const DEMO_SIZE: usize = 6_000;

/// The built-in demo catalog: `count` articles over every channel, published in the 30 days
/// before `now_ms`. The same `(seed, now_ms, count)` always gives the same catalog.
pub fn demo_articles(seed: u64, now_ms: i64, count: usize) -> Vec<Article> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    const MONTH_MS: i64 = 30 * 24 * 3_600_000;
    (1..=count as i64)
        .map(|id| {
            let (channel_id, topics) = TOPICS[rng.random_range(0..TOPICS.len())];
            let a = *topics.choose(&mut rng).expect("topics are not empty");
            let b = loop {
                let b = *topics.choose(&mut rng).expect("topics are not empty");
                if b != a {
                    break b;
                }
            };
            let template = TITLES.choose(&mut rng).expect("titles are not empty");
            let n = rng.random_range(3..=12).to_string();
            let title = template.replace("{a}", a).replace("{b}", b).replace("{n}", &n);
            let author = format!(
                "{}{}",
                SURNAMES.choose(&mut rng).expect("surnames"),
                GIVEN.choose(&mut rng).expect("given names")
            );
            let channel_name = CHANNELS.iter().find(|(c, _)| *c == channel_id).map_or("", |(_, n)| n);
            Article {
                id,
                channel_id,
                summary: format!("本文围绕{a}展开，结合{b}的实际案例，讲清楚原理、用法与常见问题。"),
                title,
                author,
                publish_time: now_ms - rng.random_range(0..MONTH_MS),
                keywords: vec![a.to_owned(), b.to_owned(), channel_name.to_owned()],
                cover: String::new(),
            }
        })
        .collect()
}

/// What `reco import` found in a JSON Lines file.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub articles: Vec<Article>,
    /// (1-based line number, reason) of every line that was refused.
    pub rejected: Vec<(usize, String)>,
}

/// Reads one article per line (`{"id":1,"channel_id":18,"title":"...","author":"...",
/// "publish_time":1763900000000,"keywords":["..."],"summary":"...","cover":"..."}`); blank
/// lines are skipped, bad lines (see [`check_article`]; `latest_ms` is the latest allowed
/// `publish_time`) reported with their number and reason.
pub fn parse_jsonl(reader: impl BufRead, latest_ms: i64) -> std::io::Result<ImportReport> {
    let mut report = ImportReport::default();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line, latest_ms) {
            Ok(a) => report.articles.push(a),
            Err(reason) => report.rejected.push((i + 1, reason)),
        }
    }
    Ok(report)
}

/// One JSON Lines article, checked.
pub fn parse_line(line: &str, latest_ms: i64) -> Result<Article, String> {
    let a = serde_json::from_str::<Article>(line).map_err(|e| e.to_string())?;
    check_article(&a, latest_ms)?;
    Ok(a)
}

/// Longest title, author and summary in characters, most keywords and longest keyword, longest
/// cover URL in bytes.
pub const MAX_TITLE_CHARS: usize = 300;
pub const MAX_AUTHOR_CHARS: usize = 100;
pub const MAX_SUMMARY_CHARS: usize = 4_000;
pub const MAX_KEYWORDS: usize = 32;
pub const MAX_KEYWORD_CHARS: usize = 64;
pub const MAX_COVER_BYTES: usize = 2_048;

/// Why an article may not be in the catalog, if it may not: a bad id, an unknown channel, an
/// empty title, a `publish_time` not in `1..=latest_ms`, a field over its limit.
pub fn check_article(a: &Article, latest_ms: i64) -> Result<(), String> {
    if a.id <= 0 {
        return Err(format!("id must be > 0, got {}", a.id));
    }
    if a.channel_id == ALL_CHANNELS || !is_channel(a.channel_id) {
        return Err(format!("unknown channel_id {} (known: 1..={})", a.channel_id, CHANNELS.len() - 1));
    }
    if a.title.trim().is_empty() {
        return Err("title is empty".to_owned());
    }
    if a.publish_time <= 0 {
        return Err(format!("publish_time must be Unix milliseconds > 0, got {}", a.publish_time));
    }
    if a.publish_time > latest_ms {
        return Err(format!(
            "publish_time {} is in the future: at most {latest_ms} (now plus the allowed clock skew) is allowed",
            a.publish_time
        ));
    }
    let chars = |field: &str, text: &str, max: usize| {
        let n = text.chars().count();
        if n > max { Err(format!("{field} is {n} characters, at most {max} are allowed")) } else { Ok(()) }
    };
    chars("title", &a.title, MAX_TITLE_CHARS)?;
    chars("author", &a.author, MAX_AUTHOR_CHARS)?;
    chars("summary", &a.summary, MAX_SUMMARY_CHARS)?;
    if a.keywords.len() > MAX_KEYWORDS {
        return Err(format!("keywords has {} entries, at most {MAX_KEYWORDS} are allowed", a.keywords.len()));
    }
    for k in &a.keywords {
        if k.trim().is_empty() {
            return Err("keywords has an empty entry".to_owned());
        }
        chars("a keyword", k, MAX_KEYWORD_CHARS)?;
    }
    if a.cover.len() > MAX_COVER_BYTES {
        return Err(format!("cover is {} bytes, at most {MAX_COVER_BYTES} are allowed", a.cover.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_catalog_is_deterministic_and_covers_every_channel() {
        let a = demo_articles(7, 1_763_900_000_000, DEMO_SIZE);
        assert_eq!(a, demo_articles(7, 1_763_900_000_000, DEMO_SIZE));
        assert_ne!(a, demo_articles(8, 1_763_900_000_000, DEMO_SIZE));
        let catalog = Catalog::new(a);
        assert_eq!(catalog.len(), DEMO_SIZE);
        for (channel, count) in catalog.channels() {
            assert!(count > 100, "channel {} has {count} articles", channel.name);
        }
        let newest: Vec<i64> = catalog.newest_first(18).map(|a| a.publish_time).collect();
        assert!(newest.windows(2).all(|w| w[0] >= w[1]));
        assert!(catalog.newest_first(18).all(|a| a.channel_id == 18));
    }

    /// What a refresh can see of a catalog: per channel the live ids newest first, per keyword
    /// its postings, and every lookup.
    fn view(c: &Catalog, ids: &[ArticleId]) -> Vec<String> {
        let mut out: Vec<String> = CHANNELS
            .iter()
            .map(|(ch, _)| format!("{ch}: {:?}", c.newest_first(*ch).map(|a| a.id).collect::<Vec<_>>()))
            .collect();
        for (_, topics) in TOPICS {
            for t in *topics {
                out.push(format!("{t}: {:?}", c.text().postings(crate::text::keyword_token(t)).collect::<Vec<_>>()));
            }
        }
        for &id in ids {
            out.push(format!(
                "{id}: {:?} {:?} {:?}",
                c.get(id).map(|a| &a.title),
                c.live(id).is_some(),
                c.retraction(id)
            ));
        }
        out.push(format!("{:?} {}", c.channels(), c.text().len()));
        out
    }

    #[test]
    fn changes_one_by_one_give_the_catalog_built_at_once() {
        let now = 1_763_900_000_000;
        let day = 24 * 3_600_000;
        let articles = demo_articles(5, now, 1_500);
        let r = |n: i64| Retraction { reason: format!("r{n}"), time_ms: n };
        let mut step = Catalog::new(articles[..500].to_vec());
        let before = view(&step, &[1, 2, 3]);
        let kept = step.clone();
        for a in &articles[500..] {
            step.upsert(Arc::new(a.clone()));
        }
        // Updates (a new title, an id's time moved), retractions, a retracted id published again.
        let mut updated = articles[10].clone();
        updated.title = "新标题".into();
        updated.publish_time = now;
        step.upsert(Arc::new(updated.clone()));
        for id in [20, 21, 22, 600] {
            assert!(step.retract(id, r(id)));
        }
        assert!(!step.retract(20, r(0)), "retracted already");
        assert!(!step.retract(999_999, r(0)), "unknown");
        step.upsert(Arc::new(articles[20].clone()));
        let gone = step.age_out(now - 10 * day);
        assert!(!gone.is_empty());

        let mut at_once: Vec<Article> = articles.clone();
        at_once[10] = updated;
        at_once.retain(|a| a.publish_time >= now - 10 * day);
        let retracted: Vec<(ArticleId, Retraction)> =
            [21, 22, 600].into_iter().filter(|id| at_once.iter().any(|a| a.id == *id)).map(|id| (id, r(id))).collect();
        let built = Catalog::with_retractions(at_once, retracted);
        let probe: Vec<ArticleId> = (1..=1_500).collect();
        assert_eq!(view(&step, &probe), view(&built, &probe));
        assert_eq!(step.len(), built.len());
        assert!(gone.iter().all(|id| step.get(*id).is_none()));
        assert_eq!(view(&kept, &[1, 2, 3]), before, "a clone changed alone: the snapshot is untouched");
    }

    #[test]
    fn import_reports_bad_lines_with_numbers() {
        let text = concat!(
            r#"{"id":1,"channel_id":18,"title":"t","author":"a","publish_time":5,"keywords":["k"]}"#,
            "\n\n",
            "not json\n",
            r#"{"id":2,"channel_id":99,"title":"t","author":"a","publish_time":5}"#,
            "\n",
            r#"{"id":3,"channel_id":18,"title":" ","author":"a","publish_time":5}"#,
            "\n",
            r#"{"id":4,"channel_id":18,"title":"ok","author":"a","publish_time":5}"#,
            "\n",
        );
        let report = parse_jsonl(text.as_bytes(), i64::MAX).unwrap();
        assert_eq!(report.articles.iter().map(|a| a.id).collect::<Vec<_>>(), vec![1, 4]);
        let lines: Vec<usize> = report.rejected.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![3, 4, 5]);
        assert!(report.rejected[1].1.contains("unknown channel_id 99"), "{:?}", report.rejected);
        assert!(report.rejected[2].1.contains("title is empty"));
    }
}

//! The synthetic world: channels with keyword vocabularies, articles with a hidden quality,
//! users with hidden interests, and the click model that turns an exposure into actions.
//!
//! Generation draws from one ChaCha stream seeded with `--seed`. The per-exposure draws of the
//! click model do not come from a stream but from a hash of `(seed, purpose, user, round,
//! batch, position)`: every policy then meets the same coin flips in the same slot (common
//! random numbers), so differences between policies come from what they show, not from luck.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reco_engine::catalog::CHANNELS;
use reco_engine::model::{self, ChannelId};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The simulated clock at the start of round 0 (2025-11-23 12:13:20 UTC). Fixed rather than
/// taken from the wall clock so that a seed always gives the same run.
pub const START_MS: i64 = 1_763_900_000_000;

/// Keywords per channel, in the order of `catalog::CHANNELS` without 推荐.
const VOCABULARY: &[&[&str]] = &[
    &["HTML5", "语义化", "Canvas", "表单", "Web组件", "无障碍", "SVG", "浏览器兼容"],
    &["开源", "开发者大会", "GitHub", "招聘", "远程办公", "程序员成长", "技术债", "开发工具"],
    &["Swift", "SwiftUI", "UIKit", "Xcode", "上架审核", "内存管理", "动画", "越狱"],
    &["模板", "智能指针", "移动语义", "STL", "协程", "内存模型", "编译器", "多线程"],
    &["Kotlin", "Compose", "生命周期", "Gradle", "性能优化", "Binder", "插件化", "热修复"],
    &["Flex布局", "Grid布局", "CSS变量", "过渡动画", "响应式", "BFC", "选择器", "预处理器"],
    &["MySQL", "索引", "事务", "Redis", "分库分表", "慢查询", "PostgreSQL", "主从复制"],
    &["比特币", "以太坊", "智能合约", "共识算法", "零知识证明", "钱包", "挖矿", "DeFi"],
    &["goroutine", "通道", "Gin", "泛型", "垃圾回收", "context", "微服务框架", "逃逸分析"],
    &["需求分析", "用户增长", "原型", "数据驱动", "A/B测试", "产品思维", "竞品分析", "留存"],
    &["消息队列", "RPC", "缓存", "高并发", "幂等", "限流", "网关", "定时任务"],
    &["Shell", "systemd", "进程调度", "文件系统", "内核", "容器", "网络调优", "运维"],
    &["深度学习", "大模型", "推荐系统", "自然语言处理", "计算机视觉", "强化学习", "机器学习", "知识图谱"],
    &["Laravel", "Composer", "PHP8", "Swoole", "框架", "安全漏洞", "扩展", "ThinkPHP"],
    &["闭包", "原型链", "事件循环", "Promise", "ES2024", "TypeScript", "正则", "深拷贝"],
    &["领域驱动", "分布式事务", "服务治理", "高可用", "架构演进", "熔断", "中台", "云原生"],
    &["Vue", "React", "Webpack", "Vite", "状态管理", "工程化", "小程序", "组件库"],
    &["装饰器", "生成器", "asyncio", "Django", "Flask", "pandas", "爬虫", "数据分析"],
    &["JVM", "Spring", "并发编程", "集合框架", "虚拟线程", "MyBatis", "调优", "字节码"],
    &["动态规划", "二叉树", "图论", "排序", "贪心", "回溯", "链表", "LeetCode"],
    &["面试题", "简历", "系统设计", "八股文", "offer", "职业规划", "跳槽", "薪资"],
    &["芯片", "5G", "自动驾驶", "云计算", "量子计算", "机器人", "航天", "新能源"],
    &["Node.js", "模块化", "异步编程", "V8", "npm", "Deno", "Express", "打包"],
    &["UI设计", "交互设计", "设计系统", "配色", "Figma", "用户体验", "图标", "字体"],
    &["手机", "笔记本", "耳机", "智能手表", "相机", "平板", "显卡", "键盘"],
];

/// The size of a world.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    pub seed: u64,
    pub users: usize,
    pub articles: usize,
}

/// One channel of the catalog (推荐 excluded) and its keywords.
#[derive(Clone, Debug)]
pub struct ChannelInfo {
    pub id: ChannelId,
    pub name: &'static str,
    /// Global keyword indexes (into [`World::keywords`]).
    pub keywords: Vec<u16>,
}

#[derive(Clone, Debug)]
pub struct Article {
    /// Index into [`World::channels`].
    pub channel: u8,
    /// 1–3 keywords of its channel, global indexes.
    pub keywords: Vec<u16>,
    /// Hidden appeal, mean about 1.
    pub quality: f64,
    pub publish_ms: i64,
}

#[derive(Clone, Debug)]
pub struct User {
    /// Per channel index: 1 for the 2–3 favourites, 0.01 for the one hated channel, else 0.1.
    pub channel_interest: Vec<f64>,
    /// The channel whose articles the user sometimes dislikes.
    pub hated: u8,
    /// 2–5 favourite keywords, each adding 1 to the interest multiplier.
    pub favourite_keywords: Vec<u16>,
    /// Probability of a session in a round.
    pub activity: f64,
}

pub struct World {
    pub config: WorldConfig,
    pub channels: Vec<ChannelInfo>,
    /// Every keyword with its channel index.
    pub keywords: Vec<(&'static str, u8)>,
    pub articles: Vec<Article>,
    pub users: Vec<User>,
}

/// Interest of a channel the user likes, does not care for, and hates.
const FAVOURITE: f64 = 1.0;
const BASE: f64 = 0.1;
const HATED: f64 = 0.01;

impl World {
    pub fn generate(config: WorldConfig) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut keywords = Vec::new();
        let channels: Vec<ChannelInfo> = CHANNELS
            .iter()
            .filter(|(id, _)| *id != model::ALL_CHANNELS)
            .zip(VOCABULARY.iter().cycle())
            .enumerate()
            .map(|(c, (&(id, name), words))| {
                let first = keywords.len() as u16;
                keywords.extend(words.iter().map(|w| (*w, c as u8)));
                ChannelInfo { id, name, keywords: (first..keywords.len() as u16).collect() }
            })
            .collect();

        // Channels differ in how many users like them (Zipf-like over a seeded order), so that
        // global popularity carries some signal, as it does in real feeds.
        let mut order: Vec<usize> = (0..channels.len()).collect();
        order.shuffle(&mut rng);
        let mut channel_weight = vec![0.0; channels.len()];
        for (rank, &c) in order.iter().enumerate() {
            channel_weight[c] = 1.0 / (rank as f64 + 1.0).powf(0.8);
        }

        // Published uniformly over the 4 days before the start: the engine's catalog is fixed
        // when it is built and its fresh source serves future-dated articles too, so there are
        // no articles "arriving" during the run.
        let articles = (0..config.articles)
            .map(|_| {
                let channel = rng.random_range(0..channels.len());
                let vocabulary = &channels[channel].keywords;
                let count = rng.random_range(1..=3);
                let keywords: Vec<u16> = vocabulary.choose_multiple(&mut rng, count).copied().collect();
                // Log-normal with sigma 0.5, scaled to mean 1, clipped against outliers.
                let quality = ((0.5 * normal(&mut rng)).exp() / 1.133).clamp(0.2, 4.0);
                let publish_ms = START_MS - rng.random_range(1..4 * DAY_MS);
                Article { channel: channel as u8, keywords, quality, publish_ms }
            })
            .collect();

        let users = (0..config.users)
            .map(|_| {
                let favourites = rng.random_range(2..=3);
                let mut channel_interest = vec![BASE; channels.len()];
                let mut chosen: Vec<usize> = Vec::new();
                while chosen.len() < favourites {
                    let c = weighted(&mut rng, &channel_weight);
                    if !chosen.contains(&c) {
                        chosen.push(c);
                    }
                }
                for &c in &chosen {
                    channel_interest[c] = FAVOURITE;
                }
                let hated = loop {
                    let c = rng.random_range(0..channels.len());
                    if !chosen.contains(&c) {
                        break c;
                    }
                };
                channel_interest[hated] = HATED;
                // Mostly keywords of the favourite channels, plus one from anywhere: a taste
                // that channel-level popularity cannot see.
                let mut favourite_keywords: Vec<u16> = Vec::new();
                let strong = rng.random_range(2..=4);
                while favourite_keywords.len() < strong {
                    let c = *chosen.choose(&mut rng).expect("at least two favourites");
                    let k = *channels[c].keywords.choose(&mut rng).expect("vocabularies are not empty");
                    if !favourite_keywords.contains(&k) {
                        favourite_keywords.push(k);
                    }
                }
                let k = rng.random_range(0..keywords.len() as u16);
                if !favourite_keywords.contains(&k) {
                    favourite_keywords.push(k);
                }
                let activity = rng.random_range(0.2..0.8);
                User { channel_interest, hated: hated as u8, favourite_keywords, activity }
            })
            .collect();

        World { config, channels, keywords, articles, users }
    }

    /// `channel_interest(channel) * (1 + number of the article's keywords the user favours)`.
    pub fn interest(&self, user: usize, article: usize) -> f64 {
        let u = &self.users[user];
        let a = &self.articles[article];
        let matches = a.keywords.iter().filter(|k| u.favourite_keywords.contains(k)).count();
        u.channel_interest[a.channel as usize] * (1.0 + matches as f64)
    }

    /// The catalog as the engine takes it; article `i` gets id `i + 1`.
    pub fn engine_articles(&self) -> Vec<model::Article> {
        const TEMPLATES: &[&str] = &["深入理解{}", "{}实战指南", "一文读懂{}", "{}踩坑记录", "聊聊{}"];
        self.articles
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let channel = &self.channels[a.channel as usize];
                let words: Vec<&str> = a.keywords.iter().map(|&k| self.keywords[k as usize].0).collect();
                let title = TEMPLATES[i % TEMPLATES.len()].replace("{}", &words.join("与"));
                model::Article {
                    id: i as i64 + 1,
                    channel_id: channel.id,
                    title,
                    author: format!("作者{}", i % 97),
                    publish_time: a.publish_ms,
                    keywords: words.iter().map(|w| (*w).to_owned()).collect(),
                    summary: format!("{}频道的模拟文章。", channel.name),
                    cover: String::new(),
                }
            })
            .collect()
    }
}

/// The click model's constants; see the crate documentation for the formula.
#[derive(Clone, Debug)]
pub struct ClickModel {
    pub base_ctr: f64,
    pub max_click: f64,
    /// `position_decay(pos) = 1 / (1 + position_slope * pos)`.
    pub position_slope: f64,
    /// `freshness(age) = floor + (1 - floor) * 2^(-age / half_life)`.
    pub freshness_floor: f64,
    pub freshness_half_life_ms: f64,
    /// Of clicks: read, and then collected or shared.
    pub read: f64,
    pub collect: f64,
    pub share: f64,
    /// Of unclicked exposures in the user's hated channel.
    pub dislike: f64,
}

impl Default for ClickModel {
    fn default() -> Self {
        Self {
            base_ctr: 0.25,
            max_click: 0.9,
            position_slope: 0.15,
            freshness_floor: 0.5,
            freshness_half_life_ms: 2.0 * DAY_MS as f64,
            read: 0.8,
            collect: 0.05,
            share: 0.03,
            dislike: 0.3,
        }
    }
}

/// The slot an exposure happened in, which keys its random draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub user: u32,
    pub round: u32,
    /// The batch's index within the session.
    pub batch: u32,
    pub position: u32,
}

/// What a user did with one exposed article.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Outcome {
    pub click: bool,
    /// Read duration in ms, when clicked and read.
    pub read_ms: Option<i64>,
    pub collect: bool,
    pub share: bool,
    pub dislike: bool,
}

/// Draw purposes, part of the hash key so that draws of one slot are independent.
#[derive(Clone, Copy)]
#[repr(u64)]
pub enum Purpose {
    Click = 1,
    Read,
    Duration,
    Collect,
    Share,
    Dislike,
    Active,
    Offset,
    Continue,
}

impl ClickModel {
    /// Click probability without the position factor: what a perfect ranker orders by.
    pub fn appeal(&self, world: &World, user: usize, article: usize, now_ms: i64) -> f64 {
        let a = &world.articles[article];
        self.base_ctr * world.interest(user, article) * a.quality * self.freshness(now_ms - a.publish_ms)
    }

    pub fn freshness(&self, age_ms: i64) -> f64 {
        let age = age_ms.max(0) as f64;
        self.freshness_floor + (1.0 - self.freshness_floor) * (-age / self.freshness_half_life_ms).exp2()
    }

    pub fn click_probability(&self, world: &World, user: usize, article: usize, position: usize, now_ms: i64) -> f64 {
        let decay = 1.0 / (1.0 + self.position_slope * position as f64);
        (self.appeal(world, user, article, now_ms) * decay).clamp(0.0, self.max_click)
    }

    pub fn outcome(&self, world: &World, article: usize, slot: Slot, now_ms: i64) -> Outcome {
        let seed = world.config.seed;
        let user = slot.user as usize;
        let draw = |purpose: Purpose| unit(seed, purpose, [slot.user, slot.round, slot.batch, slot.position]);
        let p = self.click_probability(world, user, article, slot.position as usize, now_ms);
        let mut out = Outcome::default();
        if draw(Purpose::Click) < p {
            out.click = true;
            if draw(Purpose::Read) < self.read {
                // 10 s to 3 min, longer for articles the user cares more about.
                let depth = (world.interest(user, article) / 2.0).min(1.0);
                out.read_ms = Some(10_000 + (170_000.0 * depth * draw(Purpose::Duration)) as i64);
                out.collect = draw(Purpose::Collect) < self.collect;
                out.share = draw(Purpose::Share) < self.share;
            }
        } else if world.articles[article].channel == world.users[user].hated {
            out.dislike = draw(Purpose::Dislike) < self.dislike;
        }
        out
    }
}

/// A uniform draw in `[0, 1)` from `(seed, purpose, key)` (SplitMix64 over the parts).
pub fn unit(seed: u64, purpose: Purpose, key: [u32; 4]) -> f64 {
    let mut h = splitmix(seed ^ (purpose as u64).wrapping_mul(0xA076_1D64_78BD_642F));
    for k in key {
        h = splitmix(h ^ u64::from(k));
    }
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// SplitMix64's step: the engine's finaliser after the golden-ratio increment.
fn splitmix(x: u64) -> u64 {
    reco_engine::text::mix(x.wrapping_add(0x9E37_79B9_7F4A_7C15))
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// An index drawn with probability proportional to its weight.
fn weighted(rng: &mut impl Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> World {
        World::generate(WorldConfig { seed, users: 50, articles: 400 })
    }

    #[test]
    fn generation_is_deterministic_per_seed() {
        let (a, b, c) = (small(3), small(3), small(4));
        let key = |w: &World| -> Vec<(u8, Vec<u16>, u64, i64)> {
            w.articles.iter().map(|a| (a.channel, a.keywords.clone(), a.quality.to_bits(), a.publish_ms)).collect()
        };
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        let users = |w: &World| -> Vec<(Vec<u16>, u8)> {
            w.users.iter().map(|u| (u.favourite_keywords.clone(), u.hated)).collect()
        };
        assert_eq!(users(&a), users(&b));
        assert_eq!(a.engine_articles(), b.engine_articles());
    }

    #[test]
    fn world_is_well_formed() {
        let w = small(1);
        assert_eq!(w.channels.len(), CHANNELS.len() - 1);
        assert!(w.channels.iter().all(|c| c.id != model::ALL_CHANNELS && c.keywords.len() == 8));
        for a in &w.articles {
            assert!((1..=3).contains(&a.keywords.len()));
            assert!(a.keywords.iter().all(|&k| w.keywords[k as usize].1 == a.channel));
            assert!(a.publish_ms < START_MS && a.publish_ms > START_MS - 4 * DAY_MS);
            assert!((0.2..=4.0).contains(&a.quality));
        }
        for u in &w.users {
            let favourites = u.channel_interest.iter().filter(|&&x| x == FAVOURITE).count();
            assert!((2..=3).contains(&favourites), "{favourites} favourite channels");
            assert_eq!(u.channel_interest[u.hated as usize], HATED);
        }
        let articles = w.engine_articles();
        assert!(articles.iter().all(|a| reco_engine::catalog::is_channel(a.channel_id) && a.channel_id != 0));
    }

    #[test]
    fn click_probabilities_are_in_range_and_ordered() {
        let w = small(2);
        let m = ClickModel::default();
        for user in 0..w.users.len() {
            for article in 0..w.articles.len() {
                let p = m.click_probability(&w, user, article, 0, START_MS);
                assert!((0.0..=m.max_click).contains(&p), "p = {p}");
                let later = m.click_probability(&w, user, article, 9, START_MS);
                assert!(later <= p);
            }
        }
        // A favourite channel beats the hated one for the same article quality and age.
        let u = &w.users[0];
        let fav = u.channel_interest.iter().position(|&x| x == FAVOURITE).unwrap();
        let of = |c: usize| w.articles.iter().position(|a| a.channel as usize == c).unwrap();
        let (a, b) = (of(fav), of(u.hated as usize));
        assert!(w.interest(0, a) >= 10.0 * w.interest(0, b));
    }

    #[test]
    fn outcomes_are_deterministic_and_consistent() {
        let w = small(5);
        let m = ClickModel::default();
        let (mut clicks, mut n) = (0, 0);
        for user in 0..w.users.len() as u32 {
            for article in 0..40 {
                let slot = Slot { user, round: 1, batch: 0, position: article as u32 % 10 };
                let o = m.outcome(&w, article, slot, START_MS);
                assert_eq!(o, m.outcome(&w, article, slot, START_MS));
                assert!(o.click || (o.read_ms.is_none() && !o.collect && !o.share));
                assert!(!(o.click && o.dislike));
                if let Some(ms) = o.read_ms {
                    assert!((10_000..=180_000).contains(&ms));
                }
                clicks += o.click as u32;
                n += 1;
            }
        }
        // Random exposures click rarely but do click.
        assert!(clicks > 0 && clicks < n / 5, "{clicks} of {n}");
    }

    #[test]
    fn unit_draws_are_uniform_enough() {
        let draws: Vec<f64> = (0..10_000).map(|i| unit(9, Purpose::Click, [i, 0, 0, 0])).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        assert_ne!(unit(9, Purpose::Click, [1, 2, 3, 4]), unit(9, Purpose::Read, [1, 2, 3, 4]));
    }
}

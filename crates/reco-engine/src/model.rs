//! Plain domain types shared by the engine and the stores.

use serde::{Deserialize, Serialize};

pub type ArticleId = i64;
pub type ChannelId = i32;

/// Channel 0 is 推荐: every channel at once.
pub const ALL_CHANNELS: ChannelId = 0;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Article {
    pub id: ArticleId,
    pub channel_id: ChannelId,
    pub title: String,
    pub author: String,
    /// Unix time in milliseconds.
    pub publish_time: i64,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cover: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub id: ChannelId,
    pub name: String,
}

/// What a user did with an article; the `action` of a tracking param.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Action {
    /// The batch was shown; carries every id of the batch.
    Exposure = 0,
    Click = 1,
    Collect = 2,
    Share = 3,
    Read = 4,
    /// "Not interested": reported with any of a card's params; hides the article for good and
    /// demotes its topic for the user.
    Dislike = 5,
}

impl Action {
    /// The four per-article actions, in the order of the seed's `Track` message.
    pub const TRACKED: [Action; 4] = [Action::Click, Action::Collect, Action::Share, Action::Read];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Exposure => "exposure",
            Action::Click => "click",
            Action::Collect => "collect",
            Action::Share => "share",
            Action::Read => "read",
            Action::Dislike => "dislike",
        }
    }

    /// The inverse of [`Action::as_str`].
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "exposure" => Action::Exposure,
            "click" => Action::Click,
            "collect" => Action::Collect,
            "share" => Action::Share,
            "read" => Action::Read,
            "dislike" => Action::Dislike,
            _ => return None,
        })
    }

    /// Whether the action tells that the user liked the article.
    pub fn is_positive(self) -> bool {
        matches!(self, Action::Click | Action::Collect | Action::Share | Action::Read)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

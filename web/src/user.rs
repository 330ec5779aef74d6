//! The user the feed is for: kept in localStorage, an anonymous id until someone types one.

const STORAGE_KEY: &str = "reco.userId";

/// `anon-` and eight base-36 digits of `random`.
pub fn anonymous_id(mut random: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut id = String::from("anon-");
    for _ in 0..8 {
        id.push(char::from(DIGITS[(random % 36) as usize]));
        random /= 36;
    }
    id
}

/// A user id as typed: trimmed, and `None` when that leaves nothing.
pub fn normalize(input: &str) -> Option<String> {
    let trimmed = input.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// The stored user id, or a new anonymous one (stored right away so it survives reloads).
pub fn load() -> String {
    let stored =
        storage().and_then(|storage| storage.get_item(STORAGE_KEY).ok().flatten()).and_then(|id| normalize(&id));
    stored.unwrap_or_else(|| {
        let id = anonymous_id((js_sys::Math::random() * 2f64.powi(53)) as u64);
        save(&id);
        id
    })
}

pub fn save(user_id: &str) {
    if let Some(storage) = storage() {
        // A full or disabled storage only costs remembering the id.
        let _ = storage.set_item(STORAGE_KEY, user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_ids_are_short_and_distinct() {
        let a = anonymous_id(0);
        let b = anonymous_id(123_456_789);
        assert_eq!(a, "anon-00000000");
        assert_eq!(b.len(), 13);
        assert!(b.starts_with("anon-"));
        assert!(b[5..].bytes().all(|byte| byte.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn typed_ids_are_trimmed() {
        assert_eq!(normalize("  u42 "), Some("u42".to_owned()));
        assert_eq!(normalize("   "), None);
    }
}

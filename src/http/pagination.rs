//! Keyset pagination for list endpoints, and query-string parsing.
//!
//! Lists are newest first and the cursor is the id of the last item returned: unlike an
//! offset, it stays correct while new items are created at the head of the list. Reading
//! accepts `cursor` and the platform's alias `nextCursor`; responses emit `cursor` only:
//!
//! ```json
//! {"data": [...], "pagination": {"limit": 25, "cursor": "<id or null>", "hasMore": true, "total": 247}}
//! ```

use serde::Serialize;

use super::error::ApiError;
use super::percent;

/// `limit` when the client sends none.
pub const DEFAULT_LIMIT: usize = 25;
/// The largest `limit` a client may ask for.
pub const MAX_LIMIT: usize = 100;

/// What page the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Items per page, `1..=MAX_LIMIT`.
    pub limit: usize,
    /// Id of the last item of the previous page; `None` for the first page.
    pub cursor: Option<String>,
}

impl Default for Page {
    fn default() -> Self {
        Page { limit: DEFAULT_LIMIT, cursor: None }
    }
}

impl Page {
    /// Reads `limit` and `cursor` (or `nextCursor`) from a query string such as
    /// `uri.query()`. 400 naming `limit` when it is not an integer in `1..=100`.
    pub fn from_query(query: Option<&str>) -> Result<Page, ApiError> {
        let limit = match query_param(query, "limit") {
            None => DEFAULT_LIMIT,
            Some(text) => parse_limit(&text)?,
        };
        let cursor = query_param(query, "cursor").or_else(|| query_param(query, "nextCursor"));
        Ok(Page { limit, cursor: cursor.filter(|c| !c.is_empty()) })
    }
}

fn parse_limit(text: &str) -> Result<usize, ApiError> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::BadRequest(format!("limit must be an integer from 1 to {MAX_LIMIT}, got `{text}`"))),
    }
}

/// One page of a list, serializing to the `{"data": ..., "pagination": ...}` response body.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "{T}Page")]
pub struct Paginated<'a, T> {
    /// The items of this page, newest first.
    pub data: Vec<&'a T>,
    /// Where the client goes next.
    pub pagination: PageInfo,
}

/// The `pagination` object of a list response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    /// The page size used.
    pub limit: usize,
    /// The cursor for the next page; `null` on the last page.
    pub cursor: Option<String>,
    /// Whether another page follows.
    pub has_more: bool,
    /// Items in the whole list.
    pub total: usize,
}

/// The page of `items` (newest first) after `page.cursor`.
///
/// 400 when the cursor names no item: the item was deleted since the previous page, or the
/// cursor belongs to another list. Silently returning an empty page would look like the end
/// of the list, so the client is told to start over instead.
pub fn paginate<'a, T>(items: &'a [T], id_of: impl Fn(&T) -> &str, page: &Page) -> Result<Paginated<'a, T>, ApiError> {
    let start = match &page.cursor {
        None => 0,
        Some(cursor) => {
            items.iter().position(|item| id_of(item) == cursor.as_str()).map(|i| i + 1).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "cursor `{cursor}` does not name an item of this list (it may have been deleted); \
                 request the first page without a cursor"
                ))
            })?
        }
    };
    let end = (start + page.limit).min(items.len());
    let data: Vec<&T> = items[start..end].iter().collect();
    let has_more = end < items.len();
    let cursor = if has_more { data.last().map(|item| id_of(item).to_string()) } else { None };
    Ok(Paginated { data, pagination: PageInfo { limit: page.limit, cursor, has_more, total: items.len() } })
}

/// The first value of `name` in a query string, percent-decoded (`+` is a space). A bare
/// `name` without `=` yields `""`.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent::decode(key, true) == name).then(|| percent::decode(value, true).into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_defaults_and_aliases() {
        assert_eq!(Page::from_query(None).unwrap(), Page::default());
        assert_eq!(Page::from_query(Some("")).unwrap(), Page { limit: 25, cursor: None });
        assert_eq!(
            Page::from_query(Some("limit=100&cursor=o-9")).unwrap(),
            Page { limit: 100, cursor: Some("o-9".into()) }
        );
        assert_eq!(
            Page::from_query(Some("nextCursor=o%2D9&limit=1")).unwrap(),
            Page { limit: 1, cursor: Some("o-9".into()) }
        );
        assert_eq!(Page::from_query(Some("cursor=")).unwrap().cursor, None);
    }

    #[test]
    fn bad_limits_are_400_naming_limit() {
        for query in ["limit=0", "limit=101", "limit=abc", "limit=-1", "limit="] {
            let error = Page::from_query(Some(query)).unwrap_err();
            assert_eq!(error.code(), "BAD_REQUEST", "{query}");
            assert!(error.message().starts_with("limit must be"), "{query}: {}", error.message());
        }
    }

    fn ids<'a>(page: &Paginated<'a, String>) -> Vec<&'a str> {
        page.data.iter().map(|s| s.as_str()).collect()
    }

    #[test]
    fn keyset_pages_walk_the_whole_list() {
        let items: Vec<String> = (0..7).rev().map(|i| format!("id{i}")).collect();
        let mut page = Page { limit: 3, cursor: None };
        let mut seen = Vec::new();
        loop {
            let result = paginate(&items, |s| s.as_str(), &page).unwrap();
            assert_eq!(result.pagination.total, 7);
            seen.extend(ids(&result).into_iter().map(str::to_string));
            match result.pagination.cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => break,
            }
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn last_page_has_no_cursor_and_unknown_cursor_is_400() {
        let items: Vec<String> = vec!["b".into(), "a".into()];
        let result = paginate(&items, |s| s.as_str(), &Page { limit: 2, cursor: None }).unwrap();
        assert_eq!(result.pagination, PageInfo { limit: 2, cursor: None, has_more: false, total: 2 });
        let error = paginate(&items, |s| s.as_str(), &Page { limit: 2, cursor: Some("zz".into()) }).unwrap_err();
        assert!(error.message().contains("`zz`"), "{}", error.message());
    }

    #[test]
    fn serializes_to_the_list_envelope() {
        let items: Vec<String> = vec!["c".into(), "b".into(), "a".into()];
        let result = paginate(&items, |s| s.as_str(), &Page { limit: 2, cursor: None }).unwrap();
        assert_eq!(
            serde_json::to_value(&result).unwrap(),
            serde_json::json!({"data": ["c", "b"], "pagination": {"limit": 2, "cursor": "b", "hasMore": true, "total": 3}})
        );
    }

    #[test]
    fn query_params_are_decoded() {
        let query = Some("id=flow%201&method=t_learner&q=a+b&flag&id=second");
        assert_eq!(query_param(query, "id").as_deref(), Some("flow 1"));
        assert_eq!(query_param(query, "method").as_deref(), Some("t_learner"));
        assert_eq!(query_param(query, "q").as_deref(), Some("a b"));
        assert_eq!(query_param(query, "flag").as_deref(), Some(""));
        assert_eq!(query_param(query, "missing"), None);
        assert_eq!(query_param(None, "id"), None);
    }
}

//! The multiplexer: reads one user's inbox from the hot index (the entries the router wrote
//! merged with the streams of circles merged at read time, filtered, paged), then hydrates the
//! page from cached bodies.
//!
//! Every source only looks at activities up to the routed watermark, which advances strictly
//! in log order; that is what makes a cursor walk see every item exactly once while new items
//! keep arriving.

use super::Store;
use super::activities::{finish_page, readable_seq, render_page, render_page_cached};
use crate::hot::{Effect, FeedFilter};
use crate::model::{InboxFilter, Page, PageFrom, User};
use crate::sql::params;
use crate::{StoreError, StoreResult};

impl Store {
    /// Reads `user`'s inbox: written entries merged with read-time sources, filtered, paged.
    pub async fn inbox(
        &self,
        user: User,
        filter: InboxFilter,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<Page> {
        self.flat_feed(user, filter, FeedFilter::default(), from, limit)
            .await
    }

    /// Reads `user`'s inbox narrowed to activities by `authors` (a group's members).
    pub async fn inbox_from(
        &self,
        user: User,
        filter: InboxFilter,
        mut authors: Vec<i64>,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<Page> {
        authors.sort_unstable();
        authors.dedup();
        let feed = FeedFilter {
            actors: Some(authors),
            ..FeedFilter::default()
        };
        self.flat_feed(user, filter, feed, from, limit).await
    }

    /// Reads a flat feed: the inbox (follows and subscriptions) narrowed by `feed`.
    pub(crate) async fn flat_feed(
        &self,
        user: User,
        filter: InboxFilter,
        feed: FeedFilter,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<Page> {
        let watermark = self.routed_seq();
        let rows = {
            let hot = self
                .shared
                .hot
                .read()
                .map_err(|_| StoreError::Corrupt("hot index lock".into()))?;
            let circle_ids = hot.circle_ids(&filter.circles);
            hot.inbox(user.id, watermark, &filter, &circle_ids, &feed, from, limit)
        };
        self.hydrate(rows, from, limit).await
    }

    /// Cuts walk-ordered rows to a page and renders it, from memory when it can.
    pub(crate) async fn hydrate(
        &self,
        rows: Vec<(i64, Option<String>)>,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<Page> {
        let (rows, more) = finish_page(rows, from, limit);
        if let Some(page) = render_page_cached(&self.shared, &rows, more) {
            return Ok(page);
        }
        let shared = self.shared.clone();
        self.read(move |conn| render_page(conn, &shared, rows, more))
            .await
    }

    /// Hides one activity in `user`'s inbox only; the streams keep it.
    pub async fn hide_in_inbox(&self, user: User, activity_id: &str) -> StoreResult<()> {
        let activity_id = activity_id.to_owned();
        self.write(move |conn, fx| {
            let seq = readable_seq(conn, &activity_id, &user)?
                .ok_or(StoreError::not_found("activity"))?;
            conn.prepare_cached(
                "INSERT INTO inbox_hidden(user_id, seq) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?
            .execute(params![user.id, seq])?;
            fx.push(Effect::Hide { user: user.id, seq });
            Ok(())
        })
        .await
    }
}

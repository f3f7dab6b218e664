//! HTTP-level tests: users, sessions, admin moderation, circles, memberships, subscriptions.

mod common;

use common::TestServer;
use reqwest::StatusCode;

#[tokio::test]
async fn signup_login_me_logout() {
    let s = TestServer::start().await;
    let token = s.user("ana").await;
    let me = s.get(&token, "/me").await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["username"], "ana");
    assert_eq!(
        s.delete(&token, "/sessions/current").await.status,
        StatusCode::NO_CONTENT
    );
    let after = s.get(&token, "/me").await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after.code(), "unauthenticated");
}

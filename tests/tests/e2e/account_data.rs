//! Account-wide data: notifications, billing, usage and the admins' user directory.
//! Each operation runs as every actor, with the outcome the domains' `policy.rs` give it;
//! a token narrowed to a project reaches none of it.

use flashfusion_tests::{Actor, Actors, Case, TestApp, outcome, run_matrix};
use serde_json::{Value, json};

on_both_backends!(
    every_actor_gets_the_expected_outcome,
    notifications_flow_from_the_service_to_their_owner,
    billing_starts_free_and_only_services_and_admins_change_it,
    usage_is_summed_per_bucket_and_admins_read_anyones,
    profiles_and_roles_change_as_the_rules_say,
    a_list_answers_plain_notifications_as_resolved_ones,
);

const U: &str = "UNAUTHENTICATED";
const F: &str = "FORBIDDEN";
const N: &str = "NOT_FOUND";
const D: &str = "data";

/// The matrix rows of account-wide data, over the variables of
/// [`every_actor_gets_the_expected_outcome`].
#[rustfmt::skip]
pub const CASES: [Case; 13] = [
    //                                         anon owner other admin service readOnly otherProject
    Case { field: "myBilling", query: "{ myBilling { plan } }",
           expected: [U, D, D, D, D, D, F] },
    Case { field: "notifications", query: "{ notifications { totalCount } }",
           expected: [U, D, D, D, F, D, F] },
    Case { field: "unreadNotificationCount", query: "{ unreadNotificationCount }",
           expected: [U, D, D, D, F, D, F] },
    Case { field: "usageSummary", query: "query($from: DateTime!, $to: DateTime!) { usageSummary(from: $from, to: $to, groupBy: DAY) { key } }",
           expected: [U, D, D, D, F, D, F] },
    Case { field: "usageSummary", query: "query($owner: ID!, $from: DateTime!, $to: DateTime!) { usageSummary(from: $from, to: $to, groupBy: DAY, userId: $owner) { key } }",
           expected: [U, D, F, D, F, D, F] },
    Case { field: "users", query: "{ users { totalCount } }",
           expected: [U, F, F, D, F, F, F] },
    Case { field: "createNotification", query: "mutation($owner: ID!) { createNotification(input: {userId: $owner, kind: \"t\", title: \"hi\"}) { notificationId } }",
           expected: [U, F, F, D, D, F, F] },
    Case { field: "setBilling", query: "mutation($owner: ID!) { setBilling(input: {userId: $owner, plan: PRO}) { billing { plan } } }",
           expected: [U, F, F, D, D, F, F] },
    Case { field: "setUserRole", query: "mutation($other: ID!) { setUserRole(input: {userId: $other, role: USER}) { user { role } } }",
           expected: [U, F, F, D, F, F, F] },
    Case { field: "updateMe", query: "mutation { updateMe(input: {displayName: \"Renamed\"}) { user { displayName } } }",
           expected: [U, D, D, D, F, F, D] },
    Case { field: "markAllNotificationsRead", query: "mutation { markAllNotificationsRead }",
           expected: [U, D, D, D, F, F, F] },
    Case { field: "markNotificationRead", query: "mutation($n: ID!) { markNotificationRead(id: $n) { notification { readAt } } }",
           expected: [U, D, N, N, F, F, F] },
    Case { field: "deleteNotification", query: "mutation($n: ID!) { deleteNotification(id: $n) { deletedId } }",
           expected: [U, N, N, N, F, F, F] },
];

async fn every_actor_gets_the_expected_outcome(app: TestApp) {
    let cast = Actors::new(&app).await;
    let notify = notify_owner(&cast).await;
    let vars = json!({
        "owner": cast.owner_id, "other": cast.other_id, "n": notify,
        "from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z",
    });
    run_matrix(&cast, &CASES, &vars, |field, actor| {
        // The owner's delete runs last so the others see the notification first.
        field == "deleteNotification" && actor == Actor::Owner
    })
    .await;
    let deleted = cast
        .owner
        .graphql(
            "mutation($n: ID!) { deleteNotification(id: $n) { deletedId } }",
            vars.clone(),
        )
        .await;
    assert_eq!(
        deleted["data"]["deleteNotification"]["deletedId"], notify,
        "{deleted}"
    );
    // `me` works with the one-project token; its billing does not.
    let me = cast
        .other_project
        .graphql("{ me { id billing { plan } } }", json!({}))
        .await;
    assert_eq!(me["errors"][0]["extensions"]["code"], F, "{me}");
    assert_eq!(me["errors"][0]["path"], json!(["me", "billing"]), "{me}");
}

/// The service sends the owner a notification; returns its id.
async fn notify_owner(cast: &Actors) -> String {
    let sent = cast
        .service
        .graphql(
            "mutation($u: ID!) { createNotification(input: {userId: $u, kind: \"deploy.ready\", title: \"Live\", body: \"It is up\", data: {url: \"https://x\"}}) { notificationId } }",
            json!({ "u": cast.owner_id }),
        )
        .await;
    sent["data"]["createNotification"]["notificationId"]
        .as_str()
        .unwrap_or_else(|| panic!("createNotification failed: {sent}"))
        .to_owned()
}

async fn notifications_flow_from_the_service_to_their_owner(app: TestApp) {
    let cast = Actors::new(&app).await;
    let first = notify_owner(&cast).await;
    notify_owner(&cast).await;
    let count = |client: &flashfusion_tests::Client| {
        let client = client.clone();
        async move {
            client
                .graphql("{ unreadNotificationCount }", json!({}))
                .await["data"]["unreadNotificationCount"]
                .clone()
        }
    };
    assert_eq!(count(&cast.owner).await, 2);
    assert_eq!(count(&cast.other).await, 0);
    // What Postgres cannot store is refused on both backends alike, and nothing is sent.
    for data in [json!({ "a": "\u{0}" }), json!({ "a\u{0}": 1 }), json!([1])] {
        let refused = cast
            .service
            .graphql(
                "mutation($u: ID!, $d: JSON!) { createNotification(input: {userId: $u, kind: \"k\", title: \"t\", data: $d}) { notificationId } }",
                json!({ "u": cast.owner_id, "d": data }),
            )
            .await;
        assert_eq!(
            refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{refused}"
        );
    }
    assert_eq!(count(&cast.owner).await, 2);
    let list = cast
        .owner
        .graphql(
            "{ notifications(first: 1) { totalCount edges { node { kind title body data readAt } } } }",
            json!({}),
        )
        .await;
    assert_eq!(list["data"]["notifications"]["totalCount"], 2, "{list}");
    assert_eq!(
        list["data"]["notifications"]["edges"][0]["node"],
        json!({ "kind": "deploy.ready", "title": "Live", "body": "It is up", "data": { "url": "https://x" }, "readAt": null })
    );
    let read = cast
        .owner
        .graphql(
            "mutation($n: ID!) { markNotificationRead(id: $n) { notification { id readAt } } }",
            json!({ "n": first }),
        )
        .await;
    assert!(
        read["data"]["markNotificationRead"]["notification"]["readAt"].is_string(),
        "{read}"
    );
    assert_eq!(count(&cast.owner).await, 1);
    let unread = cast
        .owner
        .graphql(
            "{ notifications(unreadOnly: true) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(unread["data"]["notifications"]["totalCount"], 1, "{unread}");
    let all = cast
        .owner
        .graphql("mutation { markAllNotificationsRead }", json!({}))
        .await;
    assert_eq!(all["data"]["markAllNotificationsRead"], 1, "{all}");
    assert_eq!(count(&cast.owner).await, 0);
    let nobody = cast
        .service
        .graphql(
            "mutation($u: ID!) { createNotification(input: {userId: $u, kind: \"k\", title: \"t\"}) { notificationId } }",
            json!({ "u": uuid::Uuid::now_v7().to_string() }),
        )
        .await;
    assert_eq!(outcome(&nobody, "createNotification"), N, "{nobody}");
}

async fn billing_starts_free_and_only_services_and_admins_change_it(app: TestApp) {
    let cast = Actors::new(&app).await;
    const MINE: &str = "{ myBilling { plan status cancelAtPeriodEnd } me { billing { plan } } }";
    let free = cast.owner.graphql(MINE, json!({})).await;
    assert_eq!(
        free["data"],
        json!({ "myBilling": { "plan": "FREE", "status": "ACTIVE", "cancelAtPeriodEnd": false },
                "me": { "billing": { "plan": "FREE" } } }),
        "{free}"
    );
    let set = cast
        .service
        .graphql(
            "mutation($u: ID!) { setBilling(input: {userId: $u, plan: TEAM, status: PAST_DUE, cancelAtPeriodEnd: true, currentPeriodEnd: \"2030-01-01T00:00:00Z\"}) { billing { plan status cancelAtPeriodEnd currentPeriodEnd } } }",
            json!({ "u": cast.owner_id }),
        )
        .await;
    assert_eq!(
        set["data"]["setBilling"]["billing"],
        json!({ "plan": "TEAM", "status": "PAST_DUE", "cancelAtPeriodEnd": true, "currentPeriodEnd": "2030-01-01T00:00:00+00:00" }),
        "{set}"
    );
    // A later change of one field keeps the others.
    cast.admin
        .graphql(
            "mutation($u: ID!) { setBilling(input: {userId: $u, status: ACTIVE}) { billing { plan } } }",
            json!({ "u": cast.owner_id }),
        )
        .await;
    let now = cast.owner.graphql(MINE, json!({})).await;
    assert_eq!(now["data"]["myBilling"]["plan"], "TEAM", "{now}");
    assert_eq!(now["data"]["myBilling"]["status"], "ACTIVE", "{now}");
    let far = cast
        .admin
        .graphql(
            "mutation($u: ID!) { setBilling(input: {userId: $u, currentPeriodEnd: \"+10000-01-01T00:00:00Z\"}) { billing { plan } } }",
            json!({ "u": cast.owner_id }),
        )
        .await;
    assert_eq!(
        far["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{far}"
    );
    let admin_view = cast
        .admin
        .graphql(
            "{ users(first: 100) { edges { node { email billing { plan } } } } }",
            json!({}),
        )
        .await;
    let plans: Vec<&Value> = admin_view["data"]["users"]["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .map(|e| &e["node"]["billing"]["plan"])
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(plans.len(), 4, "{admin_view}");
    assert!(plans.contains(&&json!("TEAM")), "{admin_view}");
}

async fn usage_is_summed_per_bucket_and_admins_read_anyones(app: TestApp) {
    use entity::usage_analytics;
    use sea_orm::{ActiveValue::Set, EntityTrait};
    let cast = Actors::new(&app).await;
    let owner: uuid::Uuid = cast.owner_id.parse().expect("uuid");
    let project: uuid::Uuid = cast.project_id.parse().expect("uuid");
    let row =
        |day: &str, event: &str, project_id, quantity, tokens, cost| usage_analytics::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            user_id: Set(owner),
            project_id: Set(project_id),
            event_type: Set(event.to_owned()),
            quantity: Set(quantity),
            tokens: Set(tokens),
            cost: Set(cost),
            metadata: Set(json!({})),
            created_at: Set(format!("{day}T12:00:00Z").parse().expect("timestamp")),
        };
    usage_analytics::Entity::insert_many([
        row(
            "2026-01-01",
            "code_generation.completed",
            Some(project),
            1,
            1000,
            0.25,
        ),
        row("2026-01-01", "agent_task.created", Some(project), 1, 0, 0.0),
        row("2026-01-02", "code_generation.completed", None, 2, 500, 0.5),
        row("2025-12-31", "agent_task.created", None, 1, 0, 0.0),
    ])
    .exec(app.state.db.connection())
    .await
    .expect("seed usage");
    const SUMMARY: &str = "query($g: UsageGroupBy!, $u: ID) { usageSummary(from: \"2026-01-01T00:00:00Z\", to: \"2026-02-01T00:00:00Z\", groupBy: $g, userId: $u) { key quantity tokens cost } }";
    let by = |g: &str| json!({ "g": g });
    let days = cast.owner.graphql(SUMMARY, by("DAY")).await;
    assert_eq!(
        days["data"]["usageSummary"],
        json!([
            { "key": "2026-01-01", "quantity": 2, "tokens": 1000, "cost": "0.25" },
            { "key": "2026-01-02", "quantity": 2, "tokens": 500, "cost": "0.5" },
        ]),
        "{days}"
    );
    let events = cast.owner.graphql(SUMMARY, by("EVENT_TYPE")).await;
    assert_eq!(
        events["data"]["usageSummary"],
        json!([
            { "key": "agent_task.created", "quantity": 1, "tokens": 0, "cost": "0" },
            { "key": "code_generation.completed", "quantity": 3, "tokens": 1500, "cost": "0.75" },
        ]),
        "{events}"
    );
    let projects = cast.owner.graphql(SUMMARY, by("PROJECT")).await;
    let keys: Vec<&Value> = projects["data"]["usageSummary"]
        .as_array()
        .map(|b| b.iter().map(|b| &b["key"]).collect())
        .unwrap_or_default();
    assert_eq!(keys.len(), 2, "{projects}");
    assert!(
        keys.contains(&&json!(cast.project_id)) && keys.contains(&&json!("")),
        "{projects}"
    );
    let admin = cast
        .admin
        .graphql(SUMMARY, json!({ "g": "DAY", "u": cast.owner_id }))
        .await;
    assert_eq!(
        admin["data"]["usageSummary"], days["data"]["usageSummary"],
        "{admin}"
    );
    let other = cast.other.graphql(SUMMARY, by("DAY")).await;
    assert_eq!(other["data"]["usageSummary"], json!([]), "{other}");
    let backwards = cast
        .owner
        .graphql(
            "{ usageSummary(from: \"2026-02-01T00:00:00Z\", to: \"2026-01-01T00:00:00Z\", groupBy: DAY) { key } }",
            json!({}),
        )
        .await;
    assert_eq!(
        outcome(&backwards, "usageSummary"),
        "BAD_USER_INPUT",
        "{backwards}"
    );
    // Instants GraphQL's DateTime reads but neither backend stores or compares as an
    // instant: Postgres refuses years before 4714 BC, SQLite's text sorts `+10000`
    // before every year. Both refuse them alike.
    for (from, to) in [
        ("-5000-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        ("2000-01-01T00:00:00Z", "+10000-01-01T00:00:00Z"),
    ] {
        let far = cast
            .owner
            .graphql(
                "query($f: DateTime!, $t: DateTime!) { usageSummary(from: $f, to: $t, groupBy: DAY) { key } }",
                json!({ "f": from, "t": to }),
            )
            .await;
        assert_eq!(outcome(&far, "usageSummary"), "BAD_USER_INPUT", "{far}");
    }
}

async fn profiles_and_roles_change_as_the_rules_say(app: TestApp) {
    let cast = Actors::new(&app).await;
    const UPDATE: &str =
        "mutation($i: UpdateMeInput!) { updateMe(input: $i) { user { displayName avatarUrl } } }";
    let set = cast
        .owner
        .graphql(
            UPDATE,
            json!({ "i": { "avatarUrl": "https://img.example/a.png" } }),
        )
        .await;
    assert_eq!(
        set["data"]["updateMe"]["user"],
        json!({ "displayName": "owner", "avatarUrl": "https://img.example/a.png" }),
        "{set}"
    );
    let cleared = cast
        .owner
        .graphql(
            UPDATE,
            json!({ "i": { "avatarUrl": null, "displayName": " Ada " } }),
        )
        .await;
    assert_eq!(
        cleared["data"]["updateMe"]["user"],
        json!({ "displayName": "Ada", "avatarUrl": null }),
        "{cleared}"
    );
    for bad in [
        json!({ "avatarUrl": "javascript:alert(1)" }),
        json!({ "displayName": "" }),
    ] {
        let refused = cast.owner.graphql(UPDATE, json!({ "i": bad })).await;
        assert_eq!(outcome(&refused, "updateMe"), "BAD_USER_INPUT", "{refused}");
    }
    const ROLE: &str = "mutation($u: ID!, $r: Role!) { setUserRole(input: {userId: $u, role: $r}) { user { id role } } }";
    let promoted = cast
        .admin
        .graphql(ROLE, json!({ "u": cast.other_id, "r": "ADMIN" }))
        .await;
    assert_eq!(
        promoted["data"]["setUserRole"]["user"]["role"], "ADMIN",
        "{promoted}"
    );
    let service = cast
        .admin
        .graphql(ROLE, json!({ "u": cast.other_id, "r": "SERVICE" }))
        .await;
    assert_eq!(
        outcome(&service, "setUserRole"),
        "BAD_USER_INPUT",
        "{service}"
    );
    let missing = cast
        .admin
        .graphql(
            ROLE,
            json!({ "u": uuid::Uuid::now_v7().to_string(), "r": "ADMIN" }),
        )
        .await;
    assert_eq!(outcome(&missing, "setUserRole"), N, "{missing}");
}

/// Notifications in a list answer their (all plain) fields without resolving each
/// (`kit::plain`): the same as the resolver gives when a directive makes the list take
/// it.
async fn a_list_answers_plain_notifications_as_resolved_ones(app: TestApp) {
    let cast = Actors::new(&app).await;
    let notify = "mutation($i: CreateNotificationInput!) { createNotification(input: $i) { notificationId } }";
    for input in [
        json!({ "userId": cast.owner_id, "kind": "deploy", "title": "Live \"now\"", "body": "a\nb",
                "data": { "url": "https://x.example", "n": [1, null] } }),
        json!({ "userId": cast.owner_id, "kind": "task", "title": "done" }),
    ] {
        let created = cast.admin.graphql(notify, json!({ "i": input })).await;
        assert!(created["errors"].is_null(), "{created}");
    }
    let read = cast
        .owner
        .graphql(
            "{ notifications(first: 1) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    let id = &read["data"]["notifications"]["edges"][0]["node"]["id"];
    let marked = cast
        .owner
        .graphql(
            "mutation($id: ID!) { markNotificationRead(id: $id) { notification { id } } }",
            json!({ "id": id }),
        )
        .await;
    assert!(marked["errors"].is_null(), "{marked}");
    let list = |directive: &str| {
        format!(
            "{{ notifications(first: 10) {{ edges {{ node {{ __typename id {directive} kind title body data readAt createdAt k: kind }} }} }} }}"
        )
    };
    let plain = cast.owner.graphql(&list(""), json!({})).await;
    let resolved = cast
        .owner
        .graphql(&list("@include(if: true)"), json!({}))
        .await;
    assert_eq!(plain, resolved);
    let nodes = plain["data"]["notifications"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no edges: {plain}"));
    assert_eq!(nodes.len(), 2, "{plain}");
    let deploy = nodes.iter().find(|edge| edge["node"]["kind"] == "deploy");
    assert_eq!(
        deploy.map(|edge| &edge["node"]["data"]),
        Some(&json!({ "url": "https://x.example", "n": [1, null] })),
        "{plain}"
    );
    assert_eq!(
        nodes
            .iter()
            .filter(|edge| edge["node"]["readAt"].is_string())
            .count(),
        1,
        "{plain}"
    );
}

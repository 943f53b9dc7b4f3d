//! Notifications: the owner lists them, counts the unread, marks them read and deletes
//! them; the service and admins create them (`createNotification`), and other domains
//! write them with [`notify`] in the same transaction as the change they announce. A
//! token narrowed to a project does not reach them (`resource("notifications")`).

pub mod policy;
mod repo;

use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use entity::notifications;
use futures_util::{StreamExt, stream::BoxStream};
use sea_orm::ConnectionTrait;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    auth::{Operation, Resource},
    error::{ApiError, ApiResult},
    kit::{
        RequestContext,
        authz::{require_account_data, require_service_or_admin},
        feed::{event_type, feed},
        pagination::{Page, PageArgs, page_complexity, paginate},
        parse_id,
        payloads::DeletePayload,
        plain::{Plain, PlainFields, json, nullable, nullable_timestamp, scalar, timestamp},
        profiles,
    },
    realtime::{Event, Row},
    validate::{self, Lines},
};

/// A notification to write.
pub struct NewNotification {
    pub user_id: Uuid,
    /// Machine-readable kind (`agent_task.succeeded`, `deployment.ready`, ...).
    pub kind: String,
    pub title: String,
    pub body: Option<String>,
    /// Ids and details for the client.
    pub data: Value,
}

/// Writes `new` in the caller's transaction. Under RLS only the service and admins may
/// insert notifications: a write on an owner's behalf runs inside
/// `kit::authz::as_service`.
pub async fn notify(db: &impl ConnectionTrait, new: NewNotification) -> ApiResult<()> {
    repo::insert(db, new).await.map(|_| ())
}

/// A message to one account.
#[derive(SimpleObject)]
pub struct Notification {
    id: ID,
    kind: String,
    title: String,
    body: Option<String>,
    data: Json<Value>,
    read_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

/// Notifications in lists answer a selection without resolving each field
/// (`kit::plain`): every field of theirs is plain.
impl PlainFields for Notification {
    fn plain(&self, name: &str) -> Option<async_graphql::Value> {
        Some(match name {
            "id" => scalar(&self.id),
            "kind" => scalar(&self.kind),
            "title" => scalar(&self.title),
            "body" => nullable(self.body.as_ref()),
            "data" => json(&self.data),
            "readAt" => nullable_timestamp(self.read_at.as_ref()),
            "createdAt" => timestamp(&self.created_at),
            _ => return None,
        })
    }
}

impl From<notifications::Model> for Notification {
    fn from(n: notifications::Model) -> Self {
        Self {
            id: n.id.into(),
            kind: n.kind,
            title: n.title,
            body: n.body,
            data: Json(n.data),
            read_at: n.read_at,
            created_at: n.created_at,
        }
    }
}

#[derive(InputObject)]
pub struct CreateNotificationInput {
    user_id: ID,
    kind: String,
    title: String,
    body: Option<String>,
    data: Option<Json<Value>>,
}

#[derive(SimpleObject)]
pub struct CreateNotificationPayload {
    /// The new notification's id (its content is its recipient's to read).
    notification_id: ID,
}

#[derive(SimpleObject)]
pub struct MarkNotificationReadPayload {
    notification: Notification,
}

#[derive(Default)]
pub struct NotificationQuery;

#[Object]
impl NotificationQuery {
    /// The caller's notifications, newest first.
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] unread_only: bool,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Page<Plain<Notification>>> {
        let rc = RequestContext::of(ctx)?;
        let user_id = require_account_data(
            rc,
            Operation::Read,
            Resource::Notifications,
            NO_NOTIFICATIONS,
        )?;
        paginate(
            rc.tx_ref(),
            repo::list(user_id, unread_only),
            (notifications::Column::Id, |n: &notifications::Model| n.id),
            PageArgs::new(ctx, first, after, last, before),
            |row| Plain(Notification::from(row)),
        )
        .await
    }

    /// How many of the caller's notifications are unread.
    async fn unread_notification_count(&self, ctx: &Context<'_>) -> ApiResult<u64> {
        let rc = RequestContext::of(ctx)?;
        let user_id = require_account_data(
            rc,
            Operation::Read,
            Resource::Notifications,
            NO_NOTIFICATIONS,
        )?;
        repo::unread_count(&*rc.tx().await?, user_id).await
    }
}

event_type!(
    /// A change to one of the caller's notifications.
    NotificationEvent { notification: Notification }
);

#[derive(Default)]
pub struct NotificationSubscription;

#[Subscription]
impl NotificationSubscription {
    /// The caller's notifications as they arrive (and as they are read or deleted).
    /// With `after`, a cursor received earlier, what was missed since comes first, then
    /// live ones, with none lost or repeated.
    async fn notification_added(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> Result<BoxStream<'static, ApiResult<NotificationEvent>>, ApiError> {
        let rc = RequestContext::of(ctx)?;
        let user_id = require_account_data(
            rc,
            Operation::Read,
            Resource::Notifications,
            NO_NOTIFICATIONS,
        )?;
        let readers = policy::readers(user_id);
        let admit = move |event: &Event| match &event.row {
            Row::Notification(row) if readers.admits(row.user_id) => {
                Some(NotificationEvent::new(event, row.clone().into()))
            }
            _ => None,
        };
        Ok(Box::pin(feed(ctx, after, readers, false, admit))
            .await?
            .boxed())
    }
}

#[derive(Default)]
pub struct NotificationMutation;

#[Object]
impl NotificationMutation {
    /// Sends a notification to an account (the service and admins).
    async fn create_notification(
        &self,
        ctx: &Context<'_>,
        input: CreateNotificationInput,
    ) -> ApiResult<CreateNotificationPayload> {
        let rc = RequestContext::of(ctx)?;
        require_service_or_admin(rc)?;
        rc.authorize(Operation::Write, Resource::Notifications)?;
        let data = input
            .data
            .map_or_else(|| Value::Object(Default::default()), |Json(data)| data);
        validate::json_object("data", &data)?;
        let user_id = parse_id("userId", &input.user_id)?;
        let db = rc.tx().await?;
        if !profiles::account_exists(&*db, user_id).await? {
            return Err(ApiError::NotFound("user"));
        }
        let new = NewNotification {
            user_id,
            kind: validate::required("kind", &input.kind, 100, Lines::One)?,
            title: validate::required("title", &input.title, 200, Lines::One)?,
            body: validate::optional("body", input.body.as_deref(), 10_000, Lines::Many)?,
            data,
        };
        let id = repo::insert(&*db, new).await?;
        Ok(CreateNotificationPayload {
            notification_id: id.into(),
        })
    }

    /// Marks one of the caller's notifications read.
    async fn mark_notification_read(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> ApiResult<MarkNotificationReadPayload> {
        let rc = RequestContext::of(ctx)?;
        let (user_id, id) = own(rc, &id)?;
        let db = rc.tx().await?;
        repo::mark_read(&*db, user_id, Some(id)).await?;
        let notification = repo::find_owned(&*db, user_id, id)
            .await?
            .ok_or(ApiError::NotFound("notification"))?;
        Ok(MarkNotificationReadPayload {
            notification: notification.into(),
        })
    }

    /// Marks every unread notification of the caller read; returns how many.
    async fn mark_all_notifications_read(&self, ctx: &Context<'_>) -> ApiResult<u64> {
        let rc = RequestContext::of(ctx)?;
        let user_id = require_account_data(
            rc,
            Operation::Write,
            Resource::Notifications,
            NO_NOTIFICATIONS,
        )?;
        repo::mark_read(&*rc.tx().await?, user_id, None).await
    }

    /// Deletes one of the caller's notifications.
    async fn delete_notification(&self, ctx: &Context<'_>, id: ID) -> ApiResult<DeletePayload> {
        let rc = RequestContext::of(ctx)?;
        let (user_id, id) = own(rc, &id)?;
        if !repo::delete(&*rc.tx().await?, user_id, id).await? {
            return Err(ApiError::NotFound("notification"));
        }
        Ok(DeletePayload::new(id))
    }
}

/// The caller and the notification id a change names, once the token allows changing
/// notifications.
fn own(rc: &RequestContext, id: &ID) -> ApiResult<(Uuid, Uuid)> {
    let user_id = require_account_data(
        rc,
        Operation::Write,
        Resource::Notifications,
        NO_NOTIFICATIONS,
    )?;
    Ok((user_id, parse_id("id", id)?))
}

/// Services send notifications but have none (their role reads none).
const NO_NOTIFICATIONS: &str = "service tokens send notifications but have none";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Its subscription reads no other rows for any selection (`feed`'s `needs_db` is
    /// false): every field is plain.
    #[test]
    fn every_notification_field_is_plain() {
        let row: notifications::Model = serde_json::from_value(json!({
            "id": Uuid::nil(), "user_id": Uuid::nil(), "kind": "k", "title": "t",
            "body": null, "data": {}, "read_at": null,
            "created_at": "2026-11-26T00:00:00Z", "updated_at": "2026-11-26T00:00:00Z",
        }))
        .expect("a notification row");
        crate::kit::feed::assert_edges_are_the_fields_not_plain(&Notification::from(row), &[]);
    }
}
